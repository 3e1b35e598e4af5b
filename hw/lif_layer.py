"""Time-multiplexed, event-driven LIF layer engine."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.block_ram import RegisteredRAM
from spikeforge.hw.events import event_stream
from spikeforge.hw.spram import SPRAMStore
from spikeforge.timing import INTEGRATE_DRAIN

__all__ = ["DRAIN_STATES", "LIFLayer"]

# The end-of-step pass waits INTEGRATE_DRAIN cycles for the last integration to land, one
# state each: EOS_DRAIN (its weight read), EOS_DRAIN2 (its membrane read), EOS_DRAIN3 (its
# write-back).
DRAIN_STATES = tuple("EOS_DRAIN" if i == 0 else f"EOS_DRAIN{i + 1}"
                     for i in range(INTEGRATE_DRAIN))


def times_constant(value, k: int):
    """``value * k`` for a constant ``k >= 1`` as a sum of shifted copies of ``value``, one per
    set bit of ``k``: adders in the fabric. Yosys maps a constant product that is not a power
    of two to a MULT18X18D on the ECP5, whose 3.9 ns (after the input FIFO's block RAM
    output) was fmnist-320-64-ecp5's longest path (G = 20)."""
    terms = [value << b for b in range(k.bit_length()) if k >> b & 1]
    return sum(terms[1:], terms[0])


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
    marker costs ``INTEGRATE_DRAIN`` (3) cycles for the integration pipeline to drain,
    ``END_OF_STEP_PASSES * G`` (``3*G``) cycles of end-of-step pass (read, evaluate, test
    each group), one per output spike and one for the end marker out. A step with ``E``
    input events and ``S`` output spikes takes ``E*G + 3*G + S + LAYER_OVERHEAD`` (``+ 5``)
    cycles from the first input offered to the end marker out
    (:func:`sw.cycles.layer_cost`; the constants are in :mod:`spikeforge.timing`).

    Integration pipeline (4 stages: register the weight address; read the weight; register
    the weight word while the membrane is read; add, saturate, write back): the block RAM's
    address pins are driven by flip-flops (a weight memory is many block RAMs: the address
    has a high fan-out), and every block RAM output goes to one flip-flop, which the adders
    and the weight port read (the block RAM's clock-to-output is slow: 5.8 ns on the ECP5).
    The membrane read port is not transparent; the write-back is forwarded to the next event
    instead.

    Weight port: ``w_we`` writes ``w_wdata`` to word ``w_addr``; ``w_rdata`` returns word
    ``w_addr`` ``WEIGHT_READ_LATENCY`` (3) cycles after it is presented (address register,
    block RAM, word register). Address, data and write enable are registered, reads and
    writes alike, so their order is that of the port (a read presented in the cycle after a
    write to the same word returns the new word; what a write cycle returns is undefined: the
    old word from block RAM, nothing meaningful from SPRAM). Use it only while ``busy`` is
    low (the memory has one address: a write presented while the layer integrates is
    ignored).

    With ``spram`` the weight memory is :class:`~hw.spram.SPRAMStore` (the iCE40UP5K's
    SPRAMs) instead of :class:`~hw.block_ram.RegisteredRAM`: the same latency and cycles.

    Raster tap (for the learning unit): ``eos_valid`` is high once per group and step, in
    the end-of-step cycle of group ``eos_group``; ``eos_fires`` holds its ``lanes`` spike
    bits (all zero in a clear pass). With ``near_threshold`` (near eligibility,
    ``docs/learning.md``) there is also ``eos_near``, valid with ``eos_valid``: per lane
    ``v >= near_threshold`` of the same membrane ``v`` the spike test reads (after the step's
    integration, before the reset), zero in padding lanes and in a clear pass, like
    ``eos_fires``; a spike implies its near bit (``near_threshold <= threshold``).

    Dropout (``dropout=True``, the hidden layers of a config with ``dropout_hidden``): the
    ``keep`` input, ``lanes`` bits for group ``eos_group``, read in the end-of-step cycle
    (:class:`~hw.dropout_mask.DropoutMask` supplies it with no cycle of its own): a lane
    whose bit is low does not fire (nor is it reset: its membrane integrates and leaks as
    usual) and is not near; ``eos_fires``, ``eos_near`` and the output events are the gated
    ones. Without ``dropout`` the layer has no such input (and is the same gateware as
    before it existed).
    """

    def __init__(self, *, n_pre: int, n_post: int, lanes: int, weight_bits: int,
                 membrane_bits: int, threshold: int, leak_shift: int, frac_bits: int = 0,
                 near_threshold: int | None = None, dropout: bool = False,
                 spram: bool = False):
        self.n_pre, self.n_post, self.lanes = n_pre, n_post, lanes
        self.weight_bits, self.membrane_bits = weight_bits, membrane_bits
        self.frac_bits, self.store_bits = frac_bits, weight_bits + frac_bits
        self.threshold, self.leak_shift = threshold, leak_shift
        if near_threshold is not None and not 1 <= near_threshold <= threshold:
            raise ValueError(f"near_threshold: {near_threshold} is out of range, legal range "
                             f"is [1, {threshold}]")
        self.near_threshold = near_threshold
        self.groups = math.ceil(n_post / lanes)
        self.mem_groups = max(self.groups, 2)   # a 1-word memory would get a 0-bit address
        self.depth = n_pre * self.groups
        self.dropout, self.spram = dropout, spram
        ports = {
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
        }
        if near_threshold is not None:
            ports["eos_near"] = Out(lanes)
        if dropout:
            ports["keep"] = In(lanes)
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg, layer: int) -> LIFLayer:
        n_pre, n_post = cfg.weight_shape(layer)
        return cls(n_pre=n_pre, n_post=n_post, lanes=cfg.lanes, weight_bits=cfg.weight_bits,
                   membrane_bits=cfg.membrane_bits, threshold=cfg.threshold,
                   leak_shift=cfg.leak_shift, frac_bits=cfg.frac_bits,
                   near_threshold=cfg.near_threshold if cfg.near_eligibility else None,
                   dropout=layer in cfg.dropout_layers, spram=layer in cfg.spram_layers)

    def elaborate(self, platform):
        m = Module()
        # the weight memory's ports start from flip-flops (hw/block_ram.py)
        store = SPRAMStore if self.spram else RegisteredRAM
        m.submodules.weights = wmem = store(width=self.lanes * self.store_bits, depth=self.depth)
        m.submodules.membranes = vmem = Memory(shape=self.lanes * self.membrane_bits,
                                               depth=self.mem_groups, init=[])
        v_wr = vmem.write_port()
        v_rd = vmem.read_port()   # not transparent: integration forwards its own write-back

        ctl = _Control(self)
        m.d.sync += ctl.evaluating.eq(0)
        w_word = self._weight_port(m, wmem, ctl)
        wb_valid, wb_group, sums = self._integration(m, v_rd, w_word, ctl)
        fires, leaked, near = self._evaluation(m, v_rd, ctl)
        self._sequencer(m, ctl, fires)
        if near is not None:
            # no state decode in front of it: the tap's reader takes it with eos_valid
            m.d.comb += self.eos_near.eq(Cat(*near))

        # the membrane write: an integration write-back, or the end-of-step evaluation's
        # (EOS_EVAL, flagged by `evaluating`: no state decode in front of the LUT-RAM write)
        m.d.comb += [self.eos_group.eq(ctl.group), v_wr.en.eq(wb_valid | ctl.evaluating),
                     v_wr.addr.eq(Mux(wb_valid, wb_group, ctl.group)),
                     v_wr.data.eq(Mux(wb_valid, Cat(*sums), Cat(*leaked)))]
        return m

    def _weight_port(self, m, wmem, ctl):
        """The weight memory's one port: the integration's address while ``INTEGRATE`` issues
        groups, else the host's (``w_addr``/``w_wdata``/``w_we``; a write is ignored while
        integrating). Returns ``w_word``, the word read, registered: ``w_rdata`` and the
        integration's adders read it, ``WEIGHT_READ_LATENCY`` cycles after the address (the
        block RAM's address register and read, then this register). ``lanes * store_bits``
        bits, lane ``p`` in bits ``[p*store_bits, (p+1)*store_bits)``."""
        w_word = Signal(self.lanes * self.store_bits, reset_less=True)  # the word read, registered
        m.d.comb += [
            wmem.addr.eq(Mux(ctl.integrating, ctl.base + ctl.group, self.w_addr)),
            wmem.wr_data.eq(self.w_wdata), wmem.wr_en.eq(self.w_we & ~ctl.integrating),
            self.w_rdata.eq(w_word),
        ]
        m.d.sync += w_word.eq(wmem.rd_data)
        return w_word

    def _integration(self, m, v_rd, w_word, ctl):
        """The integration pipeline, one group per cycle: cycle 1 registers the weight address
        (``integrating``); cycle 2 reads the weight; cycle 3 registers the weight word
        (``w_word``) and reads the membrane (``rd_valid``); cycle 4 adds and writes back
        (``wb_valid``): ``INTEGRATE_DRAIN`` cycles behind the issue. Membranes signed
        ``membrane_bits``, weights the top ``weight_bits`` of each lane's ``store_bits``;
        the sum saturates. Returns ``(wb_valid, wb_group, sums)``, the write-back of the cycle
        (one ``membrane_bits`` value per lane)."""
        P, mb, wi = self.lanes, self.membrane_bits, self.weight_bits
        sb, F = self.store_bits, self.frac_bits
        v_min, v_max = -(1 << (mb - 1)), (1 << (mb - 1)) - 1
        rd_valid = Signal()                       # integration membrane read in this cycle
        rd_group = Signal(range(self.mem_groups))
        wb_valid = Signal()                       # integration write-back in this cycle
        wb_group = Signal(range(self.mem_groups))
        addr_valid = Signal()                     # the weight address is registered
        addr_group = Signal(range(self.mem_groups))
        # the membrane read port: the integration's read, else the end-of-step pass's group
        m.d.comb += v_rd.addr.eq(Mux(rd_valid, rd_group, ctl.group))
        m.d.sync += [addr_valid.eq(ctl.integrating), addr_group.eq(ctl.group),
                     rd_valid.eq(addr_valid), rd_group.eq(addr_group),
                     wb_valid.eq(rd_valid), wb_group.eq(rd_group)]
        w_inf = Cat(*[w_word[p * sb + F:(p + 1) * sb] for p in range(P)])   # inference bits
        # A membrane read in the cycle of an integration write-back to the same word
        # (back-to-back events with G = 1) returns the old word, so that write-back is
        # forwarded. (A transparent port would put its bypass on the read address, in front
        # of the LUT RAM's read; this keeps the read data a flip-flop.)
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
        return wb_valid, wb_group, sums

    def _evaluation(self, m, v_rd, ctl):
        """End-of-step evaluation of the group read in the previous cycle (straight from the
        read port: the pass starts after the last integration write-back), combinational:
        per lane the spike ``v - threshold >= 0`` (never in a padding lane, a clear pass or a
        lane ``keep`` drops) and the new membrane, ``membrane_bits`` signed: reset by
        subtraction if it fired, then leaked, ``v - (v >> leak_shift)``; zero in a clear
        pass. With a ``near_threshold``, also the near bit ``v - near_threshold >= 0`` per
        lane (masked like the spike, ``keep`` included; it only feeds the learning unit's tap
        register, beside the spike path). Returns ``(fires, leaked, near)``, one of each per
        lane (``near``: ``None`` without a ``near_threshold``)."""
        P, mb = self.lanes, self.membrane_bits
        fires, leaked = [], []
        near = None if self.near_threshold is None else []
        for p in range(P):
            v = v_rd.data[p * mb:(p + 1) * mb].as_signed()
            live = (ctl.group * P + p) < self.n_post   # padding lanes never fire
            f = Signal(name=f"fire{p}")
            d = Signal(signed(mb + 1), name=f"reset{p}")     # v - threshold
            fire = ~d[mb] & live & ~ctl.clear
            if self.dropout:
                fire &= self.keep[p]
            m.d.comb += [d.eq(v - self.threshold), f.eq(fire)]
            fires.append(f)
            if near is not None:
                # a second comparator on the same v, the sign of v - near_threshold
                n = Signal(name=f"near{p}")
                dn = Signal(signed(mb + 1), name=f"near_diff{p}")
                near_bit = ~dn[mb] & live & ~ctl.clear
                if self.dropout:
                    near_bit &= self.keep[p]        # a dropped neuron is never near either
                m.d.comb += [dn.eq(v - self.near_threshold), n.eq(near_bit)]
                near.append(n)
            # leak both candidates, then select (the spike decision is not in front of the
            # leak's subtractor)
            leak_fired = d - (d >> self.leak_shift)
            leak_kept = v - (v >> self.leak_shift)
            leaked.append(Mux(ctl.clear, 0, Mux(f, leak_fired, leak_kept))[:mb])
        return fires, leaked, near

    def _sequencer(self, m, ctl, fires):
        """The layer's state machine: takes events and integrates them, drains, runs the
        end-of-step pass and emits the spikes (cycle counts in the class docstring)."""
        P = self.lanes
        lowest = Signal(range(max(P, 2)))         # lowest set lane of mask (1 bit at P = 1)
        for p in reversed(range(P)):
            with m.If(ctl.mask[p]):
                m.d.comb += lowest.eq(p)
        with m.FSM():
            self._input_states(m, ctl)
            self._drain_states(m)
            self._end_of_step_states(m, ctl, fires)
            self._output_states(m, ctl, lowest)

    def _input_states(self, m, ctl):
        """``IDLE`` and ``INTEGRATE``: a spike event issues its ``G`` groups, one per cycle
        (``integrating``), and the next event is taken in the cycle the last group issues;
        an end marker (a clear marker with ``clear``) starts the drain."""
        G = self.groups

        def take_event():
            """Accept the next input event (the caller asserts ready)."""
            with m.If(self.spikes_in.valid):
                with m.If(self.spikes_in.payload.end):
                    m.d.sync += [ctl.clear.eq(self.clear), ctl.group.eq(0)]
                    m.next = (*DRAIN_STATES, "EOS_READ")[0]
                with m.Else():
                    m.d.sync += [ctl.base.eq(times_constant(self.spikes_in.payload.index, G)),
                                 ctl.group.eq(0)]
                    m.next = "INTEGRATE"
            with m.Else():
                m.next = "IDLE"

        with m.State("IDLE"):
            m.d.comb += self.spikes_in.ready.eq(1)
            take_event()
        with m.State("INTEGRATE"):
            m.d.comb += [ctl.integrating.eq(1), self.busy.eq(1)]
            with m.If(ctl.group == G - 1):
                m.d.comb += self.spikes_in.ready.eq(1)
                take_event()
            with m.Else():
                m.d.sync += ctl.group.eq(ctl.group + 1)

    def _drain_states(self, m):
        """``DRAIN_STATES``, one cycle each: the last integration's weight read, membrane
        read and write-back land before the end-of-step pass reads its first group."""
        for state, after in zip(DRAIN_STATES, (*DRAIN_STATES[1:], "EOS_READ"), strict=True):
            with m.State(state):
                m.d.comb += self.busy.eq(1)
                m.next = after

    def _end_of_step_states(self, m, ctl, fires):
        """``EOS_READ``, ``EOS_EVAL``, ``EOS_MASK``: the ``END_OF_STEP_PASSES`` cycles per
        group of the end-of-step pass (read the membranes; evaluate and write them back,
        tapped on ``eos_*``; test the registered spikes), then ``EMIT``, the next group or
        ``END``."""
        G = self.groups
        with m.State("EOS_READ"):
            m.d.comb += self.busy.eq(1)
            m.d.sync += ctl.evaluating.eq(1)
            m.next = "EOS_EVAL"
        with m.State("EOS_EVAL"):
            m.d.comb += [self.busy.eq(1), self.eos_valid.eq(1),
                         self.eos_fires.eq(Cat(*fires))]
            m.d.sync += ctl.mask.eq(Cat(*fires))
            m.next = "EOS_MASK"
        with m.State("EOS_MASK"):
            # the group's spikes decide the next state from flip-flops: the threshold
            # compares, their OR and the state logic did not fit in the evaluation cycle
            m.d.comb += self.busy.eq(1)
            with m.If(ctl.mask.any()):
                m.next = "EMIT"
            with m.Elif(ctl.group == G - 1):
                m.next = "END"
            with m.Else():
                m.d.sync += ctl.group.eq(ctl.group + 1)
                m.next = "EOS_READ"

    def _output_states(self, m, ctl, lowest):
        """``EMIT`` and ``END``: the group's spikes, lowest lane first, one event per cycle
        the output takes (index ``group * P + lane``), then the end marker; back to
        ``IDLE``."""
        P, G = self.lanes, self.groups
        with m.State("EMIT"):
            m.d.comb += [
                self.busy.eq(1),
                self.spikes_out.valid.eq(1),
                self.spikes_out.payload.index.eq(ctl.group * P + lowest),
            ]
            with m.If(self.spikes_out.ready):
                rest = ctl.mask & (ctl.mask - 1)
                m.d.sync += ctl.mask.eq(rest)
                with m.If(rest == 0):
                    with m.If(ctl.group == G - 1):
                        m.next = "END"
                    with m.Else():
                        m.d.sync += ctl.group.eq(ctl.group + 1)
                        m.next = "EOS_READ"
        with m.State("END"):
            m.d.comb += [self.busy.eq(1), self.spikes_out.valid.eq(1),
                         self.spikes_out.payload.end.eq(1)]
            with m.If(self.spikes_out.ready):
                m.next = "IDLE"


class _Control:
    """The state machine's registers and flags that the datapath parts of a
    :class:`LIFLayer` read (one instance per elaboration)."""

    def __init__(self, layer: LIFLayer):
        self.base = Signal(range(layer.depth))          # j*G of the event being integrated
        self.group = Signal(range(layer.mem_groups))    # group being issued
        self.clear = Signal()                           # end-of-step pass is a clear pass
        self.mask = Signal(layer.lanes)                 # spikes of the group being emitted
        self.integrating = Signal()                     # the INTEGRATE state
        self.evaluating = Signal()                      # the EOS_EVAL cycle (a flip-flop)
