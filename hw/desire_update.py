"""The weight update of desire backpropagation: trace, eligibilities, rounding, new word."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.block_ram import KEEP_COPY
from spikeforge.hw.desire_formats import desire_word, raster_word, weight_word


class WeightUpdate(wiring.Component):
    """The new weight word of one pair (presynaptic neuron ``j``, group of ``P``
    postsynaptic neurons), steps 3 to 5 of ``docs/learning.md``; shared by all layers.

    ``j``'s trace is rebuilt from its spikes of steps ``0 .. T-2``: ``x[0] = 0``,
    ``x[t] = x[t-1] - (x[t-1] >> leak_shift) + ONE * s_j[t-1]``; each lane accumulates its
    eligibility ``acc = sum_{t=1}^{T-1} s_n[t] * x[t]``; then ``|dW| = (acc + half) >>
    lr_shift`` (``half = 2**(lr_shift - 1)`` for ``nearest`` rounding, else 0) moves each
    active lane's stored weight in its desire's direction, saturated.

    Parameters
    ----------
    cfg : Config
        The network's config (with a ``[learning]`` section).

    Attributes
    ----------
    start, lr_shift : In(1), In(range(LR_SHIFT[1] + 1))
        The learning pass starts: ``lr_shift`` is sampled, clamped to ``acc_bits + 1`` (with
        ``acc < 2**acc_bits`` any larger shift rounds every ``acc`` to 0, as that one does).
    issue : In(1)
        Cycle 0 of a pair: its raster word is being read.
    start_acc, stop_acc : In(1)
        Cycle 1; cycle ``T``: the accumulation runs in cycles ``2 .. T``.
    pre_bits : In(T)
        ``j``'s spikes of steps ``0 .. T-2`` (bit ``T-1`` clear), from cycle 1 on.
    post_raster : In(raster_word(cfg))
        The group's raster word, in cycle 1.
    weights, desires : In(weight_word(cfg)), In(desire_word(cfg))
        The pair's weight word and the group's desires, in cycle ``T + 1``.
    wdata : Out(weight_word(cfg))
        The new weight word, from cycle ``T + 2`` on (until the next pair rounds).

    Notes
    -----
    Latency: ``T + timing.PAIR_OVERHEAD`` cycles a pair, the write included: cycle 0 issues,
    cycle 1 loads the shift registers and clears the trace, cycles ``2 .. T`` accumulate,
    cycle ``T + 1`` registers the rounding shift with the weights and the desires, cycle
    ``T + 2`` writes ``wdata`` (computed from flip-flops). Pairs may follow back to back.

    Number formats: trace unsigned ``0 .. trace_max`` (``ONE = 2**trace_frac_bits``);
    eligibilities unsigned ``0 .. acc_max``, held as ``half + acc`` (the accumulators start at
    ``half``, so no adder is in front of the rounding shift); stored weights signed
    ``weight_bits + F``, saturated to ``[store_min, store_max]``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "start": In(1),
            "lr_shift": In(range(LR_SHIFT[1] + 1)),
            "issue": In(1),
            "start_acc": In(1),
            "stop_acc": In(1),
            "pre_bits": In(cfg.time_steps),
            "post_raster": In(raster_word(cfg)),
            "weights": In(weight_word(cfg)),
            "desires": In(desire_word(cfg)),
            "wdata": Out(weight_word(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        shift, half = self._rounding_shift(m)
        accs = self._eligibilities(m, half)
        self._new_word(m, accs, shift)
        return m

    def _rounding_shift(self, m):
        """``lr_shift`` clamped, sampled on ``start``; the rounding half it gives."""
        cfg = self.cfg
        acc_bits = cfg.acc_max.bit_length()
        shift = Signal(range(acc_bits + 2))
        with m.If(self.start):
            m.d.sync += shift.eq(Mux(self.lr_shift > acc_bits + 1, acc_bits + 1, self.lr_shift))
        half = Signal(acc_bits + 1)   # 2**(shift - 1) for round-half-up, else 0
        if cfg.learning.rounding == "nearest":
            m.d.comb += half.eq((Const(1, acc_bits + 2) << shift) >> 1)
        return shift, half

    def _eligibilities(self, m, half):
        """Cycles 1 .. T: load the shift registers, rebuild the trace, accumulate."""
        cfg = self.cfg
        T, P = cfg.time_steps, cfg.lanes
        pre_sh = Signal(T)        # presynaptic spikes, shifted one step per accumulate cycle
        x = Signal(range(cfg.trace_max + 1))
        x_next = Signal.like(x)
        m.d.comb += x_next.eq(x - (x >> cfg.leak_shift) + Mux(pre_sh[0], cfg.trace_one, 0))
        # The accumulators, on a flag of their own (the accumulate cycles); each lane's
        # postsynaptic spikes of steps 1 .. T-1 wait in a shift register (loaded in cycle 1);
        # otherwise they load the rounding half, ready for the next pair (the rounding cycle
        # has read them by then). One copy of the flag per lane and one for the trace (kept
        # apart in synthesis: KEEP_COPY; a single flag reaching every accumulator bit was a
        # critical path).
        acc_flags = [Signal(name=f"accumulating{p}", attrs={KEEP_COPY: 1}) for p in range(P + 1)]
        accumulating = acc_flags[P]
        with m.If(self.start_acc | self.stop_acc):
            m.d.sync += [a.eq(self.start_acc) for a in acc_flags]
        post_sh = [Signal(T - 1, name=f"post{p}") for p in range(P)]
        accs = [Signal(range(cfg.acc_max + (1 << cfg.acc_max.bit_length()) + 1), name=f"acc{p}")
                for p in range(P)]       # half + the eligibility accumulated
        for p, a in enumerate(accs):
            m.d.sync += a.eq(Mux(acc_flags[p], a + Mux(post_sh[p][0], x_next, 0), half))
        # The shift registers and the trace: `loading` (cycle 1: selecting bit t of a lane in
        # every accumulate cycle, then adding, was the longest path) loads them,
        # `accumulating` shifts them (a state decode in front of their enables was
        # mnist-ecp5's longest path)
        loading = Signal()
        m.d.sync += loading.eq(self.issue)
        with m.If(loading):
            m.d.sync += [x.eq(0), pre_sh.eq(self.pre_bits)]
            m.d.sync += [ps.eq(self.post_raster[p][1:]) for p, ps in enumerate(post_sh)]
        with m.Elif(accumulating):
            m.d.sync += [x.eq(x_next), pre_sh.eq(pre_sh >> 1)]
        for p, ps in enumerate(post_sh):
            with m.If(~loading & acc_flags[p]):
                m.d.sync += ps.eq(ps >> 1)
        return accs

    def _new_word(self, m, accs, shift):
        """Cycle T + 1 registers the rounding shift (a barrel shifter, with an adder and the
        clamp after it, gets a cycle of its own), the weight word and the desires; from
        T + 2 on, ``wdata`` is the new word, computed from those flip-flops."""
        cfg = self.cfg
        rounding = Signal()
        m.d.sync += rounding.eq(self.stop_acc)
        mags = [Signal(range(cfg.acc_max + 1), name=f"mag{p}") for p in range(cfg.lanes)]
        weights = Signal(weight_word(cfg), name="weights_q")
        desires = Signal(desire_word(cfg), name="desires_q")
        with m.If(rounding):
            m.d.sync += [mag.eq(a >> shift) for mag, a in zip(mags, accs, strict=True)]
            m.d.sync += [weights.eq(self.weights), desires.eq(self.desires)]
        for p, mag in enumerate(mags):
            w, d = weights[p], desires[p]
            moved = Signal(signed(max(cfg.store_bits, cfg.acc_max.bit_length()) + 2),
                           name=f"moved{p}")
            m.d.comb += moved.eq(Mux(d.sign, w + mag, w - mag))
            clamped = Mux(moved > cfg.store_max, cfg.store_max,
                          Mux(moved < cfg.store_min, cfg.store_min, moved))
            m.d.comb += self.wdata[p].eq(Mux(d.active, clamped, w))
