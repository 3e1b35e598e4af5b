"""snnTorch -> NIR -> spikeforge cross-check (issue 8 items 3 and 5).

Trains a bias-free 64-H-10 snnTorch network (``Leaky``, beta 0.75 = our leak_shift 2,
threshold 1, subtract-reset) on scikit-learn's 8x8 digits for a few epochs, on the spikes of
our own rate encoder; exports it with snnTorch's ``export_to_nir``; imports the graph with
``sw.nir_io.import_graph`` (per-layer scales, integer threshold); then reports test accuracy of
the float snnTorch network vs the integer golden model, and the inference time of both on the
whole test split. Needs the optional extra: ``pip install -e '.[snntorch]'``.

In the same run:

* **RTL**: the imported network runs through the Verilated RTL (``sim.bulk``, the harness of
  ``spikeforge compare --engine bulk``) on the same test samples; its accuracy is reported and
  it must match the golden model exactly (``sim.compare.compare_runs``: 0 mismatches).
* **Reverse direction**: networks learned by the chip's own rule (``spikeforge demo``'s
  ``out/demo/weights.npz``, digits-tiny; ``spikeforge train -c mnist-ecp5 --dataset mnist-t10k
  --epochs 3 --out out/train/mnist-ecp5-3ep``) are exported with ``sw.nir_io`` (what
  ``spikeforge export`` writes), read back from the ``.nir`` file by snnTorch's
  ``import_from_nir`` and run in snnTorch on our rate encoder's rasters: accuracy of both and
  spike agreement per layer, as stepped and shifted by the one-step-per-layer delay.
* **Speed**: golden model (``sw.golden.run_layers``) vs snnTorch float inference of the same
  network on the same input spikes, whole test split as one batch, repeated; 1 torch thread
  and torch's default.

    .venv/bin/python bench/nir_snntorch.py [--epochs 5] [--hidden 32] [--seed 0] [--no-rtl]
        [--repeats 5] [--chip-weights out/demo/weights.npz]
        [--mnist-weights out/train/mnist-ecp5-3ep/weights.npz]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.encode import rate_encode  # noqa: E402
from spikeforge.sw.golden import encode, predict, run_layers, run_network  # noqa: E402
from spikeforge.sw.nir_io import import_graph, write_nir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

T, BETA = 20, 0.75
DEFAULT_THREADS = 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantise", choices=("max", "percentile"), default="max")
    ap.add_argument("--no-rtl", action="store_true", help="skip the Verilated RTL run")
    ap.add_argument("--jobs", type=int, default=2, help="bulk harness processes")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats")
    ap.add_argument("--chip-weights", default=str(ROOT / "out/demo/weights.npz"),
                    help="digits-tiny weights learned on chip (spikeforge demo)")
    ap.add_argument("--mnist-weights",
                    default=str(ROOT / "out/train/mnist-ecp5-3ep/weights.npz"),
                    help="mnist-ecp5 weights learned on chip (spikeforge train)")
    args = ap.parse_args(argv)
    try:
        import snntorch as snn
        import torch
        from snntorch.export_nir import export_to_nir
    except ImportError as exc:
        print(f"nir_snntorch: needs the snntorch extra (pip install -e '.[snntorch]'): {exc}")
        return 2
    global DEFAULT_THREADS
    DEFAULT_THREADS = torch.get_num_threads()
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

    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    xs, ys = torch.tensor(enc["train"]), torch.tensor(data.train_labels)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(ys))
        for b in range(0, len(ys), 64):
            idx = perm[b:b + 64]
            loss = torch.nn.functional.cross_entropy(counts_only(net, xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"nir_snntorch: epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f}")
    train_s = time.perf_counter() - t0

    xt = torch.tensor(enc["test"])
    with torch.no_grad():
        t0 = time.perf_counter()
        counts = counts_only(net, xt).numpy().astype(np.int64)
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
    if not args.no_rtl:
        rtl_check(imp.cfg, imp.weights, data, gold, args.jobs)
    default_threads = DEFAULT_THREADS
    for cfg_name, path in (("digits-tiny", args.chip_weights),
                           ("mnist-ecp5", args.mnist_weights)):
        reverse(cfg_name, Path(path), args.repeats, default_threads)
    return 0


def rtl_check(cfg, weights, data, gold, jobs: int) -> None:
    """The imported snnTorch network through the Verilated RTL: equal to golden, or fail."""
    from spikeforge.sim.bulk import run_bulk
    from spikeforge.sim.compare import compare_runs

    t0 = time.perf_counter()
    rtl = run_bulk(cfg, weights, data.test_pixels, jobs=jobs)
    rtl_s = time.perf_counter() - t0
    res = compare_runs(gold, rtl)
    acc_g = float((gold.predictions == data.test_labels).mean())
    acc_r = float((rtl.predictions == data.test_labels).mean())
    bad = (res.spike_mismatches, res.cycle_mismatches, res.prediction_mismatches,
           res.stream_mismatches)
    print(f"nir_snntorch: RTL (Verilator bulk harness, {jobs} processes, {rtl_s:.1f} s with "
          f"the build): {len(data.test_labels)} samples, accuracy RTL {100 * acc_r:.2f}%, "
          f"golden {100 * acc_g:.2f}%; mismatches: {bad[0]} spikes, {bad[1]} cycle counts, "
          f"{bad[2]} predictions, {bad[3]} readout stream")
    assert not any(bad) and acc_r == acc_g, "RTL differs from the golden model"


def run_snn(net, lifs, x):
    """An imported snnTorch GraphModule stepped over ``x`` ``(B, T, N)``; returns the spike
    rasters ``(B, T, N_l)`` of every LIF layer (forward hooks)."""
    import torch
    from snntorch import utils as snn_utils

    snn_utils.reset(net)
    out = [[] for _ in lifs]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: out[k].append(
        o[0] if isinstance(o, tuple) else o)) for k, m in enumerate(lifs)]
    try:
        for t in range(x.shape[1]):
            net(x[:, t])
    finally:
        for h in hooks:
            h.remove()
    return [torch.stack(o, dim=1) for o in out]


def counts_only(net, x):
    """Output spike counts of ``x`` (B, T, N_in), no hooks: the training forward pass and
    the timed inference."""
    from snntorch import utils as snn_utils

    snn_utils.reset(net)
    counts = 0
    for t in range(x.shape[1]):
        spk, _ = net(x[:, t])
        counts = counts + spk
    return counts


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit numpy's BLAS to ``n`` threads (yields a note when that is not possible)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield " (BLAS threads not limited: no threadpoolctl)"
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield ""


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def reverse(cfg_name: str, path: Path, repeats: int, default_threads: int) -> None:
    """A chip-learned network -> sw.nir_io export -> snnTorch import_from_nir; accuracy,
    spike agreement per layer and speed against the golden model on the same input spikes."""
    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    from spikeforge.config import load_config
    from spikeforge.sw.weights import load_weights

    cfg = load_config(ROOT / "configs" / f"{cfg_name}.toml")
    if not path.is_file():
        print(f"nir_snntorch: reverse {cfg_name}: {path} missing, skipped (make it with "
              f"'spikeforge demo' / 'spikeforge train -c {cfg_name}')")
        return
    weights = load_weights(path, cfg)
    try:
        data = load_dataset(cfg.dataset, cfg.pixel_bits)
    except Exception as exc:     # mnist-t10k not present
        print(f"nir_snntorch: reverse {cfg_name}: dataset {cfg.dataset} not loadable ({exc})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        nir_path = Path(tmp) / f"{cfg_name}.nir"
        write_nir(nir_path, cfg, weights)
        graph = nir.read(str(nir_path))
    try:
        net = import_from_nir(graph)
    except Exception as exc:
        print(f"nir_snntorch: reverse {cfg_name}: snnTorch import_from_nir refused our graph: "
              f"{type(exc).__name__}: {exc}")
        return
    net.eval()
    lifs = [getattr(net, f"lif{i}") for i in range(cfg.n_layers)]
    labels = data.test_labels
    n = len(labels)
    raster = encode(cfg, data.test_pixels)                       # (B, T, N_in) bool
    gold_rasters = run_layers(cfg, weights, raster)
    gold_pred = predict(gold_rasters[-1].sum(axis=1))
    x = torch.tensor(raster, dtype=torch.float32)
    desc = "-".join(map(str, cfg.layers))
    beta = float(torch.as_tensor(lifs[0].beta).flatten()[0])
    theta = float(torch.as_tensor(lifs[0].threshold).flatten()[0])
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"nir_snntorch: reverse {cfg_name} ({desc}, chip-learned {shown}) "
          f"-> .nir -> snntorch.import_nir.import_from_nir: {lifs[0].__class__.__name__} "
          f"beta {beta:.4g}, threshold {theta:.4g}, "
          f"reset {lifs[0].reset_mechanism!r}; {n} {data.name} test samples, T = "
          f"{cfg.time_steps}")
    acc_g = float((gold_pred == labels).mean())
    for reset in ("zero", "subtract"):
        for m in lifs:
            m.reset_mechanism = reset
        with torch.inference_mode():
            snn_rasters = [r.numpy().astype(bool) for r in run_snn(net, lifs, x)]
        pred = predict(snn_rasters[-1].sum(axis=1).astype(np.int64))
        acc_s = float((pred == labels).mean())
        agree = []
        for layer, (g, s_) in enumerate(zip(gold_rasters[1:], snn_rasters, strict=True), start=1):
            same = float((g == s_).mean())
            shifted = float((g[:, layer:] == s_[:, :cfg.time_steps - layer]).mean())
            agree.append(f"layer {layer} {100 * same:.1f}% as stepped, {100 * shifted:.1f}% "
                         f"shifted {layer} step{'s' if layer > 1 else ''} (spikes golden "
                         f"{int(g.sum())}, snnTorch {int(s_.sum())})")
        tag = " (as imported)" if reset == "zero" else ""
        print(f"nir_snntorch:   snnTorch reset {reset!r}{tag}: "
              f"accuracy snnTorch {100 * acc_s:.2f}%, golden {100 * acc_g:.2f}%, same "
              f"prediction {100 * float((pred == gold_pred).mean()):.1f}%; spike agreement "
              + "; ".join(agree))
    for m in lifs:
        m.reset_mechanism = "zero"
    rows = []
    for threads in (1, default_threads):
        # the golden model's integer matmuls run as float32/64 BLAS (exact below 2^24/2^53):
        # OpenBLAS threads, limited with threadpoolctl where it is installed
        # with n threads the golden model splits the batch over n workers, each on one BLAS
        # thread (run_layers(workers=n)): n threads in all, as torch's
        with blas_threads(1) as got:
            g_min, g_med = timed(lambda n=threads: run_layers(cfg, weights, raster, workers=n),
                                 repeats)
        torch.set_num_threads(threads)
        with torch.inference_mode():
            counts_only(net, x)                  # warm-up
            s_min, s_med = timed(lambda: counts_only(net, x), repeats)
        rows.append(f"{threads} thread{'s' if threads > 1 else ''}{got}: golden "
                    f"{n / g_min:.0f} samples/s (min {g_min * 1e3:.0f} ms, median "
                    f"{g_med * 1e3:.0f} ms), snnTorch {n / s_min:.0f} samples/s (min "
                    f"{s_min * 1e3:.0f} ms, median {s_med * 1e3:.0f} ms): snnTorch/golden "
                    f"throughput {g_min / s_min:.2f}x")
    torch.set_num_threads(1)
    print(f"nir_snntorch:   speed, {n} samples x {cfg.time_steps} steps in one batch, same "
          f"input spikes (encoder excluded), {repeats} repeats, torch and BLAS threads: "
          + "; ".join(rows))


if __name__ == "__main__":
    sys.exit(main())
