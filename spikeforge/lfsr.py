"""The pseudo-random source of the gateware and the golden model: a Galois LFSR.

``DESIGN.md`` §4: any pseudo-random number is an LFSR whose polynomial, width and seed are
part of the config and identical in ``hw/`` and ``sw/``. This module is that definition,
written once; ``hw/lfsr.py`` builds it in gateware, ``sw/`` steps it (one state at a time, or
by looking states up in :func:`sequence`), ``spikeforge/config.py`` checks and reports it.
Users: the stochastic rounding of the desire update (``docs/learning.md``).

The register
------------
``WIDTH`` = 20 bits, feedback polynomial ``p(x) = x^20 + x^17 + 1`` (:data:`POLY`; the
20-bit entry of the maximal-length tap table of Xilinx XAPP052; ``tests/test_lfsr.py``
checks its period, ``2^20 - 1``). A state ``s`` is the polynomial
``s(x) = sum_b s[b] x^b``; one step multiplies it by ``x`` modulo ``p(x)`` (Galois form,
shifting left)::

    s' = ((s << 1) & (2^20 - 1)) ^ (TAPS if s[19] else 0),    TAPS = x^17 + 1 = 0x20001

so the state ``n`` steps after ``s`` is ``s(x) x^n mod p(x)`` (:func:`jump`). The states
other than 0 form one cycle of :data:`PERIOD` ``= 2^20 - 1``; 0 is never reached and never
used as a seed. Hardware: 20 flip-flops, one XOR gate (bit 17) and the wrap of bit 19 into
bit 0.

Seeds
-----
:func:`lane_seeds` gives ``P`` lanes the states at positions ``(seed + D/2 + p*D) mod
PERIOD`` (``D = floor(PERIOD / P)``, ``D/2`` floored, ``p = 0 .. P-1``) of the sequence that
starts at state ``1`` (``sequence()[k] = x^k mod p(x)``): distinct, never 0, spread evenly
over the period (no two lanes draw the same numbers for ``D`` steps), and at ``seed = 0``
away from state 1, whose neighbours are the sparse states ``x^k`` (a run of draws that are
powers of two).

Imports nothing from ``hw``, ``sw`` or ``sim``.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["WIDTH", "POLY", "TAPS", "MASK", "PERIOD", "DESCRIPTION", "step", "jump",
           "lane_seeds", "sequence", "positions", "advance"]

#: Register width in bits.
WIDTH = 20
#: The feedback polynomial ``x^20 + x^17 + 1`` as a bit mask (bit ``b``: the ``x^b`` term).
POLY = (1 << 20) | (1 << 17) | 1
#: What a step XORs into the shifted state when bit ``WIDTH - 1`` shifts out: ``p(x) - x^20``.
TAPS = POLY & ((1 << WIDTH) - 1)
MASK = (1 << WIDTH) - 1
#: The number of states in the one cycle of non-zero states (maximal length).
PERIOD = (1 << WIDTH) - 1
#: How reports name it (``NetworkConfig.summary``).
DESCRIPTION = "Galois LFSR x^20+x^17+1"


def step(state: int) -> int:
    """One step: ``s(x) * x mod p(x)``."""
    return ((state << 1) & MASK) ^ (TAPS if state >> (WIDTH - 1) else 0)


def _mulmod(a: int, b: int) -> int:
    """``a(x) b(x) mod p(x)`` over GF(2)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a >> WIDTH:
            a ^= POLY
    return out


def jump(state: int, n: int) -> int:
    """The state ``n >= 0`` steps after ``state``: ``s(x) x^n mod p(x)``, in ``O(WIDTH log
    n)`` operations (``n`` may exceed :data:`PERIOD`)."""
    if n < 0:
        raise ValueError(f"n: {n} steps is out of range, legal range is n >= 0")
    power, base = 1, 2            # x^0, x
    n %= PERIOD
    while n:
        if n & 1:
            power = _mulmod(power, base)
        base = _mulmod(base, base)
        n >>= 1
    return _mulmod(state, power)


@functools.lru_cache(maxsize=64)
def lane_seeds(seed: int, lanes: int) -> tuple[int, ...]:
    """The reset states of ``lanes`` LFSRs: lane ``p`` at position ``(seed + D // 2 + p * D)
    mod PERIOD`` of the sequence from state 1, ``D = PERIOD // lanes``."""
    if not 0 <= seed < PERIOD:
        raise ValueError(f"seed: {seed} is out of range, legal range is [0, {PERIOD - 1}]")
    if not 1 <= lanes <= PERIOD:
        raise ValueError(f"lanes: {lanes} is out of range, legal range is [1, {PERIOD}]")
    spacing = PERIOD // lanes
    return tuple(jump(1, (seed + spacing // 2 + p * spacing) % PERIOD) for p in range(lanes))


@functools.cache
def sequence() -> np.ndarray:
    """Every state of the cycle in order from state 1: ``sequence()[k] = x^k mod p(x)``,
    ``(PERIOD,)`` uint32 (4 MB, computed once per process; read-only)."""
    block = 1 << (WIDTH // 2)                     # PERIOD + 1 = block * block states
    starts = np.array([jump(1, k * block) for k in range(block)], dtype=np.uint32)
    table = np.empty((block, block), dtype=np.uint32)   # [k, i]: x^(k*block + i)
    s = starts
    for i in range(block):
        table[:, i] = s
        s = ((s << 1) & MASK) ^ (TAPS * (s >> (WIDTH - 1)))
    seq = table.reshape(-1)[:PERIOD].copy()       # the last one is x^PERIOD = 1 again
    seq.flags.writeable = False
    return seq


@functools.cache
def positions() -> np.ndarray:
    """The inverse of :func:`sequence`: ``positions()[s]`` is the position of state ``s``
    (``-1`` for the unreachable state 0), ``(2^WIDTH,)`` int32 (read-only)."""
    pos = np.full(1 << WIDTH, -1, dtype=np.int32)
    pos[sequence()] = np.arange(PERIOD, dtype=np.int32)
    pos.flags.writeable = False
    return pos


def advance(states, steps) -> np.ndarray:
    """The states ``steps`` steps after ``states``, by table look-up; broadcasts ``states``
    against ``steps`` (non-negative integers). Raises ``ValueError`` on a state outside the
    cycle (0, or not below ``2^WIDTH``)."""
    states = np.asarray(states, dtype=np.int64)
    if states.size and (states.min() < 1 or states.max() > MASK):
        raise ValueError(f"LFSR state out of range: a {WIDTH}-bit LFSR state is in "
                         f"[1, {MASK}]")
    where = positions()[states].astype(np.int64)
    return sequence()[(where + np.asarray(steps, dtype=np.int64)) % PERIOD]
