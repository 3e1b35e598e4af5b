"""The bit-exact golden model of ``hw.network.Network`` (inference).

Pure functions over integer numpy arrays, vectorised over a batch. ``run_network`` returns
every spike of every layer, the output spike counts, the prediction and the cycle count the
RTL takes; ``run_raster`` does the same from a given input raster. Semantics
(``docs/number_formats.md``):

* ``s_0[t]`` = rate encoder output at step ``t``, ``t = 0 .. T-1`` (or the given raster);
* LIF layer ``l`` at step ``t`` integrates ``s_{l-1}[t-1]`` (one-step delay per layer); at
  ``t = 0`` its membranes are cleared and it cannot fire;
* prediction = the unique argmax of the output spike counts, ``-1`` on a tie; with
  ``tie_break = "first_spike"`` a tie goes to the neuron that fired first (:func:`decide`).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from spikeforge.sw import cycles, exit_decoder
from spikeforge.sw.encode import rate_encode
from spikeforge.sw.exit_decoder import DecoderRun, DecoderWeights


@dataclass
class NetworkRun:
    """Everything one batch of samples did.

    ``rasters[0]``: encoder spikes ``(B, T, N_in)``; ``rasters[l]``: LIF layer ``l`` spikes
    ``(B, T, N_l)``; ``counts``: output spike counts ``(B, N_out)``; ``predictions``:
    ``(B,)`` with ``-1`` for no unique winner; ``cycles``: ``(B,)`` RTL cycles per sample;
    ``near``: the near rasters of a training pass with near eligibility (``near[l]`` like
    ``rasters[l]``; ``near[0] = None``, the encoder has none), else ``None``; ``decoder``:
    where the decoder on the chip exited, its scores and decisions (decoded runs only:
    the rasters then end at each sample's exit step and ``predictions`` are the decisions).
    """

    rasters: list[np.ndarray]
    counts: np.ndarray
    predictions: np.ndarray
    cycles: np.ndarray
    near: list[np.ndarray | None] | None = None
    decoder: DecoderRun | None = None


def predict(counts: np.ndarray) -> np.ndarray:
    """Unique argmax of spike counts per row; ``-1`` where the maximum is shared."""
    best = counts.max(axis=1, keepdims=True)
    unique = (counts == best).sum(axis=1) == 1
    return np.where(unique, counts.argmax(axis=1), -1)


def first_spike_steps(raster: np.ndarray) -> np.ndarray:
    """The step of each neuron's first spike in a raster ``(B, T, N)``: ``(B, N)``, ``T``
    for a neuron that never fires."""
    raster = np.asarray(raster, dtype=bool)
    return np.where(raster.any(axis=1), raster.argmax(axis=1), raster.shape[1])


def decide(cfg, out_raster: np.ndarray) -> np.ndarray:
    """The network's predictions from the output raster ``(B, T, N_out)``: the unique
    argmax of the spike counts, ``-1`` where the largest count is shared; with
    ``cfg.tie_break == "first_spike"`` the unique argmax of ``(count, -first step)``
    (lexicographic: among the largest counts, the earliest first spike; ``-1`` where that
    is shared too, e.g. when no output neuron fires)."""
    counts = np.asarray(out_raster).sum(axis=1)
    if getattr(cfg, "tie_break", "none") == "none":
        return predict(counts)
    steps = out_raster.shape[1]
    return predict(counts * (steps + 1) + steps - first_spike_steps(out_raster))


def run_layer(cfg, weights: np.ndarray, pre_raster: np.ndarray,
              frac_bits: int = 0, workers: int = 1, near_threshold: int | None = None):
    """All ``T`` steps of one LIF layer: input raster ``(B, T, N_pre)`` -> ``(B, T, N_post)``.

    The layer reads ``weights >> frac_bits`` (``frac_bits = F`` runs it straight from stored
    weights). Exactly :func:`sw.lif.lif_step` at every step ``t >= 1`` on the previous
    population's step ``t - 1``: the spec's loop (one saturating add per input spike, in
    ascending presynaptic index, then threshold, subtract-reset and leak), compiled
    (:func:`_lif_layer_kernel`). Step 0 clears the membranes and cannot fire.

    ``workers > 1`` runs slices of the batch on that many threads (the compiled loop
    releases the GIL; the slices write disjoint rows, so the result is the same).

    ``near_threshold`` (``theta_near``, near eligibility, ``docs/learning.md``): also return
    the near raster ``(B, T, N_post)``, ``near[b, t, i] = V >= theta_near`` with ``V`` the
    membrane of step ``t`` after its integration and before the threshold test (the value
    the spike test reads; 0 at ``t = 0``): ``(spikes, near)`` instead of the spikes alone.
    """
    pre_raster = np.ascontiguousarray(pre_raster, dtype=bool)
    batch, steps, n_pre = pre_raster.shape
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] != n_pre:
        raise ValueError(f"weights: expected shape ({n_pre}, N_post), got {w.shape}")
    # any signed integers the stored formats allow (<= 32 bits) are read as they are
    w = np.ascontiguousarray(w, dtype=w.dtype if w.dtype.kind == "i" else np.int64)
    n_post = w.shape[1]
    out = np.zeros((batch, steps, n_post), dtype=bool)
    want_near = near_threshold is not None
    near = np.zeros_like(out) if want_near else np.zeros((1, 1, 1), dtype=bool)
    args = (w, frac_bits, cfg.threshold, cfg.leak_shift, cfg.v_min, cfg.v_max,
            near_threshold if want_near else cfg.threshold, want_near)
    like = np.zeros(0, dtype=membrane_type(cfg, w))
    size = max(1, -(-batch // max(1, workers)))       # samples per thread
    slices = [slice(b, b + size) for b in range(0, batch, size)]
    if workers > 1 and len(slices) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda s: _lif_layer_kernel(
                pre_raster[s], *args, out[s], near[s] if want_near else near, like), slices))
    elif batch:
        _lif_layer_kernel(pre_raster, *args, out, near, like)
    return (out, near) if want_near else out


@numba.njit(cache=True, nogil=True)
def _lif_layer_kernel(pre, w, frac_bits, theta, leak_shift, v_min, v_max, theta_near,
                      want_near, out, near, like):  # pragma: no cover - compiled; twin: lif_step
    """The spec's loop over a batch (``docs/number_formats.md`` §LIF): for each sample and
    step ``t >= 1``, ``V <- sat(V + (W[j] >> frac_bits))`` for every ``j`` with
    ``pre[b, t - 1, j]`` in ascending ``j``; then ``near = V >= theta_near``, ``s = V >=
    theta``, ``V -= theta s``, ``V -= V >> leak_shift``. Writes ``out`` (and ``near`` when
    ``want_near``). Membranes and the sum are of ``like``'s integer type: ``int32`` where
    :func:`membrane_type` finds it exact (twice the SIMD width of ``int64``), else ``int64``."""
    batch, steps, n_pre = pre.shape
    n_post = w.shape[1]
    vt = like.dtype.type
    lo, hi, shift = vt(v_min), vt(v_max), vt(frac_bits)
    v = np.zeros(n_post, dtype=like.dtype)
    for b in range(batch):
        v[:] = 0
        for t in range(1, steps):
            for j in range(n_pre):
                if pre[b, t - 1, j]:
                    row = w[j]
                    for i in range(n_post):
                        v[i] = min(max(vt(v[i] + vt(row[i] >> shift)), lo), hi)
            for i in range(n_post):
                x = v[i]
                if want_near:
                    near[b, t, i] = x >= theta_near
                if x >= theta:
                    out[b, t, i] = True
                    x -= theta
                v[i] = x - (x >> leak_shift)


def membrane_type(cfg, weights: np.ndarray) -> type:
    """``np.int32`` if every membrane, weight and their sum fit it (``membrane_bits <= 30``
    and weights of at most 16 bits), else ``np.int64``: the type :func:`_lif_layer_kernel`
    adds in. Trained weights held as ``int16`` (:attr:`NetworkConfig.store_dtype`) take the
    ``int32`` path."""
    small = cfg.membrane_bits <= 30 and weights.dtype.itemsize <= 2
    return np.int32 if small else np.int64


def run_layers(cfg, weights: list[np.ndarray], input_raster: np.ndarray,
               workers: int = 1) -> list[np.ndarray]:
    """Run all LIF layers on an input raster ``(B, T, N_in)``; returns all rasters.
    ``workers``: threads per layer (:func:`run_layer`)."""
    rasters = [np.asarray(input_raster).astype(bool)]
    for w in weights:
        rasters.append(run_layer(cfg, np.asarray(w), rasters[-1], workers=workers))
    return rasters


def check_pixels(cfg, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as an array ``(B, N_in)`` of unsigned ``pixel_bits`` values, or ValueError."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.layers[0]:
        raise ValueError(f"pixels: expected shape (B, {cfg.layers[0]}), got {pixels.shape}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > cfg.pixel_max:
        raise ValueError(f"pixels: values must lie in [0, {cfg.pixel_max}]")
    return pixels


#: Largest encoder look-up table (pixel levels x steps) :func:`encode` builds.
ENCODER_TABLE_MAX = 1 << 22


@functools.lru_cache(maxsize=8)
def _encoder_table(levels: int, steps: int, theta_in: int) -> np.ndarray:
    """:func:`sw.encode.rate_encode` of every pixel level, ``(levels, T)`` bool."""
    table = rate_encode(np.arange(levels)[None, :], steps, theta_in)[0].T
    table = np.ascontiguousarray(table)
    table.setflags(write=False)
    return table


def encode(cfg, pixels: np.ndarray) -> np.ndarray:
    """The rate encoder's raster ``(B, T, N_in)`` of checked ``pixels``: exactly
    :func:`sw.encode.rate_encode`, looked up per pixel level (each pixel's spike train depends
    on its value only) where the table is small."""
    levels = cfg.pixel_max + 1
    if levels * cfg.time_steps > ENCODER_TABLE_MAX:
        return rate_encode(pixels, cfg.time_steps, cfg.encoder_threshold)
    table = _encoder_table(levels, cfg.time_steps, cfg.encoder_threshold)
    raster = table[np.asarray(pixels, dtype=np.int64)]          # (B, N_in, T)
    return np.ascontiguousarray(raster.transpose(0, 2, 1))


def check_raster(cfg, raster: np.ndarray) -> np.ndarray:
    """An input spike raster as a bool array ``(B, T, N_in)``, or ValueError: its values
    must be 0/1 (or bool)."""
    raster = np.asarray(raster)
    want = (cfg.time_steps, cfg.layers[0])
    if raster.ndim != 3 or raster.shape[1:] != want:
        raise ValueError(f"input raster: expected shape (B, {want[0]}, {want[1]}), got "
                         f"{raster.shape}")
    if raster.dtype != bool and ((raster != 0) & (raster != 1)).any():
        raise ValueError("input raster: values must be 0 or 1")
    return raster.astype(bool, copy=False)


def live_input(cfg, input_raster: np.ndarray, decoding: bool = False) -> np.ndarray:
    """An inference sample's input raster as the layers get it: the spikes of the steps
    from :meth:`~spikeforge.config.NetworkConfig.live_input_steps` on dropped (no output
    spike depends on them; the gateware saves their ``E * G`` cycles). A new array."""
    live = np.array(input_raster, dtype=bool)
    live[:, cfg.live_input_steps(decoding):] = False
    return live


def settled_steps(cfg, out_raster: np.ndarray) -> np.ndarray:
    """``(B,)``: the steps an inference sample runs with ``early_exit = "settled"``: the
    first ``n`` after which the top output count leads every other count by more than the
    ``T - n`` steps left (its decision can no longer change), else ``T``."""
    counts = np.cumsum(np.asarray(out_raster, dtype=np.int64), axis=1)     # (B, T, C)
    top2 = np.sort(counts, axis=2)[..., -2:]
    steps_left = cfg.time_steps - np.arange(1, cfg.time_steps + 1)
    settled = top2[..., 1] - top2[..., 0] > steps_left
    return np.where(settled.any(axis=1), settled.argmax(axis=1) + 1, cfg.time_steps)


def run_raster(cfg, weights: list[np.ndarray], input_raster: np.ndarray,
               decoder: DecoderWeights | None = None) -> NetworkRun:
    """Run a batch of samples whose input spikes are given: ``input_raster`` ``(B, T, N_in)``,
    ``input_raster[b, t, j]`` = input neuron ``j`` spikes at step ``t`` (what the gateware's
    stored-raster input replays; the cycle count is the same as with the rate encoder).
    The spikes no output spike depends on are dropped (:func:`live_input`): the returned
    population 0 is the one the layers saw.

    ``decoder``: decode on the chip (configs with ``[decoder]``, :mod:`sw.exit_decoder`):
    each sample stops at its exit step (no spikes after it) and the decoder decides. With
    ``early_exit = "settled"`` each sample stops at its :func:`settled_steps` and the
    counts decide."""
    rasters = run_layers(cfg, weights, live_input(cfg, check_raster(cfg, input_raster),
                                                   decoder is not None))
    dec = None if decoder is None else exit_decoder.decode(cfg, decoder, rasters[-1])
    steps = dec.steps if dec is not None else (
        settled_steps(cfg, rasters[-1]) if cfg.early_exit == "settled" else None)
    if steps is not None:
        ran = np.arange(cfg.time_steps)[None, :, None] < steps[:, None, None]
        rasters = [r & ran for r in rasters]
    return NetworkRun(rasters=rasters, counts=rasters[-1].sum(axis=1),
                      predictions=decide(cfg, rasters[-1]) if dec is None else dec.decisions,
                      cycles=cycles.sample_cycles(cfg, rasters, steps), decoder=dec)


def run_network(cfg, weights: list[np.ndarray], pixels: np.ndarray,
                decoder: DecoderWeights | None = None) -> NetworkRun:
    """Run a batch of samples ``pixels`` ``(B, N_in)`` (unsigned ``pixel_bits``): the rate
    encoder's raster through :func:`run_raster` (``decoder``: decode on the chip)."""
    return run_raster(cfg, weights, encode(cfg, check_pixels(cfg, pixels)), decoder)
