"""Amaranth-simulator testbench of ``hw.network.Network``: the fast RTL path (no compile step).

One testbench for inference and on-chip learning, used by ``tests/test_network_sim.py``,
``tests/test_desire_unit.py``, the randomized equivalence tests (:mod:`sim.random_cases`)
and ``python -m spikeforge.sim.replay``. It loads the stored weights, runs the samples one by
one and records every spike of every population from the probe ports, the hardware's cycle
counter, the clock edges from ``start`` to ``done`` (its own count) and the prediction; for training
samples (or with ``readback``) it reads every weight word back after each sample.

Optional adversity, all seeded:

* ``ready``: the readout stream ``readout`` is drained all along with ``ready`` high in about
  that fraction of the cycles; every item is recorded, and after ``done`` the testbench keeps
  draining until the sample's end item arrived;
* ``reset_cycle``: the clock domain's reset is asserted that many edges into the first sample
  (inference or learning phase) for two cycles; then the host starts over (weights reloaded,
  every sample run from the beginning), and only what happens after the reset is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module
from amaranth.sim import Simulator

from spikeforge.hw.network import Network
from spikeforge.sw.weights import pack_words, unpack_words
from spikeforge.timing import WEIGHT_READ_LATENCY

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
    readout_overflow: bool
    fifo_overflow: bool
    stall_cycles: int = 0
    resets: int = 0
    steps: np.ndarray | None = None     # decoded runs: steps each sample ran
    scores: np.ndarray | None = None    # decoded runs: the decoder's scores at the exit (B, C)


class OnPlatform(Elaboratable):
    """``dut`` elaborated for ``platform`` inside a simulation (which has none)."""

    def __init__(self, dut, platform):
        self.dut, self.platform = dut, platform

    def elaborate(self, platform):
        return Fragment.get(self.dut, self.platform)


def simulate(cfg, stored, pixels, *, labels=None, lr_shift: int | None = None,
             readback: bool = False, ready: float | None = None, seed: int = 0,
             reset_cycle: int | None = None, input_rasters=None,
             platform=None, decoder=None) -> SimRun:
    """Run samples through the Network of ``cfg`` in Amaranth's simulator.

    Parameters
    ----------
    cfg : NetworkConfig
    stored : list of ndarray
        Stored weights (``weight_bits + F`` bits; the inference weights when the config has
        no ``[learning]``).
    pixels : array_like
        ``(B, N_in)`` pixels, one row per sample.
    labels : array_like or None
        One per sample: ``>= 0`` trains on the sample (``learn`` high, that label,
        ``lr_shift``), ``-1`` runs it as inference.
    lr_shift : int or None
        The training samples' shift; default the config's.
    readback : bool
        Read every weight back after every sample (always done when any sample trains).
    ready, seed, reset_cycle
        The seeded adversity of the module docstring: ``ready`` drains the readout stream,
        ``reset_cycle`` resets the clock domain in the first sample.
    input_rasters : list or None
        Per sample, ``None`` (run its pixels through the rate encoder) or a ``(T, N_in)``
        input raster: the raster port clears the stored raster, sets its spikes one per
        cycle, and the sample runs with ``from_raster`` high (its pixel row is ignored).
        Only for configs built with ``encoding.event_input``.
    platform : object or None
        Elaborate the network for it (e.g. :class:`hw.block_ram.BlockRamPlatform`, as the
        board builds do).
    decoder : sw.exit_decoder.DecoderWeights or None
        Load it into the decoder on the chip (configs with ``[decoder]``) and decode every
        inference sample there (``decode`` high); the run then records the steps each
        sample ran and its scores.

    Returns
    -------
    SimRun
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    labels = _check_samples(cfg, len(pixels), labels, input_rasters)
    if lr_shift is None:
        lr_shift = cfg.learning.lr_shift if cfg.learning is not None else 0
    trains = labels is not None and bool((labels >= 0).any())
    bench = _NetworkBench(cfg, stored, pixels, labels=labels, lr_shift=lr_shift,
                          input_rasters=input_rasters, read_weights=readback or trains,
                          ready=ready, seed=seed, reset_cycle=reset_cycle, decoder=decoder)
    top = Module()
    top.domains.sync = bench.domain
    top.submodules.dut = bench.dut if platform is None else OnPlatform(bench.dut, platform)
    sim = Simulator(top)
    sim.add_clock(1e-6, domain="sync")
    sim.add_testbench(bench.testbench)
    sim.run()
    return bench.result()


def _check_samples(cfg, batch: int, labels, input_rasters) -> np.ndarray | None:
    """Check ``labels`` and ``input_rasters`` against ``batch`` samples and ``cfg``; returns
    the labels as int64 (or ``None``)."""
    if input_rasters is not None and len(input_rasters) != batch:
        raise ValueError(f"input_rasters: expected {batch} entries (None or a raster), got "
                         f"{len(input_rasters)}")
    if input_rasters is not None and not cfg.event_input and \
            any(r is not None for r in input_rasters):
        raise ValueError(f"config {cfg.name!r} is built without input events "
                         f"(encoding.event_input = false)")
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (batch,):
        raise ValueError(f"labels: expected shape ({batch},), got {labels.shape}")
    if (labels >= 0).any() and cfg.learning is None:
        raise ValueError(f"config {cfg.name!r} has no [learning] section to train with")
    return labels


@dataclass
class _Sample:
    """What one sample did (a row of :class:`SimRun`)."""

    rasters: list[np.ndarray]           # (T, N_p) per population
    edges: int
    cycles: int
    prediction: int
    weights_after: list[np.ndarray] | None
    fifo_overflow: bool
    steps: int
    scores: list[int] | None


class _NetworkBench:
    """The host side of :func:`simulate`: drives the ports of one :class:`hw.network.Network`
    and records what it does. Every clock edge goes through :meth:`tick`, which also drains
    the readout stream when ``ready`` is set (one draw of the seeded generator per edge)."""

    def __init__(self, cfg, stored, pixels, *, labels, lr_shift, input_rasters, read_weights,
                 ready, seed, reset_cycle, decoder=None):
        self.cfg, self.stored, self.pixels, self.labels = cfg, stored, pixels, labels
        self.decoder = decoder
        self.lr_shift, self.input_rasters = lr_shift, input_rasters
        self.read_weights, self.ready, self.reset_cycle = read_weights, ready, reset_cycle
        self.rng = np.random.default_rng(seed)
        self.dut = Network(cfg)
        self.domain = ClockDomain("sync")
        self.stream: list[tuple[int, int, int, int]] = []   # readout items of this attempt
        self.samples: list[_Sample] = []
        self.stall_cycles = 0
        self.resets = 0
        self.readout_overflow = False

    # ---- one clock edge, the readout stream ----

    def _offer_ready(self, ctx):
        """Before an edge: offer ``ready``; returns the item taken at that edge, if any."""
        if self.ready is None:
            return None
        ev = self.dut.readout
        take = bool(self.rng.random() < self.ready)
        ctx.set(ev.ready, take)
        if not ctx.get(ev.valid):
            return None
        if not take:
            self.stall_cycles += 1
            return None
        return (ctx.get(ev.payload.end), ctx.get(ev.payload.step),
                ctx.get(ev.payload.neuron), ctx.get(ev.payload.count))

    async def tick(self, ctx):
        """One clock edge; a readout item taken at it goes to :attr:`stream`."""
        item = self._offer_ready(ctx)
        await ctx.tick()
        if item is not None:
            self.stream.append(item)

    # ---- host ports ----

    async def load_weights(self, ctx):
        """Write every stored weight word through the weight port."""
        dut = self.dut
        for i, w in enumerate(self.stored):
            ctx.set(dut.w_layer, i)
            for addr, word in enumerate(pack_words(self.cfg, i, np.asarray(w))):
                ctx.set(dut.w_addr, addr)
                ctx.set(dut.w_wdata, word)
                ctx.set(dut.w_we, 1)
                await self.tick(ctx)
        if self.decoder is not None:
            await self.load_decoder(ctx)
        ctx.set(dut.w_we, 0)

    async def load_decoder(self, ctx):
        """Write the decoder's weights and biases as weight "layer" ``L``."""
        from spikeforge.protocol import decoder_words

        dut = self.dut
        ctx.set(dut.w_layer, self.cfg.n_layers)
        for addr, value in decoder_words(self.cfg, self.decoder):
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_wdata, value)
            ctx.set(dut.w_we, 1)
            await self.tick(ctx)

    async def read_back(self, ctx) -> list[np.ndarray]:
        """Every layer's stored weights, read through the weight port
        (``WEIGHT_READ_LATENCY`` edges a word)."""
        cfg, dut = self.cfg, self.dut
        after = []
        for i in range(cfg.n_layers):
            ctx.set(dut.w_layer, i)
            words = []
            for addr in range(cfg.layers[i] * cfg.groups(i)):
                ctx.set(dut.w_addr, addr)
                for _ in range(WEIGHT_READ_LATENCY):
                    await self.tick(ctx)
                words.append(ctx.get(dut.w_rdata))
            after.append(unpack_words(cfg, i, words))
        return after

    async def load_pixels(self, ctx, row):
        """Write one sample's pixels through the pixel port."""
        dut = self.dut
        for addr, px in enumerate(row):
            ctx.set(dut.px_addr, addr)
            ctx.set(dut.px_data, int(px))
            ctx.set(dut.px_we, 1)
            await self.tick(ctx)
        ctx.set(dut.px_we, 0)

    async def load_raster(self, ctx, raster):
        """Clear the stored input raster, then set its spikes one per edge."""
        dut = self.dut
        ctx.set(dut.raster_clear, 1)
        await self.tick(ctx)
        ctx.set(dut.raster_clear, 0)
        while ctx.get(dut.raster_busy):
            await self.tick(ctx)
        for t, j in np.argwhere(raster):
            ctx.set(dut.raster_step, int(t))
            ctx.set(dut.raster_index, int(j))
            ctx.set(dut.raster_set, 1)
            await self.tick(ctx)
        ctx.set(dut.raster_set, 0)

    async def load_input(self, ctx, b):
        """Sample ``b``'s input: its raster, or its pixels. ``from_raster`` exists only in
        configs built with ``encoding.event_input`` (:func:`_check_samples` refused rasters
        for the others)."""
        raster = None if self.input_rasters is None else self.input_rasters[b]
        if raster is not None:
            await self.load_raster(ctx, np.asarray(raster, dtype=bool))
        else:
            await self.load_pixels(ctx, self.pixels[b])
        if self.cfg.event_input:
            ctx.set(self.dut.from_raster, raster is not None)

    async def start(self, ctx, b):
        """Pulse ``start`` (with ``learn``, the label and ``lr_shift`` for a training
        sample, in learning configs)."""
        dut, labels = self.dut, self.labels
        train = labels is not None and labels[b] >= 0
        if self.cfg.learning is not None:
            ctx.set(dut.learn, int(train))
            ctx.set(dut.label, int(labels[b]) if train else 0)
            ctx.set(dut.lr_shift, self.lr_shift)
        if self.cfg.decoder is not None:
            ctx.set(dut.decode, self.decoder is not None)
        ctx.set(dut.start, 1)
        await self.tick(ctx)
        ctx.set(dut.start, 0)
        if self.cfg.learning is not None:
            ctx.set(dut.learn, 0)

    async def reset(self, ctx):
        """Assert the clock domain's reset for two edges; count it if it hit a busy network."""
        busy = ctx.get(self.dut.busy)
        ctx.set(self.domain.rst, 1)
        await self.tick(ctx)
        await self.tick(ctx)
        ctx.set(self.domain.rst, 0)
        self.resets += int(busy)

    # ---- samples ----

    async def record_until_done(self, ctx, b, reset_at):
        """Clock until ``done``, recording the probe ports; returns the rasters ``(T, N_p)``
        and the edges counted, or ``None`` when the reset at edge ``reset_at`` came first."""
        cfg, dut = self.cfg, self.dut
        probe_valid = [getattr(dut, f"probe{p}_valid") for p in range(len(cfg.layers))]
        probe_index = [getattr(dut, f"probe{p}_index") for p in range(len(cfg.layers))]
        rasters = [np.zeros((cfg.time_steps, n), dtype=bool) for n in cfg.layers]
        edges = 0
        while True:
            if reset_at is not None and edges == reset_at:
                await self.reset(ctx)
                return None
            step = ctx.get(dut.probe_step)
            for pop in range(len(cfg.layers)):
                if ctx.get(probe_valid[pop]):
                    rasters[pop][step, ctx.get(probe_index[pop])] = True
            await self.tick(ctx)
            edges += 1
            if ctx.get(dut.done):
                return rasters, edges
            if edges > MAX_EDGES:
                raise RuntimeError(f"sample {b}: no done after {MAX_EDGES} cycles")

    async def drain_readout(self, ctx, b):
        """Clock until sample ``b``'s end item came out of the readout stream."""
        waited = 0
        while sum(item[0] for item in self.stream) < b + 1:
            await self.tick(ctx)
            waited += 1
            if waited > 64 * (self.cfg.time_steps * self.cfg.layers[-1] + 1) + 1000:
                raise RuntimeError(f"sample {b}: readout end item never arrived")

    async def run_sample(self, ctx, b, reset_at) -> _Sample | None:
        """One sample; its record, or ``None`` when the reset at edge ``reset_at``
        interrupted it."""
        dut = self.dut
        await self.load_input(ctx, b)
        await self.start(ctx, b)
        recorded = await self.record_until_done(ctx, b, reset_at)
        if recorded is None:
            return None
        pred = ctx.get(dut.prediction) if ctx.get(dut.prediction_valid) else -1
        cycles = ctx.get(dut.cycles)
        fifo_overflow = bool(ctx.get(dut.fifo_overflow))
        scores = None
        if self.decoder is not None:
            scores = []
            for c in range(self.cfg.layers[-1]):
                ctx.set(dut.score_sel, c)
                scores.append(ctx.get(dut.score))
        if self.ready is not None:
            await self.drain_readout(ctx, b)
        after = await self.read_back(ctx) if self.read_weights else None
        return _Sample(rasters=recorded[0], edges=recorded[1], cycles=cycles, prediction=pred,
                       weights_after=after, fifo_overflow=fifo_overflow,
                       steps=ctx.get(dut.steps_run), scores=scores)

    async def run_all(self, ctx, reset_at) -> bool:
        """Load the weights and run every sample; ``False`` when the reset at edge
        ``reset_at`` of the first sample interrupted it (what was recorded is dropped)."""
        self.stream.clear()
        self.samples.clear()
        await self.load_weights(ctx)
        for b in range(len(self.pixels)):
            sample = await self.run_sample(ctx, b, reset_at if b == 0 else None)
            if sample is None:
                return False
            self.samples.append(sample)
        return True

    async def testbench(self, ctx):
        """Run every sample; after a reset (``reset_cycle``) the host starts over."""
        reset_at = self.reset_cycle
        while not await self.run_all(ctx, reset_at):
            reset_at = None
        self.readout_overflow = bool(ctx.get(self.dut.readout_overflow))

    def result(self) -> SimRun:
        """The run, once the simulation ended."""
        runs = self.samples
        return SimRun(
            rasters=[np.stack([r.rasters[p] for r in runs]) for p in range(len(self.cfg.layers))],
            predictions=np.array([r.prediction for r in runs], dtype=np.int64),
            cycles=np.array([r.cycles for r in runs], dtype=np.int64),
            edges=np.array([r.edges for r in runs], dtype=np.int64),
            weights_after=[r.weights_after for r in runs] if self.read_weights else None,
            stream=(np.array(self.stream, dtype=np.int64).reshape(-1, 4)
                    if self.ready is not None else None),
            readout_overflow=self.readout_overflow,
            fifo_overflow=any(r.fifo_overflow for r in runs),
            stall_cycles=self.stall_cycles, resets=self.resets,
            steps=np.array([r.steps for r in runs], dtype=np.int64),
            scores=(np.array([r.scores for r in runs], dtype=np.int64)
                    if self.decoder is not None else None))


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
    """Drive a :class:`hw.lif_layer.LIFLayer` on its own through ``steps``.

    Parameters
    ----------
    layer : LIFLayer
    stored : array_like
        Its ``(n_pre, n_post)`` stored weights.
    steps : list of (bool, list of int)
        ``(clear, input indices)`` per step: the step's spike events, then its end marker
        (a clear pass when ``clear``).
    gap : float
        Before offering each input item the testbench waits while ``rng < gap`` (random
        valid gaps; an offered item stays valid until taken).
    ready : float
        ``spikes_out.ready`` is high with this probability in each cycle.
    seed : int
        Seeds the generator of both.
    max_cycles : int
        A run longer than this is a hang (``RuntimeError``).

    Returns
    -------
    LifRun
    """
    bench = _LifBench(layer, steps, gap=gap, ready=ready, seed=seed, max_cycles=max_cycles)

    async def testbench(ctx):
        await bench.load_weights(ctx, stored)
        await bench.run(ctx)

    sim = Simulator(layer)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return bench.result()


class _LifBench:
    """Input driver, output monitor and stream-rule checker of :func:`simulate_lif`.

    Each cycle draws the generator once for the input gap (only while no item is offered
    and items are left) and once for the output's ``ready``, in that order.
    """

    def __init__(self, layer, steps, *, gap, ready, seed, max_cycles):
        self.layer, self.gap, self.ready, self.max_cycles = layer, gap, ready, max_cycles
        self.n_steps = len(steps)
        self.rng = np.random.default_rng(seed)
        self.queue = []                 # input items (index, end, clear)
        for clear, indices in steps:
            self.queue += [(int(j), 0, 0) for j in indices] + [(0, 1, int(clear))]
        self.pos = 0                    # next input item
        self.offering = False
        self.pending = None             # output item offered and not taken last cycle
        self.outputs, self.current = [], []
        self.taken = self.gaps = self.stalls = self.cycles = 0
        self.violations = []

    async def load_weights(self, ctx, stored):
        """Write the stored weights through the layer's weight port."""
        layer = self.layer
        fmt = SimpleNamespace(weight_shape=lambda i: (layer.n_pre, layer.n_post),
                              groups=lambda i: layer.groups, lanes=layer.lanes,
                              store_bits=layer.store_bits,
                              store_min=-(1 << (layer.store_bits - 1)),
                              store_max=(1 << (layer.store_bits - 1)) - 1)
        for addr, word in enumerate(pack_words(fmt, 0, np.asarray(stored))):
            ctx.set(layer.w_addr, addr)
            ctx.set(layer.w_wdata, word)
            ctx.set(layer.w_we, 1)
            await ctx.tick()
        ctx.set(layer.w_we, 0)

    def offer_input(self, ctx):
        """Offer the next input item, unless the gap draw withholds it this cycle."""
        if not self.offering and self.pos < len(self.queue):
            self.offering = bool(self.rng.random() >= self.gap)
            self.gaps += not self.offering
        item = self.queue[self.pos] if self.offering else (0, 0, 0)
        ctx.set(self.layer.spikes_in.valid, self.offering)
        ctx.set(self.layer.spikes_in.payload.index, item[0])
        ctx.set(self.layer.spikes_in.payload.end, item[1])
        ctx.set(self.layer.clear, item[2])

    def watch_output(self, ctx, take):
        """Check the output stream's rule (an offered item stays until taken); returns the
        item ``(index, end)`` taken at the coming edge, or ``None``."""
        out = self.layer.spikes_out
        valid = ctx.get(out.valid)
        word = (ctx.get(out.payload.index), ctx.get(out.payload.end))
        if self.pending is not None and (not valid or word != self.pending):
            self.violations.append(f"cycle {self.cycles}: output item {self.pending} withdrawn "
                                   f"or changed to {word if valid else None} before it was "
                                   f"taken")
        self.pending = word if valid and not take else None
        self.stalls += valid and not take
        return word if valid and take else None

    def collect(self, word):
        """File a taken output item: an index into the current step, an end marker closes
        the step."""
        if word[1]:
            self.outputs.append(self.current)
            self.current = []
        else:
            self.current.append(word[0])

    async def run(self, ctx):
        """Clock until every step's end marker came out."""
        layer = self.layer
        while len(self.outputs) < self.n_steps:
            self.offer_input(ctx)
            take = bool(self.rng.random() < self.ready)
            ctx.set(layer.spikes_out.ready, take)
            in_ready = ctx.get(layer.spikes_in.ready)
            word = self.watch_output(ctx, take)
            await ctx.tick()
            self.cycles += 1
            if self.offering and in_ready:
                self.pos += 1
                self.taken += 1
                self.offering = False
            if word is not None:
                self.collect(word)
            if self.cycles > self.max_cycles:
                raise RuntimeError(f"LIFLayer: {len(self.outputs)} of {self.n_steps} steps "
                                   f"done after {self.max_cycles} cycles")

    def result(self) -> LifRun:
        return LifRun(outputs=self.outputs, events_in=self.taken, gap_cycles=self.gaps,
                      stall_cycles=self.stalls, violations=self.violations,
                      cycles=self.cycles)
