"""The main job: train on digits in seconds, run golden model and RTL, compare, plot."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def plot_rasters(cfg, gold, rtl, sample: int, label: int | None, path: Path) -> None:
    """Spike rasters of every population for one sample: golden model left, RTL right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikeforge.sim.compare import population_name

    pops = len(cfg.layers)
    ratios = [max(n, 10) for n in cfg.layers]
    fig, axes = plt.subplots(pops, 2, figsize=(11, 2.2 + 0.045 * sum(ratios)), sharex=True,
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    for col, (run, who) in enumerate(((gold, "golden model"), (rtl, "RTL (Verilator)"))):
        for pop in range(pops):
            ax = axes[pop, col]
            t, n = np.nonzero(run.rasters[pop][sample])
            ax.scatter(t, n, s=6, marker="|" if pop == 0 else "o",
                       color="C0" if col == 0 else "C3")
            ax.set_ylim(-0.5, cfg.layers[pop] - 0.5)
            ax.set_xlim(-0.5, cfg.time_steps - 0.5)
            if col == 0:
                ax.set_ylabel(f"{population_name(pop)}\nneuron")
            if pop == 0:
                ax.set_title(f"{who}: prediction {run.predictions[sample]}")
        axes[-1, col].set_xlabel("time step")
    match = all((g[sample] == r[sample]).all() for g, r in zip(gold.rasters, rtl.rasters,
                                                                strict=True))
    fig.suptitle(f"{cfg.name}, held-out sample {sample}"
                 + (f" (label {label})" if label is not None else "")
                 + f": {gold.cycles[sample]} cycles; rasters "
                 + ("identical" if match else "DIFFER"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(cfg, *, out_dir: Path, sim: str = "verilator", epochs: int | None = None,
             samples: int | None = None, seed: int = 0) -> int:
    from tqdm import tqdm

    from spikeforge.sim.compare import compare_runs
    from spikeforge.sim.rtl import run_rtl
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.qat import train_qat
    from spikeforge.sw.weights import save_weights

    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_for_config(cfg)
    print(f"demo: {cfg.summary()}")
    print(f"demo: {data.summary()}")
    t0 = time.perf_counter()
    kwargs = {} if epochs is None else {"epochs": epochs}
    weights = train_qat(cfg, data.train_pixels, data.train_labels, seed=seed, **kwargs)
    save_weights(out_dir / "weights.npz", cfg, weights)
    print(f"demo: trained in {time.perf_counter() - t0:.1f} s (quantisation-aware, surrogate "
          f"gradients); integer weights in {out_dir / 'weights.npz'}")

    n = len(data.test_labels) if samples is None else min(samples, len(data.test_labels))
    pixels, labels = data.test_pixels[:n], data.test_labels[:n]
    gold = run_network(cfg, weights, pixels)
    with tqdm(total=n, desc=f"RTL ({sim})", unit="sample") as bar:
        rtl = run_rtl(cfg, weights, pixels, sim=sim, progress=lambda k: bar.update(k - bar.n))
        bar.update(n - bar.n)
    result = compare_runs(gold, rtl)
    acc_gold = 100 * float((gold.predictions == labels).mean())
    acc_rtl = 100 * float((rtl.predictions == labels).mean())
    spikes = sum(int(r.sum()) for r in gold.rasters)
    print(f"demo: held-out accuracy: golden model {acc_gold:.2f}%, RTL {acc_rtl:.2f}% "
          f"({n} samples)")
    print(f"demo: spike-train agreement: {spikes - result.spike_mismatches}/{spikes} spikes "
          f"of every population identical; cycles per sample median "
          f"{int(np.median(gold.cycles))} (min {gold.cycles.min()}, max {gold.cycles.max()})")
    if result.first_divergence:
        print(f"demo: first divergence: {result.first_divergence}")
    plot = out_dir / "spike_raster.png"
    plot_rasters(cfg, gold, rtl, 0, int(labels[0]), plot)
    print(f"demo: spike raster (golden vs RTL) in {plot}")
    learned_ok = True
    if cfg.learning is not None:
        learned_ok = demo_learning(cfg, data, sim=sim, seed=seed)
    print(result.summary_line())
    return 0 if result.ok and learned_ok else 1


def demo_learning(cfg, data, *, sim: str, seed: int, samples: int = 12) -> bool:
    """On-chip desire backpropagation: the RTL learns from ``samples`` training samples,
    starting from the Kaiming init; every spike, weight and cycle is checked."""
    from tqdm import tqdm

    from spikeforge.sim.compare import compare_training
    from spikeforge.sim.rtl import run_rtl
    from spikeforge.sw.desire import train_steps
    from spikeforge.sw.train import initial_weights

    stored = initial_weights(cfg, seed)
    pixels, labels = data.train_pixels[:samples], data.train_labels[:samples]
    steps = train_steps(cfg, stored, pixels, labels)
    weights = steps[-1].weights
    with tqdm(total=samples, desc=f"RTL on-chip learning ({sim})", unit="sample") as bar:
        rtl = run_rtl(cfg, stored, pixels, sim=sim, labels=labels, stored=True,
                      progress=lambda k: bar.update(k - bar.n))
        bar.update(samples - bar.n)
    result = compare_training(steps, rtl)
    moved = sum(int((a != b).sum()) for a, b in zip(stored, weights, strict=True))
    learn = np.array([s.learn_cycles for s in steps])
    infer = np.array([s.infer_cycles for s in steps])
    print(f"demo: on-chip learning: the RTL trained on {samples} samples (desire "
          f"backpropagation); {moved} stored weights moved; cycles per training sample median "
          f"{int(np.median(infer + learn))} (inference {int(np.median(infer))} + learning "
          f"{int(np.median(learn))})")
    if result.first_divergence:
        print(f"demo: first divergence: {result.first_divergence}")
    print(result.summary_line())
    return result.ok
