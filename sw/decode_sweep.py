"""Decoder sweeps over the number of time steps, and the RTL cross-check of decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeforge.sw.decoders import DECODERS, decode_accuracy
from spikeforge.sw.golden import run_network

BATCH = 1000


def readout_rasters(cfg, weights, pixels) -> np.ndarray:
    """The readout (last layer) rasters of ``pixels``, ``(B, T, n_out)``, run in batches of
    :data:`BATCH` (the other populations' rasters are not kept)."""
    return np.concatenate([run_network(cfg, weights, pixels[lo:lo + BATCH]).rasters[-1]
                           for lo in range(0, len(pixels), BATCH)])


def golden_rasters(cfg, weights, data) -> tuple[np.ndarray, np.ndarray]:
    """The readout (last layer) rasters of the train and test splits, ``(B, T, n_out)``."""
    return (readout_rasters(cfg, weights, data.train_pixels),
            readout_rasters(cfg, weights, data.test_pixels))


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
    from spikeforge.sim.rtl import run_rtl
    from spikeforge.sw.spike_stream import rasters_from_stream

    rtl = run_rtl(cfg, weights, pixels)
    return rasters_from_stream([tuple(int(x) for x in row) for row in rtl.stream],
                               cfg.time_steps, cfg.layers[-1])


def rtl_check(cfg, weights, pixels, labels, gold_r, predict) -> tuple[float, float, bool]:
    """Decode the RTL's readout rasters of ``pixels`` and the golden ones ``gold_r`` with the
    same ``predict``. Returns (golden accuracy, RTL accuracy, rasters and predictions equal)."""
    rtl_r = rtl_rasters(cfg, weights, pixels)
    preds = [predict(r) for r in (gold_r, rtl_r)]
    accs = [float((p == labels).mean()) for p in preds]
    same = rtl_r.shape == gold_r.shape and bool((rtl_r == gold_r).all())
    return accs[0], accs[1], same and bool((preds[0] == preds[1]).all())


def reconstruction_quality(kind, train_r, test_r, data, *, steps: int, epochs: int,
                           seed: int, out_dir=None, title: str = "") -> dict:
    """Train a reconstruction decoder on the training rasters (BCE against the images), then
    score it with a held-out classifier: logistic regression trained on the *original*
    training images, tested on the reconstructions of the test images (and, for reference,
    on the original test images). Writes ``reconstructions.png`` (originals above their
    reconstructions) to ``out_dir`` if given."""
    from sklearn.linear_model import LogisticRegression

    from spikeforge.sw.decoders import reconstruct, train_reconstructor

    scale = float(data.pixel_max)
    dec = train_reconstructor(kind, train_r[:, :steps], data.train_pixels / scale,
                              epochs=epochs, seed=seed)
    recon = reconstruct(dec, test_r[:, :steps])
    clf = LogisticRegression(max_iter=500).fit(data.train_pixels / scale, data.train_labels)
    result = {"reconstructed": float(clf.score(recon, data.test_labels)),
              "originals": float(clf.score(data.test_pixels / scale, data.test_labels))}
    if out_dir is not None:
        _plot_reconstructions(Path(out_dir) / "reconstructions.png", data, recon, title)
        result["plot"] = str(Path(out_dir) / "reconstructions.png")
    return result


def _plot_reconstructions(path, data, recon, title, n: int = 10) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(n * 0.9, 2.2), dpi=100)
    FigureCanvasAgg(fig)
    picks = [int(np.flatnonzero(data.test_labels == c)[0]) for c in range(min(n, data.classes))]
    for col, i in enumerate(picks):
        for row, img in enumerate((data.test_pixels[i] / data.pixel_max, recon[i])):
            ax = fig.add_subplot(2, len(picks), row * len(picks) + col + 1)
            ax.imshow(img.reshape(data.shape), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
    fig.suptitle(title + " (top: originals, bottom: reconstructions)", fontsize=8)
    fig.savefig(path)
