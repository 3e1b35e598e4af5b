"""Cycle model of the gateware ``hw.network.Network``: predicts the exact cycle count of a sample.

The network runs in lock-step *phases*, one per time step ``t``. In phase ``t`` every stage
works at once (the encoder makes ``s_0[t]``, LIF layer ``l`` integrates ``s_{l-1}[t-1]`` and
makes ``s_l[t]``); the phase ends when the slowest stage is done. Stage costs, counted from
the cycle the phase opens to the cycle the stage hands over its end-of-step marker:

* encoder: one pixel per cycle, ``N_in + ENCODER_OVERHEAD``;
* LIF layer with ``G = ceil(N_post / P)`` weight words per presynaptic neuron and ``E``
  input spike events: ``E*G`` integration cycles, ``END_OF_STEP_PASSES * G`` end-of-step
  cycles (read, then threshold/reset/leak/write, then the test for spikes), one cycle per
  output spike ``S``, plus ``LAYER_OVERHEAD`` (accept the end marker, drain the integration
  pipeline, emit the end marker).

The rasters are those the layers saw: an inference sample's input without its dead steps
(:func:`sw.golden.live_input`), so layer 0's last phases cost no ``E*G``.

A sample costs ``START_OVERHEAD + sum_t (max(stage costs of t) + PHASE_OVERHEAD)
+ FINISH_OVERHEAD`` cycles, counted from the cycle ``start`` is accepted to the cycle
``done`` rises. The constants are :mod:`spikeforge.timing`'s, shared with the gateware;
``docs/architecture.md`` derives each from the RTL's state machines.
"""

from __future__ import annotations

import numpy as np

from spikeforge.timing import (
    BACKWARD_OVERHEAD,
    DECIDE_OVERHEAD,
    ENCODER_OVERHEAD,
    END_OF_STEP_PASSES,
    FINISH_OVERHEAD,
    LAYER_OVERHEAD,
    LEARN_OVERHEAD,
    OUT_DESIRE_OVERHEAD,
    PAIR_OVERHEAD,
    PHASE_OVERHEAD,
    PRE_CHECK,
    SETTLE_OVERHEAD,
    START_OVERHEAD,
    UPDATE_OVERHEAD,
)


def encoder_cost(n_in: int) -> int:
    return n_in + ENCODER_OVERHEAD


def layer_cost(groups: int, events_in, spikes_out):
    """Cycles of one LIF layer's phase; works elementwise on arrays of event counts."""
    return (np.asarray(events_in) * groups + END_OF_STEP_PASSES * groups
            + np.asarray(spikes_out) + LAYER_OVERHEAD)


def phase_cycles(cfg, rasters: list[np.ndarray]) -> np.ndarray:
    """Cycles of every phase, ``(B, T)``, from the spike rasters of all layers.

    ``rasters[0]`` is the encoder's ``(B, T, N_in)`` raster, ``rasters[l]`` LIF layer l's.
    """
    batch, steps = rasters[0].shape[:2]
    cost = np.full((batch, steps), encoder_cost(cfg.layers[0]), dtype=np.int64)
    for layer in range(cfg.n_layers):
        events = np.zeros((batch, steps), dtype=np.int64)
        events[:, 1:] = rasters[layer][:, :-1].sum(axis=2)   # one-step delay per layer
        spikes = rasters[layer + 1].sum(axis=2)
        cost = np.maximum(cost, layer_cost(cfg.groups(layer), events, spikes))
    return cost + PHASE_OVERHEAD


def settle_checks(cfg, steps_run) -> np.ndarray:
    """``early_exit = "settled"``: how many scans of the counts an inference sample that ran
    ``steps_run`` steps made. The phase controller scans after phases ``T // 2 .. T - 2``
    (before ``T // 2`` no top count can lead by more than the steps left; after ``T - 1``
    the sample ends anyway), up to the one after which the sample ended."""
    T = cfg.time_steps
    return np.maximum(np.minimum(np.asarray(steps_run), T - 1) - T // 2, 0)


def sample_cycles(cfg, rasters: list[np.ndarray], exit_steps=None) -> np.ndarray:
    """Total cycles per sample, ``(B,)``. ``exit_steps`` ``(B,)``: the steps each sample ran
    under the decoder on the chip (:mod:`sw.exit_decoder`) or ``early_exit = "settled"``;
    the phases after them never run. Each decision check costs a scan of the ``C`` classes:
    ``DECIDE_OVERHEAD`` more for the decoder's, ``SETTLE_OVERHEAD`` for the settled test's
    (:func:`settle_checks`)."""
    phases = phase_cycles(cfg, rasters)
    decide = 0
    if exit_steps is not None:
        exit_steps = np.asarray(exit_steps)
        phases = np.where(np.arange(phases.shape[1]) < exit_steps[:, None], phases, 0)
        if cfg.decoder is not None:
            checks = exit_steps - cfg.decoder.first_check + 1
            decide = checks * (cfg.layers[-1] + DECIDE_OVERHEAD)
        elif cfg.early_exit == "settled":
            decide = settle_checks(cfg, exit_steps) * (cfg.layers[-1] + SETTLE_OVERHEAD)
    return START_OVERHEAD + phases.sum(axis=1) + decide + FINISH_OVERHEAD


# ---- learning (desire backpropagation), docs/learning.md §Cycles ----

def learn_cycles(cfg, rasters: list[np.ndarray], actives: list[np.ndarray]) -> int:
    """Cycles of the learning pass after one sample's inference.

    ``rasters``: the sample's populations, ``(T, N)`` each (encoder first); ``actives``:
    ``(N_post,)`` desire-active flags of every LIF layer. Costs, in hardware order:

    * output desire: one cycle per output group;
    * backward pass into population ``l`` (``l = L-1 .. 1``): one cycle per weight word of
      LIF layer ``l``, ``N_l * G_l``;
    * update of LIF layer ``l`` (``l = L-1 .. 0``): ``PRE_CHECK`` per presynaptic neuron, and
      for each presynaptic neuron that spiked before the last step, ``T + PAIR_OVERHEAD``
      per group of ``P`` postsynaptic neurons holding at least one active neuron.
    """
    L, T, P = cfg.n_layers, cfg.time_steps, cfg.lanes
    total = LEARN_OVERHEAD + cfg.groups(L - 1) + OUT_DESIRE_OVERHEAD
    for layer in range(L - 1, 0, -1):
        total += cfg.layers[layer] * cfg.groups(layer) + BACKWARD_OVERHEAD
    for layer in range(L):
        active = np.zeros(cfg.groups(layer) * P, dtype=bool)
        active[:len(actives[layer])] = actives[layer]
        active_groups = int(active.reshape(-1, P).any(axis=1).sum())
        live_pre = int(rasters[layer][:T - 1].any(axis=0).sum())
        total += (UPDATE_OVERHEAD + cfg.layers[layer] * PRE_CHECK
                  + live_pre * active_groups * (T + PAIR_OVERHEAD))
    return total
