"""The weight update of desire backpropagation: trace, eligibilities, rounding, new word."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge import lfsr
from spikeforge.config import LR_SHIFT
from spikeforge.hw.block_ram import KEEP_COPY
from spikeforge.hw.desire_formats import desire_word, raster_word, weight_word
from spikeforge.hw.lfsr import GaloisLfsr


class WeightUpdate(wiring.Component):
    """The new weight word of one pair (presynaptic neuron ``j``, group of ``P``
    postsynaptic neurons), steps 3 to 5 of ``docs/learning.md``; shared by all layers.

    ``j``'s trace is rebuilt from its spikes of steps ``0 .. T-2``: ``x[0] = 0``,
    ``x[t] = x[t-1] - (x[t-1] >> leak_shift) + ONE * s_j[t-1]``; each lane accumulates its
    eligibility ``acc = sum_{t=1}^{T-1} s_n[t] * x[t]``; then ``|dW| = (acc + r) >> shift``
    (``shift``: ``lr_shift`` clamped; ``r = 2**(shift - 1)`` for ``nearest`` rounding, 0 for
    ``floor``, and for ``stochastic`` the low ``shift`` bits of the lane's LFSR) moves each
    active lane's stored weight in its desire's direction, saturated.

    Stochastic rounding: ``P`` :class:`~hw.lfsr.GaloisLfsr` (one per lane: each lane needs
    its own ``shift`` random bits in the cycle a word's ``P`` lanes are rounded), reset to
    ``cfg.lfsr_seeds``, all stepping in cycle 1 of every pair (``loading``, the registered
    ``issue``): the accumulators load ``r`` of the state before that step, so pair ``n``
    since reset rounds with the states ``n`` steps after the seeds
    (:func:`sw.desire.rounding_offsets`).

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
        The group's raster word, in cycle 1: its spikes, or with near eligibility its near
        bits (``docs/learning.md``); the eligibility's post term either way.
    weights, desires : In(weight_word(cfg)), In(desire_word(cfg))
        The pair's weight word and the group's desires, in cycle ``T + 1``.
    wdata : Out(weight_word(cfg))
        The new weight word, from cycle ``T + 2`` on (until the next pair rounds).
    lfsr : Out(P * lfsr.WIDTH)
        Stochastic rounding only: the lane LFSRs, lane ``p`` in bits ``[p*W, (p+1)*W)``
        (for testbenches and probes).

    Notes
    -----
    Latency: ``T + timing.PAIR_OVERHEAD`` cycles a pair, the write included: cycle 0 issues,
    cycle 1 loads the shift registers and clears the trace, cycles ``2 .. T`` accumulate,
    cycle ``T + 1`` registers the rounding shift with the weights and the desires, cycle
    ``T + 2`` writes ``wdata`` (computed from flip-flops). Pairs may follow back to back.

    Number formats: trace unsigned ``0 .. trace_max`` (``ONE = 2**trace_frac_bits``);
    eligibilities unsigned ``0 .. acc_max``, held as ``r + acc`` (the accumulators start at
    ``r``, so no adder is in front of the rounding shift; ``r < 2**(acc_bits + 1)``); stored
    weights signed ``weight_bits + F``, saturated to ``[store_min, store_max]``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.stochastic = cfg.learning.rounding == "stochastic"
        ports = {
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
        }
        if self.stochastic:
            ports["lfsr"] = Out(cfg.lanes * lfsr.WIDTH)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        loading = Signal()      # cycle 1 of a pair: the issue, registered
        m.d.sync += loading.eq(self.issue)
        shift, offsets = self._rounding_shift(m, loading)
        accs = self._eligibilities(m, offsets, loading)
        self._new_word(m, accs, shift)
        return m

    def _rounding_shift(self, m, loading):
        """``lr_shift`` clamped, sampled on ``start``; the rounding offset ``r`` of each lane
        it gives (the accumulators' start value). The lane LFSRs step when ``loading``: a
        flip-flop, no state decode in front of their enables."""
        cfg = self.cfg
        top = cfg.max_rounding_shift          # acc_bits + 1
        shift = Signal(range(top + 1))
        with m.If(self.start):
            m.d.sync += shift.eq(Mux(self.lr_shift > top, top, self.lr_shift))
        if self.stochastic:
            # the low `shift` bits of each lane's LFSR; every lane steps in cycle 1 of a pair
            mask = Signal(top, name="r_mask")
            m.d.comb += mask.eq((Const(1, top + 1) << shift) - 1)
            offsets = []
            for p, seed in enumerate(cfg.lfsr_seeds):
                m.submodules[f"lfsr{p}"] = gen = GaloisLfsr(seed)
                m.d.comb += [gen.step.eq(loading),
                             self.lfsr[p * lfsr.WIDTH:(p + 1) * lfsr.WIDTH].eq(gen.state)]
                r = Signal(top, name=f"r{p}")
                m.d.comb += r.eq(gen.state[:top] & mask)
                offsets.append(r)
            return shift, offsets
        half = Signal(top)   # 2**(shift - 1) for round-half-up, else 0
        if cfg.learning.rounding == "nearest":
            m.d.comb += half.eq((Const(1, top + 1) << shift) >> 1)
        return shift, [half] * cfg.lanes

    def _eligibilities(self, m, offsets, loading):
        """Cycles 1 .. T: load the shift registers, rebuild the trace, accumulate."""
        cfg = self.cfg
        T, P = cfg.time_steps, cfg.lanes
        pre_sh = Signal(T)        # presynaptic spikes, shifted one step per accumulate cycle
        x = Signal(range(cfg.trace_max + 1))
        x_next = Signal.like(x)
        m.d.comb += x_next.eq(x - (x >> cfg.leak_shift) + Mux(pre_sh[0], cfg.trace_one, 0))
        # The accumulators, on a flag of their own (the accumulate cycles); each lane's
        # postsynaptic spikes of steps 1 .. T-1 wait in a shift register (loaded in cycle 1);
        # otherwise they load the lane's rounding offset, ready for the next pair (the
        # rounding cycle has read them by then; the load of cycle 1 is the one that counts).
        # One copy of the flag per lane and one for the trace (kept apart in synthesis:
        # KEEP_COPY; a single flag reaching every accumulator bit was a critical path).
        acc_flags = [Signal(name=f"accumulating{p}", attrs={KEEP_COPY: 1}) for p in range(P + 1)]
        accumulating = acc_flags[P]
        with m.If(self.start_acc | self.stop_acc):
            m.d.sync += [a.eq(self.start_acc) for a in acc_flags]
        post_sh = [Signal(T - 1, name=f"post{p}") for p in range(P)]
        offset_max = ((1 << cfg.max_rounding_shift) - 1 if self.stochastic
                      else 1 << cfg.acc_max.bit_length())
        accs = [Signal(range(cfg.acc_max + offset_max + 1), name=f"acc{p}")
                for p in range(P)]       # the offset + the eligibility accumulated
        for p, a in enumerate(accs):
            m.d.sync += a.eq(Mux(acc_flags[p], a + Mux(post_sh[p][0], x_next, 0), offsets[p]))
        # The shift registers and the trace: `loading` (cycle 1: selecting bit t of a lane in
        # every accumulate cycle, then adding, was the longest path) loads them,
        # `accumulating` shifts them (a state decode in front of their enables was
        # mnist-ecp5's longest path)
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
