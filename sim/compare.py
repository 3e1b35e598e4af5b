"""Compare what the RTL did with what the golden model says, spike by spike and cycle by cycle;
and which RTL runner a comparison uses (:func:`choose_engine`, :func:`run_engine`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from spikeforge.config import ConfigError

#: RTL runners of an inference comparison: the Verilator C++ harness (:mod:`sim.bulk`,
#: inference only), the cocotb testbenches (:mod:`sim.rtl`), or ``auto``: bulk for more than
#: :data:`BULK_AUTO_SAMPLES` samples where it applies, else cocotb.
ENGINES = ("auto", "bulk", "cocotb")
#: Simulators the cocotb testbenches run on (the first is the default).
SIMULATORS = ("verilator", "icarus")
#: ``auto`` runs more samples than this through the bulk harness.
BULK_AUTO_SAMPLES = 100


def default_jobs() -> int:
    """Bulk harness processes by default: the CPU cores, at most 2."""
    return max(1, min(2, os.cpu_count() or 1))


def choose_engine(engine: str, samples: int | None, *, learn: bool = False,
                  waves: str | None = None, sim: str = "verilator", ttfs: bool = False,
                  decoder: bool = False) -> str:
    """``"bulk"`` or ``"cocotb"``: the runner for ``samples`` samples (``None``: a whole
    split) under ``engine`` (one of :data:`ENGINES`). Training runs (``learn``), waveforms,
    Icarus, TTFS cores and the decoder on the chip are cocotb only: ``engine="bulk"`` with
    any of them raises :class:`ConfigError`, ``auto`` picks cocotb."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    cocotb_only = [why for why, on in (("--learn", learn), ("--waves", waves),
                                       ("--sim icarus", sim == "icarus"),
                                       ("a TTFS config", ttfs),
                                       ("a decoder on the chip", decoder)) if on]
    if engine == "bulk":
        if cocotb_only:
            raise ConfigError(f"--engine bulk: not with {', '.join(cocotb_only)} (cocotb only); "
                              f"use --engine auto or cocotb")
        return "bulk"
    many = samples is None or samples > BULK_AUTO_SAMPLES
    return "bulk" if engine == "auto" and many and not cocotb_only else "cocotb"


def run_engine(cfg, weights, pixels, *, bulk: bool, jobs: int = 1, sim: str = "verilator",
               waves: str | None = None, progress=None, decoder=None):
    """Inference of ``pixels`` through the RTL: :func:`sim.bulk.run_bulk` (``jobs``
    processes) if ``bulk``, else :func:`sim.rtl.run_rtl` on ``sim`` (``waves``: an FST or VCD
    file to write; ``decoder``: decoded on the chip)."""
    if bulk:
        from spikeforge.sim.bulk import run_bulk

        return run_bulk(cfg, weights, pixels, jobs=jobs, progress=progress)
    from spikeforge.sim.rtl import run_rtl

    return run_rtl(cfg, weights, pixels, sim=sim, waves=waves, progress=progress,
                   decoder=decoder)


@dataclass
class Comparison:
    """Mismatch counts and the first divergence (``None`` when all agree)."""

    samples: int
    spike_mismatches: int
    cycle_mismatches: int
    prediction_mismatches: int
    first_divergence: str | None
    details: list[str] = field(default_factory=list)
    weight_mismatches: int | None = None     # training runs only
    mask_mismatches: int | None = None       # TTFS training runs: prune-mask differences
    winner_mismatches: int = 0               # TTFS training runs: samples with other winners
    stream_mismatches: int = 0               # readout stream vs the last layer's raster
    decoder_mismatches: int = 0              # decoded runs: samples with another exit step
                                             # or another score at the exit

    @property
    def ok(self) -> bool:
        return not (self.spike_mismatches or self.cycle_mismatches or self.prediction_mismatches
                    or self.weight_mismatches or self.mask_mismatches
                    or self.winner_mismatches or self.stream_mismatches
                    or self.decoder_mismatches)

    def summary_line(self) -> str:
        weights = ("" if self.weight_mismatches is None
                   else f"{self.weight_mismatches} weight mismatches, ")
        return (f"compare: {self.samples} samples, {self.spike_mismatches} spike mismatches, "
                f"{weights}{self.cycle_mismatches} cycle mismatches")


def population_name(pop: int) -> str:
    return "input (encoder)" if pop == 0 else f"layer {pop}"


def compare_runs(gold, rtl) -> Comparison:
    """``gold``: :class:`sw.golden.NetworkRun`; ``rtl``: :class:`sim.rtl.RtlRun`.

    A spike mismatch is one (sample, step, population, neuron) whose spike differs. The first
    divergence is the earliest in (sample, step, population, neuron) order.
    """
    batch = gold.cycles.shape[0]
    spike_mismatches, first = 0, None
    first_key = None
    for pop, (g, r) in enumerate(zip(gold.rasters, rtl.rasters, strict=True)):
        diff = g != r
        spike_mismatches += int(diff.sum())
        if diff.any():
            b, t, n = np.argwhere(diff)[np.lexsort(np.argwhere(diff)[:, ::-1].T)][0]
            key = (b, t, pop, n)
            if first_key is None or key < first_key:
                first_key = key
                want = "spike" if g[b, t, n] else "no spike"
                got = "spike" if r[b, t, n] else "no spike"
                first = (f"sample {b}, step {t}, {population_name(pop)}, neuron {n}: "
                         f"expected {want}, got {got}")
    details = []
    cycle_bad = np.flatnonzero((gold.cycles != rtl.cycles) | (rtl.edges != rtl.cycles))
    for b in cycle_bad[:5]:
        details.append(f"sample {b}: expected {gold.cycles[b]} cycles, RTL counter "
                       f"{rtl.cycles[b]}, testbench saw {rtl.edges[b]}")
    pred_bad = np.flatnonzero(gold.predictions != rtl.predictions)
    for b in pred_bad[:5]:
        details.append(f"sample {b}: expected prediction {gold.predictions[b]}, "
                       f"RTL {rtl.predictions[b]}")
    stream_bad = _check_stream(gold.rasters[-1], getattr(rtl, "stream", None),
                               getattr(rtl, "readout_overflow", False), details)
    decoder_bad = _check_decoder(getattr(gold, "decoder", None), rtl, details)
    if first is None and details:
        first = details[0]
    return Comparison(samples=batch, spike_mismatches=spike_mismatches,
                      cycle_mismatches=len(cycle_bad), prediction_mismatches=len(pred_bad),
                      first_divergence=first, details=details, stream_mismatches=stream_bad,
                      decoder_mismatches=decoder_bad)


def _check_decoder(gold, rtl, details) -> int:
    """Samples whose exit step or scores at the exit differ between the golden decoder run
    ``gold`` (:class:`sw.exit_decoder.DecoderRun`, ``None``: not decoded) and ``rtl``;
    ``details`` gets the first few."""
    if gold is None:
        return 0
    steps_bad = gold.steps != rtl.steps
    scores_bad = (gold.scores != rtl.scores).any(axis=1)
    bad = np.flatnonzero(steps_bad | scores_bad)
    for b in bad[:5]:
        if steps_bad[b]:
            details.append(f"sample {b}: expected the decoder to exit after {gold.steps[b]} "
                           f"steps, RTL after {rtl.steps[b]}")
        else:
            c = int(np.flatnonzero(gold.scores[b] != rtl.scores[b])[0])
            details.append(f"sample {b}: decoder score of class {c} at the exit: expected "
                           f"{gold.scores[b, c]}, RTL {rtl.scores[b, c]}")
    return len(bad)


def _check_stream(raster, stream, overflow, details) -> int:
    """Mismatches of the readout stream against the golden last-layer ``raster``: differing
    (sample, step, neuron) spikes, or 1 per framing error / overflow. ``details`` gets
    the first one."""
    from spikeforge.sw.spike_stream import StreamError, rasters_from_stream

    if stream is None:
        return 0
    if overflow:
        details.append("readout stream: readout_overflow is set (items were dropped)")
        return 1
    try:
        got = rasters_from_stream([tuple(int(x) for x in row) for row in stream],
                                  raster.shape[1], raster.shape[2])
    except StreamError as exc:
        details.append(f"readout stream: {exc}")
        return 1
    if got.shape != raster.shape:
        details.append(f"readout stream: {len(got)} samples framed, expected {len(raster)}")
        return 1
    diff = got != raster
    if diff.any():
        b, t, n = np.argwhere(diff)[0]
        details.append(f"readout stream: sample {b}, step {t}, neuron {n}: expected "
                       f"{'spike' if raster[b, t, n] else 'no spike'}, got "
                       f"{'spike' if got[b, t, n] else 'no spike'}")
    return int(diff.sum())


def compare_training(steps, rtl) -> Comparison:
    """``steps``: the golden :class:`sw.desire.TrainStep` of every sample, in order, each
    started from the previous one's weights; ``rtl``: a training :class:`sim.rtl.RtlRun`.

    On top of :func:`compare_runs` (spikes, cycles, predictions), every stored weight after
    every sample is compared; a weight mismatch is one (sample, layer, pre, post). The first
    divergence is the earliest sample's: a spike if that sample has one, else a weight.
    """
    from types import SimpleNamespace

    gold = SimpleNamespace(
        rasters=[np.concatenate([s.run.rasters[p] for s in steps]) for p in
                 range(len(steps[0].run.rasters))],
        predictions=np.concatenate([s.run.predictions for s in steps]),
        cycles=np.array([s.cycles for s in steps], dtype=np.int64))
    result = compare_runs(gold, rtl)
    mismatches, first = 0, None
    for b, step in enumerate(steps):
        for layer, (want, got) in enumerate(zip(step.weights, rtl.weights_after[b],
                                                strict=True)):
            diff = want != got
            mismatches += int(diff.sum())
            if first is None and diff.any():
                j, i = np.argwhere(diff)[0]
                first = (b, f"sample {b}, weights of layer {layer + 1}, presynaptic {j}, "
                            f"postsynaptic {i}: expected {want[j, i]}, got {got[j, i]}")
    result.weight_mismatches = mismatches
    _earliest_divergence(result, first)
    return result


def _earliest_divergence(result: Comparison, weight_first) -> None:
    """Make ``result.first_divergence`` the weight divergence ``(sample, text)`` if it comes
    from an earlier sample than the first spike divergence (or there is none)."""
    if weight_first is None:
        return
    spike_sample = None
    if result.spike_mismatches and result.first_divergence.startswith("sample "):
        spike_sample = int(result.first_divergence.split(",")[0].split()[1])
    if spike_sample is None or weight_first[0] < spike_sample:
        result.first_divergence = weight_first[1]


def compare_ttfs(gold, rtl, steps: int) -> Comparison:
    """TTFS core: ``gold`` is a list, one per sample, of :class:`sw.ttfs.TTFSStep`
    (training samples) or single-sample :class:`sw.ttfs.TTFSRun` (inference samples);
    ``rtl`` a :class:`sim.ttfs_rtl.TTFSRtlRun` of the same samples.

    Spikes are compared as rasters (population 0 the inputs, 1 the neurons); after every
    training sample every synapse is compared: a *weight mismatch* is a (sample, pre, post)
    whose weight or prune mask differs, and ``mask_mismatches`` counts those where the prune
    mask does; the winners are compared too (a detail, they decide the weights).
    """
    from types import SimpleNamespace

    from spikeforge.sw.ttfs import raster

    t_in = np.stack([np.ravel(g.t_in) for g in gold])
    t_out = np.stack([np.ravel(g.t_out) for g in gold])
    cycles = np.array([int(np.ravel(g.cycles)[0]) for g in gold], dtype=np.int64)
    none = np.full(len(gold), -1)
    result = compare_runs(
        SimpleNamespace(rasters=[raster(t_in, steps), raster(t_out, steps)],
                        predictions=none, cycles=cycles),
        SimpleNamespace(rasters=[raster(rtl.t_in, steps), raster(rtl.t_out, steps)],
                        predictions=none, cycles=rtl.cycles, edges=rtl.edges))
    weights = masks = 0
    first = None
    for b, (g, state) in enumerate(zip(gold, rtl.states, strict=True)):
        if state is None:
            continue
        won = [int(x) for x in rtl.winners[b] if x >= 0]
        if won != [int(x) for x in g.winners]:
            result.winner_mismatches += 1
            result.details.append(f"sample {b}: expected winners {list(g.winners)}, RTL {won}")
        bad_mask = g.state.alive != state.alive
        bad = bad_mask | (g.state.weights != state.weights)
        weights += int(bad.sum())
        masks += int(bad_mask.sum())
        if first is None and bad.any():
            j, i = np.argwhere(bad)[0]
            want, got = (f"weight {s.weights[j, i]}" if s.alive[j, i] else "pruned"
                         for s in (g.state, state))
            first = (b, f"sample {b}, synapse presynaptic {j} -> neuron {i}: expected "
                        f"{want}, got {got}")
    if any(state is not None for state in rtl.states):
        result.weight_mismatches = weights
        result.mask_mismatches = masks
    _earliest_divergence(result, first)
    return result
