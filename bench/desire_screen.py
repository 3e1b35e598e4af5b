"""Screen on-chip learning options with the integer rule (golden model = RTL), over seeds.

Run as ``.venv/bin/python bench/desire_screen.py -c digits-near --options OPTS --seeds 0-3``.
Each option set (``--options``: a JSON list of objects whose keys are ``[learning]`` or
``[network]`` fields of the config, e.g. ``'[{}, {"error_margin": 6}]'``) is trained from
each seed's Kaiming draw with :func:`sw.train.train` for ``--epochs`` epochs, on a
**validation split** of the training set by default (the last ``--val-fraction`` of it,
stratified, fixed): options chosen there are then measured once on the test split with
``--test``. One process per run, ``--jobs`` at a time (one thread each).

Every finished run is appended to ``--out`` (JSON lines: options, the trained config's hash,
seed, accuracy per epoch, train accuracy per epoch, seconds) and skipped when a run of the
same config (base and options), seed, epochs and split is asked for again. The table
at the end gives per option set the mean, minimum and maximum over the seeds of the last
epoch's accuracy and the mean over the last five epochs, best first.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from spikeforge.commands.synth import seed_list  # noqa: E402
from spikeforge.config import load_config  # noqa: E402
from spikeforge.sw.datasets import DATASET_NAMES, Dataset, load_for_config  # noqa: E402
from spikeforge.sw.train import config_hash, train  # noqa: E402
from spikeforge.sweep import RUN_AXES, point_config  # noqa: E402


def configured(base, options: dict):
    """``base`` with ``options`` (``[learning]`` fields by their bare names), through the
    sweep's :func:`spikeforge.sweep.point_config`."""
    if set(RUN_AXES) & set(options):       # the sweep's run settings: --seeds here
        raise ValueError(f"{sorted(set(RUN_AXES) & set(options))[0]!r} is not a config field")
    learning_fields = {f.name for f in dataclasses.fields(base.learning)}
    return point_config(base, {f"learning.{k}" if k in learning_fields else k: v
                               for k, v in options.items()})


def split(data: Dataset, fraction: float, test: bool) -> Dataset:
    """The test split as it is (``test``), or the training split cut into train and
    validation (stratified, seed 1)."""
    if test:
        return data
    from sklearn.model_selection import train_test_split
    x_tr, x_va, y_tr, y_va = train_test_split(
        data.train_pixels, data.train_labels, test_size=fraction, random_state=1,
        stratify=data.train_labels)
    return Dataset(data.name, data.shape, data.classes, x_tr, y_tr, x_va, y_va,
                   data.pixel_bits)


def run_one(config: str, dataset: str | None, options: dict, seed: int, epochs: int,
            fraction: float, test: bool) -> dict:
    base = load_config(config)
    cfg = configured(base, options)
    data = split(load_for_config(cfg, dataset), fraction, test)
    t0 = time.perf_counter()
    result = train(cfg, data, epochs=epochs, seed=seed)
    return {"options": options, "config_hash": config_hash(cfg), "seed": seed,
            "epochs": epochs, "test": test,
            "accuracy": [e.test_accuracy for e in result.history],
            "train": [e.train_accuracy for e in result.history],
            "seconds": time.perf_counter() - t0}


def key(cfg_hash: str, seed: int, epochs: int, test: bool) -> str:
    """A run's identity: the trained config (base + options, :func:`sw.train.config_hash`),
    seed, epochs and split."""
    return json.dumps([cfg_hash, seed, epochs, test])


def table(records: list[dict]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(json.dumps(r["options"], sort_keys=True), []).append(r)
    rows = []
    for options, rs in groups.items():
        last = np.array([100 * r["accuracy"][-1] for r in rs])
        last5 = np.array([100 * np.mean(r["accuracy"][-5:]) for r in rs])
        train_acc = np.array([100 * r["train"][-1] for r in rs])
        rows.append((last.mean(), f"| `{options}` | {len(rs)} | {last.mean():.2f} | "
                                  f"{last.min():.2f} | {last.max():.2f} | {last5.mean():.2f} | "
                                  f"{train_acc.mean():.2f} |"))
    head = ["| options | seeds | last epoch, mean | min | max | last 5 epochs, mean | train |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    return head + [row for _, row in sorted(rows, reverse=True)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--dataset", choices=DATASET_NAMES)
    p.add_argument("--options", default="[{}]", help="JSON list of option objects")
    p.add_argument("--seeds", type=functools.partial(seed_list, least=0), default="0-3",
                   help="e.g. 0-3 or 0,2,5")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--test", action="store_true",
                   help="train on the whole training split, measure on the test split")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("out/bench/desire-screen.jsonl"))
    args = p.parse_args(argv)
    try:
        option_sets = json.loads(args.options)
        assert isinstance(option_sets, list) and all(isinstance(o, dict) for o in option_sets)
    except (json.JSONDecodeError, AssertionError):
        p.error(f"--options: expected a JSON list of objects, got {args.options!r}")
    base = load_config(args.config)
    for options in option_sets:             # a bad key or value fails here, before any run
        try:
            configured(base, options)
        except (TypeError, ValueError) as e:   # an unknown field; ConfigError is a ValueError
            p.error(f"--options: {json.dumps(options)}: {e}")
    seeds = args.seeds

    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            if "config_hash" in r:
                done[key(r["config_hash"], r["seed"], r["epochs"], r["test"])] = r
    hashes = {json.dumps(o, sort_keys=True): config_hash(configured(base, o))
              for o in option_sets}

    def wanted_key(o, s):
        return key(hashes[json.dumps(o, sort_keys=True)], s, args.epochs, args.test)

    wanted = [(o, s) for o in option_sets for s in seeds]
    todo = [(o, s) for o, s in wanted if wanted_key(o, s) not in done]
    print(f"desire_screen: {base.name}, {len(wanted)} runs ({len(todo)} to do), "
          f"{args.epochs} epochs, {'test split' if args.test else 'validation split'}",
          file=sys.stderr)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, args.config, args.dataset, o, s, args.epochs,
                               args.val_fraction, args.test) for o, s in todo]
        for future in as_completed(futures):
            r = future.result()
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            done[key(r["config_hash"], r["seed"], r["epochs"], r["test"])] = r
            print(f"  {json.dumps(r['options'])} seed {r['seed']}: "
                  f"{100 * r['accuracy'][-1]:.2f}% ({r['seconds']:.0f} s)", file=sys.stderr)
    print("\n".join(table([done[wanted_key(o, s)] for o, s in wanted])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
