"""8N1 UART receiver and transmitter with byte streams, for the host link (docs/host_link.md)."""


from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an integer >= 4 clock cycles per bit, "
                         f"got {divisor!r}")


class UARTRx(wiring.Component):
    """8N1 receiver: start bit, 8 data bits LSB first, one stop bit; ``divisor`` clock cycles
    per bit (``clk / baud``, at least 4).

    ``rx`` is asynchronous (two-flop synchroniser, idle high). A byte is sampled in the middle
    of each bit; it appears on ``bytes`` in the middle of its stop bit (latency 9.5 bit times
    plus 3 cycles from the falling edge of the start bit) and stays there until taken. A byte
    completed while the previous one is still waiting is dropped and sets the sticky
    ``overrun``; a stop bit that reads 0 drops the byte and pulses ``framing_error`` for one
    cycle. Throughput: one byte per 10 bit times.
    """

    rx: In(1, init=1)
    bytes: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        shift = Signal(8)
        bit = Signal(range(8))

        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += self.bytes.valid.eq(0)
        m.d.sync += self.framing_error.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):                    # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq((line << 7) | (shift >> 1)),
                                 timer.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.framing_error.eq(1)
                    with m.Elif(self.bytes.valid & ~self.bytes.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.bytes.payload.eq(shift), self.bytes.valid.eq(1)]
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: ``divisor`` clock cycles per bit (at least 4).

    ``bytes.ready`` is high while idle; a byte taken starts its start bit on the next cycle.
    Throughput: one byte per ``10 * divisor`` cycles; ``tx`` idles high.
    """

    bytes: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        frame = Signal(10, init=0x3FF)      # stop, data[7:0], start: shifted out LSB first
        left = Signal(range(11))

        m.d.comb += self.bytes.ready.eq(left == 0)
        m.d.comb += self.tx.eq(frame[0])
        with m.If(left != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq((1 << 9) | (frame >> 1)), left.eq(left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        with m.Elif(self.bytes.valid):
            m.d.sync += [frame.eq((1 << 9) | (self.bytes.payload << 1)), left.eq(10),
                         timer.eq(self.divisor - 1)]
        return m
