"""Import a published-style float SNN with the defaults, as a new user would (issue 21).

Run as ``.venv/bin/python bench/import_published.py [--layers 784-1000-100-10] [--epochs 1]``.
Trains the float desire-backpropagation reference (``sw.desire_float``, the published
algorithm: LIF decay 0.75, threshold 1, subtract reset, T = 20, the first layer reading the
input of the same step) on the first 8,000 MNIST test images, saves it the way its authors'
code does (a torch state dict whose keys are ``layers.N.weights``, shape ``(out, in)``), and
runs ``spikeforge import --float NET.pt --dataset mnist-t10k`` with every other option at its
default, then the float network's and the imported network's accuracy on the last 2,000
images. Writes under ``--out`` (``out/bench/import-published``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from spikeforge.cli import main as cli  # noqa: E402
from spikeforge.config import load_config  # noqa: E402
from spikeforge.sw import golden  # noqa: E402
from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.desire_float import FloatDesireNet  # noqa: E402
from spikeforge.sw.weights import load_weights  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="784-1000-100-10")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--out", default="out/bench/import-published")
    args = p.parse_args(argv)
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = tuple(int(x) for x in args.layers.split("-"))
    data = load_dataset("mnist-t10k")
    train_px, train_lb = data.train_pixels / 255.0, data.train_labels     # the first 8,000
    test_px, test_lb = data.test_pixels, data.test_labels                  # the last 2,000
    net = FloatDesireNet(layers, lr=args.lr, lr_decay=0.0, seed=0, timing="published")
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        for i in np.random.default_rng(epoch).permutation(len(train_px)):
            net.train_step(train_px[i], int(train_lb[i]), epoch)
    float_acc = net.accuracy(test_px / 255.0, test_lb)
    print(f"float {args.layers}: trained {args.epochs} epoch(s) in "
          f"{time.perf_counter() - t0:.0f} s; test accuracy {100 * float_acc:.2f}% "
          f"(last 2,000 images)")
    pt = out / "net.pt"
    torch.save({f"layers.{i}.weights": torch.tensor(w.T.copy())
                for i, w in enumerate(net.weights)}, pt)
    toml, npz = out / "imported.toml", out / "imported.npz"
    rc = cli(["import", "--float", str(pt), "--dataset", "mnist-t10k", "--config-out",
              str(toml), "--weights-out", str(npz)])
    if rc:
        return rc
    cfg = load_config(toml)
    run = golden.run_network(cfg, load_weights(npz, cfg), test_px)
    agree = float((run.predictions == net.predict(test_px / 255.0)).mean())
    acc = float((run.predictions == test_lb).mean())
    print(f"imported ({cfg.summary()}): test accuracy {100 * acc:.2f}% against the float "
          f"network's {100 * float_acc:.2f}% ({100 * (acc - float_acc):+.2f} points); "
          f"predictions agree on {100 * agree:.2f}% of the 2,000 images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
