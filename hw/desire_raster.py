"""The learning unit's record of a sample: every population's spike raster."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spikeforge.hw.desire_formats import keep_layers, memory_depth, raster_word


class RasterRecorder(wiring.Component):
    """The spike rasters of a sample, recorded while it runs, read back while it learns
    (and with near eligibility the near rasters of the LIF populations).

    One memory per population, written through the taps: the encoder's per-pixel evaluations
    into ``N_in`` words of ``T`` bits (bit ``t`` of word ``j``: pixel ``j`` spiked at step
    ``t``); LIF layer ``l``'s end-of-step group evaluations into ``G_l`` words of
    :func:`~hw.desire_formats.raster_word` (lane ``p`` of word ``g``: neuron ``gP + p``). A tap
    writes bit ``step`` of its word (of every lane): bit-enable writes, and every bit is
    rewritten in every sample, so nothing needs clearing.

    Near eligibility (``eligibility = "near"``, ``docs/learning.md``): one more memory per LIF
    layer, the same shape as its spike raster, written the same way from the tap
    ``eos<l>_near`` (lane ``p`` of word ``g``, bit ``t``: neuron ``gP + p``'s membrane reached
    ``theta_near`` at step ``t``), read through ``near<l>``: ``sum_l G_l P T`` more bits
    (``memory_depth``-deep, bit-enable LUT RAM like the spike rasters). Without it neither
    exists.
    Dropout with two or more hidden layers (:func:`~hw.desire_formats.keep_layers`): for
    those layers also the keep bits of each group (``eos<l>_keep``), into ``G_l`` words of
    ``P`` bits (rewritten in every pass; a sample's passes all see the same mask), read by
    the backward pass that masks the dropped neurons' coefficients.

    Parameters
    ----------
    cfg : Config
        The network's config.

    Attributes
    ----------
    step : In(range(max(T, 2)))
        The time step of the taps.
    enc_valid, enc_index, enc_spike : In(1), In(range(N_in)), In(1)
        The encoder's evaluation of pixel ``enc_index``.
    eos<l>_valid, eos<l>_group, eos<l>_fires : In(1), In(range(G_l)), In(P)
        LIF layer ``l``'s end-of-step evaluation of group ``eos<l>_group``: which lanes fire.
    enc_read : Out(ReadPort.Signature(shape=T))
        A read port of the encoder's raster.
    read<l> : Out(ReadPort.Signature(shape=raster_word(cfg)))
        A read port of LIF layer ``l``'s raster (all of them: ``layer_reads``).
    eos<l>_near : In(P)
        Near eligibility only: which lanes of the same evaluation were near.
    near<l> : Out(ReadPort.Signature(shape=raster_word(cfg)))
        Near eligibility only: a read port of LIF layer ``l``'s near raster (all of them:
        ``near_reads``, else ``[]``).
    eos<l>_keep, keep<l> : In(P), Out(ReadPort.Signature(shape=P))
        Layers of :func:`~hw.desire_formats.keep_layers` only: the keep bits of the group
        tapped, and a read port of their record (``keep_reads[l]``).

    Notes
    -----
    Latency: a tap is registered (the taps come straight out of the encoder's and the layers'
    spike decisions), then written: it is in memory from the second cycle after it is
    presented. A read port returns the word at ``addr`` one cycle later; not transparent (the
    rasters are read only once learning starts, many cycles after the last write).

    Throughput: a tap of every population and a read of every memory in every cycle. No
    cycles of its own in :func:`sw.cycles.learn_cycles`: it records during inference.

    Number formats: spikes are bits; a count is the popcount of a lane
    (:func:`~hw.desire_formats.spike_count`).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        T, P = cfg.time_steps, cfg.lanes
        members = {
            "step": In(range(max(T, 2))),
            "enc_valid": In(1),
            "enc_index": In(range(cfg.layers[0])),
            "enc_spike": In(1),
            "enc_read": Out(ReadPort.Signature(addr_width=ceil_log2(cfg.layers[0]), shape=T)),
        }
        for layer in range(cfg.n_layers):
            depth = memory_depth(cfg, layer)
            members.update({
                f"eos{layer}_valid": In(1),
                f"eos{layer}_group": In(range(depth)),
                f"eos{layer}_fires": In(P),
                f"read{layer}": Out(ReadPort.Signature(addr_width=ceil_log2(depth),
                                                       shape=raster_word(cfg))),
            })
            if cfg.near_eligibility:
                members.update({
                    f"eos{layer}_near": In(P),
                    f"near{layer}": Out(ReadPort.Signature(addr_width=ceil_log2(depth),
                                                           shape=raster_word(cfg))),
                })
        for layer in keep_layers(cfg):
            depth = memory_depth(cfg, layer)
            members.update({
                f"eos{layer}_keep": In(P),
                f"keep{layer}": Out(ReadPort.Signature(addr_width=ceil_log2(depth), shape=P)),
            })
        super().__init__(members)
        self.layer_reads = [getattr(self, f"read{layer}") for layer in range(cfg.n_layers)]
        self.near_reads = ([getattr(self, f"near{layer}") for layer in range(cfg.n_layers)]
                           if cfg.near_eligibility else [])
        self.keep_reads = {layer: getattr(self, f"keep{layer}") for layer in keep_layers(cfg)}
        #: the names of the taps: every input but the read ports'
        self.tap_names = [name for name, member in self.signature.members.items()
                          if member.is_port and member.flow == In]

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        T, P = cfg.time_steps, cfg.lanes

        def tapped(sig):
            """``sig`` one cycle later."""
            reg = Signal.like(sig, name=f"tap_{sig.name}")
            m.d.sync += reg.eq(sig)
            return reg

        step = tapped(self.step)
        m.submodules.enc_raster = enc_raster = Memory(shape=T, depth=cfg.layers[0], init=[])
        wr = enc_raster.write_port(granularity=1)
        m.d.comb += [wr.addr.eq(tapped(self.enc_index)),
                     wr.data.eq(Mux(tapped(self.enc_spike), (1 << T) - 1, 0)),
                     wr.en.eq(Mux(tapped(self.enc_valid), Const(1, T) << step, 0))]
        self._connect_read(m, enc_raster, self.enc_read)
        lane_mask = Cat(*[Const(1, T) for _ in range(P)])   # bit 0 of every lane
        for layer, read in enumerate(self.layer_reads):
            mem = Memory(shape=P * T, depth=memory_depth(cfg, layer), init=[])
            m.submodules[f"raster{layer}"] = mem
            wr = mem.write_port(granularity=1)
            fires = tapped(getattr(self, f"eos{layer}_fires"))
            addr = tapped(getattr(self, f"eos{layer}_group"))
            valid = tapped(getattr(self, f"eos{layer}_valid"))
            en = Mux(valid, lane_mask << step, 0)
            m.d.comb += [
                wr.addr.eq(addr),
                wr.data.eq(Cat(*[Mux(fires[p], (1 << T) - 1, 0) for p in range(P)])),
                wr.en.eq(en),
            ]
            self._connect_read(m, mem, read)
            if self.near_reads:
                # the near raster: written like the spike raster, from the same registered
                # address and enables
                mem = Memory(shape=P * T, depth=memory_depth(cfg, layer), init=[])
                m.submodules[f"near_raster{layer}"] = mem
                wr = mem.write_port(granularity=1)
                near = tapped(getattr(self, f"eos{layer}_near"))
                m.d.comb += [
                    wr.addr.eq(addr),
                    wr.data.eq(Cat(*[Mux(near[p], (1 << T) - 1, 0) for p in range(P)])),
                    wr.en.eq(en),
                ]
                self._connect_read(m, mem, self.near_reads[layer])
            if layer in self.keep_reads:
                # dropout's keep bits: the same registered address, a whole word per pass
                mem = Memory(shape=P, depth=memory_depth(cfg, layer), init=[])
                m.submodules[f"keep{layer}"] = mem
                wr = mem.write_port()
                keep = tapped(getattr(self, f"eos{layer}_keep"))
                m.d.comb += [wr.addr.eq(addr), wr.data.eq(keep), wr.en.eq(valid)]
                self._connect_read(m, mem, self.keep_reads[layer])
        return m

    @staticmethod
    def _connect_read(m, memory, port):
        """A read port of ``memory`` behind ``port`` (the memory holds plain bits: its writes
        are bit-granular; ``port`` may view them through a layout)."""
        rd = memory.read_port()
        m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
