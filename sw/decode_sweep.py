"""Decoder sweeps over the number of time steps, and the RTL cross-check of decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sw.decoders import DECODERS, decode_accuracy, first_spike_decode, rate_decode, train_decoder
from sw.golden import run_network

BATCH = 1000


def golden_rasters(cfg, weights, data) -> tuple[np.ndarray, np.ndarray]:
    """The readout (last layer) rasters of the train and test splits, ``(B, T, n_out)``."""
    def run(px):
        return np.concatenate([run_network(cfg, weights, px[lo:lo + BATCH]).rasters[-1]
                               for lo in range(0, len(px), BATCH)])
    return run(data.train_pixels), run(data.test_pixels)


def sweep(train_r, train_y, test_r, test_y, *, steps_list, epochs: int, seed: int) -> dict:
    """``{decoder: {T: accuracy}}`` for every decoder and every ``T``."""
    return {k: {t: decode_accuracy(k, train_r, train_y, test_r, test_y, steps=t,
                                   epochs=epochs, seed=seed) for t in steps_list}
            for k in DECODERS}


def plot_sweep(table: dict, out_dir, title: str) -> list[str]:
    """Accuracy vs T plot (``accuracy_vs_steps.png``) and a Markdown table (returned lines,
    also written to ``sweep.md``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = sorted(next(iter(table.values())))
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, row in table.items():
        ax.plot(steps, [100 * row[t] for t in steps], "o-" if k in ("rate", "first-spike")
                else "s--", label=k)
    ax.set_xlabel("time steps T decoded")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{out_dir}/accuracy_vs_steps.png")
    lines = ["| decoder | " + " | ".join(f"T={t}" for t in steps) + " |",
             "|---|" + "---:|" * len(steps)]
    lines += [f"| {k} | " + " | ".join(f"{100 * row[t]:.2f}" for t in steps) + " |"
              for k, row in table.items()]
    (Path(out_dir) / "sweep.md").write_text("\n".join(lines) + "\n")
    return lines + [f"plot {out_dir}/accuracy_vs_steps.png"]


def rtl_rasters(cfg, weights, pixels) -> np.ndarray:
    """Readout rasters ``(B, T, n_out)`` rebuilt from the RTL's own readout stream (cocotb,
    drained with random back-pressure)."""
    from sim.rtl import run_rtl
    from sw.spike_stream import rasters_from_stream

    rtl = run_rtl(cfg, weights, pixels)
    return rasters_from_stream([tuple(int(x) for x in row) for row in rtl.stream],
                               cfg.time_steps, cfg.layers[-1])


def predictor(kind: str, train_r, train_labels, *, steps: int, epochs: int, seed: int):
    """``raster -> predictions`` of decoder ``kind`` reading the first ``steps`` steps
    (learned decoders are trained on ``train_r`` first)."""
    if kind in ("rate", "first-spike"):
        rule = rate_decode if kind == "rate" else first_spike_decode
        return lambda r: rule(r[:, :steps])
    dec = train_decoder(kind, train_r[:, :steps], train_labels, epochs=epochs, seed=seed)
    return lambda r: dec.predict(r[:, :steps])


def rtl_check(cfg, weights, pixels, labels, gold_r, predict) -> tuple[float, float, bool]:
    """Decode the RTL's readout rasters of ``pixels`` and the golden ones ``gold_r`` with the
    same ``predict``. Returns (golden accuracy, RTL accuracy, rasters and predictions equal)."""
    rtl_r = rtl_rasters(cfg, weights, pixels)
    preds = [predict(r) for r in (gold_r, rtl_r)]
    accs = [float((p == labels).mean()) for p in preds]
    same = rtl_r.shape == gold_r.shape and bool((rtl_r == gold_r).all())
    return accs[0], accs[1], same and bool((preds[0] == preds[1]).all())
