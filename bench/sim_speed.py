"""The same cocotb job on Verilator and on Icarus Verilog: wall time and simulated cycles/s.

Usage: ``.venv/bin/python bench/sim_speed.py [--samples N] [--train N] [--config C]``

Each job runs twice per simulator in a fresh build root: the first call builds (Verilog
generation, Verilator's C++ compile or iverilog's compile) and runs, the second runs with
the build cached (Icarus recompiles every call, in about 0.1 s). Simulated
cycles and the testbench's own time come from cocotb's ``results.xml`` (the simulated time
over the 10 ns clock). Results are checked to be identical on both simulators. Prints one
Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from spikeforge.config import load_config
from spikeforge.sim.rtl import build_dir_for, run_rtl
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.train import initial_weights

CLOCK_NS = 10


def cocotb_times(build_dir: Path) -> tuple[int, float]:
    """(clock cycles simulated, seconds the cocotb test ran) of the last run."""
    case = ET.parse(build_dir / "results.xml").find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    return round(float(props["sim_time_duration"]) / CLOCK_NS), float(case.get("time"))


def measure(cfg, sim, root, **job):
    rows = []
    for call in ("first (build + run)", "second (build cached)"):
        t0 = time.perf_counter()
        run = run_rtl(cfg, build_root=root, sim=sim, **job)
        wall = time.perf_counter() - t0
        cycles, sim_s = cocotb_times(build_dir_for(cfg, sim, None, root))
        rows.append((call, wall, cycles, sim_s))
    return run, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="digits-tiny")
    ap.add_argument("--samples", type=int, default=20, help="inference samples")
    ap.add_argument("--train", type=int, default=5, help="training samples (0: none)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    data = load_dataset("digits", cfg.pixel_bits)
    stored = initial_weights(cfg, 3)
    jobs = {f"{args.samples} inference samples":
            dict(weights=stored, stored=True, pixels=data.test_pixels[:args.samples])}
    if args.train and cfg.learning is not None:
        jobs[f"{args.train} training samples"] = dict(
            weights=stored, stored=True, pixels=data.train_pixels[:args.train],
            labels=data.train_labels[:args.train])
    print(f"| {cfg.name} job | simulator | call | wall | cycles simulated | cocotb test "
          "time | simulated cycles/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, job in jobs.items():
        runs = {}
        for sim in ("verilator", "icarus"):
            with tempfile.TemporaryDirectory() as tmp:
                runs[sim], rows = measure(cfg, sim, Path(tmp), **job)
            for call, wall, cycles, sim_s in rows:
                print(f"| {name} | {sim} | {call} | {wall:.1f} s | {cycles:,} | {sim_s:.1f} s "
                      f"| {cycles / sim_s:,.0f} |", flush=True)
        v, i = runs["verilator"], runs["icarus"]
        same = (all(np.array_equal(a, b) for a, b in zip(v.rasters, i.rasters, strict=True))
                and np.array_equal(v.cycles, i.cycles) and np.array_equal(v.stream, i.stream)
                and (v.weights_after is None) == (i.weights_after is None))
        if v.weights_after is not None:
            same &= all(np.array_equal(a, b) for wa, wb in zip(v.weights_after, i.weights_after,
                                                               strict=True)
                        for a, b in zip(wa, wb, strict=True))
        if not same:
            raise SystemExit(f"{name}: Verilator and Icarus results differ")


if __name__ == "__main__":
    main()
