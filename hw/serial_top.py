"""The SNN core behind its host link on a UART: what a board top wraps with clock and pins."""


from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.hw.host_link import HostLink
from spikeforge.hw.uart import UARTRx, UARTTx


class SerialTop(wiring.Component):
    """:class:`~hw.host_link.HostLink` (and its network) on an 8N1 UART.

    ``uart_rx``/``uart_tx`` are the pins (idle high), ``divisor`` the clock cycles per bit
    (``f_clk / baud``). ``busy`` and ``error`` are for LEDs. The inter-byte timeout of a frame
    is 64 byte times.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, cfg, divisor: int):
        self.cfg = cfg
        self.divisor = divisor
        self.uart_in = UARTRx(divisor)
        self.uart_out = UARTTx(divisor)
        self.link = HostLink(cfg, timeout=64 * 10 * divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_in = rx = self.uart_in
        m.submodules.uart_out = tx = self.uart_out
        m.submodules.link = link = self.link
        wiring.connect(m, rx.bytes, link.rx)
        wiring.connect(m, link.tx, tx.bytes)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                     link.rx_framing_error.eq(rx.framing_error),
                     link.rx_overrun.eq(rx.overrun),
                     self.busy.eq(link.busy), self.error.eq(link.error)]
        return m
