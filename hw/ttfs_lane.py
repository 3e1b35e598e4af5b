"""One neuron engine of the TTFS core: fan-in lists, fire-once IF neurons, STDP and pruning."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.events import index_width
from spikeforge.hw.top_k import TopK, candidate_layout


def entry_layout(cfg) -> data.StructLayout:
    """A fan-in list entry: the presynaptic ``index`` (pruning builds only; dense builds
    store weights at slot ``j``) and the unsigned ``weight``."""
    fields = {"weight": unsigned(cfg.weight_bits)}
    if cfg.pruning:
        fields["index"] = unsigned(index_width(cfg.n_in))
    return data.StructLayout(fields)


def lane_candidate_layout(cfg) -> data.StructLayout:
    return candidate_layout(cfg.time_bits, cfg.membrane_bits,
                            index_width(-(-cfg.n_out // cfg.lanes)), index_width(cfg.lanes))


class TTFSLane(wiring.Component):
    """Lane ``p`` of ``P``: the neurons ``i = p, p + P, ...`` (local index ``n = i // P``).

    Storage (``amaranth.lib.memory``, block-RAM inferable):

    * fan-in lists: ``n_local * n_in`` entries (:func:`entry_layout`); neuron ``n``'s list
      lives at ``[n * n_in, n * n_in + len[n])``, ascending presynaptic index. With pruning
      the entries carry their index and ``len`` (``n_local`` words) shrinks as synapses are
      removed; without, every list is the dense column (``len = n_in``, no index field);
    * input times ``t_j`` (``n_in`` words, written by the encoder), the step histogram
      (``T`` words of ``membrane_bits``), fire times (``n_local`` words).

    Number formats (``docs/ttfs.md``): weights unsigned ``weight_bits``; membranes and
    histogram unsigned ``membrane_bits`` (wide enough for ``n_in * w_max``: no saturation);
    times ``time_bits`` with ``T`` meaning none. Semantics are :mod:`sw.ttfs`.

    ``run`` (one pulse while idle) integrates every neuron of the lane in ascending order:
    a clear pass (``T`` cycles) zeroes the histogram; then per neuron the list is streamed
    (one entry per cycle; ``h[t_j] += w`` through a 3-stage pipeline whose read-after-write
    hazard is covered by the transparent histogram read port), the histogram is scanned
    (``V += h[t]``, first ``V >= theta`` fires; each bin is zeroed behind the scan) and the
    neuron's fire time is written and offered to the lane's top-``k`` list. Latency
    ``T + sum_n (len[n] + T + TTFS_NEURON_OVERHEAD)`` (``+ 5``) cycles
    (:func:`sw.ttfs_cycles.lane_cycles`; the constant is in :mod:`spikeforge.timing`).

    ``update`` (one pulse while idle) runs STDP on local neuron ``upd_local`` with post time
    ``upd_time``: each entry is read, its ``t_j`` looked up, its new weight computed and,
    unless pruned, written back at the compaction pointer, then ``len`` is rewritten.
    Latency ``len + 4`` cycles; pruned synapses are gone from the list from then on.

    Host ports (use while ``busy`` is low): ``syn_*`` (list entries, flat local address),
    ``len_*`` (list lengths by local neuron), ``out_addr``/``out_time`` (fire times),
    ``in_addr``/``in_time`` (input times); read data one cycle after the address.
    """

    def __init__(self, cfg, lane: int):
        self.cfg, self.lane = cfg, lane
        self.n_local = cfg.lane_neurons(lane)
        self.depth_n = max(self.n_local, 2)        # no 0-bit memory addresses
        self.entry = entry_layout(cfg)
        self.cand = lane_candidate_layout(cfg)
        n_in, T = cfg.n_in, cfg.time_steps
        super().__init__({
            "run": In(1),
            "update": In(1),
            "upd_local": In(range(self.depth_n)),
            "upd_time": In(range(T + 1)),
            "busy": Out(1),
            "t_we": In(1),
            "t_addr": In(range(n_in)),
            "t_data": In(range(T + 1)),
            "syn_addr": In(range(self.n_local * n_in)),
            "syn_wdata": In(self.entry.size),
            "syn_we": In(1),
            "syn_rdata": Out(self.entry.size),
            "len_addr": In(range(self.depth_n)),
            "len_wdata": In(range(n_in + 1)),
            "len_we": In(1),
            "len_rdata": Out(range(n_in + 1)),
            "out_addr": In(range(self.depth_n)),
            "out_time": Out(range(T + 1)),
            "in_addr": In(range(n_in)),
            "in_time": Out(range(T + 1)),
            **{f"win{q}": Out(self.cand) for q in range(cfg.winners)},
        })

    def elaborate(self, platform):
        m = Module()
        mem = _LaneMemories(m, self)
        topk = TopK(self.cfg.winners, self.cand, f"lane{self.lane}_top", one_lane=True)
        for q, e in enumerate(topk.entries):
            m.d.comb += getattr(self, f"win{q}").eq(e)
        r = _LaneRegisters(self)

        self._host_ports(m, mem, r)
        self._list_pipeline(m, mem, r)
        self._stdp(m, mem, r)
        self._scan(m, mem, r)
        cand = Signal(self.cand)
        m.d.comb += [cand.valid.eq(r.fired), cand.time.eq(r.f_time), cand.value.eq(r.f_value),
                     cand.local.eq(r.n), cand.lane.eq(self.lane)]
        topk.insert(m, cand, r.finish)
        with m.FSM():
            self._start_states(m, mem, r, topk)
            self._list_states(m, r)
            self._end_states(m, mem, r)
        return m

    def _host_ports(self, m, mem, r):
        """The host ports (``syn_*``, ``len_*``, ``out_*``, ``in_*``: read data one cycle
        after the address) and the encoder's ``t_*`` writes; the engine takes the list and
        length ports over while ``active``. ``r.length``: the list length of neuron ``r.n``
        (read one cycle after ``n`` is set; ``n_in`` without pruning)."""
        cfg = self.cfg
        m.d.comb += [
            mem.syn_rd.addr.eq(self.syn_addr), self.syn_rdata.eq(mem.syn_rd.data),
            mem.syn_wr.addr.eq(self.syn_addr), mem.syn_wr.data.eq(self.syn_wdata),
            mem.syn_wr.en.eq(self.syn_we & ~r.active),
            mem.len_rd.addr.eq(Mux(r.active, r.n, self.len_addr)),
            self.len_rdata.eq(mem.len_rd.data),
            mem.len_wr.addr.eq(self.len_addr), mem.len_wr.data.eq(self.len_wdata),
            mem.len_wr.en.eq(self.len_we & ~r.active),
            mem.t_wr.addr.eq(self.t_addr), mem.t_wr.data.eq(self.t_data),
            mem.t_wr.en.eq(self.t_we),
            mem.t_rd.addr.eq(self.in_addr), self.in_time.eq(mem.t_rd.data),
            mem.f_rd.addr.eq(self.out_addr), self.out_time.eq(mem.f_rd.data),
            self.busy.eq(r.active),
        ]
        if cfg.pruning:
            m.d.comb += r.length.eq(mem.len_rd.data)
        else:
            m.d.comb += r.length.eq(cfg.n_in)

    def _list_pipeline(self, m, mem, r):
        """The list pipeline, one entry per cycle: stage 1 has the entry read from slot
        ``base + k`` (``s1_*``), stage 2 its input time ``t_j`` (``s2_*``, the time memory's
        read data) and, integrating, reads ``h[t_j]`` (transparent: sees the write of the
        entry ahead); stage 3 writes ``h[t_j] + w`` (``s3_*``; unsigned ``membrane_bits``,
        no saturation: the width holds ``n_in * w_max``). An input that never spiked
        (``t_j = T``) adds nothing."""
        T = self.cfg.time_steps
        entry = mem.syn_rd.data
        index1 = entry.index if self.cfg.pruning else r.s1_slot
        with m.If(r.active):
            m.d.comb += [mem.syn_rd.addr.eq(r.base + r.k), mem.t_rd.addr.eq(index1)]
        m.d.sync += [r.s1_valid.eq(0), r.s2_valid.eq(r.s1_valid), r.s2_index.eq(index1),
                     r.s2_weight.eq(entry.weight)]
        t_j = mem.t_rd.data

        # stage 2, integrating: read h[t_j] (transparent: sees the write of the entry ahead)
        m.d.comb += mem.h_rd.addr.eq(Mux(r.scan, r.ts, t_j))
        m.d.sync += [r.s3_valid.eq(r.s2_valid & ~r.updating & (t_j < T)), r.s3_time.eq(t_j),
                     r.s3_weight.eq(r.s2_weight)]
        # stage 3: h[t_j] += w
        with m.If(r.s3_valid):
            m.d.comb += [mem.h_wr.addr.eq(r.s3_time),
                         mem.h_wr.data.eq(mem.h_rd.data + r.s3_weight), mem.h_wr.en.eq(1)]

    def _stdp(self, m, mem, r):
        """Stage 2 of the list pipeline while updating: multiplicative STDP of the entry's
        weight (unsigned ``weight_bits``; ``d = w * (w_max - w)``, up by ``(d * a_plus) >>
        stdp_shift`` if ``t_j <= t_post`` else down by ``(d * a_minus) >> stdp_shift``,
        clamped to ``[0, w_max]``), written back at the compaction pointer ``wp`` unless it
        falls below ``prune_threshold`` (with pruning; without, at its own slot)."""
        cfg, wmax = self.cfg, self.cfg.w_max
        t_j = mem.t_rd.data
        w = r.s2_weight
        d = Signal(2 * cfg.weight_bits)
        m.d.comb += d.eq(w * (wmax - w))
        up = Signal(cfg.weight_bits + 1)
        down = Signal(cfg.weight_bits + 1)
        dp = (d * cfg.a_plus) >> cfg.stdp_shift
        dm = (d * cfg.a_minus) >> cfg.stdp_shift
        m.d.comb += [up.eq(Mux(w + dp > wmax, wmax, w + dp)),
                     down.eq(Mux(dm > w, 0, w - dm))]
        new_w = Mux(t_j <= r.t_post, up, down)[:cfg.weight_bits]
        keep = (new_w >= cfg.prune_threshold) if cfg.pruning else 1
        new_entry = Signal(self.entry)
        m.d.comb += new_entry.weight.eq(new_w)
        if cfg.pruning:
            m.d.comb += new_entry.index.eq(r.s2_index)
        with m.If(r.s2_valid & r.updating & keep):
            m.d.comb += [mem.syn_wr.addr.eq(r.base + (r.wp if cfg.pruning else r.s2_index)),
                         mem.syn_wr.data.eq(new_entry), mem.syn_wr.en.eq(1)]
            m.d.sync += r.wp.eq(r.wp + 1)

    def _scan(self, m, mem, r):
        """The histogram scan's consumer, one bin per cycle a cycle after its read
        (``sc_valid``): ``V += h[t]`` (unsigned ``membrane_bits``), the first ``V >=
        threshold`` fires (``fired``, ``f_time``, ``f_value``); each bin is zeroed behind the
        scan (unless stage 3 writes the histogram in that cycle)."""
        mb = self.cfg.membrane_bits
        v_next = Signal(mb + 1)
        m.d.comb += v_next.eq(r.v + mem.h_rd.data)
        m.d.sync += r.sc_valid.eq(0)
        with m.If(r.sc_valid):
            m.d.sync += r.v.eq(v_next)
            with m.If(~r.fired & (v_next >= self.cfg.threshold)):
                m.d.sync += [r.fired.eq(1), r.f_time.eq(r.sc_time), r.f_value.eq(v_next)]
            with m.If(~r.s3_valid):
                m.d.comb += [mem.h_wr.addr.eq(r.sc_time), mem.h_wr.data.eq(0),
                             mem.h_wr.en.eq(1)]

    def _start_states(self, m, mem, r, topk):
        """``IDLE`` (``run`` starts integration, ``update`` the STDP pass of ``upd_local``
        with post time ``upd_time``) and ``CLEAR`` (``T`` cycles: the histogram zeroed; the
        top-``k`` list was emptied by ``run``)."""
        n_in, T = self.cfg.n_in, self.cfg.time_steps
        with m.State("IDLE"):
            with m.If(self.run):
                m.d.sync += [r.n.eq(0), r.base.eq(0), r.ts.eq(0), r.updating.eq(0)]
                topk.clear(m)
                m.next = "CLEAR"
            with m.Elif(self.update):
                m.d.sync += [r.n.eq(self.upd_local), r.base.eq(self.upd_local * n_in),
                             r.t_post.eq(self.upd_time), r.updating.eq(1), r.k.eq(0),
                             r.wp.eq(0)]
                m.next = "LEN"
        with m.State("CLEAR"):
            m.d.comb += [r.active.eq(1), mem.h_wr.addr.eq(r.ts), mem.h_wr.data.eq(0),
                         mem.h_wr.en.eq(1)]
            m.d.sync += r.ts.eq(r.ts + 1)
            with m.If(r.ts == T - 1):
                m.d.sync += r.k.eq(0)
                m.next = "LEN"

    def _list_states(self, m, r):
        """``LEN`` (``len[n]`` is read), ``LIST`` (one entry issued per cycle, ``len[n]``
        cycles, then one to see the end) and ``DRAIN`` (the last entry's stage 2), then the
        scan (integrating) or ``WRITE_LEN`` (updating)."""
        with m.State("LEN"):                  # len[n] is read in this cycle
            m.d.comb += r.active.eq(1)
            m.next = "LIST"
        with m.State("LIST"):
            m.d.comb += r.active.eq(1)
            # issue list slot k while k < len; then drain
            with m.If(r.k < r.length):
                m.d.sync += [r.s1_valid.eq(1), r.s1_slot.eq(r.k), r.k.eq(r.k + 1)]
            with m.Else():
                m.next = "DRAIN"
        with m.State("DRAIN"):                # the last entry's stage 2
            m.d.comb += r.active.eq(1)
            m.d.sync += r.ts.eq(0)
            m.next = "SCAN"
            with m.If(r.updating):
                m.next = "WRITE_LEN"

    def _end_states(self, m, mem, r):
        """``SCAN`` (``T`` bins read, one per cycle, then one cycle for the last to be
        consumed), ``FINISH`` (the fire time written, ``T`` for none, and offered to the
        top-``k`` list; the next neuron or ``IDLE``) and ``WRITE_LEN`` (an update's last
        cycle: the compacted length, with pruning). Per neuron ``len + T +
        TTFS_NEURON_OVERHEAD`` cycles from ``LEN`` to ``FINISH``."""
        n_in, T = self.cfg.n_in, self.cfg.time_steps
        with m.State("SCAN"):
            m.d.comb += [r.active.eq(1), r.scan.eq(1)]
            with m.If(r.ts < T):
                m.d.sync += [r.sc_valid.eq(1), r.sc_time.eq(r.ts), r.ts.eq(r.ts + 1)]
            with m.Elif(r.sc_valid):
                m.next = "FINISH"
        with m.State("FINISH"):
            m.d.comb += [r.active.eq(1), r.finish.eq(1), mem.f_wr.addr.eq(r.n),
                         mem.f_wr.data.eq(Mux(r.fired, r.f_time, T)), mem.f_wr.en.eq(1)]
            m.d.sync += [r.v.eq(0), r.fired.eq(0), r.n.eq(r.n + 1), r.base.eq(r.base + n_in),
                         r.k.eq(0)]
            with m.If(r.n == self.n_local - 1):
                m.next = "IDLE"
            with m.Else():
                m.next = "LEN"
        with m.State("WRITE_LEN"):            # update only: the compacted length
            m.d.comb += r.active.eq(1)
            if self.cfg.pruning:
                m.d.comb += [mem.len_wr.addr.eq(r.n), mem.len_wr.data.eq(r.wp),
                             mem.len_wr.en.eq(1)]
            m.next = "IDLE"


class _LaneMemories:
    """A :class:`TTFSLane`'s memories (``amaranth.lib.memory``, block-RAM inferable; see the
    class docstring) and their ports, added to ``m``: one write and one read port each; the
    histogram's read port is transparent to its write port."""

    def __init__(self, m, lane: TTFSLane):
        cfg = lane.cfg
        n_in, T, mb = cfg.n_in, cfg.time_steps, cfg.membrane_bits
        m.submodules.lists = syn = Memory(shape=lane.entry, depth=lane.n_local * n_in,
                                          init=[])
        m.submodules.lengths = lens = Memory(shape=range(n_in + 1), depth=lane.depth_n,
                                             init=[n_in] * lane.depth_n)
        m.submodules.in_times = tmem = Memory(shape=range(T + 1), depth=n_in, init=[])
        m.submodules.histogram = hmem = Memory(shape=mb, depth=T, init=[])
        m.submodules.fire_times = fmem = Memory(shape=range(T + 1), depth=lane.depth_n,
                                                init=[])
        self.syn_wr = syn.write_port()
        self.syn_rd = syn.read_port()
        self.len_wr = lens.write_port()
        self.len_rd = lens.read_port()
        self.t_wr = tmem.write_port()
        self.t_rd = tmem.read_port()
        self.h_wr = hmem.write_port()
        self.h_rd = hmem.read_port(transparent_for=(self.h_wr,))
        self.f_wr = fmem.write_port()
        self.f_rd = fmem.read_port()


class _LaneRegisters:
    """The registers and flags a :class:`TTFSLane`'s parts share (one instance per
    elaboration): the engine's counters, the list pipeline's stages, the scan's state."""

    def __init__(self, lane: TTFSLane):
        cfg = lane.cfg
        n_in, T, mb = cfg.n_in, cfg.time_steps, cfg.membrane_bits
        self.n = Signal(range(lane.depth_n + 1))            # local neuron being processed
        self.base = Signal(range(lane.n_local * n_in + 1))  # n * n_in
        self.k = Signal(range(n_in + 1))                    # next list slot to issue
        self.wp = Signal(range(n_in + 1))                   # compaction pointer (update)
        self.length = Signal(range(n_in + 1))
        self.ts = Signal(range(T + 1))                      # clear / scan counter
        self.updating = Signal()
        self.t_post = Signal(range(T + 1))
        self.active = Signal()                              # the engine owns the memory ports
        # the list pipeline: stage 1 has the entry, stage 2 its t_j, stage 3 h[t_j]
        self.s1_valid = Signal()
        self.s1_slot = Signal(range(n_in + 1))
        self.s2_valid = Signal()
        self.s2_index = Signal(range(n_in))
        self.s2_weight = Signal(cfg.weight_bits)
        self.s3_valid = Signal()
        self.s3_time = Signal(range(T + 1))
        self.s3_weight = Signal(cfg.weight_bits)
        # the histogram scan: bin sc_time is consumed (V += h) in a cycle with sc_valid
        self.scan = Signal()                                # the SCAN state: h read at ts
        self.sc_valid = Signal()
        self.sc_time = Signal(range(T + 1))
        self.v = Signal(mb)
        self.fired = Signal()
        self.f_time = Signal(range(T + 1))
        self.f_value = Signal(mb)
        self.finish = Signal()                              # the FINISH state
