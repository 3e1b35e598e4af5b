"""The decoder on the chip: running class scores from the readout spikes, and the exit test."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.protocol import class_bits, decoder_depth, row_bits


class ExitDecoder(wiring.Component):
    """The linear decoder of ``cfg.decoder`` (:mod:`sw.exit_decoder`, ``docs/decoder.md``).

    Scores: ``C = N_out`` signed ``score_bits`` registers. ``clear`` zeroes them;
    ``add_bias`` adds the bias row; each ``spike_valid`` adds the weight row of
    ``(step, spike_index)``. A row is one ``C * weight_bits`` memory word, read with one
    cycle of latency and added in the next: a score is final two cycles after its last
    ``add_bias`` or spike (one per cycle at most; the adds are pipelined).

    Decision: a ``decide`` pulse scans the scores one class per cycle from the next, in a
    pipeline (the score multiplexer, the compares with the top score and the second, the
    lead against the margin: one register stage each), keeping the top score, its lowest
    class and the second; then ``decided`` pulses with ``best`` and ``exit`` (the top leads
    the second by at least ``margin``, or ``force``): ``C + DECIDE_OVERHEAD`` cycles after
    ``decide`` (:mod:`spikeforge.timing`).

    Weights, while no sample runs: ``w_we`` writes ``w_data`` (signed ``weight_bits``) to
    :func:`~spikeforge.protocol.decoder_address` ``w_addr``; writes to a class beyond ``C``
    are ignored. ``r_data`` is the weight at ``w_addr`` ``WEIGHT_READ_LATENCY`` cycles later
    (address register, memory read, field register), as the layers' weight ports.
    ``score_sel``/``score``: any score, for verification.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        d, n_out = cfg.decoder, cfg.layers[-1]
        self.score_bits = d.score_bits(n_out)
        super().__init__({
            "clear": In(1),
            "add_bias": In(1),
            "spike_valid": In(1),
            "spike_index": In(range(n_out)),
            "step": In(range(max(2, d.steps))),
            "decide": In(1),
            "force": In(1),
            "decided": Out(1),
            "exit": Out(1),
            "best": Out(range(n_out)),
            "w_addr": In(range(decoder_depth(cfg))),
            "w_data": In(d.weight_bits),
            "w_we": In(1),
            "r_data": Out(d.weight_bits),
            "score_sel": In(range(n_out)),
            "score": Out(signed(self.score_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d, C = cfg.decoder, cfg.layers[-1]
        rb, cb, wb = row_bits(cfg), class_bits(cfg), d.weight_bits
        m.submodules.rows = rows = Memory(shape=C * wb, depth=(C << rb) + 1, init=[])
        wr = rows.write_port(granularity=wb)
        rd = rows.read_port()
        cls = self.w_addr[:cb]
        m.d.comb += [wr.addr.eq(self.w_addr[cb:]), wr.data.eq(self.w_data.replicate(C))]
        for c in range(C):
            m.d.comb += wr.en[c].eq(self.w_we & (cls == c))

        # the adds: the row's address in the cycle of the spike (or the bias), its word a
        # cycle later, added then; else the host's registered read address
        host_row = Signal.like(wr.addr)
        host_cls = [Signal(cb, name=f"host_cls{i}") for i in range(2)]
        m.d.sync += [host_row.eq(self.w_addr[cb:]), host_cls[0].eq(cls),
                     host_cls[1].eq(host_cls[0])]
        step = self.step[:rb] if rb else Cat()
        m.d.comb += rd.addr.eq(host_row)
        with m.If(self.spike_valid):
            m.d.comb += rd.addr.eq(Cat(step, self.spike_index))
        with m.If(self.add_bias):
            m.d.comb += rd.addr.eq(C << rb)
        fields = [rd.data[c * wb:(c + 1) * wb] for c in range(C)]      # the row, per class
        m.d.sync += self.r_data.eq(Array(fields)[host_cls[1]])
        pending = Signal()
        m.d.sync += pending.eq(self.spike_valid | self.add_bias)
        scores = [Signal(signed(self.score_bits), name=f"score{c}") for c in range(C)]
        for c, s in enumerate(scores):
            with m.If(self.clear):
                m.d.sync += s.eq(0)
            with m.Elif(pending):
                m.d.sync += s.eq(s + fields[c].as_signed())
            with m.If(self.score_sel == c):
                m.d.comb += self.score.eq(s)

        # the scan, a pipeline of three stages: (1) a score a cycle through the C:1
        # multiplexer into `cur`; (2) `cur` against the top and the second; (3) the lead
        # against the margin, registered; the controller reads it a cycle later
        index = Signal(range(C + 3))
        scanning = Signal()
        cur = Signal(signed(self.score_bits))
        cur_index = Signal(range(C))
        cur_valid = Signal()
        top = Signal(signed(self.score_bits))
        second = Signal(signed(self.score_bits))
        best = Signal(range(C))
        force = Signal()
        leads = Signal()
        smallest = -(1 << (self.score_bits - 1))
        m.d.sync += [cur.eq(Array(scores)[index]), cur_index.eq(index),
                     cur_valid.eq(scanning & (index < C)), leads.eq(top - second >= d.margin)]
        with m.If(self.decide):
            m.d.sync += [scanning.eq(1), index.eq(0), force.eq(self.force)]
        with m.Elif(scanning):
            m.d.sync += index.eq(index + 1)
            with m.If(index == C + 2):
                m.d.sync += scanning.eq(0)
                m.d.comb += [self.decided.eq(1), self.exit.eq(force | leads)]
        with m.If(cur_valid):
            with m.If((cur_index == 0) | (cur > top)):
                m.d.sync += [top.eq(cur), best.eq(cur_index),
                             second.eq(Mux(cur_index == 0, smallest, top))]
            with m.Elif(cur > second):
                m.d.sync += second.eq(cur)
        m.d.comb += self.best.eq(best)
        return m

