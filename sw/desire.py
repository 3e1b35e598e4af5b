"""The bit-exact golden model of on-chip desire backpropagation (one training sample).

Pure integer functions that read like the spec in ``docs/learning.md``; ``train_step`` chains
them: the inference pass (:mod:`sw.golden`) on the weights the memory holds, the output
desire from the label, the backward ternary desire pass through every layer, and the
potentiation-only update with the desire's sign. Weights are the *stored* weights
(``weight_bits + F`` bits); inference and the backward pass read ``W_store >> F``.

Fast paths: every matrix product here is an integer sum far below ``2**53`` and is taken
in float64 BLAS, which is exact for such sums (``tests/test_desire.py`` checks each against
the plain integer loops of the spec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw import cycles
from sw.golden import NetworkRun, run_network


@dataclass
class Desire:
    """Ternary desire of one population: ``active``, ``sign`` (True = +1) and ``|E|``."""

    active: np.ndarray
    sign: np.ndarray
    error: np.ndarray

    @property
    def coef(self) -> np.ndarray:
        """``sign * active * |E|``: what the backward pass multiplies the weights with."""
        return np.where(self.active, np.where(self.sign, self.error, -self.error), 0)


@dataclass
class TrainStep:
    """Everything one training sample did: the forward run, the desire of every LIF
    population (``desires[l]`` for LIF layer ``l``), the backward sums of the hidden
    populations (``sums[l]``, ``None`` for the output layer), the new stored weights and the
    cycle counts of the inference and learning parts."""

    run: NetworkRun
    desires: list[Desire]
    sums: list[np.ndarray | None]
    weights: list[np.ndarray]
    infer_cycles: int
    learn_cycles: int

    @property
    def cycles(self) -> int:
        return self.infer_cycles + self.learn_cycles


def inference_weights(cfg, stored: list[np.ndarray]) -> list[np.ndarray]:
    """``W_store >> F`` (floor): the ``weight_bits`` weights the LIF engines integrate."""
    return [np.asarray(w, dtype=np.int64) >> cfg.frac_bits for w in stored]


def error_of(cfg, counts: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """``|sign01 * C* - c|``: a neuron's error in units of ``1/C*`` spikes."""
    return np.abs(np.where(sign, cfg.target_count, 0) - counts)


def output_desire(cfg, counts: np.ndarray, label: int) -> Desire:
    """Label neuron: ``E = C* - c``, others ``E = c``; active iff ``E > floor(0.30 C*)``."""
    sign = np.arange(len(counts)) == label
    signed_error = np.where(sign, cfg.target_count - counts, counts)
    active = signed_error > cfg.out_desire_threshold
    return Desire(active=active, sign=sign, error=error_of(cfg, counts, sign))


def backward_sums(w_inf: np.ndarray, coef_post: np.ndarray) -> np.ndarray:
    """``S_j = sum_i W[j, i] * coef_i`` for every presynaptic ``j`` (exact integers)."""
    return np.rint(w_inf.astype(np.float64) @ coef_post.astype(np.float64)).astype(np.int64)


def hidden_desire(cfg, sums: np.ndarray, counts: np.ndarray) -> Desire:
    """Active iff ``|S| >= ceil(0.05 C* theta)``; sign ``S > 0``; ``E`` from its own count."""
    sign = sums > 0
    active = np.abs(sums) >= cfg.hidden_desire_threshold
    return Desire(active=active, sign=sign, error=error_of(cfg, counts, sign))


def traces(cfg, pre_raster: np.ndarray) -> np.ndarray:
    """Presynaptic traces ``x[t]`` seen by a post spike at step ``t``, ``(T, N_pre)``.

    ``x[0] = 0``; ``x[t] = x[t-1] - (x[t-1] >> k) + ONE * s_pre[t-1]`` (the post layer reads
    ``s_pre[t-1]`` at step ``t``, so the trace includes the spike that can cause it).
    """
    steps, n_pre = pre_raster.shape
    x = np.zeros((steps, n_pre), dtype=np.int64)
    for t in range(1, steps):
        x[t] = x[t - 1] - (x[t - 1] >> cfg.leak_shift) + cfg.trace_one * pre_raster[t - 1]
    return x


def eligibility(x: np.ndarray, post_raster: np.ndarray) -> np.ndarray:
    """``acc[j, i] = sum_t s_post[t, i] * x[t, j]`` (exact integers), ``(N_pre, N_post)``."""
    return np.rint(x.T.astype(np.float64) @ post_raster.astype(np.float64)).astype(np.int64)


def update(cfg, stored: np.ndarray, desire: Desire, acc: np.ndarray, lr_shift: int):
    """``W_store <- sat(W_store + sign * active * round(acc / 2**lr_shift))``."""
    half = (1 << lr_shift) >> 1 if cfg.learning.rounding == "nearest" else 0
    step = (acc + half) >> lr_shift
    delta = np.where(desire.active, np.where(desire.sign, step, -step), 0)
    return np.clip(stored + delta, cfg.store_min, cfg.store_max)


def train_step(cfg, stored: list[np.ndarray], pixels: np.ndarray, label: int,
               lr_shift: int | None = None) -> TrainStep:
    """One on-chip training sample: forward, desire, backward, update (``docs/learning.md``)."""
    if cfg.learning is None:
        raise ValueError(f"config {cfg.name!r} has no [learning] section")
    if not 0 <= label < cfg.layers[-1]:
        raise ValueError(f"label: {label} is out of range, legal range is "
                         f"[0, {cfg.layers[-1] - 1}]")
    lr_shift = cfg.learning.lr_shift if lr_shift is None else lr_shift
    w_inf = inference_weights(cfg, stored)
    run = run_network(cfg, w_inf, np.asarray(pixels)[None, :])
    rasters = [r[0] for r in run.rasters]
    counts = [r.sum(axis=0) for r in rasters]
    L = cfg.n_layers

    desires: list[Desire | None] = [None] * L
    sums: list[np.ndarray | None] = [None] * L
    desires[L - 1] = output_desire(cfg, counts[L], label)
    for layer in range(L - 1, 0, -1):
        sums[layer - 1] = backward_sums(w_inf[layer], desires[layer].coef)
        desires[layer - 1] = hidden_desire(cfg, sums[layer - 1], counts[layer])

    new = []
    for layer in range(L):
        d = desires[layer]
        w = np.asarray(stored[layer], dtype=np.int64).copy()
        cols = np.flatnonzero(d.active)
        if cols.size:
            x = traces(cfg, rasters[layer])
            acc = eligibility(x, rasters[layer + 1][:, cols])
            sub = Desire(d.active[cols], d.sign[cols], d.error[cols])
            w[:, cols] = update(cfg, w[:, cols], sub, acc, lr_shift)
        new.append(w)
    learn = cycles.learn_cycles(cfg, rasters, [d.active for d in desires])
    return TrainStep(run=run, desires=desires, sums=sums, weights=new,
                     infer_cycles=int(run.cycles[0]), learn_cycles=int(learn))
