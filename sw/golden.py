"""The bit-exact golden model of ``hw.network.Network`` (inference).

Pure functions over integer numpy arrays, vectorised over a batch. ``run_network`` returns
every spike of every layer, the output spike counts, the prediction and the cycle count the
RTL takes; ``run_raster`` does the same from a given input raster. Semantics
(``docs/number_formats.md``):

* ``s_0[t]`` = rate encoder output at step ``t``, ``t = 0 .. T-1`` (or the given raster);
* LIF layer ``l`` at step ``t`` integrates ``s_{l-1}[t-1]`` (one-step delay per layer); at
  ``t = 0`` its membranes are cleared and it cannot fire;
* prediction = the unique argmax of the output spike counts, ``-1`` on a tie.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from spikeforge.sw import cycles
from spikeforge.sw.encode import rate_encode
from spikeforge.sw.lif import exact_matmul, saturating_sum


@dataclass
class NetworkRun:
    """Everything one batch of samples did.

    ``rasters[0]``: encoder spikes ``(B, T, N_in)``; ``rasters[l]``: LIF layer ``l`` spikes
    ``(B, T, N_l)``; ``counts``: output spike counts ``(B, N_out)``; ``predictions``:
    ``(B,)`` with ``-1`` for no unique winner; ``cycles``: ``(B,)`` RTL cycles per sample;
    ``near``: the near rasters of a training pass with near eligibility (``near[l]`` like
    ``rasters[l]``; ``near[0] = None``, the encoder has none), else ``None``.
    """

    rasters: list[np.ndarray]
    counts: np.ndarray
    predictions: np.ndarray
    cycles: np.ndarray
    near: list[np.ndarray | None] | None = None


def predict(counts: np.ndarray) -> np.ndarray:
    """Unique argmax of spike counts per row; ``-1`` where the maximum is shared."""
    best = counts.max(axis=1, keepdims=True)
    unique = (counts == best).sum(axis=1) == 1
    return np.where(unique, counts.argmax(axis=1), -1)


#: Rows of a batch simulated together: about this many (step, neuron) currents at a time.
CHUNK_CURRENTS = 1 << 20


def run_layer(cfg, weights: np.ndarray, pre_raster: np.ndarray,
              frac_bits: int = 0, workers: int = 1, near_threshold: int | None = None):
    """All ``T`` steps of one LIF layer: input raster ``(B, T, N_pre)`` -> ``(B, T, N_post)``.

    The layer reads ``weights >> frac_bits`` (``frac_bits = F`` runs it straight from stored
    weights). Exactly :func:`sw.lif.lif_step` at every step ``t >= 1`` on the previous
    population's step ``t - 1``; computed in bulk: the input raster is known up front, so the
    currents of all steps are one exact matrix product over the presynaptic neurons that spike
    at all, the steps run without saturation, and a bound check afterwards finds the first step
    (if any) where some partial sum could have left ``[V_min, V_max]``; from there that sample
    is re-run one step at a time with the per-spike saturating sums (:func:`_rerun_saturating`).

    ``workers > 1`` runs the chunks of the batch on that many threads (numpy and BLAS release
    the GIL; the chunks write disjoint rows, so the result is the same).

    ``near_threshold`` (``theta_near``, near eligibility, ``docs/learning.md``): also return
    the near raster ``(B, T, N_post)``, ``near[b, t, i] = V >= theta_near`` with ``V`` the
    membrane of step ``t`` after its integration and before the threshold test (the value
    the spike test reads; 0 at ``t = 0``): ``(spikes, near)`` instead of the spikes alone.
    """
    weights = np.asarray(weights)
    pre_raster = np.asarray(pre_raster, dtype=bool)
    batch, steps, _ = pre_raster.shape
    n_post = weights.shape[1]
    out = np.zeros((batch, steps, n_post), dtype=bool)
    near = None if near_threshold is None else np.zeros_like(out)
    if steps < 2:
        return out if near is None else (out, near)
    chunk = max(1, CHUNK_CURRENTS // ((steps - 1) * max(n_post, pre_raster.shape[2])))
    if workers > 1 and batch > chunk:
        chunk = min(chunk, -(-batch // workers))

    def run(b0):
        _run_chunk(cfg, weights, pre_raster[b0:b0 + chunk, :-1], out[b0:b0 + chunk], frac_bits,
                   None if near is None else (near[b0:b0 + chunk], near_threshold))

    starts = range(0, batch, chunk)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for b0 in starts:
            run(b0)
    return out if near is None else (out, near)


def _run_chunk(cfg, weights, inp, out, frac_bits, near_out=None):
    """:func:`run_layer` for a few samples; ``inp[:, t]`` is what step ``t + 1`` integrates.
    ``near_out``: ``(near, theta_near)``, the near raster to fill as well, or ``None``."""
    batch, steps, _ = inp.shape
    live = np.flatnonzero(inp.any(axis=(0, 1)))
    if live.size == 0:
        return                      # membranes stay 0 < theta_near <= threshold: no spikes
    w = weights[live].astype(np.int64, copy=False)
    if frac_bits:
        w >>= frac_bits
    w_hi, w_lo = int(w.max()), int(w.min())
    spikes = inp[:, :, live]
    n_in = spikes.sum(axis=2, dtype=np.int64)          # input spikes per step
    # the lowest level a result bit tests: the near threshold (<= theta), if asked for
    reach = cfg.threshold if near_out is None else near_out[1]
    if int(n_in.sum(axis=1).max()) * w_hi < reach:
        # No membrane can reach it: even with saturation and the leak (which never raises a
        # membrane above max(V, 0)), V stays <= the sum of the positive weights of all input
        # spikes so far <= spikes * max weight.
        return
    bound = live.size * max(w_hi, -w_lo)
    # The loop below never saturates: |V| <= steps * bound + |theta|. int32 halves its memory
    # traffic wherever that fits.
    acc = np.int32 if steps * bound + abs(cfg.threshold) < 1 << 30 else np.int64
    current = exact_matmul(spikes.reshape(batch * steps, live.size), w, bound, out=acc)
    current = current.reshape(batch, steps, -1)
    theta, k = cfg.threshold, cfg.leak_shift
    # vs[:, t]: the membrane step t + 1 starts from (after the previous step's leak); steps
    # the loop skips keep V = 0 there, which the bound check below reads as "in range" (they
    # have no input).
    vs = np.zeros((batch, steps + 1, w.shape[1]), dtype=acc)
    fired = out[:, 1:]
    # near: tested on the same v, before the reset; it holds every spike (theta_near <= theta)
    near = None if near_out is None else near_out[0][:, 1:]
    scratch = np.empty((batch, w.shape[1]), dtype=acc)
    with_input = np.flatnonzero(n_in.any(axis=0))
    last_input = int(with_input[-1])
    for t in range(int(with_input[0]), steps):    # before the first input spike: V = 0
        v = vs[:, t + 1]
        np.add(vs[:, t], current[:, t], out=v)
        s = fired[:, t]
        np.greater_equal(v, theta, out=s)
        if near is not None:
            np.greater_equal(v, reach, out=near[:, t])
        if t > last_input and not (s if near is None else near[:, t]).any():
            break   # no input left, all V < reach: leak(V) <= max(V, 0) keeps them there
        np.multiply(s, theta, out=scratch)
        np.subtract(v, scratch, out=v)
        np.right_shift(v, k, out=scratch)
        np.subtract(v, scratch, out=v)
    # Bound check: every partial sum of step t stays in range if v + (sum of the positive
    # weights of its input spikes) <= V_max and v + (sum of the negative ones) >= V_min.
    # A whole-chunk bound first, then per neuron, then exact sums where those fail.
    v_in = vs[:, :steps]
    n_max = int(n_in.max())
    if (int(v_in.max()) + n_max * max(w_hi, 0) <= cfg.v_max
            and int(v_in.min()) + n_max * min(w_lo, 0) >= cfg.v_min):
        return
    n_in = n_in[..., None]
    col_hi, col_lo = np.maximum(w.max(axis=0), 0), np.minimum(w.min(axis=0), 0)
    risky = ((v_in + n_in * col_hi > cfg.v_max) | (v_in + n_in * col_lo < cfg.v_min)).any(axis=2)
    if not risky.any():
        return
    bs, ts = np.nonzero(risky)
    s_risky = spikes[bs, ts]
    w_pos, w_neg = np.maximum(w, 0), np.minimum(w, 0)
    bound = live.size * max(w_hi, -w_lo, 1)
    upper = v_in[bs, ts] + exact_matmul(s_risky, w_pos, bound)
    lower = v_in[bs, ts] + exact_matmul(s_risky, w_neg, bound)
    unsafe = ((upper > cfg.v_max) | (lower < cfg.v_min)).any(axis=1)
    first: dict[int, int] = {}
    for b, t in zip(bs[unsafe], ts[unsafe], strict=True):
        first.setdefault(int(b), int(t))      # np.nonzero is row-major: earliest t first
    for b, t0 in first.items():
        _rerun_saturating(cfg, w, w_pos, w_neg, bound, spikes[b, t0:], current[b, t0:],
                          v_in[b, t0].copy(), out[b, t0 + 1:],
                          None if near is None else (near_out[0][b, t0 + 1:], reach))


def _rerun_saturating(cfg, w, w_pos, w_neg, bound, spikes, current, v, out,
                      near_out=None) -> None:
    """Steps ``t0..`` of one sample from membrane ``v``, exactly :func:`sw.lif.lif_step`.

    A membrane whose sums of the positive and of the negative weights of the step's input
    spikes both keep it in range takes the plain sum ``current``; the others get
    :func:`sw.lif.saturating_sum` of their input weights in ascending presynaptic index (the
    hardware's order). ``near_out``: ``(near, theta_near)``, the near bits of the same steps
    to write as well (of the saturated membrane the spike test reads), or ``None``.
    """
    theta, k = cfg.threshold, cfg.leak_shift
    upper = exact_matmul(spikes, w_pos, bound)
    lower = exact_matmul(spikes, w_neg, bound)
    for t in range(len(spikes)):
        v_next = v + current[t]
        cols = np.flatnonzero((v + upper[t] > cfg.v_max) | (v + lower[t] < cfg.v_min))
        if cols.size:
            rows = w[np.flatnonzero(spikes[t])][:, cols]
            v_next[cols] = saturating_sum(v[cols], rows, cfg.v_min, cfg.v_max)
        s = v_next >= theta
        out[t] = s
        if near_out is not None:
            near_out[0][t] = v_next >= near_out[1]
        v_next -= theta * s
        v = v_next - (v_next >> k)


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


def run_raster(cfg, weights: list[np.ndarray], input_raster: np.ndarray) -> NetworkRun:
    """Run a batch of samples whose input spikes are given: ``input_raster`` ``(B, T, N_in)``,
    ``input_raster[b, t, j]`` = input neuron ``j`` spikes at step ``t`` (what the gateware's
    stored-raster input replays; the cycle count is the same as with the rate encoder)."""
    rasters = run_layers(cfg, weights, check_raster(cfg, input_raster))
    counts = rasters[-1].sum(axis=1)
    return NetworkRun(rasters=rasters, counts=counts, predictions=predict(counts),
                      cycles=cycles.sample_cycles(cfg, rasters))


def run_network(cfg, weights: list[np.ndarray], pixels: np.ndarray) -> NetworkRun:
    """Run a batch of samples ``pixels`` ``(B, N_in)`` (unsigned ``pixel_bits``): the rate
    encoder's raster through :func:`run_raster`."""
    return run_raster(cfg, weights, encode(cfg, check_pixels(cfg, pixels)))
