"""On-chip desire backpropagation: records the spike rasters of a sample, then learns from them."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.block_ram import KEEP_COPY

BACK_DRAIN = 7   # cycles from the last backward read to its desire write


class DesireUnit(wiring.Component):
    """Desire backpropagation for every LIF layer of a config, after each training sample.

    Semantics: :func:`sw.desire.train_step` (``docs/learning.md``); the golden cycle model is
    :func:`sw.cycles.learn_cycles`.

    **Recording** (during inference, no cycles of its own): the encoder's per-pixel evaluations
    (``enc_*``) and every layer's end-of-step group evaluations (``eos<l>_*``) are written (a
    cycle later: the taps are registered) at bit ``step`` into one raster memory per
    population: ``N_in`` words of ``T`` bits for the encoder; ``G_l`` words of ``P*T`` bits
    for LIF layer ``l`` (lane ``p`` in bits ``[p*T, (p+1)*T)``). Every bit is rewritten in
    every sample, so nothing needs clearing.

    **Learning** (``start`` pulse, ``label`` and ``lr_shift`` sampled then; ``done`` pulses at
    the end), in this order:

    1. output desire, one output group per cycle: spike counts by popcount of the raster,
       label error, active/sign, ``|E|`` into the layer's desire memory (lanes of ``2 + ew``
       bits: active, sign, ``|E|``);
    2. for LIF layer ``l = L-1 .. 1``: the backward pass over layer ``l``'s weight memory read
       *row-wise* (word ``j*G + g`` holds ``W[j, gP .. gP+P-1]``: the transposed access is
       the natural one), ``P`` products ``W_inf * coef`` per cycle summed into ``S_j``, one
       word per cycle, pipelined (8 stages); ``S_j`` gives presynaptic ``j``'s desire, written
       lane by lane into layer ``l-1``'s desire memory;
    3. the update of layer ``l`` (right after its backward pass, which needs the old weights):
       for each presynaptic ``j`` whose raster has a spike before the last step, and each
       group with an active neuron, ``T - 1`` cycles rebuild ``j``'s trace and accumulate the
       ``P`` eligibilities, then one read-modify-write of the weight word.

    Number formats: stored weights signed ``weight_bits + F``; traces unsigned, ``x <- x -
    (x >> k) + 2**trace_frac_bits * s``; eligibilities unsigned; ``S`` signed and wide enough
    for the largest sum (no saturation needed); the update rounds the magnitude (``nearest``:
    half up; ``floor``) and saturates the stored weight.

    Latency: :func:`sw.cycles.learn_cycles` (one cycle per output group, ``N_l * G_l`` per
    backward pass, ``3`` per presynaptic neuron plus ``T + 3`` per (live presynaptic neuron,
    active group) pair per update, and fixed overheads).

    Weight ports ``w<l>_*`` drive LIF layer ``l``'s weight port (the owner muxes them with the
    host's while ``busy``); ``w<l>_rdata`` returns the word addressed
    ``hw.lif_layer.WEIGHT_READ_LATENCY`` (3) cycles before.
    """

    def __init__(self, cfg):
        if cfg.learning is None:
            raise ValueError(f"config {cfg.name!r} has no [learning] section")
        if cfg.time_steps < 3:
            raise ValueError("desire learning needs time_steps >= 3")
        self.cfg = cfg
        L, T, P = cfg.n_layers, cfg.time_steps, cfg.lanes
        self.error_bits = cfg.coef_max.bit_length()
        self.lane_bits = 2 + self.error_bits
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
        self.mem_groups = [max(cfg.groups(layer), 2) for layer in range(L)]
        for layer in range(L):
            depth = cfg.layers[layer] * cfg.groups(layer)
            signature.update({
                f"eos{layer}_valid": In(1),
                f"eos{layer}_group": In(range(self.mem_groups[layer])),
                f"eos{layer}_fires": In(P),
                f"w{layer}_addr": Out(range(depth)),
                f"w{layer}_wdata": Out(P * cfg.store_bits),
                f"w{layer}_we": Out(1),
                f"w{layer}_rdata": In(P * cfg.store_bits),
            })
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        L, T, P = cfg.n_layers, cfg.time_steps, cfg.lanes
        ew, dw = self.error_bits, self.lane_bits
        sb, F, wb = cfg.store_bits, cfg.frac_bits, cfg.weight_bits
        C, k = cfg.target_count, cfg.leak_shift
        err_shape = signed(max(C, T).bit_length() + 2)

        # ---- raster memories, written while the sample runs, a cycle after each tap (the
        # taps come straight out of the encoder's and the layers' spike decisions; the raster
        # is read only once learning starts, many cycles after the last write) ----
        def registered(sig, name):
            """``sig`` one cycle later."""
            reg = Signal.like(sig, name=name)
            m.d.sync += reg.eq(sig)
            return reg

        def tapped(sig):
            return registered(sig, f"tap_{sig.name}")

        step = tapped(self.step)
        m.submodules.enc_raster = enc_raster = Memory(shape=T, depth=cfg.layers[0], init=[])
        enc_wr, enc_rd = enc_raster.write_port(granularity=1), enc_raster.read_port()
        m.d.comb += [enc_wr.addr.eq(tapped(self.enc_index)),
                     enc_wr.data.eq(Mux(tapped(self.enc_spike), (1 << T) - 1, 0)),
                     enc_wr.en.eq(Mux(tapped(self.enc_valid), Const(1, T) << step, 0))]
        lane_mask = Cat(*[Const(1, T) for _ in range(P)])   # bit 0 of every lane
        raster_rd, desire_rd, desire_wr = [], [], []
        for layer in range(L):
            mem = Memory(shape=P * T, depth=self.mem_groups[layer], init=[])
            m.submodules[f"raster{layer}"] = mem
            wr = mem.write_port(granularity=1)
            fires = tapped(getattr(self, f"eos{layer}_fires"))
            m.d.comb += [
                wr.addr.eq(tapped(getattr(self, f"eos{layer}_group"))),
                wr.data.eq(Cat(*[Mux(fires[p], (1 << T) - 1, 0) for p in range(P)])),
                wr.en.eq(Mux(tapped(getattr(self, f"eos{layer}_valid")), lane_mask << step, 0)),
            ]
            raster_rd.append(mem.read_port())
            dmem = Memory(shape=P * dw, depth=self.mem_groups[layer], init=[])
            m.submodules[f"desire{layer}"] = dmem
            desire_wr.append(dmem.write_port(granularity=dw))
            desire_rd.append(dmem.read_port())

        def lane(word, p, width):
            return word[p * width:(p + 1) * width]

        def select_lane(word, index, width):
            return word.word_select(index, width)

        def error_of(sign, count, name):
            """``|sign01 * C* - c|`` for a spike count ``c`` in ``[0, T]``."""
            diff = Signal(err_shape, name=name)
            m.d.comb += diff.eq(Mux(sign, C - count, count))
            return Mux(diff < 0, -diff, diff)[:ew]

        def coef(d):
            """``sign * active * |E|`` of a desire lane (active, sign, |E|)."""
            e = d[2:]
            return Mux(d[0], Mux(d[1], e, -e), 0)

        def lowest_set(bits, width, name):
            low = Signal(range(max(width, 2)), name=name)
            for b in reversed(range(width)):
                with m.If(bits[b]):
                    m.d.comb += low.eq(b)
            return low

        # ---- sequencer registers ----
        label = Signal.like(self.label)
        # The rounding shift, clamped: with acc < 2**acc_bits, any lr_shift > acc_bits + 1
        # rounds every acc to 0, as acc_bits + 1 does; the rounding half is the accumulators'
        # start value, so (acc + half) >> shift needs no adder in the rounding cycle.
        acc_bits = cfg.acc_max.bit_length()
        shift = Signal(range(acc_bits + 2))
        gact = [Signal(cfg.groups(layer), name=f"gact{layer}") for layer in range(L)]
        max_groups = max(self.mem_groups)
        j = Signal(range(max(cfg.layers)))
        jbase = Signal(range(max(cfg.layers[i] * cfg.groups(i) for i in range(L)) + 1))
        jg = Signal(range(max(cfg.layers) // P + 2))   # j // P
        jp = Signal(range(max(P, 2)))                   # j % P (1 bit at P = 1)
        g = Signal(range(max_groups + 1))
        work = Signal(max(cfg.groups(layer) for layer in range(L)))
        pre_bits = Signal(T)      # presynaptic spikes of steps 0 .. T-2
        pre_sh = Signal(T)        # the same, shifted one step per accumulate cycle
        t = Signal(range(T + 1))
        x = Signal(range(cfg.trace_max + 1))
        half = Signal(acc_bits + 1)   # 2**(shift - 1) for round-half-up, else 0
        if cfg.learning.rounding == "nearest":
            m.d.comb += half.eq((Const(1, acc_bits + 2) << shift) >> 1)
        accs = [Signal(range(cfg.acc_max + (1 << acc_bits) + 1), name=f"acc{p}")
                for p in range(P)]       # half + the eligibility accumulated
        cur_g = Signal(range(max_groups))

        def next_pre(layer):
            m.d.sync += [j.eq(j + 1), jbase.eq(jbase + cfg.groups(layer)),
                         jp.eq(Mux(jp == P - 1, 0, jp + 1)), jg.eq(jg + (jp == P - 1))]

        def restart_pre():
            m.d.sync += [j.eq(0), jbase.eq(0), jp.eq(0), jg.eq(0), g.eq(0)]

        def after_update(layer):
            if layer == 0:
                return "DONE"
            return f"BACK{layer - 1}" if layer >= 2 else "UREAD0"

        # ---- 1. output desire (pipeline: issue group, count its spikes one cycle later,
        # evaluate one cycle after that: the popcount of a raster word straight out of
        # block RAM, then the error and its threshold, were the longest path on the UP5K) ----
        last, G_out = L - 1, cfg.groups(L - 1)
        out_v1, out_v2 = Signal(), Signal()
        out_g1 = Signal(range(max(G_out, 2)))
        out_g2 = Signal.like(out_g1)
        m.d.sync += [out_v1.eq(0), out_v2.eq(out_v1), out_g2.eq(out_g1)]
        out_lanes, out_active = [], []
        for p in range(P):
            count = lane(raster_rd[last].data, p, T)
            c = Signal(range(T + 1), name=f"out_count{p}")
            m.d.sync += c.eq(sum(count[i] for i in range(T)))
            neuron = out_g2 * P + p
            sign = neuron == label
            serr = Signal(err_shape, name=f"out_err{p}")
            m.d.comb += serr.eq(Mux(sign, C - c, c))
            active = (serr > cfg.out_desire_threshold) & (neuron < cfg.layers[-1])
            out_lanes.append(Cat(active, sign, error_of(sign, c, f"out_abs{p}")))
            out_active.append(active)
        with m.If(out_v2):
            m.d.comb += [desire_wr[last].addr.eq(out_g2), desire_wr[last].data.eq(Cat(*out_lanes)),
                         desire_wr[last].en.eq(-1)]
            for b in range(G_out):
                with m.If(out_g2 == b):
                    m.d.sync += gact[last][b].eq(Cat(*out_active).any())

        # ---- 2. backward pipelines, one per layer l >= 1. Stages after the read is issued:
        # 1. register the coefficients and j's raster lane (the weight address is being
        # registered in the layer); 2. register the weights' inference bits (the block RAM
        # outputs are slow: nothing else happens in their cycle) and j's spike count; 3. the P
        # products; 4. sums of four; 5. their sum; 6. accumulate S_j; 7. its desire, the
        # write ----
        back = {}
        for layer in range(1, L):
            def stage(sig, name, layer=layer):
                return registered(sig, f"bk{layer}_{name}")

            v1, first1, last1 = (Signal(name=f"bk{layer}_{n}") for n in ("v1", "first1",
                                                                         "last1"))
            jg1 = Signal.like(jg, name=f"bk{layer}_jg1")
            jp1 = Signal.like(jp, name=f"bk{layer}_jp1")
            m.d.sync += v1.eq(0)
            s_bits = (cfg.layers[layer + 1] * (1 << (wb - 1)) * cfg.coef_max).bit_length() + 2
            wdata = getattr(self, f"w{layer}_rdata")
            # j's own raster lane, then its spike count a stage later (selecting the lane and
            # counting it in one cycle was mnist-ecp5's longest path)
            own_0 = stage(select_lane(raster_rd[layer - 1].data, jp1, T), "own0")
            count_a = Signal(range(T + 1), name=f"bk{layer}_count_a")
            m.d.sync += count_a.eq(sum(own_0[i] for i in range(T)))
            c_0 = [stage(coef(lane(desire_rd[layer].data, p, dw)), f"coef0_{p}") for p in range(P)]
            ctrl = [stage(c, f"{c.name}0") for c in (v1, first1, last1, jg1, jp1)]
            # the weights come a cycle after the desires and the raster, registered (the
            # layer registers the address and the word: WEIGHT_READ_LATENCY)
            w_a = [lane(wdata, p, sb)[F:].as_signed() for p in range(P)]
            c_a = [stage(c, f"coef{p}") for p, c in enumerate(c_0)]
            ctrl = [stage(c, f"{c.name}a") for c in ctrl] + [count_a]
            prods = [Signal(signed(wb + ew + 1), name=f"bk{layer}_prod{p}") for p in range(P)]
            m.d.sync += [pr.eq(w * c) for pr, w, c in zip(prods, w_a, c_a, strict=True)]
            ctrl = [stage(c, f"{c.name}b") for c in ctrl]
            # the sum of the P products over two stages: sums of four, then their sum (a
            # 16-input adder in one cycle was mnist-ecp5's longest path)
            quads = [Signal(signed(s_bits), name=f"bk{layer}_quad{i}") for i in range(0, P, 4)]
            m.d.sync += [q.eq(sum(prods[4 * i:4 * i + 4])) for i, q in enumerate(quads)]
            ctrl = [stage(c, f"{c.name}q") for c in ctrl]
            part = Signal(signed(s_bits), name=f"bk{layer}_part")
            m.d.sync += part.eq(sum(quads))
            v_c, first_s, last_c, *ctrl = (stage(c, f"{c.name}c") for c in ctrl)
            s_acc = Signal(signed(s_bits), name=f"bk{layer}_sum")
            with m.If(v_c):
                m.d.sync += s_acc.eq(Mux(first_s, part, s_acc + part))   # S_j so far
            # j's desire from S_j, a stage after the sum (the adder, then |S_j| against the
            # threshold, into the desire write and the active-group flags, was mnist-ecp5's
            # longest path)
            v, last_s, jg_s, jp_s, count = (stage(c, f"{c.name}d") for c in [v_c, last_c, *ctrl])
            total = s_acc
            sign = total > 0
            active = Mux(total < 0, -total, total) >= cfg.hidden_desire_threshold
            entry = Cat(active, sign, error_of(sign, count, f"bk{layer}_abs"))
            dwr = desire_wr[layer - 1]
            with m.If(v & last_s):
                m.d.comb += [dwr.addr.eq(jg_s), dwr.data.eq(Cat(*[entry] * P)),
                             dwr.en.eq(Const(1, P) << jp_s)]
                for b in range(cfg.groups(layer - 1)):
                    with m.If(jg_s == b):
                        m.d.sync += gact[layer - 1][b].eq(Mux(jp_s == 0, active,
                                                              gact[layer - 1][b] | active))
            back[layer] = (v1, first1, last1, jg1, jp1)

        # ---- 3. update datapath (shared by all layers; the FSM selects the layer) ----
        x_next = Signal.like(x)
        m.d.comb += x_next.eq(x - (x >> k) + Mux(pre_sh[0], cfg.trace_one, 0))
        # The accumulators, outside the state machine: a flag of its own says when they
        # accumulate (the UACC cycles), and each lane's postsynaptic spikes of steps 1 .. T-1
        # wait in a shift register (loaded in ULOAD); otherwise they load the rounding half,
        # ready for the next pair (UROUND has read them by then).
        # one copy of the flag per lane and one for the trace (kept apart in synthesis:
        # KEEP_COPY; a single flag reaching every accumulator bit was a critical path)
        acc_flags = [Signal(name=f"accumulating{p}", attrs={KEEP_COPY: 1}) for p in range(P + 1)]
        accumulating = acc_flags[P]
        # the lowest group of `work`, registered: `work` is loaded in UCHECK and advanced in
        # UISSUE, at least two cycles before the next UISSUE reads this (the priority encoder
        # was in front of the raster memories' read address)
        gsel_q = Signal(range(max_groups))
        m.d.sync += gsel_q.eq(lowest_set(work, len(work), "u_gsel"))
        post_sh = [Signal(T - 1, name=f"u_post{p}") for p in range(P)]
        for p, a in enumerate(accs):
            m.d.sync += a.eq(Mux(acc_flags[p], a + Mux(post_sh[p][0], x_next, 0), half))
        # The pair's shift registers and trace, outside the state machine too: `loading` (the
        # ULOAD cycle) loads them, `accumulating` shifts them (the state decode in front of
        # their enables was mnist-ecp5's longest path). `updating[l]` (below) picks the layer
        # whose raster word arrives.
        loading, rounding = Signal(), Signal()      # the ULOAD, the UROUND cycle
        updating = [Signal(name=f"updating{layer}") for layer in range(L)]
        post_word = Signal(P * T)
        for layer in range(L):
            with m.If(updating[layer]):
                m.d.comb += post_word.eq(raster_rd[layer].data)
        with m.If(loading):
            m.d.sync += [x.eq(0), pre_sh.eq(pre_bits)]
            m.d.sync += [ps.eq(lane(post_word, p, T)[1:]) for p, ps in enumerate(post_sh)]
        with m.Elif(accumulating):
            m.d.sync += [x.eq(x_next), pre_sh.eq(pre_sh >> 1)]
        for p, ps in enumerate(post_sh):
            with m.If(~loading & acc_flags[p]):
                m.d.sync += ps.eq(ps >> 1)
        m.d.sync += [loading.eq(0), rounding.eq(0)]

        m.d.sync += self.done.eq(0)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [label.eq(self.label), g.eq(0),
                                 shift.eq(Mux(self.lr_shift > acc_bits + 1, acc_bits + 1,
                                              self.lr_shift))]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [out_v1.eq(1), out_g1.eq(g), g.eq(g + 1)]
                with m.If(g == G_out - 1):
                    m.next = "OUT_DRAIN"
            with m.State("OUT_DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.next = "OUT_DRAIN2"
            with m.State("OUT_DRAIN2"):
                m.d.comb += self.busy.eq(1)
                restart_pre()
                m.next = f"BACK{last}" if last >= 1 else f"UREAD{last}"

            mags = [Signal(range(cfg.acc_max + 1), name=f"u_mag{p}") for p in range(P)]
            w_word = Signal(P * sb, name="u_weights")
            d_word = Signal(P * dw, name="u_desires")
            for layer in range(L - 1, -1, -1):
                G, N = cfg.groups(layer), cfg.layers[layer]
                if layer >= 1:
                    v1, first1, last1, jg1, jp1 = back[layer]
                    with m.State(f"BACK{layer}"):
                        m.d.comb += self.busy.eq(1)
                        m.d.sync += [v1.eq(1), first1.eq(g == 0), last1.eq(g == G - 1),
                                     jg1.eq(jg), jp1.eq(jp)]
                        with m.If(g == G - 1):
                            m.d.sync += g.eq(0)
                            next_pre(layer)
                            with m.If(j == N - 1):
                                m.next = f"BDRAIN{layer}_0"
                        with m.Else():
                            m.d.sync += g.eq(g + 1)
                    for d in range(BACK_DRAIN):     # the pipeline's last word, to its write
                        with m.State(f"BDRAIN{layer}_{d}"):
                            m.d.comb += self.busy.eq(1)
                            if d == BACK_DRAIN - 1:
                                restart_pre()
                                m.next = f"UREAD{layer}"
                            else:
                                m.next = f"BDRAIN{layer}_{d + 1}"

                def next_or_finish(layer=layer, N=N):
                    with m.If(j == N - 1):
                        restart_pre()
                        m.next = after_update(layer)
                    with m.Else():
                        next_pre(layer)
                        m.next = f"UREAD{layer}"

                with m.State(f"UREAD{layer}"):
                    m.d.comb += self.busy.eq(1)
                    m.next = f"UCHECK{layer}"
                with m.State(f"UCHECK{layer}"):
                    m.d.comb += self.busy.eq(1)
                    if layer == 0:
                        bits = enc_rd.data
                    else:
                        bits = select_lane(raster_rd[layer - 1].data, jp, T)
                    m.d.sync += [pre_bits.eq(bits[:T - 1]), work.eq(gact[layer])]
                    m.next = f"UDECIDE{layer}"
                with m.State(f"UDECIDE{layer}"):
                    # a cycle of its own: selecting j's raster lane and testing it, then the
                    # next state and the scan counters' enables, did not fit in one
                    m.d.comb += self.busy.eq(1)
                    with m.If(pre_bits.any() & work.any()):
                        m.next = f"UISSUE{layer}"
                    with m.Else():
                        next_or_finish()
                with m.State(f"UISSUE{layer}"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += [cur_g.eq(gsel_q), work.eq(work & (work - 1)), t.eq(1),
                                 loading.eq(1)]
                    m.next = f"ULOAD{layer}"
                with m.State(f"ULOAD{layer}"):
                    # the group's raster word arrives: its spikes of steps 1 .. T-1 into the
                    # shift registers (selecting bit t of a lane in every accumulate cycle,
                    # then adding, was the longest path)
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += [a.eq(1) for a in acc_flags]
                    m.next = f"UACC{layer}"
                with m.State(f"UACC{layer}"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += t.eq(t + 1)
                    with m.If(t == T - 1):
                        m.d.sync += [a.eq(0) for a in acc_flags] + [rounding.eq(1)]
                        m.next = f"UROUND{layer}"
                with m.State(f"UROUND{layer}"):
                    # the rounding shift gets a cycle of its own (the registers it loads,
                    # below, on the `rounding` flag)
                    m.d.comb += self.busy.eq(1)
                    m.next = f"UWRITE{layer}"
                # the new word, from flip-flops, outside the state machine (only the write
                # enable depends on the state: no state decode in front of the adders)
                new = []
                for p, mag in enumerate(mags):
                    d = lane(d_word, p, dw)
                    w = lane(w_word, p, sb).as_signed()
                    moved = Signal(signed(max(sb, cfg.acc_max.bit_length()) + 2),
                                   name=f"u{layer}_new{p}")
                    m.d.comb += moved.eq(Mux(d[1], w + mag, w - mag))
                    clamped = Mux(moved > cfg.store_max, cfg.store_max,
                                  Mux(moved < cfg.store_min, cfg.store_min, moved))
                    new.append(Mux(d[0], clamped, w)[:sb])
                m.d.comb += getattr(self, f"w{layer}_wdata").eq(Cat(*new))
                with m.State(f"UWRITE{layer}"):
                    m.d.comb += self.busy.eq(1)
                    m.d.comb += getattr(self, f"w{layer}_we").eq(1)
                    with m.If(work.any()):
                        m.next = f"UISSUE{layer}"
                    with m.Else():
                        next_or_finish()

            with m.State("DONE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += self.done.eq(1)
                m.next = "IDLE"

        # UROUND, on its flag: the rounding shift (acc + half) >> lr_shift (the accumulators
        # started at half) is a barrel shifter, and after it come an adder and the clamp; the
        # weight word and the desires (held since ULOAD) are registered with it, so the write
        # cycle starts from flip-flops
        w_arriving, d_arriving = Signal.like(w_word), Signal.like(d_word)
        for layer in range(L):
            with m.If(updating[layer]):
                m.d.comb += [w_arriving.eq(getattr(self, f"w{layer}_rdata")),
                             d_arriving.eq(desire_rd[layer].data)]
        with m.If(rounding):
            m.d.sync += [mag.eq(a >> shift) for mag, a in zip(mags, accs, strict=True)]
            m.d.sync += [w_word.eq(w_arriving), d_word.eq(d_arriving)]

        # ---- read addresses, from flip-flops through at most one multiplexer: no state
        # decode in front of the (wide, LUT-RAM) raster and desire memories or the weight
        # address. A memory is read in two phases, told apart by ``updating[l]`` (the FSM was
        # in layer l's update a cycle ago: true from UCHECK on, before the first UISSUE):
        # raster l at ``jg`` (BACK, UREAD of layer l+1) or at ``g`` (OUT, the last layer),
        # then at ``gsel_q`` (UISSUE l, the only update read of it); desire l and weights l at
        # ``g`` (BACK l), then at ``cur_g`` (the data of ULOAD .. UWRITE). Reads in the other
        # cycles are never used. ----
        m.d.comb += enc_rd.addr.eq(j)
        update_states = ("UREAD", "UCHECK", "UDECIDE", "UISSUE", "ULOAD", "UACC", "UROUND",
                         "UWRITE")
        for layer, updating_l in enumerate(updating):
            m.d.sync += updating_l.eq(Cat(*[fsm.ongoing(f"{state}{layer}")
                                            for state in update_states]).any())
            m.d.comb += [
                raster_rd[layer].addr.eq(Mux(updating_l, gsel_q, g if layer == last else jg)),
                desire_rd[layer].addr.eq(Mux(updating_l, cur_g, g)),
                getattr(self, f"w{layer}_addr").eq(jbase + Mux(updating_l, cur_g, g)),
            ]
        return m
