"""The bit-exact golden model of on-chip desire backpropagation (one training sample).

Pure integer functions (state in, state out) that read like the spec in ``docs/learning.md``;
:func:`train_step_raster` chains them: :func:`forward`, the inference pass (:mod:`sw.golden`)
on the weights the memory holds; :func:`backward`, the output desire from the label and the
ternary desire pass through every layer; :func:`update_weights`, the potentiation-only update
with the desire's sign. Weights are the *stored* weights (``weight_bits + F`` bits);
inference and the backward pass read ``W_store >> F``.

Stochastic rounding (``rounding = "stochastic"``) has state: the ``P`` lane LFSRs of the
update unit (:mod:`spikeforge.lfsr`), a tuple of ``P`` ints, exactly the registers the
hardware holds. :func:`train_step` takes it in (``lfsr``; ``None``: the reset states
``cfg.lfsr_seeds``) and returns it in :attr:`TrainStep.lfsr`; every lane steps once per
(presynaptic neuron, active group) pair the hardware processes (:func:`learning_pairs`).
The other rounding modes have no LFSRs: their state is ``()``.

Near eligibility (``eligibility = "near"``): the forward pass also records every LIF
population's near raster (membrane before the threshold test ``>= theta_near``,
:func:`sw.golden.run_layer`), and the update pairs the traces with it instead of the spikes;
everything else (counts, desires, traces, live rows, pairs, cycles) reads the spikes.

Dropout (``dropout_hidden``) has state too: the mask LFSRs, ``P`` per hidden LIF layer
(``mask_lfsr``: a tuple of one tuple of ``P`` ints per layer of ``cfg.dropout_layers``, the
registers ``base`` of :class:`hw.dropout_mask.DropoutMask`; ``()`` without dropout).
:func:`dropout_keeps` makes a training sample's keep-masks from it, :func:`forward` zeroes
the dropped neurons' columns of their layer's raster and near raster (a dropped neuron
never fires and is never near; it never resets either, but its membrane is seen by nothing:
the layer run as usual with those columns zeroed afterwards is exactly the gated one),
:func:`backward` gives them no say in the desires passed down, and :func:`next_mask_lfsr`
moves the state to the next training sample. Inference never sees dropout.

Fast paths: every matrix product here is an integer sum far below ``2**53`` and is taken
in float BLAS (:func:`sw.lif.int_matmul`), which is exact for such sums; the forward pass
is the spec's per-spike loop compiled with numba (:func:`sw.golden.run_layer`); an update
only touches the presynaptic rows that spiked and the active columns that fired (or were
near), in one compiled pass per layer that also makes the traces and the eligibility and
draws the stochastic rounding offsets (:func:`_update_kernel`, the same numbers as
:func:`traces`, :func:`eligibility`, :func:`update` and :func:`rounding_offsets`).
``tests/test_desire.py`` checks all of it against plain integer loops of the spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from spikeforge import lfsr as lfsr_mod
from spikeforge.config import DROPOUT_BITS, DROPOUT_STEPS
from spikeforge.sw import cycles
from spikeforge.sw.golden import NetworkRun, check_pixels, check_raster, decide, encode, run_layer
from spikeforge.sw.lif import int_matmul


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
    populations (``sums[l]``, ``None`` for the output layer), the new stored weights, the
    cycle counts of the inference and learning parts, the lane LFSRs after the sample
    (``lfsr``: ``P`` ints for stochastic rounding, else ``()``), dropout's mask LFSRs after
    it (``mask_lfsr``, :func:`check_mask_lfsr`; ``()`` without dropout) and the sample's
    keep-masks (``keeps[l]``: LIF layer ``l``'s ``(N_post,)`` bool, ``None`` where nothing is
    dropped)."""

    run: NetworkRun
    desires: list[Desire]
    sums: list[np.ndarray | None]
    weights: list[np.ndarray]
    infer_cycles: int
    learn_cycles: int
    lfsr: tuple[int, ...] = ()
    mask_lfsr: tuple[tuple[int, ...], ...] = ()
    keeps: list[np.ndarray | None] | None = None

    @property
    def cycles(self) -> int:
        return self.infer_cycles + self.learn_cycles


def inference_weights(cfg, stored: list[np.ndarray]) -> list[np.ndarray]:
    """``W_store >> F`` (floor): the ``weight_bits`` weights the LIF engines integrate."""
    return [np.asarray(w, dtype=np.int64) >> cfg.frac_bits for w in stored]


def _constants(cfg) -> tuple[int, int, int]:
    return cfg.target_count, cfg.out_desire_threshold, cfg.hidden_desire_threshold


_cached_constants = functools.lru_cache(maxsize=32)(_constants)


def _desire_constants(cfg) -> tuple[int, int, int]:
    """``C*`` and the output / hidden desire thresholds (derived exactly), computed once
    per (hashable, frozen) config."""
    try:
        return _cached_constants(cfg)
    except TypeError:           # an unhashable config-like object
        return _constants(cfg)


def error_of(cfg, counts: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """``|sign01 * C* - c|``: a neuron's error in units of ``1/C*`` spikes."""
    return np.abs(np.where(sign, _desire_constants(cfg)[0], 0) - counts)


def output_desire(cfg, counts: np.ndarray, label: int) -> Desire:
    """Label neuron: ``E = C* - c``, others ``E = c``; active iff ``E > floor(0.30 C*)``."""
    target, out_threshold, _ = _desire_constants(cfg)
    sign = np.arange(len(counts)) == label
    signed_error = np.where(sign, target - counts, counts)
    active = signed_error > out_threshold
    return Desire(active=active, sign=sign, error=error_of(cfg, counts, sign))


def backward_sums(w_inf: np.ndarray, coef_post: np.ndarray) -> np.ndarray:
    """``S_j = sum_i W[j, i] * coef_i`` for every presynaptic ``j`` (exact integers)."""
    return int_matmul(w_inf, np.asarray(coef_post)[:, None])[:, 0]


def hidden_desire(cfg, sums: np.ndarray, counts: np.ndarray) -> Desire:
    """Active iff ``|S| >= ceil(0.05 C* theta)``; sign ``S > 0``; ``E`` from its own count.
    With ``hidden_gate = "error"`` also only while the count is short of the desire:
    ``c < C*`` for the sign +1, ``c > 0`` for -1 (the output's ``E > 0``)."""
    target, _, hidden_threshold = _desire_constants(cfg)
    sign = sums > 0
    active = np.abs(sums) >= hidden_threshold
    if cfg.learning.hidden_gate == "error":
        active &= np.where(sign, counts < target, counts > 0)
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


def update(cfg, stored: np.ndarray, desire: Desire, acc: np.ndarray, lr_shift: int,
           offsets: np.ndarray | None = None):
    """``W_store <- sat(W_store + sign * active * round(acc / 2**lr_shift))``.

    ``round(acc / 2**s)`` is ``(acc + h) >> s``: ``h = 2**(s-1)`` (``nearest``), ``0``
    (``floor``), or ``offsets`` (``stochastic``: ``r``, one per cell, ``0 <= r < 2**s``,
    :func:`rounding_offsets`) with ``s = min(lr_shift, cfg.max_rounding_shift)`` (the
    hardware's clamp).
    """
    if cfg.learning.rounding == "stochastic":
        if offsets is None:
            raise ValueError("offsets: stochastic rounding needs the LFSR draws "
                             "(rounding_offsets)")
        lr_shift = min(lr_shift, cfg.max_rounding_shift)
        w = np.asarray(acc, dtype=np.int64) + offsets
    else:
        half = (1 << lr_shift) >> 1 if cfg.learning.rounding == "nearest" else 0
        w = np.asarray(acc, dtype=np.int64) + half
    w >>= lr_shift
    w *= np.where(desire.active, np.where(desire.sign, 1, -1), 0)     # per column
    w += stored
    return np.clip(w, cfg.store_min, cfg.store_max, out=w)


def train_step(cfg, stored: list[np.ndarray], pixels: np.ndarray, label: int,
               lr_shift: int | None = None, lfsr=None, mask_lfsr=None) -> TrainStep:
    """One on-chip training sample on ``pixels`` ``(N_in,)``: the rate encoder's raster
    through :func:`train_step_raster`."""
    _check_learning(cfg, label)
    pixels = check_pixels(cfg, np.asarray(pixels)[None, :])
    return train_step_raster(cfg, stored, encode(cfg, pixels)[0], label, lr_shift, lfsr,
                             mask_lfsr)


def train_steps(cfg, stored: list[np.ndarray], pixels: np.ndarray, labels,
                lr_shift: int | None = None, lfsr=None, mask_lfsr=None) -> list[TrainStep]:
    """:func:`train_step` on each of ``pixels`` ``(B, N_in)`` in turn, each starting from the
    weights, lane LFSRs and dropout mask LFSRs the one before left (the first from
    ``stored``, ``lfsr`` and ``mask_lfsr``, ``None``: the reset states): the golden side of
    an on-chip training run."""
    steps, weights = [], stored
    for x, y in zip(pixels, labels, strict=True):
        steps.append(train_step(cfg, weights, x, int(y), lr_shift, lfsr, mask_lfsr))
        weights, lfsr, mask_lfsr = steps[-1].weights, steps[-1].lfsr, steps[-1].mask_lfsr
    return steps


def check_lfsr(cfg, lfsr) -> tuple[int, ...]:
    """The lane LFSR state a training sample starts from: ``lfsr`` checked (``P`` states
    in ``[1, 2^WIDTH - 1]`` for stochastic rounding, ``()`` otherwise), or the reset states
    ``cfg.lfsr_seeds`` for ``None``."""
    if lfsr is None:
        return cfg.lfsr_seeds
    state = tuple(int(s) for s in lfsr)
    if cfg.learning.rounding != "stochastic":
        if state:
            raise ValueError(f"lfsr: {cfg.learning.rounding} rounding has no LFSRs, expected "
                             f"() or None, got {len(state)} states")
        return state
    _check_lane_states("lfsr", state, cfg.lanes)
    return state


def _check_lane_states(name: str, lanes: tuple[int, ...], n_lanes: int, per: str = "") -> None:
    """``n_lanes`` LFSR states, each in ``[1, 2^WIDTH - 1]``, or ValueError naming ``name``."""
    if len(lanes) != n_lanes:
        raise ValueError(f"{name}: expected {n_lanes} lane states (P){per}, got {len(lanes)}")
    bad = [s for s in lanes if not 1 <= s <= lfsr_mod.MASK]
    if bad:
        raise ValueError(f"{name}: state {bad[0]} is out of range, legal range is "
                         f"[1, {lfsr_mod.MASK}]")


def check_mask_lfsr(cfg, mask_lfsr) -> tuple[tuple[int, ...], ...]:
    """Dropout's mask LFSR state a training sample starts from: ``mask_lfsr`` checked (one
    tuple of ``P`` states in ``[1, 2^WIDTH - 1]`` per layer of ``cfg.dropout_layers``; ``()``
    without dropout), or the reset states ``cfg.dropout_seeds`` for ``None``."""
    if mask_lfsr is None:
        return cfg.dropout_seeds
    state = tuple(tuple(int(s) for s in lanes) for lanes in mask_lfsr)
    want = len(cfg.dropout_layers)
    if len(state) != want:
        raise ValueError(f"mask_lfsr: expected {want} layers of mask LFSR states (one per "
                         f"hidden LIF layer with dropout), got {len(state)}")
    for lanes in state:
        _check_lane_states("mask_lfsr", lanes, cfg.lanes, " per layer")
    return state


def _mask_states(cfg, layer: int, lanes, groups: int) -> np.ndarray:
    """The mask LFSR states of LIF layer ``layer``'s groups ``0 .. groups - 1`` in the
    training sample whose lane states (group 0's) are ``lanes``: ``(groups, P)``, group ``g``
    ``DROPOUT_BITS * g`` steps on."""
    steps = DROPOUT_BITS * np.arange(groups, dtype=np.int64)[:, None]
    return lfsr_mod.advance(np.asarray(lanes, dtype=np.int64)[None, :], steps)


def dropout_keeps(cfg, mask_lfsr) -> list[np.ndarray | None]:
    """The keep-masks of a training sample whose mask LFSR state is ``mask_lfsr``
    (:func:`check_mask_lfsr`), one entry per LIF layer: for each of ``cfg.dropout_layers``
    ``l``, ``(N_post,)`` bool, neuron ``g*P + p`` kept iff ``(state & 0xFF) >=
    cfg.dropout_threshold``, ``state`` lane ``p``'s ``8 g`` steps after ``mask_lfsr[l][p]``;
    ``None`` for the other layers (the output layer: nothing dropped)."""
    keeps: list[np.ndarray | None] = [None] * cfg.n_layers
    for layer, lanes in zip(cfg.dropout_layers, mask_lfsr, strict=True):
        states = _mask_states(cfg, layer, lanes, cfg.groups(layer))
        keep = (states & (DROPOUT_STEPS - 1)) >= cfg.dropout_threshold
        keeps[layer] = keep.reshape(-1)[:cfg.layers[layer + 1]]
    return keeps


def next_mask_lfsr(cfg, mask_lfsr) -> tuple[tuple[int, ...], ...]:
    """The mask LFSR state after a training sample: each layer's lanes ``8 G_l`` steps on."""
    return tuple(tuple(int(s) for s in lfsr_mod.advance(lanes, DROPOUT_BITS * cfg.groups(layer)))
                 for layer, lanes in zip(cfg.dropout_layers, mask_lfsr, strict=True))


def _check_learning(cfg, label: int) -> None:
    if cfg.learning is None:
        raise ValueError(f"config {cfg.name!r} has no [learning] section")
    if not 0 <= label < cfg.layers[-1]:
        raise ValueError(f"label: {label} is out of range, legal range is "
                         f"[0, {cfg.layers[-1] - 1}]")


def train_step_raster(cfg, stored: list[np.ndarray], input_raster: np.ndarray, label: int,
                      lr_shift: int | None = None, lfsr=None, mask_lfsr=None) -> TrainStep:
    """One on-chip training sample: forward, desire, backward, update (``docs/learning.md``).

    Parameters
    ----------
    cfg : NetworkConfig
        A config with a ``[learning]`` section.
    stored : list of ndarray
        The stored weights ``(N_pre, N_post)`` of every LIF layer (``weight_bits + F`` bits).
    input_raster : ndarray
        ``(T, N_in)`` bool: ``input_raster[t, j]`` is input ``j`` spiking at step ``t`` (the
        rate encoder's for :func:`train_step`, or host-supplied events).
    label : int
        The class, ``0 <= label < N_out``.
    lr_shift : int or None
        The update's right shift; default ``cfg.learning.lr_shift``.
    lfsr : tuple of int or None
        Stochastic rounding: the ``P`` lane LFSR states before the sample (``None``: the
        reset states, ``cfg.lfsr_seeds``); the other modes: ``None`` or ``()``.
    mask_lfsr : tuple of tuple of int or None
        Dropout: the mask LFSR states before the sample (:func:`check_mask_lfsr`; ``None``:
        the reset states, ``cfg.dropout_seeds``); without dropout ``None`` or ``()``.

    Returns
    -------
    TrainStep
        The forward run (a batch of one), the desires and backward sums, the new stored
        weights, the inference and learning cycle counts, the lane LFSRs and mask LFSRs after
        it and the sample's keep-masks.
    """
    _check_learning(cfg, label)
    lfsr = check_lfsr(cfg, lfsr)
    mask_lfsr = check_mask_lfsr(cfg, mask_lfsr)
    keeps = dropout_keeps(cfg, mask_lfsr) if mask_lfsr else None
    lr_shift = cfg.learning.lr_shift if lr_shift is None else lr_shift
    run = forward(cfg, stored, input_raster, keeps)
    rasters = [r[0] for r in run.rasters]
    near = None if run.near is None else [None if n is None else n[0] for n in run.near]
    desires, sums = backward(cfg, stored, [r.sum(axis=0) for r in rasters], label, keeps)
    new, lfsr = update_weights(cfg, stored, rasters, desires, lr_shift, lfsr, near)
    learn = cycles.learn_cycles(cfg, rasters, [d.active for d in desires])
    return TrainStep(run=run, desires=desires, sums=sums, weights=new,
                     infer_cycles=int(run.cycles[0]), learn_cycles=int(learn), lfsr=lfsr,
                     mask_lfsr=next_mask_lfsr(cfg, mask_lfsr), keeps=keeps)


def forward(cfg, stored: list[np.ndarray], input_raster: np.ndarray,
            keeps: list[np.ndarray | None] | None = None) -> NetworkRun:
    """The inference pass of one sample on the weights the memory holds (``W_store >> F``).

    Parameters
    ----------
    cfg : NetworkConfig
    stored : list of ndarray
        Stored weights of every LIF layer.
    input_raster : ndarray
        ``(T, N_in)`` input spikes.
    keeps : list of (ndarray or None) or None
        Dropout (a training sample): per LIF layer the keep-mask of its neurons
        (:func:`dropout_keeps`); a dropped neuron's column of the layer's raster (and near
        raster) is zeroed before the next layer reads it.

    Returns
    -------
    NetworkRun
        A batch of one sample: rasters ``(1, T, N_p)`` of every population, the output
        counts, the prediction and the inference cycles (:func:`sw.cycles.sample_cycles`);
        with near eligibility also the near rasters (``near``, :func:`sw.golden.run_layer`).
        The first layer reads only the rows of inputs that spike at all.
    """
    input_raster = np.asarray(input_raster)
    if input_raster.shape != (cfg.time_steps, cfg.layers[0]):
        raise ValueError(f"input raster: expected shape ({cfg.time_steps}, {cfg.layers[0]}), "
                         f"got {input_raster.shape}")
    batch_rasters = [check_raster(cfg, input_raster[None])]
    near = [None] if cfg.near_eligibility else None
    for layer, w in enumerate(stored):
        if near is None:
            raster = run_layer(cfg, np.asarray(w), batch_rasters[-1], cfg.frac_bits)
        else:
            raster, n = run_layer(cfg, np.asarray(w), batch_rasters[-1], cfg.frac_bits,
                                  near_threshold=cfg.near_threshold)
            near.append(n)
        if keeps is not None and keeps[layer] is not None:
            raster[:, :, ~keeps[layer]] = False         # dropped: never fires ...
            if near is not None:
                near[-1][:, :, ~keeps[layer]] = False   # ... nor is near
        batch_rasters.append(raster)
    out_counts = batch_rasters[-1].sum(axis=1)
    return NetworkRun(rasters=batch_rasters, counts=out_counts,
                      predictions=decide(cfg, batch_rasters[-1]),
                      cycles=cycles.sample_cycles(cfg, batch_rasters), near=near)


def backward(cfg, stored: list[np.ndarray], counts: list[np.ndarray], label: int,
             keeps: list[np.ndarray | None] | None = None
             ) -> tuple[list[Desire], list[np.ndarray | None]]:
    """The output desire from the label, then the ternary desire pass down to the first
    hidden population, on the pre-update weights (steps 1 and 2 of ``docs/learning.md``).

    Parameters
    ----------
    cfg : NetworkConfig
    stored : list of ndarray
        Stored weights; the backward sums multiply ``W_store >> F``.
    counts : list of ndarray
        Spike counts ``(N_p,)`` of every population (``counts[0]``: the inputs).
    label : int
        The class.
    keeps : list of (ndarray or None) or None
        Dropout: per LIF layer the keep-mask of its neurons; a dropped neuron's coefficient
        is 0 in the sums passed further down (its own desire is computed as usual).

    Returns
    -------
    desires : list of Desire
        ``desires[l]``: the desire of LIF layer ``l``'s population.
    sums : list of ndarray or None
        ``sums[l]``: the backward sums ``S`` that made ``desires[l]``; ``None`` for the
        output layer.
    """
    L = cfg.n_layers
    desires: list[Desire | None] = [None] * L
    sums: list[np.ndarray | None] = [None] * L
    desires[L - 1] = output_desire(cfg, counts[L], label)
    for layer in range(L - 1, 0, -1):
        coef = desires[layer].coef
        if keeps is not None and keeps[layer] is not None:
            coef = np.where(keeps[layer], coef, 0)      # a dropped neuron passes nothing down
        nz = np.flatnonzero(coef)        # inactive neurons add nothing to any sum
        w_inf = np.asarray(stored[layer])[:, nz].astype(np.int64, copy=False) >> cfg.frac_bits
        sums[layer - 1] = backward_sums(w_inf, coef[nz])
        desires[layer - 1] = hidden_desire(cfg, sums[layer - 1], counts[layer])
    return desires, sums


def update_weights(cfg, stored: list[np.ndarray], rasters: list[np.ndarray],
                   desires: list[Desire], lr_shift: int, lfsr: tuple[int, ...] = (),
                   near: list[np.ndarray | None] | None = None,
                   ) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Traces, eligibility and the update of every LIF layer (steps 3 to 5 of
    ``docs/learning.md``): :func:`update` where it can change a weight.

    Parameters
    ----------
    cfg : NetworkConfig
    stored : list of ndarray
        Stored weights before the update (left unchanged).
    rasters : list of ndarray
        ``(T, N_p)`` spikes of every population.
    desires : list of Desire
        The desire of every LIF layer (:func:`backward`).
    lr_shift : int
        The update's right shift.
    lfsr : tuple of int
        Stochastic rounding: the lane LFSRs before the update (``()`` for the other modes).
    near : list of ndarray or None
        Near eligibility: the ``(T, N_p)`` near rasters of the populations (``near[0]``
        unused), the eligibility's post term in place of the spikes ``rasters[l + 1]``;
        ``None``: the spikes (``eligibility = "spike"``).

    Returns
    -------
    weights : list of ndarray
        New stored weights (copies, of the type of ``stored``: int64 for non-integer
        input). Only presynaptic rows that spiked before the last
        step (``x = 0`` elsewhere) and active columns whose post term (spikes or near
        raster) is set at some step have ``acc != 0``;
        everywhere else ``round(0) = 0`` (also ``(0 + r) >> s`` with ``r < 2**s``) leaves a
        weight as it is, saturated to the stored range like :func:`update` does to a whole
        active column.
    lfsr : tuple of int
        The lane LFSRs after the update: stepped once per pair of :func:`learning_pairs`.
    """
    posts = rasters if near is None else [None, *near[1:]]    # the post term, per population
    draws: list[tuple | None] = [None] * cfg.n_layers
    if lfsr:
        pairs = learning_pairs(cfg, rasters, desires)
        where = lfsr_mod.positions()[np.asarray(lfsr, dtype=np.int64)].astype(np.int64)
        first = 0
        for layer in reversed(range(cfg.n_layers)):       # the hardware's layer order
            live, groups = pairs[layer]
            group_index = np.full(cfg.groups(layer), -1, dtype=np.int64)
            group_index[groups] = np.arange(groups.size)
            draws[layer] = (where, first, group_index, groups.size)
            first += live.size * groups.size
        lfsr = tuple(int(s) for s in lfsr_mod.advance(lfsr, first))
    new = [_update_layer(cfg, stored[layer], desires[layer], rasters[layer], posts[layer + 1],
                         lr_shift, draws[layer])
           for layer in range(cfg.n_layers)]
    return new, lfsr


def learning_pairs(cfg, rasters: list[np.ndarray],
                   desires: list[Desire]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per LIF layer ``l``, the pairs the hardware's update processes: ``(live, groups)``,
    the presynaptic neurons that spiked in steps ``0 .. T-2`` and the groups of ``P``
    postsynaptic neurons holding an active one, both ascending. The hardware takes layers
    ``L-1 .. 0``, within a layer ``live`` in order and for each of them ``groups`` in order:
    ``live.size * groups.size`` pairs (:func:`sw.cycles.learn_cycles` counts them too)."""
    T, P = cfg.time_steps, cfg.lanes
    out = []
    for layer in range(cfg.n_layers):
        active = np.zeros(cfg.groups(layer) * P, dtype=bool)
        active[:cfg.layers[layer + 1]] = desires[layer].active
        groups = np.flatnonzero(active.reshape(-1, P).any(axis=1))
        live = (np.flatnonzero(rasters[layer][:T - 1].any(axis=0)) if groups.size
                else np.zeros(0, dtype=np.int64))
        out.append((live, groups))
    return out


def rounding_offsets(cfg, layer: int, lfsr: tuple[int, ...], first: int, rows: int,
                     groups: np.ndarray, lr_shift: int) -> np.ndarray:
    """The stochastic rounding offsets of LIF layer ``layer``'s pairs, ``(rows, N_post)``.

    Pair ``n`` of the layer (``n = a * A + b`` for the ``a``-th live presynaptic neuron and
    the ``b``-th of the ``A`` active ``groups``) is the ``first + n``-th pair since the lane
    states ``lfsr``; lane ``p`` of it rounds column ``g P + p`` with ``r_p = state_p &
    (2**s - 1)``, ``state_p`` its LFSR ``first + n`` steps after ``lfsr[p]`` and ``s =
    min(lr_shift, cfg.max_rounding_shift)``. Columns of the other groups get 0 (their
    neurons are not active: nothing moves them). One table look-up for the whole layer.
    """
    P, A = cfg.lanes, len(groups)
    G, n_post = cfg.groups(layer), cfg.layers[layer + 1]
    if not (rows and A):
        return np.zeros((rows, n_post), dtype=np.int64)
    shift = min(lr_shift, cfg.max_rounding_shift)
    where = lfsr_mod.positions()[np.asarray(lfsr, dtype=np.int64)].astype(np.int64)
    n = first + np.arange(rows * A, dtype=np.int64).reshape(rows, A, 1)
    states = np.take(lfsr_mod.sequence(), n + where, mode="wrap").astype(np.int64)
    states &= (1 << shift) - 1
    if A < G:                   # the inactive groups' columns: 0
        out = np.zeros((rows, G, P), dtype=np.int64)
        out[:, groups, :] = states
        states = out
    return states.reshape(rows, G * P)[:, :n_post]


def _update_layer(cfg, stored: np.ndarray, desire: Desire, pre: np.ndarray, post: np.ndarray,
                  lr_shift: int, draws: tuple | None) -> np.ndarray:
    """One LIF layer's new stored weights (:func:`_update_kernel`): its active columns
    saturated to the stored range, and :func:`update` with the eligibility of the traces of
    ``pre`` (the presynaptic spikes ``(T, N_pre)``) and ``post`` (the eligibility's post term
    ``(T, N_post)``, the layer's spikes or near raster); ``draws``: stochastic rounding's
    ``(lane positions, first pair, group index, active groups)`` from
    :func:`update_weights`, the offsets of :func:`rounding_offsets`, or ``None``."""
    old = np.asarray(stored)
    if old.dtype.kind != "i":
        old = old.astype(np.int64)
    if not desire.active.any():
        return old.copy()
    if draws is None:
        shift = lr_shift
        half = (1 << lr_shift) >> 1 if cfg.learning.rounding == "nearest" else 0
        where = group_index = _NO_DRAWS
        first = groups = 0
    else:
        shift = min(lr_shift, cfg.max_rounding_shift)
        half = 0
        where, first, group_index, groups = draws
    w = np.empty_like(old)
    _update_kernel(old, w, np.ascontiguousarray(pre, dtype=np.bool_),
                   np.ascontiguousarray(post, dtype=np.bool_), desire.active, desire.sign,
                   cfg.leak_shift, cfg.trace_one, shift, half, draws is not None,
                   lfsr_mod.sequence(), where, first, group_index, groups, cfg.lanes,
                   cfg.store_min, cfg.store_max)
    return w


#: The draws argument of :func:`_update_kernel` without stochastic rounding.
_NO_DRAWS = np.zeros(0, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _update_kernel(old, w, pre, post, active, sign, leak_shift, trace_one, shift, half,
                   stochastic, sequence, where, first, group_index, groups, lanes, lo,
                   hi):  # pragma: no cover - compiled; its twins: traces, eligibility, update
    """One layer's update in one pass, written into ``w``: ``w = old`` with the ``active``
    columns clipped to ``[lo, hi]``; then for every presynaptic row ``j`` that spiked in
    steps ``0 .. T-2`` (the ``a``-th such row) its trace ``x[t]`` (:func:`traces`) and, for
    every active column ``i`` whose post term is set at some step,
    ``w[j, i] = clip(old[j, i] + s_i * ((acc + r) >> shift), lo, hi)`` with
    ``acc = sum_t post[t, i] x[t]`` (:func:`eligibility`), ``s_i = +-1`` the desire's sign
    and ``r = half``, or (``stochastic``) lane ``p = i % P``'s LFSR state
    ``first + a * groups + group_index[i // P]`` steps on from its position ``where[p]``,
    masked to ``shift`` bits (:func:`rounding_offsets`)."""
    steps, n_pre = pre.shape
    n_post = old.shape[1]
    for j in range(n_pre):
        for i in range(n_post):
            x = old[j, i]
            w[j, i] = min(max(x, lo), hi) if active[i] else x
    cols = np.empty(n_post, dtype=np.int64)
    n_cols = 0
    for i in range(n_post):
        if active[i]:
            for t in range(steps):
                if post[t, i]:
                    cols[n_cols] = i
                    n_cols += 1
                    break
    if n_cols == 0:
        return
    post_t = np.zeros((steps, n_cols), dtype=np.int64)       # the active columns' post term
    for c in range(n_cols):
        for t in range(steps):
            post_t[t, c] = post[t, cols[c]]
    period = sequence.size
    mask = (1 << shift) - 1
    draw = np.zeros(n_cols, dtype=np.int64)      # column c's sequence position at pair 0
    if stochastic:
        for c in range(n_cols):
            draw[c] = (where[cols[c] % lanes] + group_index[cols[c] // lanes]) % period
    x = np.zeros(steps, dtype=np.int64)
    acc = np.zeros(n_cols, dtype=np.int64)
    a = 0
    for j in range(n_pre):
        live = False
        for t in range(steps - 1):
            if pre[t, j]:
                live = True
                break
        if not live:
            continue
        acc[:] = 0
        for t in range(1, steps):
            x[t] = x[t - 1] - (x[t - 1] >> leak_shift) + (trace_one if pre[t - 1, j] else 0)
            xt = x[t]
            if xt:
                for c in range(n_cols):
                    acc[c] += post_t[t, c] * xt
        pair = first + a * groups
        for c in range(n_cols):
            col = cols[c]
            r = half
            if stochastic:
                k = draw[c] + pair
                while k >= period:
                    k -= period
                r = sequence[k] & mask
            step = (acc[c] + r) >> shift
            moved = old[j, col] + (step if sign[col] else -step)
            w[j, col] = min(max(moved, lo), hi)
        a += 1
