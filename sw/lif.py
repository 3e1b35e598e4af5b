"""Integer LIF layer, as pure step functions (state in, state out).

Number formats (``docs/number_formats.md`` §LIF): weights signed ``weight_bits``, membranes
signed ``membrane_bits``; every synaptic addition saturates to the membrane range, applied
one presynaptic spike at a time in ascending presynaptic index (the order the gateware
sees the events in). One step of layer ``l`` at time ``t``::

    V <- sat(V + W[j])        for each j with s_in[t-1][j] = 1, ascending j
    s  = V >= theta
    V <- V - theta * s                     (subtract-reset)
    V <- V - (V >> k)                      (leak for the next step; >> floors)

The leak written after the reset equals the spec's ``V <- V - (V >> k) + sum w*s`` order,
since the leak of step ``t`` only ever sees the membrane left by step ``t-1``.
"""

from __future__ import annotations

import numpy as np


def _abs_max(x: np.ndarray) -> int:
    if x.dtype == bool:
        return 1 if x.size else 0
    return max(int(x.max(initial=0)), -int(x.min(initial=0)))


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact ``a @ b`` of integer (or bool) arrays as ``int64``, taken in float BLAS.

    Every partial sum of the product is an integer no larger than ``K * max|a| * max|b|``;
    below ``2**24`` float32 holds all of them exactly, below ``2**53`` float64 does, so any
    summation order gives the exact result. Larger products use numpy's integer matmul.
    """
    a, b = np.asarray(a), np.asarray(b)
    return exact_matmul(a, b, b.shape[0] * _abs_max(a) * _abs_max(b))


def exact_matmul(a: np.ndarray, b: np.ndarray, bound: int, out=np.int64) -> np.ndarray:
    """:func:`int_matmul` given ``bound >= K * max|a| * max|b|``, as integers of dtype
    ``out`` (the caller's promise that they hold ``bound``)."""
    if bound < 1 << 24:
        dtype = np.float32
    elif bound < 1 << 53:
        dtype = np.float64
    else:
        return (np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64)).astype(out)
    return (a.astype(dtype) @ b.astype(dtype)).astype(out)


def saturating_sum(v: np.ndarray, addends: np.ndarray, v_min: int, v_max: int) -> np.ndarray:
    """``v`` after ``v <- sat(v + addends[k])`` for ``k = 0, 1, ...`` in order, ``v`` in range.

    ``v``: ``(N,)``, ``addends``: ``(K, N)``. Each step is the map ``x -> clip(x + a, lo, hi)``;
    two such maps compose into one of the same form (apply ``(a1, l1, h1)`` then
    ``(a2, l2, h2)``: ``(a1 + a2, clip(l1 + a2, l2, h2), clip(h1 + a2, l2, h2))``), so the
    ``K`` steps fold pairwise in ``log2 K`` vectorised rounds instead of ``K`` sequential ones;
    only membranes whose running sums leave the range are folded. Exact: the same integers as
    the one-at-a-time loop.
    """
    v = np.asarray(v, dtype=np.int64)
    addends = np.asarray(addends, dtype=np.int64)
    k = addends.shape[0]
    if k == 0:
        return v.copy()
    # Membranes whose running sums never leave the range saturate nowhere: plain sum.
    prefix = v + np.cumsum(addends, axis=0)
    out = prefix[-1].copy()
    cols = np.flatnonzero((prefix.max(axis=0) > v_max) | (prefix.min(axis=0) < v_min))
    if cols.size == 0:
        return out
    size = 1 << (k - 1).bit_length()        # pad with identity maps (add 0, clip to range)
    a = np.zeros((size, cols.size), dtype=np.int64)
    a[:k] = addends[:, cols]
    lo = np.full_like(a, v_min)
    hi = np.full_like(a, v_max)
    while size > 1:
        a2, l2, h2 = a[1::2], lo[1::2], hi[1::2]
        lo_new = np.maximum(lo[0::2] + a2, l2)
        hi_new = np.maximum(hi[0::2] + a2, l2)
        lo, hi = np.minimum(lo_new, h2, out=lo_new), np.minimum(hi_new, h2, out=hi_new)
        a = a[0::2] + a2
        size >>= 1
    out[cols] = np.minimum(np.maximum(v[cols] + a[0], lo[0]), hi[0])
    return out


def integrate(v: np.ndarray, weights: np.ndarray, spikes_in: np.ndarray,
              v_min: int, v_max: int) -> np.ndarray:
    """Add the weights of the presynaptic spikes to the membranes, saturating at each add.

    ``v``: ``(B, N_post)``, ``weights``: ``(N_pre, N_post)``, ``spikes_in``: ``(B, N_pre)``.
    Membranes whose partial sums provably stay in range take one (exact) matrix product; the
    others get :func:`saturating_sum` of their input spikes' weights in ascending index,
    exactly what the hardware's one-spike-at-a-time saturating adds give.
    """
    w = np.asarray(weights, dtype=np.int64)
    out = v + int_matmul(spikes_in, w)
    upper = v + int_matmul(spikes_in, np.maximum(w, 0))
    lower = v + int_matmul(spikes_in, np.minimum(w, 0))
    unsafe = (upper > v_max) | (lower < v_min)
    for b in np.flatnonzero(unsafe.any(axis=1)):
        cols = np.flatnonzero(unsafe[b])
        rows = w[np.flatnonzero(spikes_in[b])][:, cols]
        out[b, cols] = saturating_sum(v[b, cols], rows, v_min, v_max)
    return out


def fire(v: np.ndarray, threshold: int, leak_shift: int):
    """Threshold, subtract-reset and leak. Returns ``(v_next, spikes)``."""
    spikes = v >= threshold
    v = v - threshold * spikes
    return v - (v >> leak_shift), spikes


def lif_step(v: np.ndarray, weights: np.ndarray, spikes_in: np.ndarray, *, threshold: int,
             leak_shift: int, v_min: int, v_max: int):
    """One full LIF step: integrate, fire, reset, leak. Returns ``(v_next, spikes)``."""
    return fire(integrate(v, weights, spikes_in, v_min, v_max), threshold, leak_shift)
