"""snnTorch -> NIR -> spikeforge cross-check (issue 8 items 3 and 5).

Trains a bias-free 64-H-10 snnTorch network (``Leaky``, beta 0.75 = our leak_shift 2,
threshold 1, subtract-reset) on scikit-learn's 8x8 digits for a few epochs, on the spikes of
our own rate encoder; exports it with snnTorch's ``export_to_nir``; imports the graph with
``sw.nir_io.import_graph`` (per-layer scales, integer threshold); then reports test accuracy of
the float snnTorch network vs the integer golden model, and the inference time of both on the
whole test split. Needs the optional extra: ``pip install -e '.[snntorch]'``.

    .venv/bin/python bench/nir_snntorch.py [--epochs 5] [--hidden 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sw.datasets import load_dataset  # noqa: E402
from sw.encode import rate_encode  # noqa: E402
from sw.golden import predict, run_network  # noqa: E402
from sw.nir_io import import_graph  # noqa: E402

T, BETA = 20, 0.75


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantise", choices=("max", "percentile"), default="max")
    args = ap.parse_args(argv)
    try:
        import snntorch as snn
        import torch
        from snntorch import utils as snn_utils
        from snntorch.export_nir import export_to_nir
    except ImportError as exc:
        print(f"nir_snntorch: needs the snntorch extra (pip install -e '.[snntorch]'): {exc}")
        return 2
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    data = load_dataset("digits", 8)
    enc = {s: rate_encode(getattr(data, f"{s}_pixels"), T, 255).astype(np.float32)
           for s in ("train", "test")}                                  # (B, T, 64)
    h = args.hidden

    def leaky(n, output=False):
        return snn.Leaky(beta=torch.full((n,), BETA), threshold=torch.ones(n),
                         init_hidden=True, output=output, reset_mechanism="subtract")

    net = torch.nn.Sequential(torch.nn.Linear(64, h, bias=False), leaky(h),
                              torch.nn.Linear(h, 10, bias=False), leaky(10, output=True))

    def run(x):                                   # x: (B, T, 64) -> output spike counts
        snn_utils.reset(net)
        counts = 0
        for t in range(x.shape[1]):
            spk, _ = net(x[:, t])
            counts = counts + spk
        return counts

    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    xs, ys = torch.tensor(enc["train"]), torch.tensor(data.train_labels)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(ys))
        for b in range(0, len(ys), 64):
            idx = perm[b:b + 64]
            loss = torch.nn.functional.cross_entropy(run(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"nir_snntorch: epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f}")
    train_s = time.perf_counter() - t0

    xt = torch.tensor(enc["test"])
    with torch.no_grad():
        t0 = time.perf_counter()
        counts = run(xt).numpy().astype(np.int64)
        float_s = time.perf_counter() - t0
    float_acc = float((predict(counts) == data.test_labels).mean())

    graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    imp = import_graph(graph, quantise=args.quantise, time_steps=T, lanes=4, name="snntorch")
    for line in imp.lines:
        print(line)
    t0 = time.perf_counter()
    gold = run_network(imp.cfg, imp.weights, data.test_pixels)
    gold_s = time.perf_counter() - t0
    gold_acc = float((gold.predictions == data.test_labels).mean())
    agree = float((gold.predictions == predict(counts)).mean())
    n = len(data.test_labels)
    print(f"nir_snntorch: 64-{h}-10, T={T}, {args.epochs} epochs ({train_s:.1f} s), "
          f"{n} digits test samples")
    print(f"nir_snntorch: accuracy snnTorch float {100 * float_acc:.2f}%, spikeforge golden "
          f"(integer, theta {imp.cfg.threshold}) {100 * gold_acc:.2f}%; predictions agree on "
          f"{100 * agree:.1f}%")
    print(f"nir_snntorch: inference on {n} samples: snnTorch {float_s * 1e3:.1f} ms, golden "
          f"model {gold_s * 1e3:.1f} ms (1 torch thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
