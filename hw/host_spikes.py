"""The host link's two spike paths.

* :class:`EventsLoader` stores an EVENTS frame's input spike events in the network's input
  raster.
* :class:`ReadoutSender` counts a RUN's output spikes and sends them, from the network's
  readout stream, as the tail of its response.

Both run when :class:`~spikeforge.hw.host_commands.CommandUnit` tells them to, each with a
state machine of its own, so that the unit's stays small and fast.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.events import readout_layout
from spikeforge.hw.host_framing import payload_reader, tail_signature
from spikeforge.protocol import (
    EVENT,
    EVENTS_REQUEST,
    FRAME_HEADER,
    READOUT_ITEM,
    RUN_RESPONSE,
    buffer_depth,
    nbytes,
)


def events_control() -> wiring.Signature:
    """The command unit's side of the :class:`EventsLoader`.

    * ``start``: high while the unit waits for the loader.
    * ``clear``: zero the raster first.
    * ``length``: the EVENTS payload's length.
    * ``done``: pulses when the events are stored.
    """
    return wiring.Signature({"start": Out(1), "clear": Out(1),
                             "length": Out(FRAME_HEADER["length"].shape), "done": In(1)})


def readout_control() -> wiring.Signature:
    """The command unit's side of the :class:`ReadoutSender`.

    * ``start``: pulses when a sample starts.
    * ``spikes``: its output spikes so far.
    * ``length``: its RUN response's length, registered.
    * ``stream_error``: sticky, set when the readout stream's end item disagreed with the
      spike count.
    """
    return wiring.Signature({"start": Out(1), "spikes": In(RUN_RESPONSE["spikes"].shape),
                             "length": In(FRAME_HEADER["length"].shape),
                             "stream_error": In(1)})


class EventsLoader(wiring.Component):
    """EVENTS: stores the checked payload's events in the network's input raster.

    While ``control.start`` is high it clears the raster if ``control.clear``. Then it reads
    each :data:`~spikeforge.protocol.EVENT` after the payload's header from the payload
    buffer and sets that spike. ``control.done`` pulses at the end.

    Parameters
    ----------
    cfg : Config
        The network's config.
    network : wiring.Signature
        The loader's side of the network's raster ports (:attr:`NETWORK_PORTS`).

    Attributes
    ----------
    control : In(events_control())
        Start, clear flag, payload length, done.
    buffer : Out(payload_reader(buffer_depth))
        Reads the payload buffer.
    network : Out(network)
        ``raster_clear``, ``raster_busy``, ``raster_set`` with ``raster_step`` and
        ``raster_index``.

    Notes
    -----
    Latency: 1 cycle to start; the clear takes 2 cycles plus the raster's own
    ``T * 2**ceil(log2 N_in)``; 1 cycle to finish.

    Throughput: 8 cycles per event (1 to test for the end, an address and a data cycle per
    byte, 1 to set the spike).
    """

    NETWORK_PORTS = ("raster_step", "raster_index", "raster_set", "raster_clear",
                     "raster_busy")

    def __init__(self, cfg, network: wiring.Signature):
        self.depth = buffer_depth(cfg)
        super().__init__({"control": In(events_control()),
                          "buffer": Out(payload_reader(self.depth)),
                          "network": Out(network)})

    def elaborate(self, platform):
        m = Module()
        control, net, buf = self.control, self.network, self.buffer
        ptr = Signal(range(self.depth + 1))             # next byte of the payload
        byte = Signal(range(nbytes(EVENT)))             # its byte in the event
        event = Signal(EVENT)                           # the event, shifted in
        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += [ptr.eq(nbytes(EVENTS_REQUEST)), byte.eq(0)]
                with m.If(control.start):
                    m.next = "NEXT"
                    with m.If(control.clear):
                        m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += net.raster_clear.eq(1)
                m.next = "CLEARING"
            with m.State("CLEARING"):
                with m.If(~net.raster_busy):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.next = "ADDR"
                with m.If(ptr == control.length):
                    m.next = "DONE"
            with m.State("ADDR"):
                m.d.comb += buf.addr.eq(ptr)
                m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += [event.eq(Cat(event.as_value()[8:], buf.data)), ptr.eq(ptr + 1),
                             byte.eq(byte + 1)]
                m.next = "ADDR"
                with m.If(byte == nbytes(EVENT) - 1):
                    m.next = "SET"
            with m.State("SET"):
                m.d.comb += [net.raster_step.eq(event.step), net.raster_index.eq(event.neuron),
                             net.raster_set.eq(1)]
                m.d.sync += byte.eq(0)
                m.next = "NEXT"
            with m.State("DONE"):
                m.d.comb += control.done.eq(1)
                m.next = "IDLE"
        return m


class ReadoutSender(wiring.Component):
    """RUN: counts the sample's output spikes, then sends them as its response's tail.

    ``control.start`` (the sample starts) clears the spike count and arms the sender; each
    ``spike`` counts one. When the enframer asks for the tail, the sender takes the
    network's readout stream (``items``): one :data:`~spikeforge.protocol.READOUT_ITEM` per
    spike item, until the end item. Each item is registered as it is taken and checked in
    the next cycle (the readout FIFO's block RAM output into the framing checks was a
    critical path). After as many spike items as spikes counted, the next one must be the
    end item with that count. Anything else sets ``control.stream_error``, and the items
    are drained to the end.

    Parameters
    ----------
    cfg : Config
        The network's config.

    Attributes
    ----------
    items : In(stream.Signature(readout_layout(N_out, T)))
        The network's readout stream.
    spike : In(1)
        An output spike of the running sample.
    control : In(readout_control())
        Start, spike count, response length, stream error.
    tail : Out(tail_signature())
        The response's tail: the spikes on the wire.

    Notes
    -----
    Latency: the first item is taken in the cycle after ``tail.start``; ``tail.done`` comes
    in the cycle after the end item is taken.

    Throughput: an item every ``2 + nbytes(READOUT_ITEM)`` cycles (take, check, a cycle per
    byte) at the pace ``tail.bytes`` takes them.
    """

    def __init__(self, cfg):
        super().__init__({
            "items": In(stream.Signature(readout_layout(cfg.layers[-1], cfg.time_steps))),
            "spike": In(1),
            "control": In(readout_control()),
            "tail": Out(tail_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        control, items, out = self.control, self.items, self.tail.bytes
        spikes = control.spikes
        sent = Signal.like(spikes)
        with m.If(self.spike):
            m.d.sync += spikes.eq(spikes + 1)
        with m.If(control.start):
            m.d.sync += spikes.eq(0)
        # settled: the response is asked for cycles after the last spike
        m.d.sync += control.length.eq(nbytes(RUN_RESPONSE) + nbytes(READOUT_ITEM) * spikes)
        taken = Signal.like(items.payload)
        item = Signal(READOUT_ITEM)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(control.start):
                    m.next = "ARMED"
            with m.State("ARMED"):
                with m.If(self.tail.start):
                    m.d.sync += sent.eq(0)
                    m.next = "TAKE"
            with m.State("TAKE"):
                m.d.comb += items.ready.eq(1)
                with m.If(items.valid):
                    m.d.sync += taken.eq(items.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.next = "TAKE"
                with m.If(taken.end):
                    with m.If((taken.count != spikes) | (sent != spikes)):
                        m.d.sync += control.stream_error.eq(1)
                    m.d.comb += self.tail.done.eq(1)
                    m.next = "IDLE"
                with m.Elif(sent == spikes):            # more items than spikes counted
                    m.d.sync += control.stream_error.eq(1)
                with m.Else():
                    m.d.sync += [item.step.eq(taken.step), item.neuron.eq(taken.neuron),
                                 sent.eq(sent + 1)]
                    m.next = "BYTE0"
            for i in range(nbytes(READOUT_ITEM)):
                with m.State(f"BYTE{i}"):
                    m.d.comb += [out.valid.eq(1),
                                 out.payload.eq(item.as_value().word_select(i, 8))]
                    with m.If(out.ready):
                        m.next = f"BYTE{i + 1}" if i + 1 < nbytes(READOUT_ITEM) else "TAKE"
        return m
