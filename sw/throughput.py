"""Work and cycles per sample from the golden model: what a clock frequency turns into latency
and synaptic operations per second (the numbers of ``spikeforge synth`` and the lanes sweep).

A *synaptic operation* (SOP) is one weight added to one membrane: every input spike of LIF
layer ``l`` costs ``N_post(l)`` of them. The layer engines run concurrently, each adding
``P`` weights per cycle, so the lanes' ideal is ``L * P`` SOPs per cycle.
"""

from __future__ import annotations

import numpy as np

from spikeforge.sw.desire import inference_weights, train_step
from spikeforge.sw.golden import run_network


def synaptic_ops(cfg, rasters: list[np.ndarray], exit_steps=None) -> np.ndarray:
    """SOPs per sample, ``(B,)``: input spikes of each LIF layer times its fan-out. Layer
    ``l`` integrates step ``t-1`` of its input in phase ``t`` (the one-step delay), so the
    last step of every input population is never integrated: step ``T - 1``, or with
    ``exit_steps`` ``(B,)`` (the decoder on the chip) each sample's last step run."""
    batch, steps = rasters[0].shape[:2]
    last = np.full(batch, steps) if exit_steps is None else np.asarray(exit_steps)
    integrated = np.arange(steps)[None, :] < last[:, None] - 1          # (B, T)
    ops = np.zeros(batch, dtype=np.int64)
    for layer in range(cfg.n_layers):
        per_step = rasters[layer].sum(axis=2)
        ops += (per_step * integrated).sum(axis=1) * cfg.layers[layer + 1]
    return ops


def measure(cfg, stored: list[np.ndarray], pixels: np.ndarray, labels: np.ndarray | None = None,
            train_samples: int = 0) -> dict:
    """Cycles and SOPs of inference over ``pixels`` with the stored weights ``stored``, and
    of ``train_samples`` training samples (learning configs) from the same weights."""
    run = run_network(cfg, inference_weights(cfg, stored), pixels)
    ops = synaptic_ops(cfg, run.rasters)
    out = {"samples": int(len(pixels)),
           "infer_cycles_median": float(np.median(run.cycles)),
           "infer_cycles_mean": float(run.cycles.mean()),
           "infer_cycles_max": int(run.cycles.max()),
           "sops_per_sample": float(ops.mean()),
           "sops_per_cycle": float(ops.sum() / run.cycles.sum()),
           "ideal_sops_per_cycle": cfg.n_layers * cfg.lanes}
    if train_samples and cfg.learning is not None:
        cycles, w, lfsr, masks = [], stored, None, None
        for x, y in zip(pixels[:train_samples], labels[:train_samples], strict=True):
            step = train_step(cfg, w, x, int(y), lfsr=lfsr, mask_lfsr=masks)
            cycles.append(step.cycles)
            w, lfsr, masks = step.weights, step.lfsr, step.mask_lfsr
        out["train_samples"] = len(cycles)
        out["train_cycles_median"] = float(np.median(cycles))
        out["train_cycles_mean"] = float(np.mean(cycles))
    return out


def at_clock(perf: dict, f_mhz: float) -> dict:
    """Latency and SOP rate of :func:`measure`'s numbers at ``f_mhz``."""
    out = {"clock_mhz": f_mhz,
           "infer_latency_us_median": perf["infer_cycles_median"] / f_mhz,
           "infer_latency_us_max": perf["infer_cycles_max"] / f_mhz,
           "msops_per_s": perf["sops_per_cycle"] * f_mhz}
    if "train_cycles_median" in perf:
        out["train_latency_us_median"] = perf["train_cycles_median"] / f_mhz
    return out
