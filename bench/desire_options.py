"""Float desire backpropagation on candidate topologies and rule options (issue 20, item 4).

Run as ``.venv/bin/python bench/desire_options.py --layers 784-384-10 --epochs 3`` (``--help``
for the options). Trains :class:`sw.desire_float.FloatDesireNet` with the gateware's timing
(every LIF layer reads the previous population's step ``t - 1``) on Fashion-MNIST, one thread,
and tests it on the whole test split after every epoch. Options:

* ``--out-per-class K``: ``K`` output neurons per class; the label's ``K`` neurons all get the
  label's desire, the prediction is the unique argmax of the per-class count sums;
* ``--dropout P_IN,P_HID`` (``--no-dropout-scale``: kept spikes unscaled, as on the chip);
* ``--ltp near --near-margin M``: the reference's near-threshold eligibility at
  ``near_fraction = 1 - M``; ``--ltp pre|silent`` and ``--error-scaled``: rule variants
  tried and not built (the trace pairs with every step of a neuron to be potentiated, or
  only of a silent one; the update scaled by the neuron's error);
* ``--lr-shift S``: the integer rule's rate ``2**-S`` of ``acc`` with the profile formats
  (``theta = 64``, ``F = 10``, traces in 1/16 spike), i.e. float ``lr = 16 / (2**S * 64 * 2**10)``.

Writes one JSON record per run to ``--out`` (``out/bench/desire-options``) and prints a table
row with the test accuracy per epoch, the share of test samples that end in a tie and the
stored weight memory at ``--store-bits`` bits per synapse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.desire_float import FloatDesire, FloatDesireNet  # noqa: E402
from spikeforge.sw.golden import predict  # noqa: E402
from spikeforge.sw.train import epoch_order  # noqa: E402


class PopulationNet(FloatDesireNet):
    """``K`` output neurons per class: the label's group is desired to fire, the rest not;
    the prediction is the unique argmax of the per-class sums of counts."""

    def __init__(self, layers, per_class: int, **kw):
        self.per_class = per_class
        super().__init__(layers, **kw)

    def output_desire(self, counts, label):
        sign = np.arange(len(counts)) // self.per_class == label
        rate = counts / self.target_count
        active = np.where(sign, 1.0 - rate, rate) > self.desire_out
        return FloatDesire(active=active, sign=sign, error=self._error(counts, sign),
                           keep=np.ones(len(counts), dtype=bool))

    ltp = "spike"
    error_scaled = False
    hidden_graded = 0
    hidden_lr_shift = 0

    def train_step(self, pixels01, label, epoch=0, *, raster=None):
        """The published step, with the rule options ``ltp`` (which post activity a
        potentiated neuron's eligibility pairs with) and ``error_scaled``."""
        if (self.ltp in ("spike", "near") and not self.error_scaled and not self.hidden_graded
                and not self.hidden_lr_shift):
            return super().train_step(pixels01, label, epoch)
        keeps = self.draw_keeps()
        raster = self.encode(np.asarray(pixels01, dtype=np.float64)[None, :], keeps[0])
        run = self.run_raster(raster, keeps if any(k is not None for k in keeps) else None)
        rasters = [r[0] for r in run.rasters]
        counts = [r.sum(axis=0) for r in rasters]
        L = self.n_layers
        desires, sums = [None] * L, [None] * L
        desires[L - 1] = self.output_desire(counts[L], label)
        for layer in range(L - 1, 0, -1):
            sums[layer - 1] = self.weights[layer] @ desires[layer].coef
            desires[layer - 1] = self.hidden_desire(sums[layer - 1], counts[layer],
                                                    keeps[layer])
        lr = self.lr_at(epoch)
        deltas = []
        for layer in range(L):
            d = desires[layer]
            delta = np.zeros_like(self.weights[layer])
            cols = np.flatnonzero(d.active & d.keep)
            if cols.size:
                x = self.traces(self._drive(layer, rasters[layer][None])[0])
                post = rasters[layer + 1][:, cols].astype(np.float64)
                up = d.sign[cols]
                if run.near is not None:       # the library's near eligibility
                    post = run.near[layer + 1][0][:, cols].astype(np.float64)
                if self.ltp == "pre":          # potentiation pairs with every step
                    post[:, up] = 1.0
                elif self.ltp == "silent":     # only where the neuron never fired
                    post[:, up & (counts[layer + 1][cols] == 0)] = 1.0
                elig = x.T @ post
                if self.error_scaled:
                    elig *= d.error[cols]
                if self.hidden_graded and layer < L - 1:   # 2^(k - K + 1), k = log2 |S|/thr
                    ratio = np.abs(sums[layer][cols]) / self.desire_hidden
                    k = np.clip(np.floor(np.log2(ratio)), 0, self.hidden_graded - 1)
                    elig *= 2.0 ** (k - self.hidden_graded + 1)
                rate = lr * 2.0 ** -self.hidden_lr_shift if layer < L - 1 else lr
                delta[:, cols] = rate * np.where(up, elig, -elig)
            deltas.append(delta)
        for w, delta in zip(self.weights, deltas, strict=True):
            w += delta
        from spikeforge.sw.desire_float import FloatStep
        return FloatStep(run=run, desires=desires, sums=None, deltas=deltas, lr=lr)

    def class_predictions(self, counts):
        return predict(counts.reshape(len(counts), -1, self.per_class).sum(axis=2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="784-192-10", help="N_in-H...-classes (default %(default)s)")
    p.add_argument("--out-per-class", type=int, default=1)
    p.add_argument("--dropout", default="0,0")
    p.add_argument("--lr-shift", type=int, default=4)
    p.add_argument("--lr-decay", type=float, default=0.04)
    p.add_argument("--desire-out", type=float, default=0.30)
    p.add_argument("--desire-hidden", type=float, default=0.05)
    p.add_argument("--error-margin", type=int, default=4)
    p.add_argument("--ltp", choices=("spike", "pre", "silent", "near"), default="spike")
    p.add_argument("--near-margin", type=float, default=0.5)
    p.add_argument("--error-scaled", action="store_true")
    p.add_argument("--no-dropout-scale", action="store_true")
    p.add_argument("--hidden-graded", type=int, default=0, metavar="K",
                   help="scale a hidden update by 2^(k-K+1), k = floor(log2(|S|/desire_hidden)) "
                        "clipped to [0, K-1] (0: off)")
    p.add_argument("--hidden-lr-shift", type=int, default=0,
                   help="hidden layers learn at 2^-N of the output layer's rate")
    p.add_argument("--time-steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store-bits", type=int, default=18)
    p.add_argument("--timing", default="spikeforge", choices=("spikeforge", "published"))
    p.add_argument("--out", default="out/bench/desire-options")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.layers.split("-")]
    classes = sizes[-1]
    layers = sizes[:-1] + [classes * args.out_per_class]
    dropout = tuple(float(x) for x in args.dropout.split(","))
    lr = 16 / (2 ** args.lr_shift * 64 * 2 ** 10)
    near = args.ltp == "near"
    net = PopulationNet(layers, args.out_per_class, lr=lr, lr_decay=args.lr_decay,
                        dropout=dropout, dropout_scale=not args.no_dropout_scale,
                        eligibility="near" if near else "spike",
                        near_fraction=1.0 - args.near_margin, timing=args.timing, seed=args.seed,
                        desire_out=args.desire_out, desire_hidden=args.desire_hidden,
                        error_margin=args.error_margin, time_steps=args.time_steps)

    net.ltp, net.error_scaled = args.ltp, args.error_scaled
    net.hidden_graded, net.hidden_lr_shift = args.hidden_graded, args.hidden_lr_shift
    data = load_dataset(args.dataset, 8)
    n_train = args.train_samples or len(data.train_labels)
    train_px = data.train_pixels[:n_train] / data.pixel_max
    test_px = data.test_pixels / data.pixel_max
    near = args.near_margin if near else ""
    name = (f"{'-'.join(map(str, layers))} k{args.out_per_class} do{args.dropout} "
            f"lr{args.lr_shift} {args.timing} dout{args.desire_out} dhid{args.desire_hidden} "
            f"m{args.error_margin} ltp-{args.ltp}{near}"
            f"{f' T{args.time_steps}' if args.time_steps != 20 else ''}"
            f"{' escaled' if args.error_scaled else ''}"
            f"{' unscaled' if args.no_dropout_scale else ''}"
            f"{f' hgraded{args.hidden_graded}' if args.hidden_graded else ''}"
            f"{f' hlr-{args.hidden_lr_shift}' if args.hidden_lr_shift else ''}")
    history = []
    for epoch in range(args.epochs):
        t0, correct = time.perf_counter(), 0
        for idx in epoch_order(args.seed, epoch, n_train):
            step = net.train_step(train_px[idx], int(data.train_labels[idx]), epoch)
            correct += int(net.class_predictions(step.run.counts)[0] == data.train_labels[idx])
        runs = [net.forward(test_px[i:i + 500]) for i in range(0, len(test_px), 500)]
        counts = np.concatenate([r.counts for r in runs])
        dead = [float(np.mean(~r.any(axis=(0, 1)))) for r in runs[0].rasters[1:-1]]
        pred = net.class_predictions(counts)
        history.append({"epoch": epoch + 1, "train": correct / n_train,
                        "test": float(np.mean(pred == data.test_labels)),
                        "ties": float(np.mean(pred == -1)), "dead_hidden": dead,
                        "seconds": time.perf_counter() - t0})
        print(f"{name}: epoch {epoch + 1} test {100 * history[-1]['test']:.2f}% ties "
              f"{100 * history[-1]['ties']:.2f}% dead {dead} train {100 * correct / n_train:.2f}% "
              f"({history[-1]['seconds']:.0f} s)", flush=True)
    synapses = sum(a * b for a, b in zip(layers[:-1], layers[1:], strict=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "layers": layers, "args": vars(args), "synapses": synapses,
              "memory_bits": synapses * args.store_bits, "history": history}
    with open(out / "runs.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    tests = " | ".join(f"{100 * h['test']:.2f}" for h in history)
    print(f"| {name} | {synapses:,} | {tests} | {100 * history[-1]['ties']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
