"""Plots of STDP learning with pruning: receptive fields, connectivity and cycles vs samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_receptive_fields(path, cfg, state, shape=None, title="", max_neurons=100) -> None:
    """Every neuron's alive weights as an image (pruned synapses shown as blank)."""
    side = int(round(math.sqrt(cfg.n_in)))
    shape = shape or ((side, side) if side * side == cfg.n_in else (1, cfg.n_in))
    n = min(cfg.n_out, max_neurons)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _figure((1.0 * cols + 0.5, 1.0 * rows + 0.6))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        w = np.ma.masked_where(~state.alive[:, i], state.weights[:, i]).reshape(shape)
        ax.imshow(w, cmap="viridis", vmin=0, vmax=cfg.w_max)
        ax.set_axis_off()
    fig.suptitle(title or f"{cfg.name}: learned receptive fields (blank = pruned)",
                 fontsize=9, wrap=True)
    fig.savefig(path)


def plot_series(path, series: dict, ylabel: str, title: str, logy: bool = False) -> None:
    """Lines over training samples: ``series`` maps a label to a 1-D array."""
    fig = _figure((6, 3.6))
    ax = fig.add_subplot()
    for label, y in series.items():
        ax.plot(np.arange(1, len(y) + 1), y, label=label, linewidth=1)
    ax.set_xlabel("training samples")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def moving_mean(y, window: int = 200) -> np.ndarray:
    """Mean of the last ``window`` values (fewer at the start): STDP passes are all-or-nothing
    per sample (a winner or none), so per-sample curves are noise."""
    y = np.asarray(y, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(y)])
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def cycle_series(samples: dict, prefix: str = "") -> dict:
    """Inference cycles and cycles per training sample (mean of 200) of recorded samples."""
    infer = np.asarray(samples["infer_cycles"])
    return {f"{prefix}inference": infer,
            f"{prefix}training sample (inference + STDP, mean of 200)":
                moving_mean(infer + np.asarray(samples["learn_cycles"]))}


def plot_run(out_dir: Path, cfg, dataset: str, run) -> dict:
    """The plots of one :class:`sw.stdp_train.STDPRun`; returns ``{name: path}``."""
    out_dir = Path(out_dir)
    files = {"receptive_fields": out_dir / "receptive_fields.png",
             "connectivity": out_dir / "connectivity.png", "cycles": out_dir / "cycles.png"}
    plot_receptive_fields(files["receptive_fields"], cfg, run.state,
                          title=f"{cfg.name} on {dataset}, {run.samples_done} "
                                f"samples:\nreceptive fields (blank = pruned)")
    plot_series(files["connectivity"],
                {"connectivity": 100 * np.asarray(run.samples["connectivity"])},
                "synapses alive (%)", f"{cfg.name} on {dataset}: connectivity")
    plot_series(files["cycles"], cycle_series(run.samples), "cycles per sample",
                f"{cfg.name} on {dataset}: cycles", logy=True)
    return files
