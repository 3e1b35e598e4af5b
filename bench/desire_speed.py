"""Learning throughput of desire backpropagation: integer golden model vs float reference.

Run as ``.venv/bin/python bench/desire_speed.py`` (``--help`` for options). Single thread:
the BLAS/OpenMP thread counts are pinned to 1 before numpy is imported and torch (if present)
is told ``set_num_threads(1)``. For each topology, both models train on the same real samples
(the first ``--samples`` training images of ``mnist-t10k``, 8-bit pixels) from the same
Kaiming-normal start (the float weights; the golden model gets them as stored integers whose
``>> F`` inference read is ``round(W * theta)``: both nets then spike alike; a plain floor read
of rounded weights would leave the integer net nearly silent and its workload unfairly light),
``--repeats`` times from that same start; the table gives the minimum and median
over the repeats. The published reference's figures are quoted for comparison (its authors'
PyTorch code, one sample at a time, measured on these machines as stated in the issue).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"   # before numpy loads its BLAS

import numpy as np  # noqa: E402

from spikeforge.config import DesireConfig, NetworkConfig, load_config  # noqa: E402
from spikeforge.sw import desire  # noqa: E402
from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.desire_float import FloatDesireNet  # noqa: E402

try:  # the float reference is numpy; torch is pinned to one thread in case anything uses it
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a project dependency
    torch = None

#: Published reference (authors' PyTorch code, CPU), seconds per training sample (the issue).
PUBLISHED_S_PER_SAMPLE = {(784, 200, 100, 10): 0.06, (784, 1000, 100, 10): 0.37}
TARGET_SPEEDUP = 20.0


def make_config(layers) -> NetworkConfig:
    """The benchmark's network config for ``layers`` (T=20, P=16, w8/v16, desire learning)."""
    return NetworkConfig(name="bench-" + "-".join(map(str, layers)), layers=tuple(layers),
                         time_steps=20, lanes=16, weight_bits=8, membrane_bits=16,
                         threshold=64, leak_shift=2, dataset="mnist-t10k",
                         learning=DesireConfig())


def time_golden(cfg, stored0, pixels, labels):
    """(wall s, CPU s, spikes per population) of training on the samples in order."""
    stored = [np.array(w, dtype=cfg.store_dtype) for w in stored0]   # as the trainer holds them
    spikes = np.zeros(len(cfg.layers))
    wall, cpu = time.perf_counter(), time.process_time()
    lfsr = masks = None
    for px, label in zip(pixels, labels, strict=True):
        step = desire.train_step(cfg, stored, px, int(label), lfsr=lfsr, mask_lfsr=masks)
        stored, lfsr, masks = step.weights, step.lfsr, step.mask_lfsr
        spikes += [r.sum() for r in step.run.rasters]
    return time.perf_counter() - wall, time.process_time() - cpu, spikes


def time_float(cfg, weights0, pixels01, labels):
    """(wall s, CPU s, spikes per population) of the float reference on the samples."""
    net = FloatDesireNet.from_config(cfg)
    net.weights = [w.copy() for w in weights0]
    spikes = np.zeros(len(cfg.layers))
    wall, cpu = time.perf_counter(), time.process_time()
    for px, label in zip(pixels01, labels, strict=True):
        step = net.train_step(px, int(label))
        spikes += [r.sum() for r in step.run.rasters]
    return time.perf_counter() - wall, time.process_time() - cpu, spikes


def load_average() -> str:
    """The 1/5/15-minute load averages, or ``n/a``."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every OS
        return "n/a"


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the command line (exits with a usage error on bad values)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (>= 3)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 1000],
                        help="first hidden layer sizes of 784-H-100-10")
    parser.add_argument("--config", "-c", default=None,
                        help="time this profile (its options and formats) instead")
    parser.add_argument("--weights", default=None,
                        help="with --config: start from these stored weights (a checkpoint or "
                             "weights .npz, arrays stored_w<l> or w<l>), e.g. a trained net "
                             "whose membranes saturate")
    parser.add_argument("--dataset", default="mnist-t10k", help="samples to train on")
    args = parser.parse_args(argv)
    if args.repeats < 3 or args.samples < 1:
        parser.error("--repeats must be >= 3 and --samples >= 1")
    return args


def print_header(samples: int, repeats: int, dataset: str, start: str) -> None:
    """The machine, the workload and the table's header."""
    print(f"# desire backpropagation learning throughput ({platform.machine()}, "
          f"{os.cpu_count()} CPUs, 1 thread, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else "") + ")")
    print(f"\n{samples} {dataset} training samples per repeat, {repeats} repeats "
          f"from the same start ({start}). Load average at start: {load_average()}.\n")
    print("| topology | model | samples/s (median) | samples/s (best) | ms/sample (median) "
          "| ms/sample (best) | CPU ms/sample (median) | golden/float | vs published |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")


def load_start(cfg, path):
    """``(stored, float weights)`` from a weights or checkpoint ``.npz``."""
    with np.load(path) as data:
        keys = [f"stored_w{i}" if f"stored_w{i}" in data else f"w{i}"
                for i in range(cfg.n_layers)]
        stored = [np.asarray(data[k], dtype=np.int64) for k in keys]
    scale = cfg.threshold * 2 ** cfg.frac_bits
    return stored, [w / scale for w in stored]


def time_topology(cfg, pixels, pixels01, labels, repeats: int,
                  start=None) -> dict[str, list]:
    """Both models trained ``repeats`` times from the same start, interleaved.

    Returns
    -------
    dict
        ``{"golden": [...], "float": [...]}``: per repeat, (wall s, CPU s, spikes).
    """
    if start is None:
        net0 = FloatDesireNet.from_config(cfg, seed=0)
        weights0 = [w.copy() for w in net0.weights]
        stored0 = net0.to_stored(cfg, centre=True)   # unbiased read, see to_stored
    else:
        stored0, weights0 = start
    # warm-up (imports, first-touch allocations)
    time_golden(cfg, stored0, pixels[:2], labels[:2])
    time_float(cfg, weights0, pixels01[:2], labels[:2])
    runs = {"golden": [], "float": []}
    for _ in range(repeats):     # interleaved, so both see the same disturbances
        runs["golden"].append(time_golden(cfg, stored0, pixels, labels))
        runs["float"].append(time_float(cfg, weights0, pixels01, labels))
    return runs


def print_rows(topo: str, runs: dict, med: dict, samples: int, published) -> list[str]:
    """The table rows of both models on one topology.

    Returns
    -------
    list of str
        The spikes per sample of each model, for the notes.
    """
    notes = []
    for key, name in (("golden", "golden (int, sw.desire)"),
                      ("float", "float (sw.desire_float)")):
        per = [r[0] / samples for r in runs[key]]
        cpu = statistics.median(r[1] for r in runs[key]) / samples
        vs = f"{published / med[key]:.1f}x faster" if published else "n/a"
        ratio = f"{med['float'] / med['golden']:.2f}" if key == "golden" else ""
        print(f"| {topo} | {name} | {1 / med[key]:.1f} | {1 / min(per):.1f} | "
              f"{med[key] * 1e3:.2f} | {min(per) * 1e3:.2f} | {cpu * 1e3:.2f} | {ratio} "
              f"| {vs} |")
        spikes = runs[key][0][2] / samples
        notes.append(f"{topo} {key}: spikes/sample per population " +
                     " / ".join(f"{x:.1f}" for x in spikes))
    return notes


def print_published(topo: str, published: float, golden_median: float,
                    golden_best: float) -> str:
    """The quoted reference's table row; returns the golden model's speedup over it."""
    print(f"| {topo} | published reference (quoted) | {1 / published:.1f} | | "
          f"{published * 1e3:.0f} | | | | 1x |")
    return (f"{topo}: {published / golden_median:.1f}x (median), "
            f"{published / golden_best:.1f}x (best)")


def print_footer(verdicts: list[str], ok_median: bool, ok_best: bool,
                 notes: list[str]) -> None:
    """The verdict on the target speedup, and the spike notes."""
    verdict = (f"Golden vs published: {'; '.join(verdicts)}. Target >= {TARGET_SPEEDUP:.0f}x: "
               f"{'met' if ok_median else 'NOT met'} on the median, "
               f"{'met' if ok_best else 'NOT met'} on the best repeat. " if verdicts else
               "No published figure for this topology. ")
    print(f"\nLoad average at end: {load_average()}. golden/float = float ms/sample / golden "
          f"ms/sample (> 1: golden faster). {verdict}(On a shared machine the same run "
          f"varies by up to 2x; the best repeat is the least disturbed.)\n")
    for note in notes:
        print(f"- {note}")


def main(argv=None) -> int:
    """Time both models on every topology; 0 if the golden model meets the target."""
    args = parse_args(argv)
    ds = load_dataset(args.dataset, 8)
    pixels = ds.train_pixels[:args.samples]
    labels = ds.train_labels[:args.samples]
    pixels01 = pixels / ds.pixel_max

    print_header(args.samples, args.repeats, args.dataset,
                 args.weights or "Kaiming-normal; T=20, P=16, w8/v16, theta=64, k=2")
    ok_median = ok_best = True
    notes, verdicts = [], []
    cfgs = ([load_config(args.config)] if args.config else
            [make_config((784, hidden, 100, 10)) for hidden in args.hidden])
    for cfg in cfgs:
        layers = cfg.layers
        start = load_start(cfg, args.weights) if args.weights else None
        runs = time_topology(cfg, pixels, pixels01, labels, args.repeats, start)
        med = {k: statistics.median(r[0] for r in v) / args.samples for k, v in runs.items()}
        published = PUBLISHED_S_PER_SAMPLE.get(layers)
        topo = "-".join(map(str, layers))
        notes += print_rows(topo, runs, med, args.samples, published)
        if published:
            best = min(r[0] for r in runs["golden"]) / args.samples
            verdicts.append(print_published(topo, published, med["golden"], best))
            ok_median &= published / med["golden"] >= TARGET_SPEEDUP
            ok_best &= published / best >= TARGET_SPEEDUP
    print_footer(verdicts, ok_median, ok_best, notes)
    return 0 if ok_median else 1


if __name__ == "__main__":
    sys.exit(main())
