"""What QAT loses against a float SNN of the very same network, side by side in one run.

    .venv/bin/python bench/qat_gap.py -c fmnist-ecp5 --epochs 20 --seed 0
    .venv/bin/python bench/qat_gap.py -c digits-tiny --recipe small --lr 0.003

Trains the float reference (:func:`spikeforge.sw.qat.train_float`: the chip's encoder,
delays, threshold, subtract reset and readout, float weights and membranes) and the integer
network (:func:`spikeforge.sw.qat.train_qat`) with the same recipe, seed and data, then
tests both: the float network with the chip's readout (unique argmax: a tie is wrong) and
with a plain ``argmax``; the QAT weights under the golden model (= the RTL, bit for bit).
Prints one Markdown row per network and writes ``out/qat_gap/<config>-<dataset>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from spikeforge.config import load_config
from spikeforge.sw.datasets import DATASET_NAMES, load_for_config
from spikeforge.sw.qat import evaluate_float, evaluate_integer, train_float, train_qat
from spikeforge.sw.recipes import RECIPES, SCHEDULES, Recipe, recipe_from_options


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", default="fmnist-ecp5")
    p.add_argument("--dataset", choices=DATASET_NAMES, help="default: the config's")
    p.add_argument("--recipe", choices=("auto", *RECIPES), default="auto",
                   help="the base recipe (auto: by training-set size, as spikeforge qat)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--count-scale", type=float)
    p.add_argument("--margin-weight", type=float)
    p.add_argument("--desire-weight", type=float,
                   help="hinge towards the counts on-chip learning leaves alone (Recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("float", "qat"), help="train one of the two")
    p.add_argument("--out", type=Path, default=Path("out/qat_gap"))
    return p.parse_args(argv)


def run(cfg, data, recipe: Recipe, seed: int, kind: str) -> dict:
    """Train and test one network; its row as a dict."""
    t0 = time.perf_counter()
    if kind == "float":
        weights = train_float(cfg, data.train_pixels, data.train_labels, recipe=recipe,
                              seed=seed)
        seconds = time.perf_counter() - t0
        return {"network": "float SNN (BPTT)", "train_s": seconds,
                **evaluate_float(cfg, weights, data.test_pixels, data.test_labels)}
    weights = train_qat(cfg, data.train_pixels, data.train_labels, recipe=recipe, seed=seed)
    seconds = time.perf_counter() - t0
    return {"network": "QAT, integer golden model (= RTL)", "train_s": seconds,
            "accuracy": evaluate_integer(cfg, weights, data.test_pixels, data.test_labels)}


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config)
    data = load_for_config(cfg, args.dataset)
    recipe = recipe_from_options(args, len(data.train_labels))
    print(f"qat_gap: {cfg.summary()}")
    print(f"qat_gap: {data.summary()}")
    print(f"qat_gap: {recipe}, seed {args.seed}")
    kinds = [args.only] if args.only else ["float", "qat"]
    rows = [run(cfg, data, recipe, args.seed, kind) for kind in kinds]
    print("\n| network | test accuracy | plain argmax | ties | training |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        extra = (f"{100 * r['argmax_accuracy']:.2f}% | {100 * r['ties']:.2f}%"
                 if "ties" in r else "— | —")
        print(f"| {r['network']} | {100 * r['accuracy']:.2f}% | {extra} | "
              f"{r['train_s']:.0f} s |")
    if len(rows) == 2:
        print(f"\nqat_gap: {cfg.name} {data.name}: QAT - float = "
              f"{100 * (rows[1]['accuracy'] - rows[0]['accuracy']):+.2f} points")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{cfg.name}-{data.name}-{args.only or 'both'}-s{args.seed}.json"
    path.write_text(json.dumps({"config": cfg.name, "dataset": data.name, "seed": args.seed,
                                "recipe": dataclasses.asdict(recipe), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
