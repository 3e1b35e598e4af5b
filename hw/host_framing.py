"""The host link's framing (docs/host_link.md), which knows no command.

* :class:`RequestDeframer` takes request frames off the receive byte stream.
* :class:`ResponseEnframer` puts response frames on the transmit byte stream.
* :class:`~spikeforge.hw.host_commands.CommandUnit` sits between them.

Frame layouts are :data:`spikeforge.protocol.FRAME_HEADER` and its CRC. The header bytes
after the start byte have one state each, named after their field (``CODE``, ``LENGTH0``,
``LENGTH1``), in both directions.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from spikeforge.protocol import (
    CRC_FROM,
    FRAME_HEADER,
    NO_COMMAND,
    REQUEST_START,
    RESPONSE_START,
    ErrorCode,
    crc8,
)

PAYLOAD_BYTE = data.StructLayout({"data": 8, "index": FRAME_HEADER["length"].shape})


def crc8_next(crc, byte):
    """:func:`spikeforge.protocol.crc8` as Amaranth values: the update is linear over GF(2),
    so each output bit is an XOR of bits of ``crc ^ byte``."""
    d = crc ^ byte
    bits = []
    for out in range(8):
        taps = [i for i in range(8) if crc8(1 << i, 0) >> out & 1]
        bit = d[taps[0]]
        for i in taps[1:]:
            bit = bit ^ d[i]
        bits.append(bit)
    return Cat(*bits)


def header_states() -> list[tuple[str, int]]:
    """``(state, byte)`` of each byte of :data:`FRAME_HEADER` after the start byte, in wire
    order: the state named after its field (``LENGTH0``, ``LENGTH1`` for a 2-byte one)."""
    states = []
    for name, field in FRAME_HEADER:
        n = field.width // 8
        for b in range(n):
            if field.offset // 8 + b >= CRC_FROM:
                states.append((name.upper() + (str(b) if n > 1 else ""), field.offset // 8 + b))
    return sorted(states, key=lambda s: s[1])


def request_signature() -> wiring.Signature:
    """A received request, the deframer's side.

    * ``header`` holds the frame's code and length from their bytes on until the response
      is out (``start`` is unused).
    * ``payload`` is each payload byte, as it is taken, with its index.
    * ``frame`` pulses when the CRC byte of a good frame is taken.
    * ``error`` pulses with the code instead when the frame broke.

    No ``ready``: the receiver takes every byte.
    """
    return wiring.Signature({
        "header": Out(FRAME_HEADER),
        "payload": Out(stream.Signature(PAYLOAD_BYTE, always_ready=True)),
        "frame": Out(1),
        "error": Out(stream.Signature(8, always_ready=True)),       # an ErrorCode
    })


def payload_reader(depth: int) -> wiring.Signature:
    """A read port of the payload buffer, the reader's side: ``data`` is byte ``addr`` one
    cycle after ``addr``."""
    return wiring.Signature({"addr": Out(range(depth)), "data": In(8)})


def response_layout(fixed_bytes: int) -> data.StructLayout:
    """A response for the enframer.

    * ``code`` and ``length``: its status and payload length (:data:`FRAME_HEADER`).
    * ``fixed``: its first ``fixed_len`` payload bytes, held in a register, lowest byte
      first.
    * ``tail``: the rest of the payload, if any, comes from a tail producer
      (:func:`tail_signature`).
    """
    return data.StructLayout({"code": FRAME_HEADER["code"].shape,
                              "length": FRAME_HEADER["length"].shape,
                              "fixed": 8 * fixed_bytes, "fixed_len": range(fixed_bytes + 1),
                              "tail": 1})


def tail_signature() -> wiring.Signature:
    """A response's tail (the payload after its fixed bytes), the producer's side.

    * ``start`` pulses when the enframer wants the tail.
    * The producer sends the tail bytes on ``bytes``.
    * ``done`` pulses with the last byte's transfer, or after it, in a cycle of its own.
    """
    return wiring.Signature({"start": In(1), "bytes": Out(stream.Signature(8)), "done": Out(1)})


class RequestDeframer(wiring.Component):
    """Request frames off the receive byte stream: start byte, header, payload, CRC.

    Bytes before a start byte are dropped. Each payload byte is written to the payload
    buffer (``buffer``: bytes past ``buffer_depth`` are dropped; the command unit refuses
    such a length) and sent on ``requests.payload``. After the CRC byte, ``requests.frame``
    pulses if the CRC is good. A CRC mismatch, ``rx_framing_error`` inside a frame, or
    ``timeout`` cycles without a byte inside a frame pulse ``requests.error`` with its
    :class:`~spikeforge.protocol.ErrorCode` instead. Either way the deframer then takes no
    byte (``busy``) until ``done`` says the response is out.

    Parameters
    ----------
    buffer_depth : int
        Bytes of the payload buffer.
    timeout : int
        Inter-byte timeout in cycles.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Received bytes. ``rx.ready`` is a flip-flop of its own, not a state decode.
    rx_framing_error : In(1)
        The receiver saw a stop bit low.
    requests : Out(request_signature())
        The frame: header, payload bytes, verdict.
    buffer : Out(WritePort.Signature(...).flip())
        Write port of the payload buffer.
    done : In(1)
        The response to the frame is sent: listen for the next start byte.
    busy : Out(1)
        A frame is answered (from its verdict until ``done``).

    Notes
    -----
    Latency: ``requests.frame`` or ``requests.error`` comes in the cycle that takes the CRC
    byte (or sees the framing error, or the last cycle of the timeout). The deframer listens
    again in the cycle after ``done``.

    Throughput: one byte per cycle.
    """

    def __init__(self, buffer_depth: int, timeout: int):
        self.buffer_depth = buffer_depth
        self.timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_framing_error": In(1),
            "requests": Out(request_signature()),
            "buffer": Out(WritePort.Signature(addr_width=(buffer_depth - 1).bit_length(),
                                              shape=8).flip()),
            "done": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        req, byte = self.requests, self.rx.payload
        header = req.header.as_value()
        # rx.ready is high in the receiving states (SOF .. CRC); kept in a flip-flop of its
        # own, set and cleared with those states' transitions, so that no state decoding
        # lies between the FSM and the receiver's handshake (it was on the critical path)
        listening = Signal(init=1)
        m.d.comb += [self.rx.ready.eq(listening), self.busy.eq(~listening)]
        take = self.rx.valid & listening
        rx_crc, rx_crc_next = Signal(8), Signal(8)
        m.d.comb += rx_crc_next.eq(crc8_next(rx_crc, byte))
        idle = Signal(range(self.timeout + 1))
        got = Signal.like(req.header.length)        # payload bytes received
        # the next payload byte is the last: a flip-flop set from a count of the bytes still
        # to come, compared with constants (`got + 1 == length` in front of the state register
        # was mnist-up5k's longest path on the iCE40)
        left = Signal.like(req.header.length)       # payload bytes still to come
        last = Signal()

        def fail(code):
            m.d.comb += [req.error.valid.eq(1), req.error.payload.eq(code)]
            m.d.sync += listening.eq(0)
            m.next = "HELD"

        def receiving(state, action):
            with m.State(state):
                with m.If(self.rx_framing_error):
                    fail(ErrorCode.FRAMING)
                with m.Elif(take):
                    m.d.sync += [rx_crc.eq(rx_crc_next), idle.eq(0)]
                    action()
                with m.Elif(idle == self.timeout):
                    fail(ErrorCode.TIMEOUT)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

        states = header_states()
        with m.FSM():
            with m.State("SOF"):
                with m.If(take & (byte == REQUEST_START)):
                    m.d.sync += [rx_crc.eq(0), idle.eq(0), req.header.code.eq(NO_COMMAND)]
                    m.next = states[0][0]

            for (state, i), after in zip(states, states[1:] + [None], strict=True):
                def header_byte(i=i, after=after):
                    m.d.sync += header[8 * i:8 * (i + 1)].eq(byte)
                    if after is not None:
                        m.next = after[0]
                        return
                    m.d.sync += got.eq(0)      # the header is complete with this byte
                    length = data.View(FRAME_HEADER, Cat(header[:8 * i], byte)).length
                    m.d.sync += [left.eq(length), last.eq(length == 1)]
                    m.next = "PAYLOAD"
                    with m.If(length == 0):
                        m.next = "CRC"
                receiving(state, header_byte)

            def payload_byte():
                m.d.comb += [self.buffer.addr.eq(got), self.buffer.data.eq(byte),
                             self.buffer.en.eq(got < self.buffer_depth),
                             req.payload.valid.eq(1), req.payload.payload.data.eq(byte),
                             req.payload.payload.index.eq(got)]
                m.d.sync += [got.eq(got + 1), left.eq(left - 1), last.eq(left == 2)]
                with m.If(last):
                    m.next = "CRC"
            receiving("PAYLOAD", payload_byte)

            def crc_byte():
                with m.If(rx_crc_next != 0):
                    fail(ErrorCode.CRC)
                with m.Else():
                    m.d.comb += req.frame.eq(1)
                    m.d.sync += listening.eq(0)
                    m.next = "HELD"
            receiving("CRC", crc_byte)

            with m.State("HELD"):
                with m.If(self.done):
                    m.d.sync += listening.eq(1)
                    m.next = "SOF"
        return m


class ResponseEnframer(wiring.Component):
    """Response frames onto the transmit byte stream: start byte, header, fixed payload bytes,
    tail, CRC.

    A response on ``responses`` (taken in any cycle the enframer is idle; the command unit
    sends one only then) is registered and sent. If it has a tail, ``tail.start`` pulses
    after its fixed bytes, and the tail producer's bytes pass straight through to ``tx``
    until ``tail.done``. The CRC covers everything after the start byte.

    Parameters
    ----------
    fixed_bytes : int
        The most fixed payload bytes a response carries.

    Attributes
    ----------
    responses : In(stream.Signature(response_layout(fixed_bytes), always_ready=True))
        The response to send.
    tail : In(tail_signature())
        The tail of the response, from its producer.
    tx : Out(stream.Signature(8))
        Bytes to send.
    done : Out(1)
        Pulses with the transfer of the CRC byte.

    Notes
    -----
    Latency: the start byte is offered in the cycle after the response. Between the last
    fixed byte and the first tail byte there is one cycle (``tail.start``) plus the
    producer's own latency.

    Throughput: one byte per cycle ``tx`` takes it.
    """

    def __init__(self, fixed_bytes: int):
        self.fixed_bytes = fixed_bytes
        super().__init__({
            "responses": In(stream.Signature(response_layout(fixed_bytes), always_ready=True)),
            "tail": In(tail_signature()),
            "tx": Out(stream.Signature(8)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tx, tail, response = self.tx, self.tail, self.responses.payload
        header = Signal(FRAME_HEADER)
        fixed = Signal.like(response.fixed)
        fixed_len = Signal.like(response.fixed_len)
        has_tail = Signal()
        idx = Signal(16)
        tx_crc, tx_crc_next = Signal(8), Signal(8)
        crc_on = Signal()
        m.d.comb += tx_crc_next.eq(crc8_next(tx_crc, tx.payload))
        with m.If(tx.valid & tx.ready & crc_on):
            m.d.sync += tx_crc.eq(tx_crc_next)

        def send(value, next_state, with_crc=True):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(value), crc_on.eq(with_crc)]
            with m.If(tx.ready):
                m.next = next_state

        states = header_states()
        with m.FSM():
            with m.State("IDLE"):
                # loaded in every idle cycle, kept from the one with ``valid``: the wide
                # registers' enable is the enframer's own state, not the command unit's
                # ``valid`` (a long, high-fanout path on the ECP5 otherwise)
                m.d.sync += [header.code.eq(response.code),
                             header.length.eq(response.length), fixed.eq(response.fixed),
                             fixed_len.eq(response.fixed_len), has_tail.eq(response.tail)]
                with m.If(self.responses.valid):
                    m.next = "START"
            with m.State("START"):
                send(RESPONSE_START, states[0][0], with_crc=False)
                m.d.sync += [tx_crc.eq(0), idx.eq(0)]
            for (state, i), after in zip(states, states[1:] + [None], strict=True):
                with m.State(state):
                    send(header.as_value()[8 * i:8 * (i + 1)], after[0] if after else "FIXED")
                    if after is None:
                        with m.If(tx.ready & (fixed_len == 0)):
                            m.next = "TAIL_START"
            with m.State("FIXED"):
                send(fixed.word_select(idx[:len(fixed_len)], 8), "FIXED")
                with m.If(tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == fixed_len):
                        m.next = "TAIL_START"
            with m.State("TAIL_START"):
                m.next = "CRC"
                with m.If(has_tail):
                    m.d.comb += tail.start.eq(1)
                    m.next = "TAIL"
            with m.State("TAIL"):
                m.d.comb += [tx.valid.eq(tail.bytes.valid), tx.payload.eq(tail.bytes.payload),
                             tail.bytes.ready.eq(tx.ready), crc_on.eq(1)]
                with m.If(tail.done):
                    m.next = "CRC"
            with m.State("CRC"):
                send(tx_crc, "IDLE", with_crc=False)
                m.d.comb += self.done.eq(tx.ready)
        return m

