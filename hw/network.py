"""Multi-layer SNN top: an input source (rate encoder or stored raster) + pipelined LIF layers
running a sample autonomously."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.desire_unit import DesireUnit
from spikeforge.hw.dropout_mask import DropoutMask
from spikeforge.hw.events import event_layout, index_width, readout_layout
from spikeforge.hw.exit_decoder import ExitDecoder
from spikeforge.hw.lif_layer import LIFLayer
from spikeforge.hw.raster_source import RasterSource
from spikeforge.hw.rate_encoder import RateEncoder
from spikeforge.protocol import decoder_depth
from spikeforge.timing import CYCLE_COUNTER_BITS


class Network(wiring.Component):
    """The whole inference network of a :class:`~spikeforge.config.NetworkConfig`.

    Load pixels (``px_*``) and weights (``w_*``) while idle, pulse ``start``; ``busy`` is high
    until ``done`` pulses; then ``prediction``/``prediction_valid`` (unique argmax of the
    output spike counts; with ``tie_break = "first_spike"`` of (count, earliest first
    spike), :func:`sw.golden.decide`), ``count`` (output spike count of neuron ``count_sel``) and
    ``cycles`` (busy cycles of the sample) hold until the next ``start``.

    Schedule: one *phase* per time step ``t``. In phase ``t`` all stages run concurrently:
    the encoder makes ``s_0[t]``; LIF layer ``l`` integrates ``s_{l-1}[t-1]`` from its input
    FIFO (written by its producer in phase ``t-1``) and writes ``s_l[t]`` into the next FIFO.
    At ``t = 0`` the layers receive a clear marker instead. A phase ends one cycle after
    the slowest stage handed over its end-of-step marker (barrier), so layer ``l`` works on
    step ``t`` while layer ``l+1`` works on step ``t-1``: the reference one-step delay.

    Latency: ``cycles = sum_t (max(stage costs of phase t) + PHASE_OVERHEAD)`` (``+ 1``),
    the exact model in :mod:`sw.cycles` (constants in :mod:`spikeforge.timing`); the FIFOs
    hold two steps of events (``2*N + 2`` entries) and can never fill, so the count depends
    on the spikes only. ``fifo_overflow`` reports a violated sizing (it is a bug if it ever
    rises).

    Number formats: see :class:`~hw.lif_layer.LIFLayer` and :class:`~hw.rate_encoder.RateEncoder`.

    Input select (configs with ``event_input`` only): with ``from_raster`` low at ``start``
    population 0 is the rate encoder on the pixels; with it high, the stored input raster
    (:class:`~hw.raster_source.RasterSource`, same interface and timing, so the cycle model
    and the learning unit's raster tap do not change). Raster port, while idle:
    ``raster_set`` sets spike ``(raster_step, raster_index)`` in one cycle; a
    ``raster_clear`` pulse zeroes the raster (``raster_busy`` is high for its
    ``T * 2**ceil(log2 N_in)`` cycles).

    Learning (configs with ``[learning]`` only): with ``learn`` high at ``start`` the sample
    is a training sample: after its last phase the :class:`~hw.desire_unit.DesireUnit` learns
    from it (``label``, ``lr_shift`` sampled at ``start``), then ``done`` pulses; ``cycles``
    counts inference and learning (:func:`sw.cycles.learn_cycles`). The weight port then
    carries stored weights, ``weight_bits + F`` bits per lane. With ``dropout_hidden`` a
    :class:`~hw.dropout_mask.DropoutMask` per hidden layer drops neurons of training samples
    (``docs/learning.md``, Dropout): no cycles of its own, the counts follow the gated spikes.

    Readout stream (``readout``, :func:`hw.events.readout_layout`): every output spike as an
    item ``(step, neuron)``, in the order the last layer emits them (ascending step, then
    neuron), then one ``end`` item per sample carrying the sample's spike count. A FIFO of
    ``T * n_out + 1`` items sits in front of it, enough for a whole sample, so the network
    never waits for the host (cycle counts do not depend on ``readout.ready``); drain it
    before the next ``start``. If the host does not, a full FIFO drops the item and sets the
    sticky ``readout_overflow`` (cleared by reset only): loss is reported, never silent.

    Probe ports (for verification, free when unconnected): ``probe_step`` is the current
    phase; ``probe<l>_valid``/``probe<l>_index`` show each spike of population ``l`` (0 = the
    encoder, ``l`` = LIF layer ``l``) in the cycle it is handed over.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        L, T = cfg.n_layers, cfg.time_steps
        n_out = cfg.layers[-1]
        self.weight_depth = max(cfg.layers[i] * cfg.groups(i) for i in range(L))
        if cfg.decoder is not None:         # the decoder's weights: "layer" L of the port
            self.weight_depth = max(self.weight_depth, decoder_depth(cfg))
        signature = {
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "prediction": Out(range(n_out)),
            "prediction_valid": Out(1),
            "count_sel": In(range(n_out)),
            "count": Out(range(T + 1)),
            "fifo_overflow": Out(1),
            "readout": Out(stream.Signature(readout_layout(n_out, T))),
            "readout_overflow": Out(1),
            "px_addr": In(range(cfg.layers[0])),
            "px_data": In(cfg.pixel_bits),
            "px_we": In(1),
            "w_layer": In(range(max(L + (cfg.decoder is not None), 2))),
            "w_addr": In(range(self.weight_depth)),
            "w_wdata": In(cfg.lanes * cfg.store_bits),
            "w_we": In(1),
            "w_rdata": Out(cfg.lanes * cfg.store_bits),
            "steps_run": Out(range(T + 1)),
            "probe_step": Out(range(max(T, 2))),
        }
        if cfg.learning is not None:
            signature.update({"learn": In(1), "label": In(range(n_out)),
                              "lr_shift": In(range(LR_SHIFT[1] + 1))})
        if cfg.decoder is not None:
            signature.update({"decode": In(1), "score_sel": In(range(n_out)),
                              "score": Out(signed(cfg.decoder.score_bits(n_out)))})
        if cfg.event_input:
            signature.update({"from_raster": In(1), "raster_step": In(range(max(T, 2))),
                              "raster_index": In(range(cfg.layers[0])),
                              "raster_set": In(1), "raster_clear": In(1),
                              "raster_busy": Out(1)})
        for pop, n in enumerate(cfg.layers):
            signature[f"probe{pop}_valid"] = Out(1)
            signature[f"probe{pop}_index"] = Out(index_width(n))
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        ctl = _PhaseControl(self.cfg)
        source, tap, input_start = self._input_source(m, ctl)
        layers, producers = self._layer_chain(m, self._live_input(m, source, ctl), ctl)
        self._dropout_masks(m, layers, ctl)
        learner, learner_start = self._learning_unit(m, tap, layers, ctl)
        self._weight_port(m, layers, learner, ctl)
        readout_start = self._readout(m, producers[-1], ctl)
        self._probes(m, producers, ctl)
        spike = self._output_spike(m, producers[-1])
        m.d.comb += ctl.count_sel.eq(self.count_sel)  # the settled scan's while it runs
        prediction, counts_start = self._output_counts(m, spike, ctl)
        decoder, decoder_start = self._exit_decoder(m, spike, ctl)
        # what each part does when a sample starts, in the cycle `start` is seen
        on_start = input_start + learner_start + readout_start + counts_start + decoder_start
        self._phase_controller(m, ctl, on_start, prediction, learner, decoder)
        return m

    def _input_source(self, m, ctl):
        """Population 0: the rate encoder (:class:`~hw.rate_encoder.RateEncoder`) on the
        pixels, or with ``event_input`` and ``from_raster`` the stored input raster
        (:class:`~hw.raster_source.RasterSource`, same interface and timing: ``N_in +
        ENCODER_OVERHEAD`` cycles per step). Started in the first cycle of each phase, reset to
        a new sample in phase 0. Returns its event stream, its raster tap
        ``(valid, index, spike)`` and the statements that run when a sample starts."""
        cfg = self.cfg
        m.submodules.encoder = enc = RateEncoder(
            n_in=cfg.layers[0], pixel_bits=cfg.pixel_bits, theta=cfg.encoder_threshold)
        m.d.comb += [enc.px_addr.eq(self.px_addr), enc.px_data.eq(self.px_data),
                     enc.px_we.eq(self.px_we),
                     enc.first.eq(ctl.phase == 0), enc.start.eq(ctl.launch)]
        if not cfg.event_input:
            return enc.spikes_out, (enc.eval_valid, enc.eval_index, enc.eval_spike), []

        from_raster = Signal()           # this sample's input is the stored raster
        m.submodules.raster_source = ras = RasterSource(n_in=cfg.layers[0], steps=cfg.time_steps)
        source = stream.Signature(event_layout(cfg.layers[0])).create()
        m.d.comb += [
            source.valid.eq(Mux(from_raster, ras.spikes_out.valid, enc.spikes_out.valid)),
            source.payload.eq(Mux(from_raster, ras.spikes_out.payload,
                                  enc.spikes_out.payload)),
            enc.spikes_out.ready.eq(source.ready), ras.spikes_out.ready.eq(source.ready),
            ras.set_step.eq(self.raster_step), ras.set_index.eq(self.raster_index),
            ras.set.eq(self.raster_set), ras.clear.eq(self.raster_clear),
            self.raster_busy.eq(ras.busy),
            enc.start.eq(ctl.launch & ~from_raster),
            ras.first.eq(ctl.phase == 0), ras.start.eq(ctl.launch & from_raster),
        ]
        tap = (Mux(from_raster, ras.eval_valid, enc.eval_valid),
               Mux(from_raster, ras.eval_index, enc.eval_index),
               Mux(from_raster, ras.eval_spike, enc.eval_spike))
        return source, tap, [from_raster.eq(self.from_raster)]

    def _live_input(self, m, source, ctl):
        """The input events layer 0 gets: in an inference sample those of the steps from
        ``cfg.live_input_steps`` on are dropped (no output spike depends on them:
        :func:`sw.golden.live_input`), so layer 0's last phases cost no ``E * G``; the end
        markers pass, and a training sample (``ctl.train``) keeps every event."""
        cfg = self.cfg
        first_dead = cfg.live_input_steps()
        if cfg.decoder is not None:
            first_dead = Mux(ctl.decoding, cfg.live_input_steps(decoding=True), first_dead)
        dead = ~ctl.train & (ctl.phase >= first_dead)
        live = stream.Signature(event_layout(cfg.layers[0])).create()
        m.d.comb += [live.valid.eq(source.valid & (source.payload.end | ~dead)),
                     live.payload.eq(source.payload), source.ready.eq(live.ready)]
        return live

    def _layer_chain(self, m, source, ctl):
        """The LIF layers (:class:`~hw.lif_layer.LIFLayer`) and the FIFOs in front of them:
        ``source`` -> FIFO 0 -> layer 0 -> FIFO 1 -> ... -> layer ``L-1``. A FIFO holds at
        most two steps of its producer's events (the step its consumer is integrating and the
        step being made) with their end markers: ``2 * n_pre + 2``, its depth, so it never
        fills and the producers' ``ready`` is tied high (back-pressure from the FIFOs' level
        into every source's pipeline enables was a critical path); ``fifo_overflow`` would
        report the impossible. The FIFOs are emptied when a sample starts. Returns the layers
        and the producers (``source``, then each layer's ``spikes_out``)."""
        cfg = self.cfg
        layers = [LIFLayer.from_config(cfg, i) for i in range(cfg.n_layers)]
        fifos = []
        for i, layer in enumerate(layers):
            m.submodules[f"layer{i}"] = layer
            n_pre = cfg.layers[i]
            fifo = SyncFIFOBuffered(width=event_layout(n_pre).size, depth=2 * n_pre + 2)
            m.submodules[f"fifo{i}"] = ResetInserter(ctl.clear_fifos)(fifo)
            fifos.append(fifo)
        producers = [source] + [layer.spikes_out for layer in layers]
        for i, fifo in enumerate(fifos):
            src = producers[i]
            m.d.comb += [fifo.w_data.eq(src.payload.as_value()), fifo.w_en.eq(src.valid)]
            with m.If(src.valid & ~fifo.w_rdy):
                m.d.sync += self.fifo_overflow.eq(1)
        for src in producers:
            m.d.comb += src.ready.eq(1)
        self._layer_inputs(m, layers, fifos, ctl)
        return layers, producers

    def _layer_inputs(self, m, layers, fifos, ctl):
        """Each layer's input: a clear marker in phase 0, else its FIFO, read while the
        layer's bit of ``opened`` is set and closed at the end marker. An item written in
        the last cycle of a phase is readable two cycles later: when the next phase opens."""
        for i, (layer, fifo) in enumerate(zip(layers, fifos, strict=True)):
            sink = layer.spikes_in
            first = ctl.phase == 0
            m.d.comb += [
                sink.valid.eq(ctl.opened[i] & (first | fifo.r_rdy)),
                fifo.r_en.eq(ctl.opened[i] & ~first & sink.ready),
            ]
            m.d.comb += layer.clear.eq(first)
            with m.If(first):
                m.d.comb += sink.payload.end.eq(1)
            with m.Else():
                m.d.comb += sink.payload.eq(fifo.r_data)
            with m.If(sink.valid & sink.ready & sink.payload.end):
                m.d.sync += ctl.opened[i].eq(0)

    def _dropout_masks(self, m, layers, ctl):
        """Dropout (configs with ``dropout_hidden``): a :class:`~hw.dropout_mask.DropoutMask`
        per hidden layer, stepped by the layer's end-of-step tap, enabled in training samples
        (``ctl.train``), its keep bits gating the layer's spikes in the evaluation cycle."""
        cfg = self.cfg
        for i in cfg.dropout_layers:
            layer = layers[i]
            mask = DropoutMask(cfg.dropout_seeds[i], cfg.groups(i), cfg.dropout_threshold)
            m.submodules[f"dropout{i}"] = mask
            m.d.comb += [mask.enable.eq(ctl.train), mask.valid.eq(layer.eos_valid),
                         mask.group.eq(layer.eos_group),
                         mask.last_step.eq(ctl.phase == cfg.time_steps - 1),
                         layer.keep.eq(mask.keep)]

    def _learning_unit(self, m, tap, layers, ctl):
        """The learning unit (:class:`~hw.desire_unit.DesireUnit`, configs with ``[learning]``
        only), fed by the input's raster tap ``tap``, every layer's end-of-step tap (with
        near eligibility its near bits too) and registered weight word, and the phase.
        Returns it (``None`` without learning) and the statements that run when a sample
        starts: whether it learns, its ``label`` and ``lr_shift``."""
        if self.cfg.learning is None:
            return None, []
        m.submodules.learner = learner = DesireUnit(self.cfg)
        m.d.comb += [learner.enc_valid.eq(tap[0]), learner.enc_index.eq(tap[1]),
                     learner.enc_spike.eq(tap[2]), learner.step.eq(ctl.phase)]
        for i, layer in enumerate(layers):
            m.d.comb += [getattr(learner, f"eos{i}_valid").eq(layer.eos_valid),
                         getattr(learner, f"eos{i}_group").eq(layer.eos_group),
                         getattr(learner, f"eos{i}_fires").eq(layer.eos_fires),
                         getattr(learner, f"w{i}_rdata").eq(layer.w_rdata)]
            if self.cfg.near_eligibility:       # the near raster's tap (docs/learning.md)
                m.d.comb += getattr(learner, f"eos{i}_near").eq(layer.eos_near)
            if hasattr(learner, f"eos{i}_keep"):       # dropout with 2+ hidden layers
                m.d.comb += getattr(learner, f"eos{i}_keep").eq(layer.keep)
        return learner, [ctl.train.eq(self.learn), learner.label.eq(self.label),
                         learner.lr_shift.eq(self.lr_shift)]

    def _weight_port(self, m, layers, learner, ctl):
        """The layers' weight ports: the host's (``w_*``: a write goes to layer ``w_layer``,
        ``w_rdata`` is that layer's registered word, ``WEIGHT_READ_LATENCY`` cycles after
        ``w_addr``), the learning unit's while it runs (``ctl.learning``: a flip-flop of its
        own, not a decode of the state, since it selects every weight port bit of every
        layer)."""
        for i, layer in enumerate(layers):
            m.d.comb += [layer.w_addr.eq(self.w_addr), layer.w_wdata.eq(self.w_wdata),
                         layer.w_we.eq(self.w_we & (self.w_layer == i))]
            if learner is not None:
                with m.If(ctl.learning):
                    m.d.comb += [layer.w_addr.eq(getattr(learner, f"w{i}_addr")),
                                 layer.w_wdata.eq(getattr(learner, f"w{i}_wdata")),
                                 layer.w_we.eq(getattr(learner, f"w{i}_we"))]
            with m.If(self.w_layer == i):
                m.d.comb += self.w_rdata.eq(layer.w_rdata)

    def _readout(self, m, last, ctl):
        """The readout stream ``readout``: each spike of ``last`` (the output layer) as an item
        ``(step, neuron)`` in the cycle it is handed over, and an ``end`` item with the
        sample's spike count in the cycle its last phase ends (``ctl.close``), through a FIFO
        of ``T * n_out + 1`` items (a whole sample). Returns the statements that run when a
        sample starts."""
        T, n_out = self.cfg.time_steps, self.cfg.layers[-1]
        layout = readout_layout(n_out, T)
        m.submodules.readout_fifo = rfifo = SyncFIFOBuffered(width=layout.size,
                                                             depth=T * n_out + 1)
        item = Signal(layout)
        sent = Signal(range(T * n_out + 1))          # spike items of this sample
        m.d.comb += [rfifo.w_data.eq(item), self.readout.payload.eq(rfifo.r_data),
                     self.readout.valid.eq(rfifo.r_rdy), rfifo.r_en.eq(self.readout.ready)]
        with m.If(ctl.close):
            m.d.comb += [item.end.eq(1), item.count.eq(sent), rfifo.w_en.eq(1)]
        with m.Elif(last.valid & ~last.payload.end):
            m.d.comb += [item.step.eq(ctl.phase), item.neuron.eq(last.payload.index),
                         rfifo.w_en.eq(1)]
            m.d.sync += sent.eq(sent + 1)
        with m.If(rfifo.w_en & ~rfifo.w_rdy):
            m.d.sync += self.readout_overflow.eq(1)
        return [sent.eq(0)]

    def _probes(self, m, producers, ctl):
        """The probe ports: ``probe_step`` (the phase) and each population's spikes in the cycle
        they are handed over. The same handshake of each stage's end marker sets its bit of
        ``ctl.stage_done`` (bit 0: the input, bit ``l + 1``: layer ``l``), the barrier's
        input."""
        m.d.comb += self.probe_step.eq(ctl.phase)
        for pop, src in enumerate(producers):
            fire = src.valid & src.ready
            m.d.comb += [getattr(self, f"probe{pop}_valid").eq(fire & ~src.payload.end),
                         getattr(self, f"probe{pop}_index").eq(src.payload.index)]
            with m.If(fire & src.payload.end):
                m.d.sync += ctl.stage_done[pop].eq(1)

    def _output_spike(self, m, out):
        """The output layer's spikes ``out``, registered: ``(spike, index)`` a cycle after
        each is handed over (its lane priority encoder in front of the counters and the
        decoder was a critical path)."""
        out_spike = Signal()
        out_index = Signal.like(out.payload.index)
        m.d.sync += [out_spike.eq(out.valid & ~out.payload.end), out_index.eq(out.payload.index)]
        return out_spike, out_index

    def _exit_decoder(self, m, spike, ctl):
        """The decoder on the chip (:class:`~hw.exit_decoder.ExitDecoder`, configs with
        ``[decoder]`` only): it adds the registered output ``spike`` of the phase's step to
        the scores of samples that decode (``decode`` high at ``start``, not learning), the
        bias in phase 0's first cycle, and is weight "layer" ``L`` of the weight port.
        Returns it (``None`` without a decoder) and the statements that run when a sample
        starts."""
        cfg = self.cfg
        if cfg.decoder is None:
            return None, []
        m.submodules.exit_decoder = dec = ExitDecoder(cfg)
        m.d.comb += [
            dec.clear.eq(ctl.clear_fifos),
            dec.add_bias.eq(ctl.decoding & ctl.launch & (ctl.phase == 0)),
            dec.spike_valid.eq(ctl.decoding & spike[0]), dec.spike_index.eq(spike[1]),
            dec.step.eq(ctl.phase),
            dec.w_addr.eq(self.w_addr), dec.w_data.eq(self.w_wdata),
            dec.w_we.eq(self.w_we & (self.w_layer == cfg.n_layers)),
            dec.score_sel.eq(self.score_sel), self.score.eq(dec.score),
        ]
        with m.If(self.w_layer == cfg.n_layers):
            m.d.comb += self.w_rdata.eq(dec.r_data)
        learn = self.learn if cfg.learning is not None else 0
        return dec, [ctl.decoding.eq(self.decode & ~learn)]

    def _output_counts(self, m, spike, ctl):
        """The output spike counters (``count`` of neuron ``count_sel``, ``range(T + 1)``) and
        their running unique argmax, both updated with each registered output ``spike``; with
        ``tie_break = "first_spike"`` the argmax of the key ``count * (T + 1) + T - first
        step`` (the first step: the phase of the neuron's first spike), the lexicographic
        ``(count, -first step)`` of :func:`sw.golden.decide`. Returns the prediction
        ``(best_index, tie)`` and the statements that zero them when a sample starts."""
        T, n_out = self.cfg.time_steps, self.cfg.layers[-1]
        # counted from the registered spike (:meth:`_output_spike`); the last spike is
        # counted before `close` reads the argmax, since `close` waits for the end marker,
        # which comes at least a cycle after it, and for its `stage_done`
        counts = [Signal(range(T + 1), name=f"count{j}") for j in range(n_out)]
        out_spike, out_index = spike
        for j, c in enumerate(counts):
            with m.If(out_spike & (out_index == j)):
                m.d.sync += c.eq(c + 1)
            with m.If(ctl.count_sel == j):
                m.d.comb += self.count.eq(c)
        # running unique argmax, updated with each output spike (one per cycle at most):
        # the lowest index among the largest keys, and whether another key equals it. Same
        # answer as comparing all keys at the end, without a comparison chain. The key is
        # the count, or with the first-spike tie break ``count * (T + 1) + T - first step``
        # (0 before the first spike), kept per neuron: one multiplexer and one comparison
        # after the spike's register, as without it.
        first_spike = self.cfg.tie_break == "first_spike"
        top = T * (T + 1) + T if first_spike else T
        best = Signal(range(top + 1))
        best_index = Signal(range(n_out))
        tie = Signal(init=n_out > 1)                 # all keys start equal at zero
        spike_j = out_index
        new_key = Signal(range(top + T + 2 if first_spike else T + 2))
        clear = [best.eq(0), best_index.eq(0), tie.eq(n_out > 1)] + [c.eq(0) for c in counts]
        if first_spike:
            # a neuron's first spike gets 2T + 1 - step (count 1), each later one the key
            # before it + T + 1, kept ready beside a fired flag: no adder after the
            # spike's register, only the multiplexers and the comparison
            fired = [Signal(name=f"fired{j}") for j in range(n_out)]
            nexts = [Signal(range(top + T + 2), name=f"next_key{j}") for j in range(n_out)]
            first_key = Signal(range(2 * T + 2))     # of the spike's step, registered with it
            m.d.sync += first_key.eq(2 * T + 1 - ctl.phase)
            m.d.comb += new_key.eq(Mux(Array(fired)[spike_j], Array(nexts)[spike_j], first_key))
            for j, (f, n) in enumerate(zip(fired, nexts, strict=True)):
                with m.If(out_spike & (out_index == j)):
                    m.d.sync += [f.eq(1), n.eq(new_key + T + 1)]
            clear += [f.eq(0) for f in fired]
        else:
            m.d.comb += new_key.eq(Array(counts)[spike_j] + 1)
        with m.If(out_spike):
            with m.If(new_key > best):
                m.d.sync += [best.eq(new_key), best_index.eq(spike_j), tie.eq(0)]
            with m.Elif(new_key == best):
                m.d.sync += [tie.eq(1), best_index.eq(Mux(spike_j < best_index, spike_j,
                                                          best_index))]
        return (best_index, tie), clear

    def _settled_scan(self):
        """``early_exit = "settled"``: the scan that tests, after a phase of an inference
        sample, whether the count rule's decision can still change
        (:func:`sw.golden.settled_steps`): one count a cycle through the ``count_sel``
        multiplexer, keeping the top count and the largest of the others, then whether the top
        leads by more than the ``T - 1 - phase`` steps left. ``SETTLE_OVERHEAD`` + ``C``
        cycles a check (:func:`sw.cycles.settle_checks`). Returns ``(index, top, second)``
        for the phase controller's ``SETTLE`` state, ``None`` without the option."""
        cfg = self.cfg
        if cfg.early_exit != "settled":
            return None
        T, n_out = cfg.time_steps, cfg.layers[-1]
        index = Signal(range(n_out + 1))           # n_out: the scan is done, decide
        top = Signal(range(T + 1))
        second = Signal(range(T + 1))
        return index, top, second

    def _phase_controller(self, m, ctl, on_start, prediction, learner, decoder):
        """The sample's state machine: ``IDLE`` -> ``RUN`` (one phase per step; a phase ends
        ``PHASE_OVERHEAD`` cycle after every stage handed over its end marker) -> ``LEARN``
        (training samples) -> ``IDLE``, counting ``cycles`` from the cycle ``start`` is seen
        to the cycle ``done`` rises. ``on_start``: the other parts' statements for a new
        sample; ``prediction``: ``(best_index, tie)``, latched when the last phase ends.

        With ``early_exit = "settled"`` an inference sample goes ``RUN`` -> ``SETTLE`` at the
        end of each phase from ``T // 2`` (before it no top can lead by more than the steps
        left) to ``T - 2``: the scan of :meth:`_settled_scan`, then the sample ends or the
        next phase opens.

        A decoded sample (``decoder``, ``ctl.decoding``) goes ``RUN`` -> ``DECIDE`` at the
        end of every phase from the decoder's first check on; ``DECIDE`` waits for the
        decoder's scan and ends the sample (its decision is the prediction) or opens the
        next phase."""
        T, n_out = self.cfg.time_steps, self.cfg.layers[-1]
        best_index, tie = prediction
        last = ctl.phase == T - 1
        scan = self._settled_scan()
        all_done = ctl.stage_done.all() & ~ctl.launch
        m.d.comb += self.cycles.eq(ctl.cycles)
        m.d.sync += [ctl.launch.eq(0), self.done.eq(0)]
        next_phase = [ctl.phase.eq(ctl.phase + 1), ctl.launch.eq(1), ctl.opened.eq(-1),
                      ctl.stage_done.eq(0)]
        close = [self.steps_run.eq(ctl.phase + 1)]
        finish = [self.prediction.eq(best_index), self.prediction_valid.eq(~tie)] + close

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += ctl.clear_fifos.eq(1)
                    m.d.sync += [ctl.phase.eq(0), ctl.launch.eq(1), ctl.opened.eq(-1),
                                 ctl.stage_done.eq(0), ctl.cycles.eq(0)] + on_start
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += ctl.cycles.eq(ctl.cycles + 1)
                ends = all_done                    # the phase ends, no decision check
                if decoder is not None:
                    d = self.cfg.decoder
                    check = ctl.decoding & (ctl.phase >= d.first_check - 1)
                    with m.If(all_done & check):
                        m.d.comb += [decoder.decide.eq(1),
                                     decoder.force.eq(ctl.phase == d.steps - 1)]
                        m.next = "DECIDE"
                    ends = all_done & ~check
                if scan is not None:
                    index, top, second = scan
                    check = ~ctl.train & (ctl.phase >= T // 2) & ~last
                    with m.If(all_done & check):
                        m.d.sync += [index.eq(0), top.eq(0), second.eq(0)]
                        m.next = "SETTLE"
                    ends = all_done & ~check
                with m.If(ends):
                    with m.If(last):
                        m.d.comb += ctl.close.eq(1)
                        m.d.sync += finish
                        with m.If(ctl.train):
                            if learner is not None:
                                m.d.comb += learner.start.eq(1)
                                m.d.sync += ctl.learning.eq(1)
                                m.next = "LEARN"
                        with m.Else():
                            m.d.sync += self.done.eq(1)
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += next_phase
            if learner is not None:
                with m.State("LEARN"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += ctl.cycles.eq(ctl.cycles + 1)
                    with m.If(learner.done):
                        m.d.sync += [self.done.eq(1), ctl.learning.eq(0)]
                        m.next = "IDLE"
            if scan is not None:
                with m.State("SETTLE"):
                    m.d.comb += [self.busy.eq(1), ctl.count_sel.eq(index)]
                    m.d.sync += ctl.cycles.eq(ctl.cycles + 1)
                    with m.If(index != n_out):     # count `index` on `count`
                        m.d.sync += index.eq(index + 1)
                        with m.If(self.count > top):
                            m.d.sync += [top.eq(self.count), second.eq(top)]
                        with m.Elif(self.count > second):
                            m.d.sync += second.eq(self.count)
                    with m.Elif(top - second > T - 1 - ctl.phase):
                        m.d.comb += ctl.close.eq(1)
                        m.d.sync += [self.done.eq(1)] + finish
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += next_phase
                        m.next = "RUN"
            if decoder is not None:
                with m.State("DECIDE"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += ctl.cycles.eq(ctl.cycles + 1)
                    with m.If(decoder.decided & decoder.exit):
                        m.d.comb += ctl.close.eq(1)
                        m.d.sync += [self.prediction.eq(decoder.best),
                                     self.prediction_valid.eq(1), self.done.eq(1)] + close
                        m.next = "IDLE"
                    with m.Elif(decoder.decided):
                        m.d.sync += next_phase
                        m.next = "RUN"


class _PhaseControl:
    """The phase controller's registers and flags, read and written by the parts of a
    :class:`Network` (one instance per elaboration)."""

    def __init__(self, cfg):
        L, T = cfg.n_layers, cfg.time_steps
        self.phase = Signal(range(max(T, 2)))
        self.launch = Signal()                     # first cycle of a phase
        self.opened = Signal(L)                    # layer i may still take input this phase
        self.stage_done = Signal(L + 1)            # bit 0: encoder, bit i+1: layer i
        self.cycles = Signal(CYCLE_COUNTER_BITS)
        self.close = Signal()                      # the sample's last phase ends now
        self.train = Signal()                      # this sample learns
        self.clear_fifos = Signal()                # a sample starts: empty the FIFOs
        # the learning unit owns the weight ports: a flip-flop of its own (not a decode of the
        # state), since it selects every weight port bit of every layer
        self.learning = Signal()
        self.decoding = Signal()                   # this sample is decoded on the chip
        self.count_sel = Signal(range(cfg.layers[-1]))   # the output count on ``count``
