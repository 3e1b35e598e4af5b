"""Run samples through the TTFS core's Verilog (cocotb) and turn what it did back into
:mod:`sw.ttfs` terms: spike times, winners, fan-in lists as weights + prune masks, cycles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeforge.sim.rtl import DEFAULT_BUILD_ROOT, simulate
from spikeforge.sw.ttfs import TTFSState, check_pixels


@dataclass
class TTFSRtlRun:
    t_in: np.ndarray             # (B, n_in), T = no spike
    t_out: np.ndarray            # (B, n_out)
    winners: np.ndarray          # (B, k), -1 = none
    cycles: np.ndarray           # the core's own counter
    edges: np.ndarray            # clock edges from start to done, counted by the testbench
    states: list[TTFSState | None]   # after each training sample (None: inference sample)


def pack_lists(cfg, state: TTFSState) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per lane: the flat list memory words and the list lengths of ``state``.

    Local neuron ``n`` of lane ``p`` is neuron ``i = n * P + p``; its list holds its alive
    synapses in ascending presynaptic index at words ``n * n_in + slot``; an entry is
    ``weight | index << weight_bits`` (pruning builds) or the weight at slot ``j`` (dense).
    """
    words, lengths = [], []
    for p in range(cfg.lanes):
        neurons = range(p, cfg.n_out, cfg.lanes)
        mem = np.zeros(len(neurons) * cfg.n_in, dtype=np.int64)
        lens = np.zeros(len(neurons), dtype=np.int64)
        for n, i in enumerate(neurons):
            js = np.flatnonzero(state.alive[:, i])
            entry = state.weights[js, i]
            if cfg.pruning:
                entry = entry | (js << cfg.weight_bits)
            mem[n * cfg.n_in:n * cfg.n_in + len(js)] = entry
            lens[n] = len(js)
        words.append(mem)
        lengths.append(lens)
    return words, lengths


def unpack_lists(cfg, lengths: list[np.ndarray], entries: list[np.ndarray]) -> TTFSState:
    """The inverse of :func:`pack_lists` from the lengths and the entries inside them.
    Raises ValueError if a list is not strictly ascending or names an index out of range."""
    weights = np.zeros((cfg.n_in, cfg.n_out), dtype=np.int64)
    alive = np.zeros((cfg.n_in, cfg.n_out), dtype=bool)
    mask = (1 << cfg.weight_bits) - 1
    for p in range(cfg.lanes):
        pos = 0
        for n, length in enumerate(lengths[p]):
            i = n * cfg.lanes + p
            e = np.asarray(entries[p][pos:pos + length], dtype=np.int64)
            pos += length
            js = (e >> cfg.weight_bits) if cfg.pruning else np.arange(length)
            if length and (js.max() >= cfg.n_in or (np.diff(js) <= 0).any()):
                raise ValueError(f"neuron {i}: fan-in list indices {js.tolist()} are not "
                                 f"strictly ascending in [0, {cfg.n_in})")
            weights[js, i] = e & mask
            alive[js, i] = True
    return TTFSState(weights, alive)


def run_ttfs_rtl(cfg, state: TTFSState, pixels, *, learn=False, sim: str = "verilator",
                 waves: str | None = None, build_root: Path = DEFAULT_BUILD_ROOT,
                 verbose: bool = False, progress=None) -> TTFSRtlRun:
    """Load ``state`` into the core, run the samples in order (training ones when ``learn``:
    a bool or one flag per sample) and read back what it did."""
    pixels = check_pixels(cfg, pixels)
    learn = np.broadcast_to(np.asarray(learn, dtype=np.int64), (len(pixels),))
    words, lengths = pack_lists(cfg, state)
    job = dict(dims=np.array([cfg.n_in, cfg.n_out, cfg.lanes, cfg.winners]), pixels=pixels,
               learn=learn, **{f"words{p}": w for p, w in enumerate(words)},
               **{f"lengths{p}": n for p, n in enumerate(lengths)})
    data = simulate(cfg, job, "spikeforge.sim.tb_ttfs", sim=sim, waves=waves, build_root=build_root,
                    verbose=verbose, progress=progress)
    states = [unpack_lists(cfg, [data[f"after{b}_len{p}"] for p in range(cfg.lanes)],
                           [data[f"after{b}_words{p}"] for p in range(cfg.lanes)])
              if learn[b] else None for b in range(len(pixels))]
    return TTFSRtlRun(t_in=data["t_in"], t_out=data["t_out"], winners=data["winners"],
                      cycles=data["cycles"], edges=data["edges"], states=states)
