"""The bit-exact golden model of on-chip desire backpropagation (one training sample).

Pure integer functions that read like the spec in ``docs/learning.md``; ``train_step`` chains
them: the inference pass (:mod:`sw.golden`) on the weights the memory holds, the output
desire from the label, the backward ternary desire pass through every layer, and the
potentiation-only update with the desire's sign. Weights are the *stored* weights
(``weight_bits + F`` bits); inference and the backward pass read ``W_store >> F``.

Fast paths: every matrix product here is an integer sum far below ``2**53`` and is taken
in float BLAS (:func:`sw.lif.int_matmul`), which is exact for such sums; the forward pass
runs each layer over all steps at once (:func:`sw.golden.run_layer`); an update only touches
the presynaptic rows that spiked. ``tests/test_desire.py`` checks all of it against plain
integer loops of the spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from spikeforge.sw import cycles
from spikeforge.sw.golden import NetworkRun, check_pixels, check_raster, encode, predict, run_layer
from spikeforge.sw.lif import exact_matmul, int_matmul


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


def _constants(cfg) -> tuple[int, int, int, int]:
    return (cfg.target_count, cfg.out_desire_threshold, cfg.hidden_desire_threshold,
            cfg.trace_max)


_cached_constants = functools.lru_cache(maxsize=32)(_constants)


def _desire_constants(cfg) -> tuple[int, int, int, int]:
    """``C*``, the output / hidden desire thresholds (derived exactly) and ``trace_max``,
    computed once per (hashable, frozen) config."""
    try:
        return _cached_constants(cfg)
    except TypeError:           # an unhashable config-like object
        return _constants(cfg)


def error_of(cfg, counts: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """``|sign01 * C* - c|``: a neuron's error in units of ``1/C*`` spikes."""
    return np.abs(np.where(sign, _desire_constants(cfg)[0], 0) - counts)


def output_desire(cfg, counts: np.ndarray, label: int) -> Desire:
    """Label neuron: ``E = C* - c``, others ``E = c``; active iff ``E > floor(0.30 C*)``."""
    target, out_threshold, _, _ = _desire_constants(cfg)
    sign = np.arange(len(counts)) == label
    signed_error = np.where(sign, target - counts, counts)
    active = signed_error > out_threshold
    return Desire(active=active, sign=sign, error=error_of(cfg, counts, sign))


def backward_sums(w_inf: np.ndarray, coef_post: np.ndarray) -> np.ndarray:
    """``S_j = sum_i W[j, i] * coef_i`` for every presynaptic ``j`` (exact integers)."""
    return int_matmul(w_inf, np.asarray(coef_post)[:, None])[:, 0]


def hidden_desire(cfg, sums: np.ndarray, counts: np.ndarray) -> Desire:
    """Active iff ``|S| >= ceil(0.05 C* theta)``; sign ``S > 0``; ``E`` from its own count."""
    sign = sums > 0
    active = np.abs(sums) >= _desire_constants(cfg)[2]
    return Desire(active=active, sign=sign, error=error_of(cfg, counts, sign))


def traces(cfg, pre_raster: np.ndarray) -> np.ndarray:
    """Presynaptic traces ``x[t]`` seen by a post spike at step ``t``, ``(T, N_pre)``.

    ``x[0] = 0``; ``x[t] = x[t-1] - (x[t-1] >> k) + ONE * s_pre[t-1]`` (the post layer reads
    ``s_pre[t-1]`` at step ``t``, so the trace includes the spike that can cause it).
    """
    steps, n_pre = pre_raster.shape
    x = np.zeros((steps, n_pre), dtype=np.int64)
    add = np.asarray(pre_raster, dtype=np.int64) * cfg.trace_one
    leak = np.empty(n_pre, dtype=np.int64)
    for t in range(1, steps):
        np.right_shift(x[t - 1], cfg.leak_shift, out=leak)
        np.subtract(x[t - 1], leak, out=x[t])
        x[t] += add[t - 1]
    return x


def eligibility(x: np.ndarray, post_raster: np.ndarray) -> np.ndarray:
    """``acc[j, i] = sum_t s_post[t, i] * x[t, j]`` (exact integers), ``(N_pre, N_post)``."""
    return int_matmul(np.asarray(x).T, post_raster)


def _eligibility(cfg, x: np.ndarray, post_raster: np.ndarray) -> np.ndarray:
    """:func:`eligibility` of traces made by :func:`traces` (``0 <= x <= trace_max``)."""
    return exact_matmul(x.T, post_raster, len(post_raster) * _desire_constants(cfg)[3])


def update(cfg, stored: np.ndarray, desire: Desire, acc: np.ndarray, lr_shift: int):
    """``W_store <- sat(W_store + sign * active * round(acc / 2**lr_shift))``."""
    half = (1 << lr_shift) >> 1 if cfg.learning.rounding == "nearest" else 0
    w = np.asarray(acc, dtype=np.int64) + half
    w >>= lr_shift
    w *= np.where(desire.active, np.where(desire.sign, 1, -1), 0)     # per column
    w += stored
    return np.clip(w, cfg.store_min, cfg.store_max, out=w)


def train_step(cfg, stored: list[np.ndarray], pixels: np.ndarray, label: int,
               lr_shift: int | None = None) -> TrainStep:
    """One on-chip training sample on ``pixels`` ``(N_in,)``: the rate encoder's raster
    through :func:`train_step_raster`."""
    _check_learning(cfg, label)
    pixels = check_pixels(cfg, np.asarray(pixels)[None, :])
    return train_step_raster(cfg, stored, encode(cfg, pixels)[0], label, lr_shift)


def _check_learning(cfg, label: int) -> None:
    if cfg.learning is None:
        raise ValueError(f"config {cfg.name!r} has no [learning] section")
    if not 0 <= label < cfg.layers[-1]:
        raise ValueError(f"label: {label} is out of range, legal range is "
                         f"[0, {cfg.layers[-1] - 1}]")


def train_step_raster(cfg, stored: list[np.ndarray], input_raster: np.ndarray, label: int,
                      lr_shift: int | None = None) -> TrainStep:
    """One on-chip training sample: forward, desire, backward, update (``docs/learning.md``),
    from the input spike raster ``(T, N_in)`` (``input_raster[t, j]``: input ``j`` spikes at
    step ``t``; the rate encoder's for :func:`train_step`, or host-supplied events).

    Only what can change is computed: the first layer reads ``W_store >> F`` of the input
    neurons that spike at all, and an update touches the presynaptic rows that spiked before
    the last step (every other row has ``acc = 0``, so ``round(0) = 0`` leaves it as it is,
    saturated to the stored range like the rest of its active column).
    """
    _check_learning(cfg, label)
    lr_shift = cfg.learning.lr_shift if lr_shift is None else lr_shift
    input_raster = np.asarray(input_raster)
    if input_raster.shape != (cfg.time_steps, cfg.layers[0]):
        raise ValueError(f"input raster: expected shape ({cfg.time_steps}, {cfg.layers[0]}), "
                         f"got {input_raster.shape}")
    batch_rasters = [check_raster(cfg, input_raster[None])]
    for w in stored:
        batch_rasters.append(run_layer(cfg, np.asarray(w), batch_rasters[-1], cfg.frac_bits))
    out_counts = batch_rasters[-1].sum(axis=1)
    run = NetworkRun(rasters=batch_rasters, counts=out_counts,
                     predictions=predict(out_counts),
                     cycles=cycles.sample_cycles(cfg, batch_rasters))
    rasters = [r[0] for r in batch_rasters]
    counts = [r.sum(axis=0) for r in rasters]
    L = cfg.n_layers
    T = cfg.time_steps

    desires: list[Desire | None] = [None] * L
    sums: list[np.ndarray | None] = [None] * L
    desires[L - 1] = output_desire(cfg, counts[L], label)
    for layer in range(L - 1, 0, -1):
        coef = desires[layer].coef
        nz = np.flatnonzero(coef)        # inactive neurons add nothing to any sum
        w_inf = np.asarray(stored[layer])[:, nz].astype(np.int64, copy=False) >> cfg.frac_bits
        sums[layer - 1] = backward_sums(w_inf, coef[nz])
        desires[layer - 1] = hidden_desire(cfg, sums[layer - 1], counts[layer])

    # Only presynaptic rows that spiked before the last step (x = 0 elsewhere) and active
    # columns that spiked have acc != 0; everywhere else round(0) = 0 leaves the weight as it
    # is (saturated to the stored range, like update() does to a whole active column).
    blocks: list[tuple[np.ndarray, np.ndarray] | None] = [None] * L
    for layer in range(L):
        cols = np.flatnonzero(desires[layer].active & rasters[layer + 1].any(axis=0))
        if cols.size:
            live = np.flatnonzero(rasters[layer][:T - 1].any(axis=0))
            if live.size:
                blocks[layer] = (live, cols)
    learning = [layer for layer in range(L) if blocks[layer] is not None]
    if learning:    # the traces of all layers' live rows in one pass of the recursion
        x_all = traces(cfg, np.concatenate([rasters[i][:, blocks[i][0]] for i in learning],
                                           axis=1))
        splits = np.cumsum([blocks[i][0].size for i in learning])[:-1]
        xs = dict(zip(learning, np.split(x_all, splits, axis=1), strict=True))

    new = []
    for layer in range(L):
        d = desires[layer]
        old = np.asarray(stored[layer], dtype=np.int64)
        w = old.copy()
        if not d.active.any():
            new.append(w)
            continue
        in_range = old.min() >= cfg.store_min and old.max() <= cfg.store_max
        if not in_range:
            cols = np.flatnonzero(d.active)
            w[:, cols] = np.clip(old[:, cols], cfg.store_min, cfg.store_max)
        if blocks[layer] is not None:
            live, cols = blocks[layer]
            post = rasters[layer + 1]
            if in_range and 2 * cols.size > post.shape[1]:
                # whole rows (cheaper than a 2-d gather); update() leaves the inactive
                # columns as they are, and the silent active ones get acc = 0
                acc = _eligibility(cfg, xs[layer], post)
                w[live] = update(cfg, old[live], d, acc, lr_shift)
            else:
                acc = _eligibility(cfg, xs[layer], post[:, cols])
                sub = Desire(d.active[cols], d.sign[cols], d.error[cols])
                block = np.ix_(live, cols)
                w[block] = update(cfg, old[block], sub, acc, lr_shift)
        new.append(w)
    learn = cycles.learn_cycles(cfg, rasters, [d.active for d in desires])
    return TrainStep(run=run, desires=desires, sums=sums, weights=new,
                     infer_cycles=int(run.cycles[0]), learn_cycles=int(learn))
