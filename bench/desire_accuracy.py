"""Accuracy of on-chip desire backpropagation: integer golden model vs float reference.

Run as ``.venv/bin/python bench/desire_accuracy.py --config fmnist-ecp5 --dataset
fashion-mnist --epochs 10`` (``--help`` for options). Both models train on the same topology,
data, initial weights and sample order, each in its own process (one thread each, side by
side), and are tested after every epoch on the whole test split:

* **integer**: :func:`sw.train.train`, the golden model of the gateware's learning rule
  (exactly what ``spikeforge train`` runs; bit-exact with the RTL);
* **float**: :class:`sw.desire_float.FloatDesireNet` as published (``timing="published"``,
  real-valued weights, traces and membranes, ``lr * exp(-lr_decay * epoch)``), with ``lr``
  the integer rule's effective rate ``trace_one / (2**lr_shift * theta * 2**F)`` and the
  config's eligibility (``eligibility = "near"``: both pair the traces with the near raster,
  ``docs/learning.md``; e.g. ``--config digits-near``).

The float net starts from the values the integer start stands for, without the half-LSB read
offset (``(W_store - 2**(F-1)) / (theta * 2**F)``, i.e. the Kaiming draw rounded to the stored
grid). Writes ``history.json`` and ``accuracy.png`` (both curves) to ``--out`` and prints a
Markdown table row per model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"   # before numpy loads its BLAS: one thread per model


sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import run_side_by_side  # noqa: E402

from spikeforge.config import load_config  # noqa: E402
from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.desire_float import FloatDesireNet  # noqa: E402
from spikeforge.sw.train import TrainMonitor, epoch_order, initial_weights, train  # noqa: E402


def _split(cfg, dataset: str, n_train, n_test):
    data = load_dataset(dataset, cfg.pixel_bits)
    n_train = n_train or len(data.train_labels)
    n_test = n_test or len(data.test_labels)
    return data, n_train, n_test


class _Log(TrainMonitor):
    def __init__(self, name, queue):
        self.name, self.queue = name, queue

    def sample(self, epoch, position, size, correct):
        if position % 10000 == 0:
            self.queue.put(f"{self.name}: epoch {epoch + 1} {position}/{size} train "
                           f"{100 * correct / position:.2f}%")

    def epoch_end(self, record):
        self.queue.put(f"{self.name}: epoch {record.epoch} test "
                       f"{100 * record.test_accuracy:.2f}%")


def run_integer(args, queue) -> list[dict]:
    cfg = load_config(args.config)
    data, n_train, n_test = _split(cfg, args.dataset, args.train_samples, args.test_samples)
    result = train(cfg, data, epochs=args.epochs, seed=args.seed, train_samples=n_train,
                   test_samples=n_test, monitor=_Log("integer", queue))
    return [{"epoch": r.epoch, "train": r.train_accuracy, "test": r.test_accuracy,
             "seconds": r.seconds} for r in result.history]


def run_float(args, queue) -> list[dict]:
    cfg = load_config(args.config)
    data, n_train, n_test = _split(cfg, args.dataset, args.train_samples, args.test_samples)
    offset = (1 << cfg.frac_bits) >> 1
    start = [w - offset for w in initial_weights(cfg, args.seed)]
    net = FloatDesireNet.from_config(cfg, start, timing="published", seed=args.seed)
    scale = cfg.encoder_threshold        # the float encoder's threshold is 1: same rates
    train_px = data.train_pixels[:n_train] / scale
    test_px = data.test_pixels[:n_test] / scale
    train_lb, test_lb = data.train_labels[:n_train], data.test_labels[:n_test]
    history = []
    log = _Log("float", queue)
    for epoch in range(args.epochs):
        t0, correct = time.perf_counter(), 0
        for pos, idx in enumerate(epoch_order(args.seed, epoch, n_train), 1):
            step = net.train_step(train_px[idx], int(train_lb[idx]), epoch)
            correct += int(step.run.predictions[0] == train_lb[idx])
            log.sample(epoch, pos, n_train, correct)
        history.append({"epoch": epoch + 1, "train": correct / n_train,
                        "test": net.accuracy(test_px, test_lb),
                        "seconds": time.perf_counter() - t0})
        queue.put(f"float: epoch {epoch + 1} test {100 * history[-1]['test']:.2f}%")
    return history


_MODELS = {"both": (run_integer, run_float), "integer": (run_integer,), "float": (run_float,)}
_LABELS = {run_integer: "integer (golden)", run_float: "float (published)"}


def plot(path: Path, histories: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in histories.items():
        ax.plot([h["epoch"] for h in hist], [100 * h["test"] for h in hist], "o-",
                label=f"{name} test")
        ax.plot([h["epoch"] for h in hist], [100 * h["train"] for h in hist], ".--",
                label=f"{name} train (while learning)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default="fmnist-ecp5")
    parser.add_argument("--dataset", default=None, help="default: the config's")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--out", default=None, help="default: out/bench/accuracy-<config>")
    parser.add_argument("--models", choices=("both", "integer", "float"), default="both",
                        help="which models to train (default both, side by side)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if cfg.learning is None:
        parser.error(f"config {cfg.name!r} has no [learning] section")
    args.dataset = args.dataset or cfg.dataset
    out = Path(args.out or f"out/bench/accuracy-{cfg.name}-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    results = run_side_by_side({_LABELS[fn]: fn for fn in _MODELS[args.models]}, args)
    if results is None:
        return 1
    histories = {label: results[label] for label in _LABELS.values() if label in results}

    (out / "history.json").write_text(json.dumps(histories, indent=1))
    title = f"{cfg.name} on {args.dataset}: desire backpropagation"
    plot(out / "accuracy.png", histories, title)
    lines = [f"\n{cfg.summary()}; {args.dataset}, {args.epochs} epochs, seed {args.seed}, "
             f"{time.perf_counter() - t0:.0f} s wall\n",
             "| model | " + " | ".join(f"ep {h['epoch']}" for h in next(iter(histories.values())))
             + " | best |",
             "|---|" + "---:|" * (args.epochs + 1)]
    for name, hist in histories.items():
        tests = [100 * h["test"] for h in hist]
        lines.append(f"| {name} | " + " | ".join(f"{x:.2f}" for x in tests)
                     + f" | {max(tests):.2f} |")
    if len(histories) == 2:
        gap = [100 * (f["test"] - i["test"]) for f, i in
               zip(histories["float (published)"], histories["integer (golden)"], strict=True)]
        lines.append(f"\nfloat - integer, last epoch: {gap[-1]:+.2f} points "
                     f"(per epoch: {', '.join(f'{g:+.2f}' for g in gap)})")
    lines.append(f"history {out / 'history.json'}, plot {out / 'accuracy.png'}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
