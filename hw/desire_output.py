"""The output layer's desires, from its spike counts and the sample's label."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spikeforge.hw.desire_formats import (
    abs_error,
    desire_word,
    error_shape,
    memory_depth,
    raster_word,
    spike_count,
)


class OutputDesire(wiring.Component):
    """Desires of the output layer, one group of ``P`` output neurons per cycle (step 1 of
    ``docs/learning.md``).

    Output neuron ``n`` with ``c`` spikes (the popcount of its raster lane) and the sample's
    label ``y`` gets ``sign = (n == y)``, ``E = sign01 * C* - c`` (``C*`` = ``target_count``),
    ``active = E > out_desire_threshold`` (never for the padding lanes past the last neuron)
    and ``|E|``: the group's word of the output layer's desire memory.

    Parameters
    ----------
    cfg : Config
        The network's config (with a ``[learning]`` section).

    Attributes
    ----------
    start : In(1)
        The learning pass starts: ``label`` is sampled.
    label : In(range(N_out))
        The sample's label.
    issue, group : In(1), In(range(max(G, 2)))
        The raster word of output group ``group`` is being read (in this cycle).
    raster : In(raster_word(cfg))
        The raster word, a cycle after its issue.
    desire_wr : Out(WritePort.Signature(shape=desire_word(cfg), granularity=1).flip())
        Drives the output layer's desire memory: the group's word, all lanes.
    active_groups : Out(G)
        Bit ``g``: group ``g`` holds an active neuron.

    Notes
    -----
    Latency: an issue in cycle 0; the raster word arrives in cycle 1, where its lanes are
    popcounted into registers; the desires are evaluated and written in cycle 2,
    ``timing.OUT_DESIRE_OVERHEAD`` cycles after the issue (the popcount of a raster word
    straight out of block RAM, then the error and its threshold, were the longest path on
    the UP5K); ``active_groups`` follows in cycle 3. The output desire costs
    ``G + OUT_DESIRE_OVERHEAD`` cycles of :func:`sw.cycles.learn_cycles`.

    Throughput: one group per cycle.

    Number formats: spike counts unsigned ``0 .. T``; ``E`` signed
    (:func:`~hw.desire_formats.error_shape`); the stored lane
    :func:`~hw.desire_formats.desire_lane` (active, sign, ``|E|`` unsigned).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        last = cfg.n_layers - 1
        groups = cfg.groups(last)
        write = WritePort.Signature(addr_width=ceil_log2(memory_depth(cfg, last)),
                                    shape=desire_word(cfg), granularity=1)
        super().__init__({
            "start": In(1),
            "label": In(range(cfg.layers[-1])),
            "issue": In(1),
            "group": In(range(max(groups, 2))),
            "raster": In(raster_word(cfg)),
            "desire_wr": Out(write.flip()),
            "active_groups": Out(groups),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        T, P = cfg.time_steps, cfg.lanes
        label = Signal.like(self.label)
        with m.If(self.start):
            m.d.sync += label.eq(self.label)

        valid1, valid2 = Signal(), Signal()   # a group's raster word arrives, is evaluated
        group1 = Signal.like(self.group)
        group2 = Signal.like(group1)
        m.d.sync += [valid1.eq(self.issue), valid2.eq(valid1), group2.eq(group1)]
        with m.If(self.issue):
            m.d.sync += group1.eq(self.group)

        desires = Signal(desire_word(cfg))
        active = []
        for p in range(P):
            count = Signal(range(T + 1), name=f"count{p}")
            m.d.sync += count.eq(spike_count(self.raster[p]))
            neuron = group2 * P + p
            sign = neuron == label
            error = Signal(error_shape(cfg), name=f"error{p}")
            m.d.comb += error.eq(Mux(sign, cfg.target_count - count, count))
            active.append((error > cfg.out_desire_threshold) & (neuron < cfg.layers[-1]))
            m.d.comb += [desires[p].active.eq(active[p]), desires[p].sign.eq(sign),
                         desires[p].error.eq(abs_error(m, cfg, sign, count, f"abs_error{p}"))]
        with m.If(valid2):
            m.d.comb += [self.desire_wr.addr.eq(group2), self.desire_wr.data.eq(desires),
                         self.desire_wr.en.eq(-1)]
            for b in range(len(self.active_groups)):
                with m.If(group2 == b):
                    m.d.sync += self.active_groups[b].eq(Cat(*active).any())
        return m
