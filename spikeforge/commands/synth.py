"""``spikeforge synth``: the FPGA build of a board top (network + UART host link) through
Yosys and nextpnr, with its utilization/timing/performance report; or (``--generic``) the
board top's Verilog, constraints and build script for other flows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spikeforge.commands.common import (
    UsageError,
    add_config,
    bounded_float,
    int_at_least,
    require_rate,
)
from spikeforge.config import load_config
from spikeforge.hw.boards import BOARDS, DEFAULT_BAUD

DEFAULT_CONFIG = "digits-up5k"
DEFAULT_BOARD = "icebreaker"


def register(sub) -> None:
    p = sub.add_parser("synth", help="FPGA build of a board top (network + UART host link): "
                       "Yosys + nextpnr -> bitstream + utilization/Fmax report")
    add_config(p, DEFAULT_CONFIG)
    boards = " or ".join(f"{b.name} ({_device(b)})" for b in BOARDS.values())
    p.add_argument("--board", choices=BOARDS, default=DEFAULT_BOARD, metavar="BOARD",
                   help=f"{boards} (default: {DEFAULT_BOARD})")
    targets = " / ".join(f"{b.target_mhz:g}" for b in BOARDS.values())
    p.add_argument("--freq", type=bounded_float("> 0", lambda v: v > 0), default=None,
                   help=f"core clock in MHz (default: the board's target, {targets})")
    p.add_argument("--baud", type=int_at_least(1), default=DEFAULT_BAUD,
                   help=f"UART baud (default {DEFAULT_BAUD})")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--seeds", type=seed_list, default=None, metavar="LIST",
                   help="place and route once per seed (e.g. 1,2,3 or 1-4) and keep the "
                        "fastest; every seed's Fmax goes into the report")
    p.add_argument("--weights", default=None, help="trained network (.npz) for the cycle "
                   "counts in the report (default: initial Kaiming weights)")
    p.add_argument("--samples", type=int_at_least(1), default=200,
                   help="test samples the cycle counts are measured on (default 200)")
    p.add_argument("--generic", action="store_true",
                   help="write the board top's Verilog, its constraint file and a build "
                        "script, for other Verilog flows; no synthesis")
    p.add_argument("--out", default=None, help="output folder (default "
                   "out/synth/<config>-<board>)")
    p.set_defaults(func=run)


def _device(b) -> str:
    """The FPGA of a board as its vendor writes it: iCE40UP5K, ECP5-85F."""
    if b.family == "ice40":
        return f"iCE40{b.device.upper()}"
    return f"ECP5-{b.device.removesuffix('k')}F"


def seed_list(text: str, least: int = 1) -> list[int]:
    """``1,2,5`` or ``1-4``: seeds, at least one, distinct, each >= ``least`` (nextpnr's
    start at 1)."""
    try:
        seeds = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < least or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct seeds >= {least} such "
                                         "as 1,2,3 or 1-4")
    return seeds


def run(args) -> int:
    """Board top -> Yosys -> nextpnr -> bitstream, with the merged utilization/timing report;
    or, with --generic, the board top's Verilog and constraints for other flows."""
    from spikeforge import synth

    cfg = load_config(args.config)
    require_rate(cfg, "synth", "the board tops hold rate-coded networks only")
    _check_clocks(cfg, args)
    out = Path(args.out or f"out/synth/{cfg.name}-{args.board}")
    try:
        if args.generic:
            for path in synth.generic(cfg, args.board, out, f_mhz=args.freq, baud=args.baud):
                print(f"synth: wrote {path}")
            return 0
        report = synth.build(cfg, args.board, out, f_mhz=args.freq, baud=args.baud,
                             seed=args.seed, seeds=args.seeds)
        synth.add_performance(report, *_workload(cfg, args), out)
    except synth.SynthError as exc:      # a tool failed: exit 1, as a mismatch does
        print(f"spikeforge synth: error: {exc}", file=sys.stderr)
        return 1
    print(f"synth: report {out / 'report.md'}, bitstream {report['bitstream']}")
    print(synth.summary_line(report))
    return 0


def _check_clocks(cfg, args) -> None:
    """The PLL and UART settings of --freq and --baud on the board, before the build: the
    board top refuses a baud its divisor misses by more than 2 % or one too fast for the
    UART (a ValueError from :class:`hw.boards.BoardTop`'s constructor, here a user error).
    The top is built to be checked only, so Amaranth's unused-elaboratable warning is off."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from spikeforge.hw.boards import BoardTop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            BoardTop(cfg, BOARDS[args.board], args.freq, args.baud)
            error = None
        except ValueError as exc:
            error = str(exc)
        gc.collect()            # the top and its parts go here, inside the filter
    if error is not None:
        raise UsageError(error)


def _workload(cfg, args) -> tuple[dict, str]:
    """Cycles and SOPs of the config on its dataset's test samples (sw.throughput)."""
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.throughput import measure
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import load_weights, to_stored

    data = load_for_config(cfg)
    if args.weights:
        stored, note = to_stored(cfg, load_weights(args.weights, cfg)), f"weights {args.weights}"
    else:
        stored, note = initial_weights(cfg, 0), "initial (Kaiming, seed 0) weights"
    n = min(args.samples, len(data.test_labels))
    perf = measure(cfg, stored, data.test_pixels[:n], data.test_labels[:n],
                   train_samples=min(20, n))
    return perf, f"{note}, first {n} {data.name} test samples"
