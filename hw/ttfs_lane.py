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
    ``T + sum_n (len[n] + T + 5)`` cycles (:func:`sw.ttfs_cycles.lane_cycles`).

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
        cfg, lane = self.cfg, self.lane
        n_in, T, mb = cfg.n_in, cfg.time_steps, cfg.membrane_bits
        wmax = cfg.w_max

        m.submodules.lists = syn = Memory(shape=self.entry, depth=self.n_local * n_in,
                                          init=[])
        m.submodules.lengths = lens = Memory(shape=range(n_in + 1), depth=self.depth_n,
                                             init=[n_in] * self.depth_n)
        m.submodules.in_times = tmem = Memory(shape=range(T + 1), depth=n_in, init=[])
        m.submodules.histogram = hmem = Memory(shape=mb, depth=T, init=[])
        m.submodules.fire_times = fmem = Memory(shape=range(T + 1), depth=self.depth_n,
                                                init=[])
        syn_wr, syn_rd = syn.write_port(), syn.read_port()
        len_wr, len_rd = lens.write_port(), lens.read_port()
        t_wr, t_rd = tmem.write_port(), tmem.read_port()
        h_wr = hmem.write_port()
        h_rd = hmem.read_port(transparent_for=(h_wr,))
        f_wr, f_rd = fmem.write_port(), fmem.read_port()

        topk = TopK(cfg.winners, self.cand, f"lane{lane}_top", one_lane=True)
        for q, e in enumerate(topk.entries):
            m.d.comb += getattr(self, f"win{q}").eq(e)

        n = Signal(range(self.depth_n + 1))          # local neuron being processed
        base = Signal(range(self.n_local * n_in + 1))  # n * n_in
        k = Signal(range(n_in + 1))                  # next list slot to issue
        wp = Signal(range(n_in + 1))                 # compaction pointer (update)
        length = Signal(range(n_in + 1))
        ts = Signal(range(T + 1))                    # clear / scan counter
        updating = Signal()
        t_post = Signal(range(T + 1))
        active = Signal()                            # the engine owns the memory ports

        # ---- host ports, and the engine's defaults ----
        m.d.comb += [
            syn_rd.addr.eq(self.syn_addr), self.syn_rdata.eq(syn_rd.data),
            syn_wr.addr.eq(self.syn_addr), syn_wr.data.eq(self.syn_wdata),
            syn_wr.en.eq(self.syn_we & ~active),
            len_rd.addr.eq(Mux(active, n, self.len_addr)), self.len_rdata.eq(len_rd.data),
            len_wr.addr.eq(self.len_addr), len_wr.data.eq(self.len_wdata),
            len_wr.en.eq(self.len_we & ~active),
            t_wr.addr.eq(self.t_addr), t_wr.data.eq(self.t_data), t_wr.en.eq(self.t_we),
            t_rd.addr.eq(self.in_addr), self.in_time.eq(t_rd.data),
            f_rd.addr.eq(self.out_addr), self.out_time.eq(f_rd.data),
            self.busy.eq(active),
        ]
        if cfg.pruning:
            m.d.comb += length.eq(len_rd.data)
        else:
            m.d.comb += length.eq(n_in)

        # ---- list pipeline: stage 1 has the entry, stage 2 its t_j, stage 3 h[t_j] ----
        s1_valid, s1_slot = Signal(), Signal(range(n_in + 1))
        s2_valid, s2_index = Signal(), Signal(range(n_in))
        s2_weight = Signal(cfg.weight_bits)
        s3_valid, s3_time = Signal(), Signal(range(T + 1))
        s3_weight = Signal(cfg.weight_bits)
        entry = syn_rd.data
        index1 = entry.index if cfg.pruning else s1_slot
        with m.If(active):
            m.d.comb += [syn_rd.addr.eq(base + k), t_rd.addr.eq(index1)]
        m.d.sync += [s1_valid.eq(0), s2_valid.eq(s1_valid), s2_index.eq(index1),
                     s2_weight.eq(entry.weight)]
        t_j = t_rd.data

        # stage 2, integrating: read h[t_j] (transparent: sees the write of the entry ahead)
        scan = Signal()
        m.d.comb += h_rd.addr.eq(Mux(scan, ts, t_j))
        m.d.sync += [s3_valid.eq(s2_valid & ~updating & (t_j < T)), s3_time.eq(t_j),
                     s3_weight.eq(s2_weight)]
        # stage 3: h[t_j] += w
        sc_valid, sc_time = Signal(), Signal(range(T + 1))
        with m.If(s3_valid):
            m.d.comb += [h_wr.addr.eq(s3_time), h_wr.data.eq(h_rd.data + s3_weight),
                         h_wr.en.eq(1)]

        # stage 2, updating: multiplicative STDP, prune, compacted write-back
        w = s2_weight
        d = Signal(2 * cfg.weight_bits)
        m.d.comb += d.eq(w * (wmax - w))
        up = Signal(cfg.weight_bits + 1)
        down = Signal(cfg.weight_bits + 1)
        dp = (d * cfg.a_plus) >> cfg.stdp_shift
        dm = (d * cfg.a_minus) >> cfg.stdp_shift
        m.d.comb += [up.eq(Mux(w + dp > wmax, wmax, w + dp)),
                     down.eq(Mux(dm > w, 0, w - dm))]
        new_w = Mux(t_j <= t_post, up, down)[:cfg.weight_bits]
        keep = (new_w >= cfg.prune_threshold) if cfg.pruning else 1
        new_entry = Signal(self.entry)
        m.d.comb += new_entry.weight.eq(new_w)
        if cfg.pruning:
            m.d.comb += new_entry.index.eq(s2_index)
        with m.If(s2_valid & updating & keep):
            m.d.comb += [syn_wr.addr.eq(base + (wp if cfg.pruning else s2_index)),
                         syn_wr.data.eq(new_entry), syn_wr.en.eq(1)]
            m.d.sync += wp.eq(wp + 1)

        # scan consumer: V += h[t], first crossing fires; the bin is zeroed behind the scan
        v = Signal(mb)
        fired, f_time = Signal(), Signal(range(T + 1))
        f_value = Signal(mb)
        v_next = Signal(mb + 1)
        m.d.comb += v_next.eq(v + h_rd.data)
        m.d.sync += sc_valid.eq(0)
        with m.If(sc_valid):
            m.d.sync += v.eq(v_next)
            with m.If(~fired & (v_next >= cfg.threshold)):
                m.d.sync += [fired.eq(1), f_time.eq(sc_time), f_value.eq(v_next)]
            with m.If(~s3_valid):
                m.d.comb += [h_wr.addr.eq(sc_time), h_wr.data.eq(0), h_wr.en.eq(1)]

        def issue_list(next_state):
            """Issue list slot ``k`` while ``k < len``; then move to ``next_state``."""
            with m.If(k < length):
                m.d.sync += [s1_valid.eq(1), s1_slot.eq(k), k.eq(k + 1)]
            with m.Else():
                m.next = next_state

        cand = Signal(self.cand)
        m.d.comb += [cand.valid.eq(fired), cand.time.eq(f_time), cand.value.eq(f_value),
                     cand.local.eq(n), cand.lane.eq(lane)]
        finish = Signal()
        topk.insert(m, cand, finish)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run):
                    m.d.sync += [n.eq(0), base.eq(0), ts.eq(0), updating.eq(0)]
                    topk.clear(m)
                    m.next = "CLEAR"
                with m.Elif(self.update):
                    m.d.sync += [n.eq(self.upd_local), base.eq(self.upd_local * n_in),
                                 t_post.eq(self.upd_time), updating.eq(1), k.eq(0),
                                 wp.eq(0)]
                    m.next = "LEN"
            with m.State("CLEAR"):
                m.d.comb += [active.eq(1), h_wr.addr.eq(ts), h_wr.data.eq(0), h_wr.en.eq(1)]
                m.d.sync += ts.eq(ts + 1)
                with m.If(ts == T - 1):
                    m.d.sync += k.eq(0)
                    m.next = "LEN"
            with m.State("LEN"):                  # len[n] is read in this cycle
                m.d.comb += active.eq(1)
                m.next = "LIST"
            with m.State("LIST"):
                m.d.comb += active.eq(1)
                issue_list("DRAIN")
            with m.State("DRAIN"):                # the last entry's stage 2
                m.d.comb += active.eq(1)
                m.d.sync += ts.eq(0)
                m.next = "SCAN"
                with m.If(updating):
                    m.next = "WRITE_LEN"
            with m.State("SCAN"):
                m.d.comb += [active.eq(1), scan.eq(1)]
                with m.If(ts < T):
                    m.d.sync += [sc_valid.eq(1), sc_time.eq(ts), ts.eq(ts + 1)]
                with m.Elif(sc_valid):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [active.eq(1), finish.eq(1), f_wr.addr.eq(n),
                             f_wr.data.eq(Mux(fired, f_time, T)), f_wr.en.eq(1)]
                m.d.sync += [v.eq(0), fired.eq(0), n.eq(n + 1), base.eq(base + n_in),
                             k.eq(0)]
                with m.If(n == self.n_local - 1):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "LEN"
            with m.State("WRITE_LEN"):            # update only: the compacted length
                m.d.comb += active.eq(1)
                if cfg.pruning:
                    m.d.comb += [len_wr.addr.eq(n), len_wr.data.eq(wp), len_wr.en.eq(1)]
                m.next = "IDLE"
        return m
