"""``spikeforge demo``: train on digits, run golden model and RTL, compare, plot rasters."""

from __future__ import annotations

from pathlib import Path

from spikeforge.commands.common import add_config, int_at_least, require_rate
from spikeforge.config import load_config
from spikeforge.sim.compare import SIMULATORS

DEFAULT_CONFIG = "digits-tiny"


def register(sub) -> None:
    p = sub.add_parser("demo", help="train on digits, run golden model and RTL, plot rasters")
    add_config(p, DEFAULT_CONFIG)
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--sim", choices=SIMULATORS, default=SIMULATORS[0])
    p.add_argument("--epochs", type=int_at_least(1), default=None,
                   help="QAT epochs (default: trainer's)")
    p.add_argument("--samples", type=int_at_least(1), default=None,
                   help="held-out samples to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from spikeforge.demo import run_demo

    cfg = load_config(args.config)
    require_rate(cfg, "demo")
    return run_demo(cfg, out_dir=Path(args.out), sim=args.sim, epochs=args.epochs,
                    samples=args.samples, seed=args.seed)
