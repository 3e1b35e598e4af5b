"""What a trained network's hidden layer holds, and what its output decision makes of it.

Run as ``.venv/bin/python bench/hidden_probe.py -c fmnist-320-ecp5 --weights CKPT``
(``--help`` for the options). On the golden model's inference (``W_store >> F``) it reports:

* the network's test accuracy with each output decision: the unique argmax of the counts
  (ties: no decision), ties to the first spike (``tie_break = "first_spike"``), ties to the
  lowest index, and the share of test samples whose largest count is shared;
* a linear probe: a logistic regression (scikit-learn, standardised features) trained on the
  last hidden layer's spike counts of the training samples and tested on the test samples:
  what an ideal linear output layer could make of the features the rule learned.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from spikeforge.config import load_config
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.desire import inference_weights
from spikeforge.sw.golden import decide, run_network
from spikeforge.sw.train import initial_weights


def load_stored(cfg, path: str | None) -> list[np.ndarray]:
    """Stored weights of a checkpoint (``stored_w<l>``), or the seed-0 Kaiming start."""
    if path is None:
        return initial_weights(cfg, 0)
    with np.load(path) as data:
        return [np.asarray(data[f"stored_w{layer}"]) for layer in range(cfg.n_layers)]


def run(cfg, weights, pixels, batch: int = 1000):
    """``(hidden counts, output rasters)`` of ``pixels``, in batches."""
    hidden, out = [], []
    for lo in range(0, len(pixels), batch):
        result = run_network(cfg, weights, pixels[lo:lo + batch])
        hidden.append(result.rasters[-2].sum(axis=1))
        out.append(result.rasters[-1])
    return np.concatenate(hidden).astype(np.float64), np.concatenate(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", "-c", required=True, help="profile name or .toml")
    p.add_argument("--weights", help="checkpoint .npz (stored_w<l>); default: Kaiming start")
    p.add_argument("--dataset", default=None, help="default: the config's")
    p.add_argument("--train-samples", type=int, default=None,
                   help="training samples for the probe (default: all)")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    if cfg.n_layers < 2:
        p.error("the config has no hidden layer")
    data = load_dataset(args.dataset or cfg.dataset, cfg.pixel_bits)
    weights = [w.astype(cfg.store_dtype) for w in inference_weights(
        cfg, load_stored(cfg, args.weights))]
    n = args.train_samples or len(data.train_labels)
    t0 = time.perf_counter()
    train_h, _ = run(cfg, weights, data.train_pixels[:n])
    test_h, test_out = run(cfg, weights, data.test_pixels)
    y = data.test_labels
    counts = test_out.sum(axis=1)
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1
    rules = {"unique argmax": decide(dataclasses.replace(cfg, tie_break="none"), test_out),
             "ties to the first spike": decide(dataclasses.replace(cfg, tie_break="first_spike"),
                                               test_out),
             "ties to the lowest index": counts.argmax(axis=1)}
    print(f"# {cfg.name}, {args.weights or 'Kaiming start (seed 0)'}: {len(y)} test samples, "
          f"largest count shared in {100 * tied.mean():.2f}%")
    for name, pred in rules.items():
        print(f"network, {name}: {100 * (pred == y).mean():.2f}%")
    scaler = StandardScaler().fit(train_h)
    with warnings.catch_warnings():     # 300 iterations, said in the output line
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = LogisticRegression(max_iter=300).fit(scaler.transform(train_h),
                                                     data.train_labels[:n])
    train_acc = probe.score(scaler.transform(train_h), data.train_labels[:n])
    test_acc = probe.score(scaler.transform(test_h), y)
    dead = float((test_h.sum(axis=0) == 0).mean())
    print(f"linear probe on the {test_h.shape[1]} hidden counts ({n} training samples, 300 "
          f"L-BFGS iterations): "
          f"train {100 * train_acc:.2f}%, test {100 * test_acc:.2f}% "
          f"({100 * dead:.1f}% of hidden neurons silent on the test set; "
          f"{time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
