"""Replay a randomized-equivalence reproducer:
``python -m spikeforge.sim.replay FILE [--verilator]``.

``FILE`` is a ``.json`` written by :func:`sim.random_cases.check_case` (config, stored
weights, pixels, labels, back-pressure, reset). Re-runs the golden model against the
Amaranth simulation of the Network and prints the first divergence; with ``--verilator``
also against the generated Verilog (:func:`sim.rtl.run_rtl`; samples that all train or all
infer only, without the reset: the cocotb testbench has its own back-pressure). Exit status
0 when everything agrees, 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import sys

from spikeforge.sim.random_cases import load_case, run_case


def verilator_check(case) -> tuple[bool, str]:
    """The case through cocotb/Verilator; ``(ok, report line)``."""
    from spikeforge.sim.compare import compare_runs, compare_training
    from spikeforge.sim.random_cases import golden
    from spikeforge.sim.rtl import run_rtl

    cfg, labels = case.cfg, case.labels
    if labels is not None and (labels >= 0).any() and not (labels >= 0).all():
        return True, "verilator: skipped (training and inference samples mixed)"
    train = labels is not None and bool((labels >= 0).all())
    gold = golden(case)
    rtl = run_rtl(cfg, case.stored, case.pixels, stored=True,
                  labels=labels if train else None)
    if train:
        result = compare_training(gold, rtl)
    else:
        from types import SimpleNamespace

        import numpy as np

        result = compare_runs(SimpleNamespace(
            rasters=[np.concatenate([g.run.rasters[p] for g in gold])
                     for p in range(len(cfg.layers))],
            predictions=np.concatenate([g.run.predictions for g in gold]),
            cycles=np.array([g.cycles for g in gold], dtype=np.int64)), rtl)
    line = f"verilator: {result.summary_line()}"
    if not result.ok:
        line += f"; first divergence: {result.first_divergence}"
    return result.ok, line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikeforge.sim.replay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="reproducer .json (out/repro/<hash>.json)")
    parser.add_argument("--verilator", action="store_true",
                        help="also run the generated Verilog (cocotb/Verilator)")
    args = parser.parse_args(argv)
    case = load_case(args.file)
    print(f"case: {case!r}")
    outcome = run_case(case)
    c = outcome.comparison
    print(f"amaranth: {c.summary_line()}, {c.prediction_mismatches} prediction mismatches, "
          f"{c.stream_mismatches} readout stream mismatches"
          + (f"; reset at cycle {outcome.reset_cycle} of sample 0 ({outcome.reset_phase})"
             if outcome.reset_cycle is not None else ""))
    ok = outcome.ok
    if not ok:
        print(f"first divergence: {outcome.first_divergence()}")
        for line in c.details[:5] + outcome.problems:
            print(f"  {line}")
    if args.verilator:
        v_ok, line = verilator_check(case)
        print(line)
        ok = ok and v_ok
    print("OK: golden and RTL agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
