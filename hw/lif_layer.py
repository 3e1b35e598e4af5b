"""Time-multiplexed, event-driven LIF layer engine."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.block_ram import RegisteredRAM
from spikeforge.hw.events import event_stream

WEIGHT_READ_LATENCY = 3   # cycles from ``w_addr`` to its word on ``w_rdata``


class LIFLayer(wiring.Component):
    """``n_post`` LIF neurons fed by ``n_pre`` presynaptic neurons, ``lanes`` at a time.

    Storage (``amaranth.lib.memory``, block-RAM inferable, one read + one write port each):

    * weight memory, ``n_pre * G`` words of ``lanes * store_bits`` bits, ``G = ceil(n_post /
      lanes)``; word ``j*G + g`` holds the weights from presynaptic ``j`` to postsynaptic
      ``g*P + p`` in lane ``p`` (bits ``[p*store_bits, (p+1)*store_bits)``). ``store_bits =
      weight_bits + frac_bits``; inference integrates the top ``weight_bits`` of each lane
      (``W_store >> frac_bits``), the learning unit updates all of them;
    * membrane memory, ``G`` words of ``lanes * membrane_bits`` bits.

    Number formats (``docs/number_formats.md``): weights signed ``weight_bits``; membranes
    signed ``membrane_bits``, every addition saturating; ``threshold`` and ``leak_shift`` are
    constants. Semantics are those of :func:`sw.lif.lif_step`.

    Protocol: ``spikes_in`` carries spike events (``end = 0``) and closes each step with an
    end marker (``end = 1``). An end marker accepted while ``clear`` is high starts a clear
    pass instead: it zeroes the membranes and fires nothing (the first step of a sample).
    After an end marker the layer runs its end-of-step pass and emits one ``spikes_out``
    event per firing neuron, ascending, then an end marker. Both streams tolerate arbitrary
    stalls.

    Latency and throughput (input always valid, output always ready): an input spike costs
    ``G`` cycles (the next event is accepted in the cycle the last group issues); an end
    marker costs three cycles for the integration pipeline to drain, ``3*G`` cycles of
    end-of-step pass (read, evaluate, test each group), one per output spike and one for the
    end marker out. A step with ``E`` input events and ``S`` output spikes takes
    ``E*G + 3*G + S + 5`` cycles from the first input offered to the end marker out
    (:func:`sw.cycles.layer_cost`).

    Integration pipeline (4 stages: register the weight address; read the weight; register
    the weight word while the membrane is read; add, saturate, write back): the block RAM's
    address pins are driven by flip-flops (a weight memory is many block RAMs: the address
    has a high fan-out), and every block RAM output goes to one flip-flop, which the adders
    and the weight port read (the block RAM's clock-to-output is slow: 5.8 ns on the ECP5).
    The membrane read port is not transparent; the write-back is forwarded to the next event
    instead.

    Weight port: ``w_we`` writes ``w_wdata`` to word ``w_addr``; ``w_rdata`` returns word
    ``w_addr`` ``WEIGHT_READ_LATENCY`` (3) cycles after it is presented (address register,
    block RAM, word register). Address, data and
    write enable are registered, reads and writes alike, so their order is that of the
    port (a read presented in the cycle after a write to the same word returns the new
    word, one presented with it the old word). Use it only while ``busy`` is low (the
    memory has one address: a write presented while the layer integrates is ignored).

    Raster tap (for the learning unit): ``eos_valid`` is high once per group and step, in
    the end-of-step cycle of group ``eos_group``; ``eos_fires`` holds its ``lanes`` spike
    bits (all zero in a clear pass).
    """

    def __init__(self, *, n_pre: int, n_post: int, lanes: int, weight_bits: int,
                 membrane_bits: int, threshold: int, leak_shift: int, frac_bits: int = 0):
        self.n_pre, self.n_post, self.lanes = n_pre, n_post, lanes
        self.weight_bits, self.membrane_bits = weight_bits, membrane_bits
        self.frac_bits, self.store_bits = frac_bits, weight_bits + frac_bits
        self.threshold, self.leak_shift = threshold, leak_shift
        self.groups = math.ceil(n_post / lanes)
        self.mem_groups = max(self.groups, 2)   # a 1-word memory would get a 0-bit address
        self.depth = n_pre * self.groups
        super().__init__({
            "spikes_in": In(event_stream(n_pre)),
            "spikes_out": Out(event_stream(n_post)),
            "clear": In(1),
            "w_addr": In(range(self.depth)),
            "w_wdata": In(lanes * self.store_bits),
            "w_we": In(1),
            "w_rdata": Out(lanes * self.store_bits),
            "busy": Out(1),
            "eos_valid": Out(1),
            "eos_group": Out(range(self.mem_groups)),
            "eos_fires": Out(lanes),
        })

    @classmethod
    def from_config(cls, cfg, layer: int) -> LIFLayer:
        n_pre, n_post = cfg.weight_shape(layer)
        return cls(n_pre=n_pre, n_post=n_post, lanes=cfg.lanes, weight_bits=cfg.weight_bits,
                   membrane_bits=cfg.membrane_bits, threshold=cfg.threshold,
                   leak_shift=cfg.leak_shift, frac_bits=cfg.frac_bits)

    def elaborate(self, platform):
        m = Module()
        P, G, mb = self.lanes, self.groups, self.membrane_bits
        sb, F = self.store_bits, self.frac_bits
        v_min, v_max = -(1 << (mb - 1)), (1 << (mb - 1)) - 1

        # the weight memory's ports start from flip-flops (hw/block_ram.py)
        m.submodules.weights = wmem = RegisteredRAM(width=P * sb, depth=self.depth)
        m.submodules.membranes = vmem = Memory(shape=P * mb, depth=self.mem_groups, init=[])
        v_wr = vmem.write_port()
        v_rd = vmem.read_port()   # not transparent: integration forwards its own write-back

        base = Signal(range(self.depth))          # j*G of the event being integrated
        group = Signal(range(self.mem_groups))    # group being issued
        clear = Signal()                          # end-of-step pass is a clear pass
        mask = Signal(P)                          # spikes of the group being emitted
        rd_valid = Signal()                       # integration membrane read in this cycle
        rd_group = Signal(range(self.mem_groups))
        wb_valid = Signal()                       # integration write-back in this cycle
        wb_group = Signal(range(self.mem_groups))
        integrating = Signal()
        evaluating = Signal()                     # the EOS_EVAL cycle
        m.d.sync += evaluating.eq(0)

        m.d.comb += [
            wmem.addr.eq(Mux(integrating, base + group, self.w_addr)),
            wmem.wr_data.eq(self.w_wdata), wmem.wr_en.eq(self.w_we & ~integrating),
            v_rd.addr.eq(Mux(rd_valid, rd_group, group)),
        ]

        # Integration: one group per cycle. Cycle 1 registers the weight address; cycle 2
        # reads the weight; cycle 3 registers the weight's top bits and reads the membrane;
        # cycle 4 adds and writes back.
        w_word = Signal(P * sb, reset_less=True)  # the word read, registered
        addr_valid = Signal()                     # the weight address is registered
        addr_group = Signal(range(self.mem_groups))
        m.d.sync += [addr_valid.eq(integrating), addr_group.eq(group),
                     rd_valid.eq(addr_valid), rd_group.eq(addr_group),
                     wb_valid.eq(rd_valid), wb_group.eq(rd_group),
                     w_word.eq(wmem.rd_data)]
        w_inf = Cat(*[w_word[p * sb + F:(p + 1) * sb] for p in range(P)])   # inference bits
        m.d.comb += self.w_rdata.eq(w_word)
        # A membrane read in the cycle of an integration write-back to the same word
        # (back-to-back events with G = 1) returns the old word, so that write-back is
        # forwarded. (A transparent port would put its bypass on the read address, in front
        # of the LUT RAM's read; this keeps the read data a flip-flop.)
        wi = self.weight_bits
        forward = Signal()
        written = Signal(P * mb)
        v_word = Mux(forward, written, v_rd.data)
        sums = []
        for p in range(P):
            v = v_word[p * mb:(p + 1) * mb].as_signed()
            w = w_inf[p * wi:(p + 1) * wi].as_signed()
            s = Signal(signed(mb + 1), name=f"sum{p}")
            m.d.comb += s.eq(v + w)
            # saturate: the sum left the membrane range iff its top two bits differ (the
            # config guarantees weight_bits <= membrane_bits, so it fits mb + 1 bits); no
            # comparison chains after the adder
            out_of_range = s[mb] != s[mb - 1]
            sums.append(Mux(out_of_range, Mux(s[mb], v_min, v_max), s)[:mb])

        m.d.sync += [forward.eq(wb_valid & (v_rd.addr == wb_group)),
                     written.eq(Cat(*sums))]

        # End-of-step evaluation of the group read in the previous cycle (straight from the
        # read port: the pass starts after the last integration write-back).
        fires, leaked = [], []
        for p in range(P):
            v = v_rd.data[p * mb:(p + 1) * mb].as_signed()
            live = (group * P + p) < self.n_post   # padding lanes never fire
            f = Signal(name=f"fire{p}")
            d = Signal(signed(mb + 1), name=f"reset{p}")     # v - threshold
            m.d.comb += [d.eq(v - self.threshold), f.eq(~d[mb] & live & ~clear)]
            fires.append(f)
            # leak both candidates, then select (the spike decision is not in front of the
            # leak's subtractor)
            leak_fired = d - (d >> self.leak_shift)
            leak_kept = v - (v >> self.leak_shift)
            leaked.append(Mux(clear, 0, Mux(f, leak_fired, leak_kept))[:mb])

        lowest = Signal(range(max(P, 2)))         # lowest set lane of mask (1 bit at P = 1)
        for p in reversed(range(P)):
            with m.If(mask[p]):
                m.d.comb += lowest.eq(p)

        def take_event():
            """Accept the next input event (the caller asserts ready)."""
            with m.If(self.spikes_in.valid):
                with m.If(self.spikes_in.payload.end):
                    m.d.sync += [clear.eq(self.clear), group.eq(0)]
                    m.next = "EOS_DRAIN"
                with m.Else():
                    m.d.sync += [base.eq(self.spikes_in.payload.index * G), group.eq(0)]
                    m.next = "INTEGRATE"
            with m.Else():
                m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.spikes_in.ready.eq(1)
                take_event()
            with m.State("INTEGRATE"):
                m.d.comb += [integrating.eq(1), self.busy.eq(1)]
                with m.If(group == G - 1):
                    m.d.comb += self.spikes_in.ready.eq(1)
                    take_event()
                with m.Else():
                    m.d.sync += group.eq(group + 1)
            with m.State("EOS_DRAIN"):           # the last integration's weight read,
                m.d.comb += self.busy.eq(1)
                m.next = "EOS_DRAIN2"
            with m.State("EOS_DRAIN2"):          # its membrane read
                m.d.comb += self.busy.eq(1)
                m.next = "EOS_DRAIN3"
            with m.State("EOS_DRAIN3"):          # and its write-back
                m.d.comb += self.busy.eq(1)
                m.next = "EOS_READ"
            with m.State("EOS_READ"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += evaluating.eq(1)
                m.next = "EOS_EVAL"
            with m.State("EOS_EVAL"):
                m.d.comb += [self.busy.eq(1), self.eos_valid.eq(1),
                             self.eos_fires.eq(Cat(*fires))]
                m.d.sync += mask.eq(Cat(*fires))
                m.next = "EOS_MASK"
            with m.State("EOS_MASK"):
                # the group's spikes decide the next state from flip-flops: the threshold
                # compares, their OR and the state logic did not fit in the evaluation cycle
                m.d.comb += self.busy.eq(1)
                with m.If(mask.any()):
                    m.next = "EMIT"
                with m.Elif(group == G - 1):
                    m.next = "END"
                with m.Else():
                    m.d.sync += group.eq(group + 1)
                    m.next = "EOS_READ"
            with m.State("EMIT"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.spikes_out.valid.eq(1),
                    self.spikes_out.payload.index.eq(group * P + lowest),
                ]
                with m.If(self.spikes_out.ready):
                    rest = mask & (mask - 1)
                    m.d.sync += mask.eq(rest)
                    with m.If(rest == 0):
                        with m.If(group == G - 1):
                            m.next = "END"
                        with m.Else():
                            m.d.sync += group.eq(group + 1)
                            m.next = "EOS_READ"
            with m.State("END"):
                m.d.comb += [self.busy.eq(1), self.spikes_out.valid.eq(1),
                             self.spikes_out.payload.end.eq(1)]
                with m.If(self.spikes_out.ready):
                    m.next = "IDLE"

        # the membrane write: an integration write-back, or the end-of-step evaluation's
        # (EOS_EVAL, flagged by `evaluating`: no state decode in front of the LUT-RAM write)
        m.d.comb += [self.eos_group.eq(group), v_wr.en.eq(wb_valid | evaluating),
                     v_wr.addr.eq(Mux(wb_valid, wb_group, group)),
                     v_wr.data.eq(Mux(wb_valid, Cat(*sums), Cat(*leaked)))]

        return m
