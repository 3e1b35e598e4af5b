"""The backward pass of desire backpropagation over one LIF layer."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spikeforge.hw.desire_formats import (
    abs_error,
    coefficient,
    desire_lane,
    desire_word,
    error_bits,
    keep_layers,
    memory_depth,
    raster_word,
    spike_count,
    weight_word,
)
from spikeforge.timing import WEIGHT_READ_LATENCY


def _registered(m, sig, name):
    """``sig`` one cycle later."""
    reg = Signal.like(sig, name=name)
    m.d.sync += reg.eq(sig)
    return reg


def _stage(m, signals, suffix):
    """Each of ``signals`` one cycle later (a pipeline stage of the control)."""
    return [_registered(m, sig, f"{sig.name}{suffix}") for sig in signals]


class BackwardPass(wiring.Component):
    """The desires of LIF layer ``layer``'s presynaptic neurons (``layer >= 1``), from those
    of its postsynaptic neurons through its pre-update weights (step 2 of ``docs/learning.md``).

    Presynaptic neuron ``j`` (of population ``layer``: LIF layer ``layer - 1``'s output) gets
    ``S_j = sum_n W_inf[j, n] * coef_n`` over the layer's postsynaptic neurons ``n``
    (:func:`~hw.desire_formats.coefficient` of ``n``'s desire, ``W_inf`` the weight's
    inference bits), then ``sign = S_j > 0``, ``active = |S_j| >= hidden_desire_threshold``
    (with ``hidden_gate = "error"`` and ``j``'s count short of the desire: ``c < C*`` for
    ``sign``, ``c > 0`` without) and ``|E|`` from ``j``'s spike count: lane ``j % P`` of
    word ``j // P`` of LIF layer ``layer - 1``'s desire memory. ``j``'s words come in ``G``
    consecutive issues, one per cycle; the layer's weight memory read row-wise (word
    ``j*G + g`` holds ``W[j, gP .. gP+P-1]``) is the transposed access this pass needs.

    Parameters
    ----------
    cfg : Config
        The network's config (with a ``[learning]`` section).
    layer : int
        The LIF layer, ``1 .. L-1``.

    Attributes
    ----------
    issue, first, last : In(1)
        Word ``g`` of ``j`` is being read (in this cycle); ``g == 0``; ``g == G - 1``.
    jg, jp : In(range(N_max // P + 2)), In(range(max(P, 2)))
        ``j // P``, ``j % P``.
    desires : In(desire_word(cfg))
        The layer's desire word ``g``, a cycle after the issue.
    pre_raster : In(raster_word(cfg))
        Raster word ``j // P`` of population ``layer``, a cycle after the issue.
    weights : In(weight_word(cfg))
        Weight word ``j*G + g``, ``timing.WEIGHT_READ_LATENCY`` cycles after the issue.
    keep : In(P)
        Dropout, layers of :func:`~hw.desire_formats.keep_layers` only: the keep bits of
        group ``g`` in the sample, with ``desires``; a dropped neuron's coefficient is 0 (it
        passes no desire down, as in the float reference).
    desire_wr : Out(WritePort.Signature(shape=desire_word(cfg), granularity=1).flip())
        Drives LIF layer ``layer - 1``'s desire memory: ``j``'s lane.
    active_groups : Out(G_{layer-1})
        Bit ``j // P``: set to ``j``'s ``active`` at lane 0, or-ed with it at the others.

    Notes
    -----
    Latency: ``timing.BACKWARD_OVERHEAD`` cycles from the issue of ``j``'s last word to its
    desire write, one register stage each: the issue; ``WEIGHT_READ_LATENCY - 1`` stages in
    which the coefficients, ``j``'s raster lane and spike count wait for the weights (the
    layer registers their address and its block RAM outputs); the ``P`` products; sums of
    four; their sum; ``S_j`` accumulated; then ``j``'s desire is evaluated and written.
    ``active_groups`` follows a cycle later. A backward pass costs
    ``N * G + BACKWARD_OVERHEAD`` cycles of :func:`sw.cycles.learn_cycles`.

    Throughput: one word per cycle.

    Number formats: ``W_inf`` signed ``weight_bits``; coefficients signed ``error_bits + 1``;
    products signed ``weight_bits + error_bits + 1``; ``S_j`` signed ``sum_bits``, wide enough
    for ``N_post * 2**(weight_bits - 1) * coef_max`` (no saturation can occur); the stored
    lane :func:`~hw.desire_formats.desire_lane`.
    """

    def __init__(self, cfg, layer: int):
        if not 1 <= layer < cfg.n_layers:
            raise ValueError(f"layer must be in 1 .. {cfg.n_layers - 1}, not {layer!r}")
        self.cfg, self.layer = cfg, layer
        P = cfg.lanes
        self.sum_bits = ((cfg.layers[layer + 1] * (1 << (cfg.weight_bits - 1)) * cfg.coef_max)
                         .bit_length() + 2)
        write = WritePort.Signature(addr_width=ceil_log2(memory_depth(cfg, layer - 1)),
                                    shape=desire_word(cfg), granularity=1)
        self.dropout = layer in keep_layers(cfg)
        ports = {
            "issue": In(1),
            "first": In(1),
            "last": In(1),
            "jg": In(range(max(cfg.layers) // P + 2)),
            "jp": In(range(max(P, 2))),
            "pre_raster": In(raster_word(cfg)),
            "desires": In(desire_word(cfg)),
            "weights": In(weight_word(cfg)),
            "desire_wr": Out(write.flip()),
            "active_groups": Out(cfg.groups(layer - 1)),
        }
        if self.dropout:
            ports["keep"] = In(P)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        ctrl, coefs = self._wait_for_weights(m)
        ctrl, part = self._sum_products(m, ctrl, coefs)
        self._write_desire(m, *self._accumulate(m, ctrl, part))
        return m

    def _wait_for_weights(self, m):
        """Stages 1 .. ``WEIGHT_READ_LATENCY``: the issue registered (``valid``, ``first``,
        ``last``, ``jg``, ``jp``), then it, the coefficients and ``j``'s spike count wait for
        the weights. Returns the control (with the count last) and the coefficients."""
        T, P = self.cfg.time_steps, self.cfg.lanes
        valid, first, last = Signal(name="valid"), Signal(name="first1"), Signal(name="last1")
        jg, jp = Signal.like(self.jg, name="jg1"), Signal.like(self.jp, name="jp1")
        m.d.sync += valid.eq(self.issue)
        with m.If(self.issue):
            m.d.sync += [first.eq(self.first), last.eq(self.last), jg.eq(self.jg),
                         jp.eq(self.jp)]
        # j's own raster lane, then its spike count a stage later (selecting the lane and
        # counting it in one cycle was mnist-ecp5's longest path)
        own = _registered(m, self.pre_raster[jp], "own")
        count = Signal(range(T + 1), name="count")
        m.d.sync += count.eq(spike_count(own))
        for _ in range(WEIGHT_READ_LATENCY - 3):
            count = _registered(m, count, f"{count.name}_")
        ctrl = [valid, first, last, jg, jp]
        coefs = [coefficient(self.desires[p]) for p in range(P)]
        if self.dropout:        # a dropped neuron passes no desire down
            coefs = [Mux(self.keep[p], c, 0) for p, c in enumerate(coefs)]
        for stage in range(WEIGHT_READ_LATENCY - 1):
            coefs = [_registered(m, c, f"coef{p}_{stage}") for p, c in enumerate(coefs)]
            ctrl = _stage(m, ctrl, str(stage))
        return ctrl + [count], coefs

    def _sum_products(self, m, ctrl, coefs):
        """Stages ``WEIGHT_READ_LATENCY + 1 .. + 3``: the ``P`` products ``W_inf * coef``
        (the block RAM outputs are slow: nothing else happens in their cycle), then their sum
        over two stages: sums of four, then their sum (a 16-input adder in one cycle was
        mnist-ecp5's longest path). Returns the control and the sum."""
        cfg = self.cfg
        F, P = cfg.frac_bits, cfg.lanes
        prods = [Signal(signed(cfg.weight_bits + error_bits(cfg) + 1), name=f"prod{p}")
                 for p in range(P)]
        m.d.sync += [pr.eq(self.weights[p][F:].as_signed() * c)
                     for p, (pr, c) in enumerate(zip(prods, coefs, strict=True))]
        ctrl = _stage(m, ctrl, "b")
        quads = [Signal(signed(self.sum_bits), name=f"quad{i}") for i in range(0, P, 4)]
        m.d.sync += [q.eq(sum(prods[4 * i:4 * i + 4])) for i, q in enumerate(quads)]
        ctrl = _stage(m, ctrl, "q")
        part = Signal(signed(self.sum_bits), name="part")
        m.d.sync += part.eq(sum(quads))
        return _stage(m, ctrl, "c"), part

    def _accumulate(self, m, ctrl, part):
        """Stage ``WEIGHT_READ_LATENCY + 4``: ``S_j`` accumulated over ``j``'s words, the
        control alongside. Returns ``S_j`` and the control of its stage."""
        valid, first, last, *rest = ctrl
        total = Signal(signed(self.sum_bits), name="sum")
        with m.If(valid):
            m.d.sync += total.eq(Mux(first, part, total + part))   # S_j so far
        # j's desire from S_j, a stage after the sum (the adder, then |S_j| against the
        # threshold, into the desire write and the active-group flags, was mnist-ecp5's
        # longest path)
        return (total, *_stage(m, [valid, last, *rest], "d"))

    def _write_desire(self, m, total, valid, last, jg, jp, count):
        """After the last stage: ``j``'s desire from ``S_j`` (``total``) and its spike count,
        written in its lane; ``active_groups`` a cycle later."""
        cfg, P = self.cfg, self.cfg.lanes
        desire = Signal(desire_lane(cfg))
        sign = total > 0
        active = Mux(total < 0, -total, total) >= cfg.hidden_desire_threshold
        if cfg.learning.hidden_gate == "error":     # only while j's count is short of it
            active = active & Mux(sign, count < cfg.target_count, count != 0)
        m.d.comb += [desire.active.eq(active), desire.sign.eq(sign),
                     desire.error.eq(abs_error(m, cfg, sign, count, "abs_error"))]
        with m.If(valid & last):
            m.d.comb += [self.desire_wr.addr.eq(jg),
                         self.desire_wr.data.eq(Cat(*[desire.as_value()] * P)),
                         self.desire_wr.en.eq(Const(1, P) << jp)]
            for b in range(len(self.active_groups)):
                with m.If(jg == b):
                    m.d.sync += self.active_groups[b].eq(Mux(jp == 0, active,
                                                             self.active_groups[b] | active))
