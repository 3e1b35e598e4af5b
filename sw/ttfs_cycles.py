"""Cycle model of the TTFS core ``hw.ttfs_network.TTFSNetwork``: exact cycles per sample.

Nothing in the core waits on data, so a sample's cycles depend only on the fan-in list
lengths (surviving synapses per neuron) and, when learning, on which neurons win:

* encode: ``n_in + TTFS_ENCODE_OVERHEAD`` (one pixel per cycle);
* integrate: the slowest lane, :func:`lane_cycles`: a ``T``-cycle histogram clear, then per
  neuron ``len + T + TTFS_NEURON_OVERHEAD`` (list stream, histogram scan), plus
  ``TTFS_INTEGRATE_OVERHEAD``;
* learning only: ``P * k`` merge cycles, then per winner ``len + TTFS_UPDATE_OVERHEAD`` (the
  STDP pass over its list), plus ``TTFS_LEARN_OVERHEAD``.

A pruned synapse is not in any list, so it costs no cycle anywhere. The constants are
:mod:`spikeforge.timing`'s, shared with the gateware; ``docs/ttfs.md`` derives each from the
state machines.
"""

from __future__ import annotations

import numpy as np

from spikeforge.timing import (
    TTFS_ENCODE_OVERHEAD,
    TTFS_INTEGRATE_OVERHEAD,
    TTFS_LEARN_OVERHEAD,
    TTFS_NEURON_OVERHEAD,
    TTFS_UPDATE_OVERHEAD,
)


def lane_cycles(cfg, lengths) -> np.ndarray:
    """Busy cycles of every lane integrating, ``(P,)``, from all list lengths ``(n_out,)``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    T = cfg.time_steps
    return np.array([T + int((lengths[p::cfg.lanes] + T + TTFS_NEURON_OVERHEAD).sum())
                     for p in range(cfg.lanes)], dtype=np.int64)


def infer_cycles(cfg, lengths) -> int:
    """Cycles of an inference sample (also the first part of a training sample)."""
    return (cfg.n_in + TTFS_ENCODE_OVERHEAD + int(lane_cycles(cfg, lengths).max())
            + TTFS_INTEGRATE_OVERHEAD)


def learn_cycles(cfg, winner_lengths) -> int:
    """Cycles a training sample adds: merge, STDP of each winner (its list length before the
    update), the end."""
    winner_lengths = np.asarray(winner_lengths, dtype=np.int64)
    return (cfg.lanes * cfg.winners + int((winner_lengths + TTFS_UPDATE_OVERHEAD).sum())
            + TTFS_LEARN_OVERHEAD)
