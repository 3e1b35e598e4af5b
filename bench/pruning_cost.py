"""What prune-while-learning costs in logic: the TTFS core synthesised with and without it.

Usage: ``.venv/bin/python bench/pruning_cost.py [CONFIG ...] [--family ecp5|ice40]``
(default ``ttfs-mnist`` on ECP5).

Each config is generated twice: as given, and with ``prune_threshold = 0``, which builds
the same core without the pruning logic (dense fan-in lists: no index field, no length
memory, no compaction pointer, no prune compare). Both are synthesised with YoWASP Yosys
(``synth_<family>``, cell counts from ``stat -json``, see ``bench/learning_cost.py``);
prints one Markdown table per config with the difference and its share of the core.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_cost import synth_cells  # noqa: E402

from spikeforge.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["ttfs-mnist"])
    parser.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    args = parser.parse_args()
    for name in args.configs:
        cfg = load_config(name)
        if cfg.encoding != "ttfs" or not cfg.pruning:
            raise SystemExit(f"{name}: not a TTFS config with pruning (prune_threshold > 0)")
        t0 = time.perf_counter()
        with_prune = synth_cells(cfg, args.family)
        without = synth_cells(dataclasses.replace(cfg, prune_threshold=0), args.family)
        print(f"\n{cfg.summary()}; synth_{args.family}, {time.perf_counter() - t0:.0f} s\n")
        print("| cells | without pruning | with pruning | pruning logic | share of core |")
        print("|---|---:|---:|---:|---:|")
        for label, n in with_prune.items():
            base = without[label]
            share = f"{100 * (n - base) / n:.1f}%" if n else "-"
            print(f"| {label} | {base:,} | {n:,} | {n - base:+,} | {share} |")


if __name__ == "__main__":
    main()
