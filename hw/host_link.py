"""Host link: the framed byte protocol of docs/host_link.md in front of a :class:`Network`.

Request ``A5 cmd len_lo len_hi payload[len] crc``; response ``5A status len_lo len_hi
payload[len] crc`` (:mod:`spikeforge.protocol` defines every code and layout). ``crc`` is
CRC-8 (polynomial 0x07, initial value 0, MSB first) over everything after the start byte. A
payload is checked (CRC, length, arguments) before the command touches the network, so a
corrupted frame changes nothing. Every error is answered with an error response (``status =
0x80 | code``) and the link waits for the next start byte.

The link is built from parts with one job each, joined here:

* :class:`~spikeforge.hw.host_framing.RequestDeframer`: ``rx`` → frames, payload buffer.
* :class:`~spikeforge.hw.host_commands.RequestChecks`: arguments and checks.
* :class:`~spikeforge.hw.host_commands.CommandUnit`: dispatch and the commands.
* :class:`~spikeforge.hw.host_spikes.EventsLoader`: EVENTS into the input raster.
* :class:`~spikeforge.hw.host_spikes.ReadoutSender`: RUN's spikes out.
* :class:`~spikeforge.hw.host_framing.ResponseEnframer`: responses → ``tx``.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.host_commands import CommandUnit, RequestChecks
from spikeforge.hw.host_framing import RequestDeframer, ResponseEnframer, crc8_next
from spikeforge.hw.host_spikes import EventsLoader, ReadoutSender
from spikeforge.hw.network import Network
from spikeforge.protocol import buffer_depth, check_link_config

__all__ = ["HostLink", "crc8_next", "network_ports"]


def network_ports(network: Network, names) -> wiring.Signature:
    """The ports ``names`` of ``network`` (those it has), from the side of the part that
    drives its inputs and reads its outputs."""
    members = network.signature.members
    return wiring.Signature({n: members[n] for n in names if n in members}).flip()


def join_network(m, network: Network, ports) -> None:
    """Join a part's ``ports`` (a :func:`network_ports` interface) to the network's ports of
    the same names."""
    for name, member in ports.signature.members.items():
        part, net = getattr(ports, name), getattr(network, name)
        m.d.comb += net.eq(part) if member.flow == Out else part.eq(net)


class HostLink(wiring.Component):
    """A :class:`~hw.network.Network` behind the framed host protocol (docs/host_link.md).

    ``rx``/``tx`` are byte streams (a :class:`~hw.uart.UARTRx`/:class:`~hw.uart.UARTTx`
    pair on a board). ``rx_framing_error`` and ``rx_overrun`` come from the receiver.
    ``busy`` is high from a frame's last byte until its response is sent (the deframer
    takes no byte then). ``error`` is sticky after any error response.

    Latency: a command starts two cycles after the CRC byte of its frame. WRITE takes
    ``3 * word_bytes + 1`` cycles per word. READ takes ``WEIGHT_READ_LATENCY`` cycles per
    word, then 2 per byte. EVENTS takes ``T * 2**ceil(log2 N_in) + 2`` cycles for its clear
    (if asked) and 8 cycles per event. RUN takes ``2 * N_in`` cycles for the pixels (none
    on the stored raster) plus the network's own cycles. Then the response goes out at the
    pace ``tx`` takes it. ``timeout`` cycles without a byte inside a frame abort it (error
    0x84).
    """

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    rx_framing_error: In(1)
    rx_overrun: In(1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, cfg, timeout: int = 100_000):
        check_link_config(cfg)
        if timeout < 16:
            raise ValueError(f"host link timeout: at least 16 cycles, got {timeout}")
        self.cfg = cfg
        self.timeout = timeout
        self.network = Network(cfg)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        cfg, depth = self.cfg, buffer_depth(self.cfg)
        m.submodules.network = net = self.network
        m.submodules.buffer = buffer = Memory(shape=8, depth=depth, init=[])
        m.submodules.deframer = deframer = RequestDeframer(depth, self.timeout)
        m.submodules.checks = checks = RequestChecks(cfg)
        m.submodules.commands = commands = CommandUnit(
            cfg, network_ports(net, CommandUnit.NETWORK_PORTS))
        m.submodules.readout = readout = ReadoutSender(cfg)
        m.submodules.enframer = enframer = ResponseEnframer(commands.fixed_bytes)

        wiring.connect(m, wiring.flipped(self.rx), deframer.rx)
        wiring.connect(m, deframer.buffer, buffer.write_port())
        wiring.connect(m, deframer.requests, checks.requests)
        wiring.connect(m, deframer.requests, commands.requests)
        wiring.connect(m, checks.checked, commands.checked)
        wiring.connect(m, commands.readout, readout.control)
        wiring.connect(m, net.readout, readout.items)
        wiring.connect(m, commands.responses, enframer.responses)
        wiring.connect(m, enframer.tx, wiring.flipped(self.tx))
        join_network(m, net, commands.network)
        m.d.comb += [
            deframer.rx_framing_error.eq(self.rx_framing_error),
            commands.rx_overrun.eq(self.rx_overrun),
            readout.spike.eq(getattr(net, f"probe{cfg.n_layers}_valid") & net.busy),
            deframer.done.eq(enframer.done),
            self.busy.eq(deframer.busy),
            self.error.eq(commands.error),
        ]

        readers, tails = [commands.buffer], [commands.tail, readout.tail]
        if cfg.event_input:
            m.submodules.events = events = EventsLoader(
                cfg, network_ports(net, EventsLoader.NETWORK_PORTS))
            wiring.connect(m, commands.events, events.control)
            join_network(m, net, events.network)
            readers.append(events.buffer)
        _share(m, buffer.read_port(), readers, tails, enframer.tail)
        return m


def _share(m, read_port, readers, tails, into) -> None:
    """The payload buffer's one read port among its ``readers``, and the enframer's tail
    (``into``) among the ``tails``: each has one user at a time, and an idle one drives
    zeros, so an OR joins them."""
    m.d.comb += read_port.addr.eq(_any(r.addr for r in readers))
    m.d.comb += [r.data.eq(read_port.data) for r in readers]
    m.d.comb += [into.bytes.valid.eq(_any(t.bytes.valid for t in tails)),
                 into.bytes.payload.eq(_any(t.bytes.payload for t in tails)),
                 into.done.eq(_any(t.done for t in tails))]
    m.d.comb += [t.start.eq(into.start) for t in tails]
    m.d.comb += [t.bytes.ready.eq(into.bytes.ready) for t in tails]


def _any(values):
    values = list(values)
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out
