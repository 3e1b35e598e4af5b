"""TTFS core top: encoder, ``P`` neuron lanes, k-WTA and on-chip STDP with pruning."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.top_k import TopK
from spikeforge.hw.ttfs_encoder import TTFSEncoder
from spikeforge.hw.ttfs_lane import TTFSLane, entry_layout, lane_candidate_layout
from spikeforge.timing import CYCLE_COUNTER_BITS


class TTFSNetwork(wiring.Component):
    """The TTFS core of a :class:`~spikeforge.config.TTFSConfig` (``docs/ttfs.md``).

    Load pixels (``px_*``) and fan-in lists (``host_lane`` + ``syn_*``/``len_*``) while idle,
    pulse ``start`` (with ``learn`` high for a training sample); ``busy`` is high until
    ``done`` pulses. Then ``in_time`` (of input ``in_addr``, lane 0's copy), ``out_time`` (of
    local neuron ``out_addr`` of lane ``host_lane``), the ranked winners ``win_index``/
    ``win_valid`` (``win_sel``-th, training samples) and ``cycles`` hold until the next start.

    Schedule: ENCODE (``n_in + 1`` cycles) -> INTEGRATE (all lanes at once, until the slowest
    is done) -> training samples only: MERGE (``P * k`` cycles, the lanes' top-``k`` lists
    into one) -> UPDATE (each winner, best first, by its lane: ``len + 4`` cycles) -> done.
    ``cycles`` counts them all, exactly :mod:`sw.ttfs_cycles` (with the ``TTFS_*`` overheads
    of :mod:`spikeforge.timing`): nothing waits on data, so the count depends only on the
    list lengths and the winners.

    Number formats: :class:`~hw.ttfs_lane.TTFSLane` and :class:`~hw.ttfs_encoder.TTFSEncoder`.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        P, k, T = cfg.lanes, cfg.winners, cfg.time_steps
        self.lane_depth = max(cfg.lane_neurons(0), 2)
        entry = entry_layout(cfg)
        super().__init__({
            "start": In(1),
            "learn": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "px_addr": In(range(cfg.n_in)),
            "px_data": In(cfg.pixel_bits),
            "px_we": In(1),
            "host_lane": In(range(max(P, 2))),
            "syn_addr": In(range(self.lane_depth * cfg.n_in)),
            "syn_wdata": In(entry.size),
            "syn_we": In(1),
            "syn_rdata": Out(entry.size),
            "len_addr": In(range(self.lane_depth)),
            "len_wdata": In(range(cfg.n_in + 1)),
            "len_we": In(1),
            "len_rdata": Out(range(cfg.n_in + 1)),
            "out_addr": In(range(self.lane_depth)),
            "out_time": Out(range(T + 1)),
            "in_addr": In(range(cfg.n_in)),
            "in_time": Out(range(T + 1)),
            "win_sel": In(range(max(k, 2))),
            "win_index": Out(range(cfg.n_out)),
            "win_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = enc = TTFSEncoder(self.cfg)
        m.d.comb += [enc.px_addr.eq(self.px_addr), enc.px_data.eq(self.px_data),
                     enc.px_we.eq(self.px_we)]
        lanes = self._lanes(m, enc)
        top, merge_sel, merging = self._merge(m, lanes)
        self._controller(m, enc, lanes, top, merge_sel, merging)
        return m

    def _lanes(self, m, enc):
        """The ``P`` lanes (:class:`~hw.ttfs_lane.TTFSLane`): each gets the encoder's input
        times; the host's list ports write and read lane ``host_lane``; ``in_time`` is lane
        0's copy. Returns the lanes."""
        lanes = [TTFSLane(self.cfg, p) for p in range(self.cfg.lanes)]
        for p, lane in enumerate(lanes):
            m.submodules[f"lane{p}"] = lane
            sel = self.host_lane == p
            m.d.comb += [
                lane.t_we.eq(enc.t_we), lane.t_addr.eq(enc.t_addr), lane.t_data.eq(enc.t_data),
                lane.syn_addr.eq(self.syn_addr), lane.syn_wdata.eq(self.syn_wdata),
                lane.syn_we.eq(self.syn_we & sel),
                lane.len_addr.eq(self.len_addr), lane.len_wdata.eq(self.len_wdata),
                lane.len_we.eq(self.len_we & sel), lane.out_addr.eq(self.out_addr),
                lane.in_addr.eq(self.in_addr),
            ]
            with m.If(sel):
                m.d.comb += [self.syn_rdata.eq(lane.syn_rdata),
                             self.len_rdata.eq(lane.len_rdata),
                             self.out_time.eq(lane.out_time)]
        m.d.comb += self.in_time.eq(lanes[0].in_time)
        return lanes

    def _merge(self, m, lanes):
        """The global top-``k`` list (:class:`~hw.top_k.TopK`), merged from the lanes' lists
        one entry per cycle while ``merging`` (entry ``merge_sel`` of the ``P * k``, lane
        by lane): ``P * k`` cycles; ``win_index``/``win_valid`` show its ``win_sel``-th
        entry. Returns the list, ``merge_sel`` and ``merging``."""
        P, k = self.cfg.lanes, self.cfg.winners
        top = TopK(k, lane_candidate_layout(self.cfg), "top")
        flat = [getattr(lane, f"win{q}") for lane in lanes for q in range(k)]
        merge_sel = Signal(range(len(flat) + 1))
        merging = Signal()
        cand = Signal(lane_candidate_layout(self.cfg))
        for s, c in enumerate(flat):
            with m.If(merge_sel == s):
                m.d.comb += cand.eq(c)
        top.insert(m, cand, merging)
        for q, e in enumerate(top.entries):
            with m.If(self.win_sel == q):
                m.d.comb += [self.win_valid.eq(e.valid),
                             self.win_index.eq(e.local * P + e.lane)]
        return top, merge_sel, merging

    def _controller(self, m, enc, lanes, top, merge_sel, merging):
        """The sample's state machine: ``ENCODE`` -> ``INTEGRATE`` -> (training samples)
        ``MERGE`` -> ``UPDATE``/``UPDATING`` per winner -> ``IDLE``, counting ``cycles`` (32
        bits) from the cycle after ``start`` to the cycle ``done`` rises: exactly
        :mod:`sw.ttfs_cycles` (``TTFS_*`` in :mod:`spikeforge.timing`)."""
        P, k = self.cfg.lanes, self.cfg.winners
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += self.cycles.eq(cycles)
        train = Signal()
        q = Signal(range(k + 1))                     # winner being updated
        current = Signal(lane_candidate_layout(self.cfg))
        for s, e in enumerate(top.entries):
            with m.If(q == s):
                m.d.comb += current.eq(e)
        lanes_busy = Signal()
        m.d.comb += lanes_busy.eq(Cat(lane.busy for lane in lanes).any())
        m.d.sync += self.done.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += enc.start.eq(1)
                    m.d.sync += [cycles.eq(0), train.eq(self.learn)]
                    top.clear(m)
                    m.next = "ENCODE"
            with m.State("ENCODE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(~enc.busy):
                    m.d.comb += [lane.run.eq(1) for lane in lanes]
                    m.next = "INTEGRATE"
            with m.State("INTEGRATE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(~lanes_busy):
                    with m.If(train):
                        m.d.sync += merge_sel.eq(0)
                        m.next = "MERGE"
                    with m.Else():
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
            with m.State("MERGE"):
                m.d.comb += [self.busy.eq(1), merging.eq(1)]
                m.d.sync += [cycles.eq(cycles + 1), merge_sel.eq(merge_sel + 1)]
                with m.If(merge_sel == P * k - 1):
                    m.d.sync += q.eq(0)
                    m.next = "UPDATE"
            with m.State("UPDATE"):                  # start winner q's update in its lane
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If((q == k) | ~current.valid):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    for p, lane in enumerate(lanes):
                        with m.If(current.lane == p):
                            m.d.comb += [lane.update.eq(1), lane.upd_local.eq(current.local),
                                         lane.upd_time.eq(current.time)]
                    m.next = "UPDATING"
            with m.State("UPDATING"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(~lanes_busy):
                    m.d.sync += q.eq(q + 1)
                    m.next = "UPDATE"
