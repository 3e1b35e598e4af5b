"""Amaranth-simulator testbench of ``hw.network.Network``: the fast RTL path (no compile step).

One testbench for inference and on-chip learning, used by ``tests/test_network_sim.py``,
``tests/test_desire_unit.py``, the randomized equivalence tests (:mod:`sim.random_cases`)
and ``python -m spikeforge.sim.replay``. It loads the stored weights, runs the samples one by
one and records every spike of every population from the trace ports, the hardware's cycle
counter, the clock edges from ``start`` to ``done`` (its own count) and the prediction; for training
samples (or with ``readback``) it reads every weight word back after each sample.

Optional adversity, all seeded:

* ``ready``: the readout stream ``events`` is drained all along with ``ready`` high in about
  that fraction of the cycles; every item is recorded, and after ``done`` the testbench keeps
  draining until the sample's end item arrived;
* ``reset_cycle``: the clock domain's reset is asserted that many edges into the first sample
  (inference or learning phase) for two cycles; then the host starts over (weights reloaded,
  every sample run from the beginning), and only what happens after the reset is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module
from amaranth.sim import Simulator

from spikeforge.hw.lif_layer import WEIGHT_READ_LATENCY
from spikeforge.hw.network import Network
from spikeforge.sw.weights import pack_words, unpack_words

#: A sample that runs longer than this many clock edges is a hang.
MAX_EDGES = 2_000_000


@dataclass
class SimRun:
    """What the simulated Network did, in the shapes of :class:`sim.rtl.RtlRun` (so
    :func:`sim.compare.compare_runs` and :func:`sim.compare.compare_training` take it).

    ``rasters[p]``: ``(B, T, N_p)``; ``stream``: readout items ``(end, step, neuron, count)``
    (``None`` when the stream was not drained); ``stall_cycles``: cycles the stream offered an
    item the testbench did not take; ``resets``: resets that hit a busy network.
    """

    rasters: list[np.ndarray]
    predictions: np.ndarray
    cycles: np.ndarray
    edges: np.ndarray
    weights_after: list[list[np.ndarray]] | None
    stream: np.ndarray | None
    events_overflow: bool
    fifo_overflow: bool
    stall_cycles: int = 0
    resets: int = 0


class OnPlatform(Elaboratable):
    """``dut`` elaborated for ``platform`` inside a simulation (which has none)."""

    def __init__(self, dut, platform):
        self.dut, self.platform = dut, platform

    def elaborate(self, platform):
        return Fragment.get(self.dut, self.platform)


def simulate(cfg, stored, pixels, *, labels=None, lr_shift: int | None = None,
             readback: bool = False, ready: float | None = None, seed: int = 0,
             reset_cycle: int | None = None, input_rasters=None,
             platform=None) -> SimRun:
    """Run ``pixels`` ``(B, N_in)`` through the Network of ``cfg`` with *stored* weights
    (``weight_bits + F`` bits; the inference weights when the config has no ``[learning]``).

    ``input_rasters``: per sample, ``None`` (run its pixels through the rate encoder) or a
    ``(T, N_in)`` input raster: the raster port clears the stored raster, sets its spikes
    one per cycle, and the sample runs with ``from_raster`` high (its pixel row is ignored).

    ``labels``: one per sample; ``>= 0`` trains on the sample (``learn`` high, that label,
    ``lr_shift``, default the config's), ``-1`` runs it as inference. Weights are read back
    after every sample when any sample trains or ``readback`` is set. ``platform``: elaborate
    the network for it (e.g. :class:`hw.block_ram.BlockRamPlatform`, as the board builds do).
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    batch = len(pixels)
    if input_rasters is not None and len(input_rasters) != batch:
        raise ValueError(f"input_rasters: expected {batch} entries (None or a raster), got "
                         f"{len(input_rasters)}")
    if input_rasters is not None and not cfg.event_input and \
            any(r is not None for r in input_rasters):
        raise ValueError(f"config {cfg.name!r} is built without input events "
                         f"(encoding.event_input = false)")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (batch,):
            raise ValueError(f"labels: expected shape ({batch},), got {labels.shape}")
        if (labels >= 0).any() and cfg.learning is None:
            raise ValueError(f"config {cfg.name!r} has no [learning] section to train with")
    if lr_shift is None:
        lr_shift = cfg.learning.lr_shift if cfg.learning is not None else 0
    read_weights = readback or (labels is not None and bool((labels >= 0).any()))
    rng = np.random.default_rng(seed)
    T = cfg.time_steps

    dut = Network(cfg)
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut if platform is None else OnPlatform(dut, platform)
    out = {"runs": [], "stream": [], "stall": 0, "resets": 0}
    trace_valid = [getattr(dut, f"trace{p}_valid") for p in range(len(cfg.layers))]
    trace_index = [getattr(dut, f"trace{p}_index") for p in range(len(cfg.layers))]
    ev = dut.events

    def drive_events(ctx):
        """Before an edge: offer ``ready``; returns the item taken at that edge, if any."""
        if ready is None:
            return None
        take = bool(rng.random() < ready)
        ctx.set(ev.ready, take)
        if not ctx.get(ev.valid):
            return None
        if not take:
            out["stall"] += 1
            return None
        return (ctx.get(ev.payload.end), ctx.get(ev.payload.step),
                ctx.get(ev.payload.neuron), ctx.get(ev.payload.count))

    async def tick(ctx, stream):
        item = drive_events(ctx)
        await ctx.tick()
        if item is not None:
            stream.append(item)
        return item

    async def load_weights(ctx, stream):
        for i, w in enumerate(stored):
            ctx.set(dut.w_layer, i)
            for addr, word in enumerate(pack_words(cfg, i, np.asarray(w))):
                ctx.set(dut.w_addr, addr)
                ctx.set(dut.w_wdata, word)
                ctx.set(dut.w_we, 1)
                await tick(ctx, stream)
        ctx.set(dut.w_we, 0)

    async def read_back(ctx, stream):
        after = []
        for i in range(cfg.n_layers):
            ctx.set(dut.w_layer, i)
            words = []
            for addr in range(cfg.layers[i] * cfg.groups(i)):
                ctx.set(dut.w_addr, addr)
                for _ in range(WEIGHT_READ_LATENCY):
                    await tick(ctx, stream)
                words.append(ctx.get(dut.w_rdata))
            after.append(unpack_words(cfg, i, words))
        return after

    async def load_raster(ctx, stream, raster):
        ctx.set(dut.raster_clear, 1)
        await tick(ctx, stream)
        ctx.set(dut.raster_clear, 0)
        while ctx.get(dut.raster_busy):
            await tick(ctx, stream)
        for t, j in np.argwhere(raster):
            ctx.set(dut.raster_step, int(t))
            ctx.set(dut.raster_index, int(j))
            ctx.set(dut.raster_set, 1)
            await tick(ctx, stream)
        ctx.set(dut.raster_set, 0)

    async def run_sample(ctx, b, stream, reset_at):
        """One sample; returns its record, or None when ``reset_at`` interrupted it."""
        raster = None if input_rasters is None else input_rasters[b]
        if raster is not None:
            await load_raster(ctx, stream, np.asarray(raster, dtype=bool))
        else:
            for addr, px in enumerate(pixels[b]):
                ctx.set(dut.px_addr, addr)
                ctx.set(dut.px_data, int(px))
                ctx.set(dut.px_we, 1)
                await tick(ctx, stream)
            ctx.set(dut.px_we, 0)
        ctx.set(dut.from_raster, raster is not None)
        train = labels is not None and labels[b] >= 0
        if cfg.learning is not None:
            ctx.set(dut.learn, int(train))
            ctx.set(dut.label, int(labels[b]) if train else 0)
            ctx.set(dut.lr_shift, lr_shift)
        rasters = [np.zeros((T, n), dtype=bool) for n in cfg.layers]
        ctx.set(dut.start, 1)
        await tick(ctx, stream)
        ctx.set(dut.start, 0)
        if cfg.learning is not None:
            ctx.set(dut.learn, 0)
        edges = 0
        while True:
            if reset_at is not None and edges == reset_at:
                busy = ctx.get(dut.busy)
                ctx.set(domain.rst, 1)
                await tick(ctx, stream)
                await tick(ctx, stream)
                ctx.set(domain.rst, 0)
                out["resets"] += int(busy)
                return None
            step = ctx.get(dut.trace_step)
            for pop in range(len(cfg.layers)):
                if ctx.get(trace_valid[pop]):
                    rasters[pop][step, ctx.get(trace_index[pop])] = True
            await tick(ctx, stream)
            edges += 1
            if ctx.get(dut.done):
                break
            if edges > MAX_EDGES:
                raise RuntimeError(f"sample {b}: no done after {MAX_EDGES} cycles")
        pred = ctx.get(dut.prediction) if ctx.get(dut.prediction_valid) else -1
        cycles = ctx.get(dut.cycles)
        fifo_overflow = bool(ctx.get(dut.fifo_overflow))
        if ready is not None:                 # drain the sample's readout
            waited = 0
            while sum(item[0] for item in stream) < b + 1:
                await tick(ctx, stream)
                waited += 1
                if waited > 64 * (T * cfg.layers[-1] + 1) + 1000:
                    raise RuntimeError(f"sample {b}: readout end item never arrived")
        after = await read_back(ctx, stream) if read_weights else None
        return rasters, edges, cycles, pred, after, fifo_overflow

    async def tb(ctx):
        stream = []
        records = []
        attempt_reset = reset_cycle
        while True:
            stream.clear()
            records.clear()
            await load_weights(ctx, stream)
            interrupted = False
            for b in range(batch):
                rec = await run_sample(ctx, b, stream, attempt_reset if b == 0 else None)
                if rec is None:
                    interrupted = True
                    break
                records.append(rec)
            if not interrupted:
                break
            attempt_reset = None              # start over after the reset
        out["runs"] = records
        out["stream"] = list(stream)
        out["events_overflow"] = bool(ctx.get(dut.events_overflow))

    sim = Simulator(top)
    sim.add_clock(1e-6, domain="sync")
    sim.add_testbench(tb)
    sim.run()

    runs = out["runs"]
    rasters = [np.stack([r[0][p] for r in runs]) for p in range(len(cfg.layers))]
    return SimRun(
        rasters=rasters,
        predictions=np.array([r[3] for r in runs], dtype=np.int64),
        cycles=np.array([r[2] for r in runs], dtype=np.int64),
        edges=np.array([r[1] for r in runs], dtype=np.int64),
        weights_after=[r[4] for r in runs] if read_weights else None,
        stream=(np.array(out["stream"], dtype=np.int64).reshape(-1, 4)
                if ready is not None else None),
        events_overflow=out["events_overflow"],
        fifo_overflow=any(r[5] for r in runs),
        stall_cycles=out["stall"], resets=out["resets"])


@dataclass
class LifRun:
    """What a :class:`hw.lif_layer.LIFLayer` emitted under stalls: the output indices of each
    step in the order they came, and what the testbench saw of the handshakes."""

    outputs: list[list[int]]
    events_in: int              # input items accepted (spikes and end markers)
    gap_cycles: int             # cycles the testbench withheld ``spikes_in.valid``
    stall_cycles: int           # cycles ``spikes_out`` offered an item and ``ready`` was low
    violations: list[str]       # stream rule breaks (an offered item changed or vanished)
    cycles: int


def simulate_lif(layer, stored, steps, *, gap: float = 0.0, ready: float = 1.0,
                 seed: int = 0, max_cycles: int = 1_000_000) -> LifRun:
    """Drive a :class:`hw.lif_layer.LIFLayer` on its own through ``steps``, a list of
    ``(clear, input indices)``: each step's spike events, then its end marker (a clear pass
    when ``clear``). ``stored``: its ``(n_pre, n_post)`` stored weights. Before offering each
    input item the testbench waits while ``rng < gap`` (random valid gaps; an offered item
    stays valid until taken); ``spikes_out.ready`` is high with probability ``ready`` in
    each cycle."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    cfg = SimpleNamespace(weight_shape=lambda i: (layer.n_pre, layer.n_post),
                          groups=lambda i: layer.groups, lanes=layer.lanes,
                          store_bits=layer.store_bits,
                          store_min=-(1 << (layer.store_bits - 1)),
                          store_max=(1 << (layer.store_bits - 1)) - 1)
    queue = []
    for clear, indices in steps:
        queue += [(int(j), 0, 0) for j in indices] + [(0, 1, int(clear))]
    out = {}

    async def tb(ctx):
        for addr, word in enumerate(pack_words(cfg, 0, np.asarray(stored))):
            ctx.set(layer.w_addr, addr)
            ctx.set(layer.w_wdata, word)
            ctx.set(layer.w_we, 1)
            await ctx.tick()
        ctx.set(layer.w_we, 0)
        outputs, current = [], []
        taken = gaps = stalls = cycles = 0
        violations = []
        offering, pending = False, None
        pos = 0
        while len(outputs) < len(steps):
            if not offering and pos < len(queue):
                offering = bool(rng.random() >= gap)
                gaps += not offering
            item = queue[pos] if offering else (0, 0, 0)
            ctx.set(layer.spikes_in.valid, offering)
            ctx.set(layer.spikes_in.payload.index, item[0])
            ctx.set(layer.spikes_in.payload.end, item[1])
            ctx.set(layer.clear, item[2])
            take = bool(rng.random() < ready)
            ctx.set(layer.spikes_out.ready, take)
            in_ready = ctx.get(layer.spikes_in.ready)
            valid = ctx.get(layer.spikes_out.valid)
            word = (ctx.get(layer.spikes_out.payload.index), ctx.get(layer.spikes_out.payload.end))
            if pending is not None and (not valid or word != pending):
                violations.append(f"cycle {cycles}: output item {pending} withdrawn or "
                                  f"changed to {word if valid else None} before it was taken")
            pending = word if valid and not take else None
            stalls += valid and not take
            await ctx.tick()
            cycles += 1
            if offering and in_ready:
                pos += 1
                taken += 1
                offering = False
            if valid and take:
                if word[1]:
                    outputs.append(current)
                    current = []
                else:
                    current.append(word[0])
            if cycles > max_cycles:
                raise RuntimeError(f"LIFLayer: {len(outputs)} of {len(steps)} steps done "
                                   f"after {max_cycles} cycles")
        out.update(outputs=outputs, events_in=taken, gap_cycles=gaps, stall_cycles=stalls,
                   violations=violations, cycles=cycles)

    sim = Simulator(layer)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return LifRun(**out)
