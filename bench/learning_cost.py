"""What on-chip desire backpropagation costs over inference only: memory bits and logic.

Usage: ``.venv/bin/python bench/learning_cost.py [CONFIG ...] [--family ecp5|ice40]``

For each config, the same network is generated twice (with and without its ``[learning]``
section), synthesised with YoWASP Yosys (``synth_ecp5`` or ``synth_ice40``, cell counts
read from ``stat -json``), and the memory bits are counted from the config. Prints one
Markdown table per config.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from spikeforge.config import load_config
from spikeforge.synth import CELLS, synth_cells

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_fit import memory_bits  # noqa: E402  (one inventory of the gateware's memories)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["digits-tiny", "mnist-ecp5"])
    parser.add_argument("--family", choices=sorted(CELLS), default="ecp5")
    args = parser.parse_args()
    for name in args.configs:
        cfg = load_config(name)
        if cfg.learning is None:
            raise SystemExit(f"{name}: no [learning] section to cost")
        infer = dataclasses.replace(cfg, learning=None)
        t0 = time.time()
        with_l, without = synth_cells(cfg, args.family), synth_cells(infer, args.family)
        print(f"\n### {cfg.summary()}\n\n`synth_{args.family}` (Yosys), "
              f"{time.time() - t0:.0f} s\n")
        print("| resource | inference only | with desire learning | extra |")
        print("|---|---:|---:|---:|")
        for key in with_l:
            a, b = without[key], with_l[key]
            share = f" (+{100 * (b - a) / a:.0f}%)" if a else ""
            print(f"| {key} | {a:,} | {b:,} | {b - a:+,}{share} |")
        m_i, m_l = memory_bits(infer), memory_bits(cfg)
        for key in m_l:
            a, b = m_i.get(key, 0), m_l[key]
            print(f"| memory bits: {key} | {a:,} | {b:,} | {b - a:+,} |")
        total_a, total_b = sum(m_i.values()), sum(m_l.values())
        print(f"| memory bits: total | {total_a:,} | {total_b:,} | {total_b - total_a:+,} "
              f"(+{100 * (total_b - total_a) / total_a:.0f}%) |")


if __name__ == "__main__":
    main()
