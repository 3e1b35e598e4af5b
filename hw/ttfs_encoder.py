"""TTFS encoder in gateware: one spike time per pixel, stronger pixels earlier."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class TTFSEncoder(wiring.Component):
    """Turns ``n_in`` stored pixels into their spike times, once per ``start``.

    Number formats (``docs/ttfs.md``): pixels unsigned ``pixel_bits``; a pixel ``p >= floor``
    spikes at ``t = ((pixel_max - p) * T) >> pixel_bits`` (in ``[0, T - 1]``), a pixel below
    ``floor`` never (``t = T``). :func:`sw.ttfs.encode` is the model.

    Protocol: a ``start`` pulse while idle scans the pixels in ascending order and writes
    ``t_addr``/``t_data`` with ``t_we`` once per pixel (into the lanes' time memories).

    Latency and throughput: one pixel per cycle, pipelined (read, evaluate): ``busy`` is high
    for ``n_in + 1`` cycles after the ``start`` cycle (the controller sees it low one cycle
    later: ``n_in + TTFS_ENCODE_OVERHEAD``, :mod:`spikeforge.timing`).

    Pixel port: ``px_we`` writes ``px_data`` to pixel ``px_addr``; use it while idle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        n_in, T = cfg.n_in, cfg.time_steps
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "px_addr": In(range(n_in)),
            "px_data": In(cfg.pixel_bits),
            "px_we": In(1),
            "t_we": Out(1),
            "t_addr": Out(range(n_in)),
            "t_data": Out(range(T + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n_in, T = cfg.n_in, cfg.time_steps
        m.submodules.pixels = pmem = Memory(shape=cfg.pixel_bits, depth=n_in, init=[])
        p_wr, p_rd = pmem.write_port(), pmem.read_port()
        addr = Signal(range(n_in + 1))
        evaluating = Signal()
        current = Signal(range(n_in))
        p = p_rd.data
        m.d.comb += [
            p_wr.addr.eq(self.px_addr), p_wr.data.eq(self.px_data), p_wr.en.eq(self.px_we),
            p_rd.addr.eq(addr),
            self.t_we.eq(evaluating), self.t_addr.eq(current),
            self.t_data.eq(Mux(p >= cfg.floor, ((cfg.pixel_max - p) * T) >> cfg.pixel_bits,
                               T)),
        ]
        m.d.sync += evaluating.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += addr.eq(0)
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                with m.If(addr < n_in):
                    m.d.sync += [evaluating.eq(1), current.eq(addr), addr.eq(addr + 1)]
                with m.Else():
                    m.next = "IDLE"
        return m
