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


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` when None.
    """
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
    return ap.parse_args(argv)


def snntorch_missing() -> ImportError | None:
    """Check for the snntorch extra.

    Returns
    -------
    ImportError or None
        The error of the failed import, None when snnTorch and its NIR export load.
    """
    try:
        import snntorch  # noqa: F401
        import torch  # noqa: F401
        from snntorch.export_nir import export_to_nir  # noqa: F401
    except ImportError as exc:
        return exc
    return None


def main(argv=None) -> int:
    """Train, export, import and compare forward; then the reverse direction and speed."""
    args = parse_args(argv)
    missing = snntorch_missing()
    if missing is not None:
        print(f"nir_snntorch: needs the snntorch extra (pip install -e '.[snntorch]'): "
              f"{missing}")
        return 2
    import torch

    global DEFAULT_THREADS
    DEFAULT_THREADS = torch.get_num_threads()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    data = load_dataset("digits", 8)
    enc = {s: rate_encode(getattr(data, f"{s}_pixels"), T, 255).astype(np.float32)
           for s in ("train", "test")}                                  # (B, T, 64)
    net = make_net(args.hidden)
    train_s = train(net, enc["train"], data.train_labels, args.epochs)
    imp, gold = forward(net, enc["test"], data, args, train_s)
    cli_import(net, enc["test"], data)
    if not args.no_rtl:
        rtl_check(imp.cfg, imp.weights, data, gold, args.jobs)
    default_threads = DEFAULT_THREADS
    for cfg_name, path in (("digits-tiny", args.chip_weights),
                           ("mnist-ecp5", args.mnist_weights)):
        reverse(cfg_name, Path(path), args.repeats, default_threads)
    return 0


def leaky(n: int, output: bool = False):
    """An ``snn.Leaky`` population of ``n``: beta ``BETA``, threshold 1, subtract-reset."""
    import snntorch as snn
    import torch

    return snn.Leaky(beta=torch.full((n,), BETA), threshold=torch.ones(n),
                     init_hidden=True, output=output, reset_mechanism="subtract")


def make_net(hidden: int):
    """The bias-free 64-``hidden``-10 snnTorch network to train."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, hidden, bias=False), leaky(hidden),
                               torch.nn.Linear(hidden, 10, bias=False), leaky(10, output=True))


def train(net, train_enc: np.ndarray, train_labels: np.ndarray, epochs: int) -> float:
    """Train ``net`` on output spike counts (Adam, cross-entropy, batches of 64).

    Returns
    -------
    float
        The training time in seconds.
    """
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    xs, ys = torch.tensor(train_enc), torch.tensor(train_labels)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(ys))
        for b in range(0, len(ys), 64):
            idx = perm[b:b + 64]
            loss = torch.nn.functional.cross_entropy(counts_only(net, xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"nir_snntorch: epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    return time.perf_counter() - t0


def float_inference(net, test_enc: np.ndarray) -> tuple[np.ndarray, float]:
    """Output spike counts of the float network on the test rasters, and the seconds taken."""
    import torch

    xt = torch.tensor(test_enc)
    with torch.no_grad():
        t0 = time.perf_counter()
        counts = counts_only(net, xt).numpy().astype(np.int64)
        return counts, time.perf_counter() - t0


def to_spikeforge(net, quantise: str):
    """Export ``net`` with ``export_to_nir``, import it with ``sw.nir_io.import_graph``.

    Prints the importer's report and returns its result (``.cfg``, ``.weights``).
    """
    import torch
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    imp = import_graph(graph, quantise=quantise, time_steps=T, lanes=4, name="snntorch")
    for line in imp.lines:
        print(line)
    return imp


def forward(net, test_enc: np.ndarray, data, args, train_s: float):
    """Float snnTorch vs the imported integer golden model on the test split: accuracy, speed.

    Returns
    -------
    tuple
        The import result and the golden model's run.
    """
    counts, float_s = float_inference(net, test_enc)
    float_acc = float((predict(counts) == data.test_labels).mean())
    imp = to_spikeforge(net, args.quantise)
    t0 = time.perf_counter()
    gold = run_network(imp.cfg, imp.weights, data.test_pixels)
    gold_s = time.perf_counter() - t0
    gold_acc = float((gold.predictions == data.test_labels).mean())
    agree = float((gold.predictions == predict(counts)).mean())
    n = len(data.test_labels)
    print(f"nir_snntorch: 64-{args.hidden}-10, T={T}, {args.epochs} epochs ({train_s:.1f} s), "
          f"{n} digits test samples")
    print(f"nir_snntorch: accuracy snnTorch float {100 * float_acc:.2f}%, spikeforge golden "
          f"(integer, theta {imp.cfg.threshold}) {100 * gold_acc:.2f}%; predictions agree on "
          f"{100 * agree:.1f}%")
    print(f"nir_snntorch: inference on {n} samples: snnTorch {float_s * 1e3:.1f} ms, golden "
          f"model {gold_s * 1e3:.1f} ms (1 torch thread)")
    return imp, gold


def cli_import(net, test_enc: np.ndarray, data) -> None:
    """The same snnTorch export through ``spikeforge import --nir`` with every option at its
    default (issue 21): formats searched, snnTorch's same-step layers compensated."""
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    from spikeforge.cli import main as cli
    from spikeforge.config import load_config
    from spikeforge.sw.weights import load_weights

    counts, _ = float_inference(net, test_enc)
    with tempfile.TemporaryDirectory() as tmp:
        path, toml, npz = Path(tmp) / "net.nir", Path(tmp) / "c.toml", Path(tmp) / "w.npz"
        nir.write(str(path), export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
        if cli(["import", "--nir", str(path), "--config-out", str(toml), "--weights-out",
                str(npz)]):
            print("nir_snntorch: spikeforge import with the defaults refused the graph")
            return
        cfg = load_config(toml)
        gold = run_network(cfg, load_weights(npz, cfg), data.test_pixels)
    acc = float((gold.predictions == data.test_labels).mean())
    f_acc = float((predict(counts) == data.test_labels).mean())
    agree = float((gold.predictions == predict(counts)).mean())
    print(f"nir_snntorch: spikeforge import --nir with the defaults ({cfg.summary()}): "
          f"accuracy {100 * acc:.2f}% against snnTorch's {100 * f_acc:.2f}%; predictions "
          f"agree on {100 * agree:.1f}% of {len(gold.predictions)}")


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
    """Run ``fn`` ``repeats`` times; the minimum and median wall time in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def load_chip_network(cfg_name: str, path: Path):
    """The config, chip-learned weights and dataset of a reverse run.

    Returns
    -------
    tuple or None
        ``(cfg, weights, data)``; None (with a line saying why) when the weights file is
        missing or the dataset cannot be loaded.
    """
    from spikeforge.config import load_config
    from spikeforge.sw.weights import load_weights

    cfg = load_config(ROOT / "configs" / f"{cfg_name}.toml")
    if not path.is_file():
        print(f"nir_snntorch: reverse {cfg_name}: {path} missing, skipped (make it with "
              f"'spikeforge demo' / 'spikeforge train -c {cfg_name}')")
        return None
    weights = load_weights(path, cfg)
    try:
        data = load_dataset(cfg.dataset, cfg.pixel_bits)
    except Exception as exc:     # mnist-t10k not present
        print(f"nir_snntorch: reverse {cfg_name}: dataset {cfg.dataset} not loadable ({exc})")
        return None
    return cfg, weights, data


def snntorch_from_nir(cfg_name: str, cfg, weights):
    """Write the network as a ``.nir`` file (``sw.nir_io``), read it into snnTorch.

    Returns
    -------
    torch.nn.Module or None
        snnTorch's ``import_from_nir`` network; None (with a line saying why) if it refuses
        the graph.
    """
    import nir
    from snntorch.import_nir import import_from_nir

    with tempfile.TemporaryDirectory() as tmp:
        nir_path = Path(tmp) / f"{cfg_name}.nir"
        write_nir(nir_path, cfg, weights)
        graph = nir.read(str(nir_path))
    try:
        return import_from_nir(graph)
    except Exception as exc:
        print(f"nir_snntorch: reverse {cfg_name}: snnTorch import_from_nir refused our graph: "
              f"{type(exc).__name__}: {exc}")
        return None


def print_reverse_header(cfg_name: str, cfg, path: Path, lifs, data) -> None:
    """One line on the imported network: its LIF parameters and the test samples."""
    import torch

    desc = "-".join(map(str, cfg.layers))
    beta = float(torch.as_tensor(lifs[0].beta).flatten()[0])
    theta = float(torch.as_tensor(lifs[0].threshold).flatten()[0])
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"nir_snntorch: reverse {cfg_name} ({desc}, chip-learned {shown}) "
          f"-> .nir -> snntorch.import_nir.import_from_nir: {lifs[0].__class__.__name__} "
          f"beta {beta:.4g}, threshold {theta:.4g}, "
          f"reset {lifs[0].reset_mechanism!r}; {len(data.test_labels)} {data.name} test "
          f"samples, T = {cfg.time_steps}")


def layer_agreement(gold_rasters, snn_rasters, time_steps: int) -> list[str]:
    """Spike agreement of every LIF layer, as stepped and shifted by its depth in steps."""
    agree = []
    for layer, (g, s_) in enumerate(zip(gold_rasters[1:], snn_rasters, strict=True), start=1):
        same = float((g == s_).mean())
        shifted = float((g[:, layer:] == s_[:, :time_steps - layer]).mean())
        agree.append(f"layer {layer} {100 * same:.1f}% as stepped, {100 * shifted:.1f}% "
                     f"shifted {layer} step{'s' if layer > 1 else ''} (spikes golden "
                     f"{int(g.sum())}, snnTorch {int(s_.sum())})")
    return agree


def compare_resets(net, lifs, x, cfg, labels, gold_rasters) -> None:
    """Accuracy and spike agreement of snnTorch vs golden, with zero and subtract reset.

    Leaves the LIF layers with ``"zero"`` reset, as imported.
    """
    import torch

    gold_pred = predict(gold_rasters[-1].sum(axis=1))
    acc_g = float((gold_pred == labels).mean())
    for reset in ("zero", "subtract"):
        for m in lifs:
            m.reset_mechanism = reset
        with torch.inference_mode():
            snn_rasters = [r.numpy().astype(bool) for r in run_snn(net, lifs, x)]
        pred = predict(snn_rasters[-1].sum(axis=1).astype(np.int64))
        acc_s = float((pred == labels).mean())
        agree = layer_agreement(gold_rasters, snn_rasters, cfg.time_steps)
        tag = " (as imported)" if reset == "zero" else ""
        print(f"nir_snntorch:   snnTorch reset {reset!r}{tag}: "
              f"accuracy snnTorch {100 * acc_s:.2f}%, golden {100 * acc_g:.2f}%, same "
              f"prediction {100 * float((pred == gold_pred).mean()):.1f}%; spike agreement "
              + "; ".join(agree))
    for m in lifs:
        m.reset_mechanism = "zero"


def compare_speed(cfg, weights, raster, net, x, repeats: int, default_threads: int) -> None:
    """Golden model vs snnTorch inference throughput on the same input spikes.

    At 1 thread and at torch's default thread count; leaves torch at 1 thread.
    """
    import torch

    n = len(raster)
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


def reverse(cfg_name: str, path: Path, repeats: int, default_threads: int) -> None:
    """A chip-learned network -> sw.nir_io export -> snnTorch import_from_nir; accuracy,
    spike agreement per layer and speed against the golden model on the same input spikes."""
    import torch

    loaded = load_chip_network(cfg_name, path)
    if loaded is None:
        return
    cfg, weights, data = loaded
    net = snntorch_from_nir(cfg_name, cfg, weights)
    if net is None:
        return
    net.eval()
    lifs = [getattr(net, f"lif{i}") for i in range(cfg.n_layers)]
    raster = encode(cfg, data.test_pixels)                       # (B, T, N_in) bool
    gold_rasters = run_layers(cfg, weights, raster)
    x = torch.tensor(raster, dtype=torch.float32)
    print_reverse_header(cfg_name, cfg, path, lifs, data)
    compare_resets(net, lifs, x, cfg, data.test_labels, gold_rasters)
    compare_speed(cfg, weights, raster, net, x, repeats, default_threads)


if __name__ == "__main__":
    sys.exit(main())
