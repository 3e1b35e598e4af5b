"""Prune-while-learning, measured: the same TTFS core learning with and without pruning.

Run as ``.venv/bin/python bench/ttfs_pruning.py --config ttfs-mnist --dataset mnist-t10k
--epochs 3`` (``--help`` for options). Two golden-model runs of :func:`sw.stdp_train.train_stdp`
side by side (one process each): the config as given, and the same config with
``prune_threshold = 0`` (the same core without pruning; every fan-in list stays dense). Same
initial weights, same sample order. The cycle counts are the core's, from the cycle model
the RTL matches exactly (``spikeforge compare --learn``).

Reported per run: connectivity at the end; median cycles per *training* sample (inference +
STDP pass) over the last epoch and over the whole run (total); inference cycles per sample
of the final state; the linear readout's test accuracy after every epoch (:mod:`sw.readout`).
Speedups are ratios of the two runs. Writes ``history.json``, ``connectivity.png``,
``cycles.png`` (both runs), and each run's receptive fields, to ``--out``; prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from side_by_side import run_side_by_side  # noqa: E402

from spikeforge.config import load_config  # noqa: E402
from spikeforge.sw import ttfs_cycles  # noqa: E402
from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.stdp_train import train_stdp  # noqa: E402
from spikeforge.sw.train import TrainMonitor  # noqa: E402
from spikeforge.sw.ttfs_plots import cycle_series, plot_receptive_fields, plot_series  # noqa: E402


class _Log(TrainMonitor):
    def __init__(self, name, queue):
        self.name, self.queue = name, queue

    def sample(self, epoch, position, size, with_winner):
        if position % 5000 == 0:
            self.queue.put(f"{self.name}: epoch {epoch + 1} {position}/{size}")

    def epoch_end(self, r):
        self.queue.put(f"{self.name}: epoch {r.epoch} readout test {100 * r.readout_test:.2f}% "
                       f"connectivity {100 * r.connectivity:.2f}%")


def _config(args):
    """The config named on the command line, with ``--prune-threshold`` applied."""
    cfg = load_config(args.config)
    if args.prune_threshold is not None:
        cfg = dataclasses.replace(cfg, prune_threshold=args.prune_threshold)
    return cfg


def run_variant(args, queue, prune: bool) -> dict:
    """Train one variant (with pruning, or with ``prune_threshold = 0``); its numbers."""
    cfg = _config(args)
    if not prune:
        cfg = dataclasses.replace(cfg, prune_threshold=0)
    data = load_dataset(args.dataset or cfg.dataset, cfg.pixel_bits)
    name = "pruning" if prune else "no pruning"
    t0 = time.perf_counter()
    run = train_stdp(cfg, data, epochs=args.epochs, seed=args.seed,
                     train_samples=args.train_samples, monitor=_Log(name, queue))
    out = Path(args.out)
    plot_receptive_fields(out / f"receptive_fields-{'pruned' if prune else 'dense'}.png", cfg,
                          run.state, title=f"{cfg.name} ({name}) on {data.name}:\nreceptive "
                                           f"fields, blank = pruned")
    n_train = run.samples_done // args.epochs
    train_cycles = (np.asarray(run.samples["infer_cycles"])
                    + np.asarray(run.samples["learn_cycles"]))
    return {
        "name": name, "seconds": time.perf_counter() - t0,
        "connectivity": run.state.connectivity,
        "readout_test": [r.readout_test for r in run.history],
        "readout_train": [r.readout_train for r in run.history],
        "train_cycles_last_epoch_median": float(np.median(train_cycles[-n_train:])),
        "train_cycles_total": int(train_cycles.sum()),
        "infer_cycles_final": ttfs_cycles.infer_cycles(cfg, run.state.lengths),
        "samples": {k: np.asarray(v).tolist() for k, v in run.samples.items()},
    }


def parse_args(argv=None):
    """Parse and check the command line; fill in the dataset and output defaults.

    Returns
    -------
    tuple
        The arguments and the config (with the prune threshold override applied).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default="ttfs-mnist")
    parser.add_argument("--dataset", default=None, help="default: the config's")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--prune-threshold", type=int, default=None,
                        help="override the config's prune_threshold (a sweep point)")
    parser.add_argument("--out", default=None,
                        help="default: out/bench/pruning-<config>-<dataset>")
    args = parser.parse_args(argv)
    cfg = _config(args)
    if cfg.encoding != "ttfs" or not cfg.pruning:
        parser.error(f"config {cfg.name!r} is not a TTFS config with pruning")
    args.dataset = args.dataset or cfg.dataset
    args.out = args.out or (f"out/bench/pruning-{cfg.name}-{args.dataset}"
                            f"-p{cfg.prune_threshold}")
    return args, cfg


def write_results(out: Path, title: str, pruned: dict, dense: dict) -> None:
    """``history.json`` and the connectivity and cycle plots of both runs."""
    (out / "history.json").write_text(json.dumps({"pruning": pruned, "no pruning": dense}))
    plot_series(out / "connectivity.png",
                {r["name"]: 100 * np.asarray(r["samples"]["connectivity"])
                 for r in (pruned, dense)}, "synapses alive (%)", f"{title}: connectivity")
    plot_series(out / "cycles.png",
                {**cycle_series(pruned["samples"], "pruning: "),
                 **cycle_series(dense["samples"], "no pruning: ")},
                "cycles per sample", f"{title}: cycles", logy=True)


def print_table(pruned: dict, dense: dict) -> None:
    """The Markdown table: connectivity, cycles and accuracy of both runs, with ratios."""
    def speed(key):
        return dense[key] / pruned[key]

    acc = " / ".join(f"{100 * a:.2f}" for a in pruned["readout_test"])
    acc_d = " / ".join(f"{100 * a:.2f}" for a in dense["readout_test"])
    print("| | no pruning | pruning | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| connections left | {100 * dense['connectivity']:.2f}% | "
          f"{100 * pruned['connectivity']:.2f}% | {100 * (1 - pruned['connectivity']):.2f}% "
          f"fewer |")
    print(f"| cycles per training sample, last epoch (median) | "
          f"{dense['train_cycles_last_epoch_median']:,.0f} | "
          f"{pruned['train_cycles_last_epoch_median']:,.0f} | "
          f"{speed('train_cycles_last_epoch_median'):.2f}x faster learning |")
    print(f"| cycles of all training (total) | {dense['train_cycles_total']:,} | "
          f"{pruned['train_cycles_total']:,} | {speed('train_cycles_total'):.2f}x |")
    print(f"| cycles per inference, final state | {dense['infer_cycles_final']:,} | "
          f"{pruned['infer_cycles_final']:,} | {speed('infer_cycles_final'):.2f}x faster "
          f"inference |")
    print(f"| readout test accuracy per epoch (%) | {acc_d} | {acc} | "
          f"{100 * (pruned['readout_test'][-1] - dense['readout_test'][-1]):+.2f} points |")


def main(argv=None) -> int:
    """Run both variants side by side; write the files and print the table."""
    args, cfg = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    results = run_side_by_side({"pruning": partial(run_variant, prune=True),
                                "no pruning": partial(run_variant, prune=False)}, args)
    if results is None:
        return 1
    pruned, dense = results["pruning"], results["no pruning"]
    write_results(out, f"{cfg.name} on {args.dataset}", pruned, dense)
    print(f"\n{cfg.summary()}; {args.dataset}, {args.epochs} epochs, seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s wall\n")
    print_table(pruned, dense)
    print(f"\nfiles in {out}: history.json, connectivity.png, cycles.png, "
          f"receptive_fields-pruned.png, receptive_fields-dense.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
