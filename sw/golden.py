"""The bit-exact golden model of ``hw.network.Network`` (inference).

Pure functions over integer numpy arrays, vectorised over a batch. ``run_network`` returns
every spike of every layer, the output spike counts, the prediction and the cycle count the
RTL takes. Semantics (``docs/number_formats.md``):

* ``s_0[t]`` = rate encoder output at step ``t``, ``t = 0 .. T-1``;
* LIF layer ``l`` at step ``t`` integrates ``s_{l-1}[t-1]`` (one-step delay per layer); at
  ``t = 0`` its membranes are cleared and it cannot fire;
* prediction = the unique argmax of the output spike counts, ``-1`` on a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw import cycles
from sw.encode import rate_encode
from sw.lif import lif_step


@dataclass
class NetworkRun:
    """Everything one batch of samples did.

    ``rasters[0]``: encoder spikes ``(B, T, N_in)``; ``rasters[l]``: LIF layer ``l`` spikes
    ``(B, T, N_l)``; ``counts``: output spike counts ``(B, N_out)``; ``predictions``:
    ``(B,)`` with ``-1`` for no unique winner; ``cycles``: ``(B,)`` RTL cycles per sample.
    """

    rasters: list[np.ndarray]
    counts: np.ndarray
    predictions: np.ndarray
    cycles: np.ndarray


def predict(counts: np.ndarray) -> np.ndarray:
    """Unique argmax of spike counts per row; ``-1`` where the maximum is shared."""
    best = counts.max(axis=1, keepdims=True)
    unique = (counts == best).sum(axis=1) == 1
    return np.where(unique, counts.argmax(axis=1), -1)


def run_layers(cfg, weights: list[np.ndarray], input_raster: np.ndarray) -> list[np.ndarray]:
    """Run all LIF layers on an input raster ``(B, T, N_in)``; returns all rasters."""
    batch, steps, _ = input_raster.shape
    rasters = [input_raster.astype(bool)]
    for layer, w in enumerate(weights):
        n_post = cfg.layers[layer + 1]
        v = np.zeros((batch, n_post), dtype=np.int64)
        out = np.zeros((batch, steps, n_post), dtype=bool)
        for t in range(1, steps):
            v, out[:, t] = lif_step(v, w, rasters[layer][:, t - 1], threshold=cfg.threshold,
                                    leak_shift=cfg.leak_shift, v_min=cfg.v_min,
                                    v_max=cfg.v_max)
        rasters.append(out)
    return rasters


def run_network(cfg, weights: list[np.ndarray], pixels: np.ndarray) -> NetworkRun:
    """Run a batch of samples ``pixels`` ``(B, N_in)`` (unsigned ``pixel_bits``)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.layers[0]:
        raise ValueError(f"pixels: expected shape (B, {cfg.layers[0]}), got {pixels.shape}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > cfg.pixel_max:
        raise ValueError(f"pixels: values must lie in [0, {cfg.pixel_max}]")
    raster = rate_encode(pixels, cfg.time_steps, cfg.encoder_threshold)
    rasters = run_layers(cfg, weights, raster)
    counts = rasters[-1].sum(axis=1)
    return NetworkRun(rasters=rasters, counts=counts, predictions=predict(counts),
                      cycles=cycles.sample_cycles(cfg, rasters))
