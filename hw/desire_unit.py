"""On-chip desire backpropagation: records the spike rasters of a sample, then learns from them."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.desire_backward import BackwardPass
from spikeforge.hw.desire_formats import desire_word, keep_layers, memory_depth
from spikeforge.hw.desire_output import OutputDesire
from spikeforge.hw.desire_raster import RasterRecorder
from spikeforge.hw.desire_update import WeightUpdate
from spikeforge.timing import BACKWARD_OVERHEAD, OUT_DESIRE_OVERHEAD

# The update's states of a layer, in order: a presynaptic neuron's check (``PRE_CHECK``
# cycles), then per (neuron, active group) pair issue, load, T - 1 accumulate cycles, round,
# write (``T + PAIR_OVERHEAD`` cycles; ``spikeforge.timing``).
PRE_CHECK_STATES = ("UREAD", "UCHECK", "UDECIDE")
PAIR_STATES = ("UISSUE", "ULOAD", "UACC", "UROUND", "UWRITE")


class DesireUnit(wiring.Component):
    """Desire backpropagation for every LIF layer of a config, after each training sample.

    Semantics: :func:`sw.desire.train_step` (``docs/learning.md``); the golden cycle model is
    :func:`sw.cycles.learn_cycles`. The parts, each documented with its latency and number
    formats (:mod:`hw.desire_formats`):

    * :class:`~hw.desire_raster.RasterRecorder` records the spike rasters during inference;
    * :class:`~hw.desire_output.OutputDesire`: the output layer's desires;
    * :class:`~hw.desire_backward.BackwardPass` (one per LIF layer ``l >= 1``): the desires
      of layer ``l``'s presynaptic neurons, into layer ``l - 1``'s desire memory;
    * :class:`~hw.desire_update.WeightUpdate`: the new weight word of a (presynaptic neuron,
      active group) pair;
    * the controller (this class): the state machine and the scan registers (``_Scan``).

    Parameters
    ----------
    cfg : Config
        The network's config; it needs a ``[learning]`` section and ``time_steps >= 3``.

    Attributes
    ----------
    step, enc_*, eos<l>_* : In
        The taps of the encoder and of each LIF layer's end-of-step pass
        (:class:`~hw.desire_raster.RasterRecorder`); ``eos<l>_near`` with near eligibility
        only, ``eos<l>_keep`` (dropout's keep bits) for the layers of
        :func:`~hw.desire_formats.keep_layers` only.
    start, label, lr_shift : In(1), In(range(N_out)), In(range(LR_SHIFT[1] + 1))
        A pulse starts the learning pass; ``label`` and ``lr_shift`` are sampled then.
    busy, done : Out(1)
        High while learning; a pulse at the end.
    w<l>_addr, w<l>_wdata, w<l>_we, w<l>_rdata
        LIF layer ``l``'s weight port (the owner muxes it with the host's while ``busy``);
        ``w<l>_rdata`` returns the word addressed ``timing.WEIGHT_READ_LATENCY`` (3) cycles
        before.

    Notes
    -----
    Order: the output desire, then for LIF layer ``l = L-1 .. 0`` the backward pass over
    ``l`` (if ``l >= 1``; it needs the old weights) and the update of ``l``: for each
    presynaptic ``j`` whose raster has a spike before the last step, and each group with an
    active neuron, one pair.

    Near eligibility (``eligibility = "near"``): the recorder also keeps each LIF layer's
    near raster, and an update reads the group's near word as its post raster (at the same
    address and cycle as the spike word it replaces); the output desire's popcounts, the
    backward pass's counts and the presynaptic lanes still read the spike rasters. No cycle
    changes.

    Latency: :func:`sw.cycles.learn_cycles`, from the constants of :mod:`spikeforge.timing`:
    ``G_{L-1} + OUT_DESIRE_OVERHEAD`` for the output desire, ``N_l * G_l +
    BACKWARD_OVERHEAD`` per backward pass, ``PRE_CHECK`` per presynaptic neuron plus
    ``T + PAIR_OVERHEAD`` per (live presynaptic neuron, active group) pair per update, and
    ``LEARN_OVERHEAD``; each phase's states say which of their cycles are which.
    """

    def __init__(self, cfg):
        if cfg.learning is None:
            raise ValueError(f"config {cfg.name!r} has no [learning] section")
        if cfg.time_steps < 3:
            raise ValueError("desire learning needs time_steps >= 3")
        self.cfg = cfg
        L, T, P = cfg.n_layers, cfg.time_steps, cfg.lanes
        signature = {
            "step": In(range(max(T, 2))),
            "enc_valid": In(1),
            "enc_index": In(range(cfg.layers[0])),
            "enc_spike": In(1),
            "start": In(1),
            "label": In(range(cfg.layers[-1])),
            "lr_shift": In(range(LR_SHIFT[1] + 1)),
            "busy": Out(1),
            "done": Out(1),
        }
        self.mem_groups = [memory_depth(cfg, layer) for layer in range(L)]
        for layer in range(L):
            depth = cfg.layers[layer] * cfg.groups(layer)
            if cfg.near_eligibility:
                signature[f"eos{layer}_near"] = In(P)
            signature.update({
                f"eos{layer}_valid": In(1),
                f"eos{layer}_group": In(range(self.mem_groups[layer])),
                f"eos{layer}_fires": In(P),
                f"w{layer}_addr": Out(range(depth)),
                f"w{layer}_wdata": Out(P * cfg.store_bits),
                f"w{layer}_we": Out(1),
                f"w{layer}_rdata": In(P * cfg.store_bits),
            })
        for layer in keep_layers(cfg):
            signature[f"eos{layer}_keep"] = In(P)
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        parts = self._datapaths(m)
        scan = _Scan(self.cfg)
        scan.select_lowest_group(m)
        fsm = self._sequence(m, scan, parts)
        self._route_reads(m, fsm, scan, parts)
        return m

    def _datapaths(self, m) -> _Parts:
        """The raster recorder, the desire memories (one per LIF layer, written by the output
        desire or the next layer's backward pass) and the learning datapaths, wired to each
        other and to the unit's ports; the controller drives the rest."""
        cfg, L = self.cfg, self.cfg.n_layers
        m.submodules.rasters = rasters = RasterRecorder(cfg)
        m.d.comb += [getattr(rasters, name).eq(getattr(self, name)) for name in rasters.tap_names]
        desire_mems = [Memory(shape=desire_word(cfg), depth=depth, init=[])
                       for depth in self.mem_groups]
        for layer, mem in enumerate(desire_mems):
            m.submodules[f"desire{layer}"] = mem
        desire_reads = [mem.read_port() for mem in desire_mems]

        m.submodules.output = output = OutputDesire(cfg)
        wiring.connect(m, output.desire_wr, desire_mems[L - 1].write_port(granularity=1))
        m.d.comb += [output.label.eq(self.label), output.raster.eq(rasters.layer_reads[-1].data)]
        backward = {}
        for layer in range(1, L):
            m.submodules[f"backward{layer}"] = bk = backward[layer] = BackwardPass(cfg, layer)
            wiring.connect(m, bk.desire_wr, desire_mems[layer - 1].write_port(granularity=1))
            m.d.comb += [bk.pre_raster.eq(rasters.layer_reads[layer - 1].data),
                         bk.desires.eq(desire_reads[layer].data),
                         bk.weights.eq(getattr(self, f"w{layer}_rdata"))]
            if bk.dropout:          # the layer's dropout keep record (read at g)
                m.d.comb += bk.keep.eq(rasters.keep_reads[layer].data)
        m.submodules.update = update = WeightUpdate(cfg)
        m.d.comb += update.lr_shift.eq(self.lr_shift)
        m.d.comb += [getattr(self, f"w{layer}_wdata").eq(update.wdata) for layer in range(L)]
        return _Parts(rasters, desire_reads, output, backward, update)

    def _sequence(self, m, s: _Scan, parts: _Parts):
        """The controlling state machine (returned): ``IDLE``, the output desire, each
        layer's backward pass and update, ``DONE``.

        ``busy`` outside ``IDLE``; ``DONE`` pulses ``done`` (its cycle and the one in which
        the network sees ``done``: ``timing.LEARN_OVERHEAD``). The strobes to the datapaths
        come from the states, the rest of their control from the scan registers.
        """
        cfg = self.cfg
        m.d.comb += parts.output.group.eq(s.g)
        for layer, bk in parts.backward.items():
            m.d.comb += [bk.first.eq(s.g == 0), bk.last.eq(s.g == cfg.groups(layer) - 1),
                         bk.jg.eq(s.jg), bk.jp.eq(s.jp)]
        m.d.comb += parts.update.pre_bits.eq(s.pre_bits)
        m.d.sync += self.done.eq(0)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [parts.output.start.eq(1), parts.update.start.eq(1)]
                    m.d.sync += s.g.eq(0)
                    m.next = "OUT"
            self._output_states(m, s, parts.output)
            for layer in reversed(range(cfg.n_layers)):
                if layer >= 1:
                    self._backward_states(m, s, layer, parts.backward[layer])
                self._update_states(m, s, layer, parts)
            with m.State("DONE"):
                m.d.sync += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return fsm

    def _output_states(self, m, s: _Scan, output: OutputDesire):
        """``OUT``: one output group issued per cycle, then ``OUT_DESIRE_OVERHEAD`` cycles
        until the last group's desires are written: ``G_{L-1} + OUT_DESIRE_OVERHEAD``."""
        last = self.cfg.n_layers - 1
        with m.State("OUT"):
            m.d.comb += output.issue.eq(1)
            m.d.sync += s.g.eq(s.g + 1)
            with m.If(s.g == self.cfg.groups(last) - 1):
                m.next = "OUT_DRAIN0"
        then = f"BACK{last}" if last >= 1 else f"UREAD{last}"
        _drain(m, s, "OUT_DRAIN", OUT_DESIRE_OVERHEAD, then)

    def _backward_states(self, m, s: _Scan, layer: int, backward: BackwardPass):
        """``BACK<l>``: one weight word ``(j, g)`` of layer ``l`` issued per cycle, ``g`` the
        inner loop, then ``BACKWARD_OVERHEAD`` cycles until the last word's desire is written:
        ``N_l * G_l + BACKWARD_OVERHEAD``."""
        G, N = self.cfg.groups(layer), self.cfg.layers[layer]
        with m.State(f"BACK{layer}"):
            m.d.comb += backward.issue.eq(1)
            with m.If(s.g == G - 1):
                m.d.sync += s.g.eq(0)
                s.next_pre(m, G)
                with m.If(s.j == N - 1):
                    m.next = f"BDRAIN{layer}_0"
            with m.Else():
                m.d.sync += s.g.eq(s.g + 1)
        _drain(m, s, f"BDRAIN{layer}_", BACKWARD_OVERHEAD, f"UREAD{layer}")

    def _update_states(self, m, s: _Scan, layer: int, parts: _Parts):
        """The update of layer ``l``: per presynaptic ``j`` the ``PRE_CHECK_STATES`` (read its
        raster, register its lane and the active groups, test them), then per active group
        the ``PAIR_STATES`` (:class:`~hw.desire_update.WeightUpdate`'s strobes, the write in
        ``UWRITE``): ``PRE_CHECK * N_l + (T + PAIR_OVERHEAD) * live_l * A_l`` cycles."""
        cfg, update = self.cfg, parts.update
        T, G, N = cfg.time_steps, cfg.groups(layer), cfg.layers[layer]
        if layer == 0:
            pre_lane = parts.rasters.enc_read.data
        else:
            pre_lane = parts.rasters.layer_reads[layer - 1].data[s.jp]
        active_groups = (parts.output if layer == cfg.n_layers - 1
                         else parts.backward[layer + 1]).active_groups

        def next_or_finish():
            with m.If(s.j == N - 1):
                s.restart_pre(m)
                m.next = _after_update(layer)
            with m.Else():
                s.next_pre(m, G)
                m.next = f"UREAD{layer}"

        with m.State(f"UREAD{layer}"):
            m.next = f"UCHECK{layer}"
        with m.State(f"UCHECK{layer}"):
            m.d.sync += [s.pre_bits.eq(pre_lane[:T - 1]), s.work.eq(active_groups),
                         s.work_any.eq(active_groups.any())]
            m.next = f"UDECIDE{layer}"
        with m.State(f"UDECIDE{layer}"):
            # a cycle of its own: selecting j's raster lane and testing it, then the next
            # state and the scan counters' enables, did not fit in one
            with m.If(s.pre_bits.any() & s.work_any):
                m.next = f"UISSUE{layer}"
            with m.Else():
                next_or_finish()
        with m.State(f"UISSUE{layer}"):
            m.d.comb += update.issue.eq(1)
            rest = s.work & (s.work - 1)           # the lowest active group done
            m.d.sync += [s.cur_g.eq(s.gsel_q), s.work.eq(rest), s.work_any.eq(rest.any()),
                         s.t.eq(1)]
            m.next = f"ULOAD{layer}"
        with m.State(f"ULOAD{layer}"):
            m.d.comb += update.start_acc.eq(1)
            m.next = f"UACC{layer}"
        with m.State(f"UACC{layer}"):
            m.d.sync += s.t.eq(s.t + 1)
            with m.If(s.t == T - 1):
                m.d.comb += update.stop_acc.eq(1)
                m.next = f"UROUND{layer}"
        with m.State(f"UROUND{layer}"):
            m.next = f"UWRITE{layer}"
        with m.State(f"UWRITE{layer}"):
            m.d.comb += getattr(self, f"w{layer}_we").eq(1)
            with m.If(s.work_any):
                m.next = f"UISSUE{layer}"
            with m.Else():
                next_or_finish()

    def _route_reads(self, m, fsm, s: _Scan, parts: _Parts):
        """Read addresses of the raster, desire and weight memories, and the update's data.

        The addresses come from flip-flops through at most one multiplexer: no state decode in
        front of the (wide, LUT-RAM) raster and desire memories or the weight address. A
        memory is read in two phases, told apart by ``updating<l>`` (the state machine was in
        layer ``l``'s update a cycle ago: true from ``UCHECK`` on, before the first
        ``UISSUE``): raster ``l`` at ``jg`` (``BACK``, ``UREAD`` of layer ``l + 1``) or at
        ``g`` (``OUT``, the last layer), then at ``gsel_q`` (``UISSUE`` of ``l``, the only
        update read of it); desire ``l`` and weights ``l`` at ``g`` (``BACK`` of ``l``), then
        at ``cur_g`` (the data of ``ULOAD`` .. ``UWRITE``). Reads in the other cycles are
        never used. ``updating<l>`` also hands layer ``l``'s words to the update. Near
        eligibility: near raster ``l`` is read by the update alone, always at ``gsel_q``
        (a flip-flop, no multiplexer), and its word is the update's post raster. Dropout's
        keep records (:func:`~hw.desire_formats.keep_layers`) are read at ``g``: in
        ``BACK<l>``, with desire ``l``.
        """
        last, update = self.cfg.n_layers - 1, parts.update
        m.d.comb += parts.rasters.enc_read.addr.eq(s.j)
        for keep in parts.rasters.keep_reads.values():
            m.d.comb += keep.addr.eq(s.g)       # read in BACK<l> only, like desire l
        for layer, (raster, desire) in enumerate(zip(parts.rasters.layer_reads,
                                                     parts.desire_reads, strict=True)):
            updating = Signal(name=f"updating{layer}")
            m.d.sync += updating.eq(Cat(*[fsm.ongoing(f"{state}{layer}")
                                          for state in PRE_CHECK_STATES + PAIR_STATES]).any())
            m.d.comb += [
                raster.addr.eq(Mux(updating, s.gsel_q, s.g if layer == last else s.jg)),
                desire.addr.eq(Mux(updating, s.cur_g, s.g)),
                getattr(self, f"w{layer}_addr").eq(s.jbase + Mux(updating, s.cur_g, s.g)),
            ]
            post = raster
            if parts.rasters.near_reads:
                post = parts.rasters.near_reads[layer]
                m.d.comb += post.addr.eq(s.gsel_q)
            with m.If(updating):
                m.d.comb += [update.post_raster.eq(post.data),
                             update.weights.eq(getattr(self, f"w{layer}_rdata")),
                             update.desires.eq(desire.data)]


@dataclass
class _Parts:
    """The unit's datapaths, as the controller sees them."""

    rasters: RasterRecorder
    desire_reads: list[ReadPort]
    output: OutputDesire
    backward: dict[int, BackwardPass]
    update: WeightUpdate


class _Scan:
    """The controller's registers: the group ``g`` being issued, presynaptic neuron ``j``
    (with ``jbase = j * G``, ``jg = j // P``, ``jp = j % P``); and the update's: ``pre_bits``
    (``j``'s spikes of steps ``0 .. T-2``), ``work`` (its active groups not yet updated) and
    ``work_any`` (``work != 0``, registered with it: the OR of ``G`` bits in front of the
    next state and the scan counters' enables was fmnist-320-ecp5's longest path, 11.2 ns of
    routing at G = 20), ``gsel_q`` (the lowest of them), ``cur_g`` (the group being
    updated), ``t`` (the step being accumulated)."""

    def __init__(self, cfg):
        L, T, P = cfg.n_layers, cfg.time_steps, cfg.lanes
        max_groups = max(memory_depth(cfg, layer) for layer in range(L))
        self.j = Signal(range(max(cfg.layers)), name="j")
        self.jbase = Signal(range(max(cfg.layers[i] * cfg.groups(i) for i in range(L)) + 1),
                            name="jbase")
        self.jg = Signal(range(max(cfg.layers) // P + 2), name="jg")
        self.jp = Signal(range(max(P, 2)), name="jp")            # 1 bit at P = 1
        self.g = Signal(range(max_groups + 1), name="g")
        self.work = Signal(max(cfg.groups(layer) for layer in range(L)), name="work")
        self.work_any = Signal(name="work_any")
        self.pre_bits = Signal(T, name="pre_bits")
        self.t = Signal(range(T + 1), name="t")
        self.cur_g = Signal(range(max_groups), name="cur_g")
        self.gsel_q = Signal(range(max_groups), name="gsel_q")
        self.lanes = P

    def select_lowest_group(self, m):
        """``gsel_q``: the lowest group of ``work``, registered. ``work`` is loaded in
        ``UCHECK`` and advanced in ``UISSUE``, at least two cycles before the next ``UISSUE``
        reads this (the priority encoder was in front of the raster memories' read
        address)."""
        _, lowest = lowest_set_bit(self.work)
        m.d.sync += self.gsel_q.eq(lowest)

    def next_pre(self, m, groups: int):
        """On to presynaptic neuron ``j + 1`` of a layer with ``groups`` groups."""
        P = self.lanes
        m.d.sync += [self.j.eq(self.j + 1), self.jbase.eq(self.jbase + groups),
                     self.jp.eq(Mux(self.jp == P - 1, 0, self.jp + 1)),
                     self.jg.eq(self.jg + (self.jp == P - 1))]

    def restart_pre(self, m):
        """Back to presynaptic neuron 0, group 0."""
        m.d.sync += [self.j.eq(0), self.jbase.eq(0), self.jp.eq(0), self.jg.eq(0),
                     self.g.eq(0)]


def lowest_set_bit(bits):
    """``(any, index)``: whether ``bits`` has a set bit and the index of the lowest one (0
    when none), as a tree of halves: ``ceil(log2 n)`` levels of 2:1 multiplexers. (A chain
    of ``n`` if-levels was mnist-up5k's longest path at ``G = 64``: 58.8 ns, 43 routing
    segments on the iCE40.)"""
    n = len(bits)
    if n == 1:
        return bits[0], Const(0, 1)
    half = 1 << ((n - 1).bit_length() - 1)
    lo_any, lo = lowest_set_bit(bits[:half])
    hi_any, hi = lowest_set_bit(bits[half:])
    return lo_any | hi_any, Mux(hi_any & ~lo_any, hi + half, lo)


def _after_update(layer: int) -> str:
    """The state after layer ``layer``'s update: layer ``layer - 1``'s backward pass (layer 0
    has none: its update), or ``DONE``."""
    if layer == 0:
        return "DONE"
    return f"BACK{layer - 1}" if layer >= 2 else "UREAD0"


def _drain(m, s: _Scan, name: str, cycles: int, then: str):
    """``cycles`` states ``<name>0 ..`` that wait for a pipeline's last item, then ``then``
    with the presynaptic scan restarted."""
    for d in range(cycles):
        with m.State(f"{name}{d}"):
            if d < cycles - 1:
                m.next = f"{name}{d + 1}"
            else:
                s.restart_pre(m)
                m.next = then
