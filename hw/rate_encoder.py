"""Deterministic rate encoder in gateware: a non-leaky IF neuron per pixel."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.events import InputScan, event_stream


class RateEncoder(wiring.Component):
    """Turns ``n_in`` stored pixels into one step of input spike events per ``start``.

    Number formats: pixels unsigned ``pixel_bits``; the threshold ``theta`` (default
    ``2**pixel_bits - 1``, at most four times that: ``encoding.threshold``); accumulators
    unsigned, stored in ``[0, theta - 1]``, ``bits(theta - 1)`` wide. Per pixel and step
    ``u <- u + p; s = u >= theta; u <- u - theta*s`` (:func:`sw.encode.rate_encoder_step`);
    with ``first`` high the accumulators read as zero (a new sample).

    Protocol: a ``start`` pulse while idle scans all pixels in ascending order, emitting a
    spike event for each firing pixel and then an end marker on ``spikes_out``.

    Latency and throughput: one pixel per cycle, pipelined (read; register the block RAM
    outputs; evaluate: the adder and the threshold start from flip-flops, not from the block
    RAM's slow clock-to-output). The first read is issued in the cycle ``start`` is seen, so
    with the output always ready a step takes ``n_in + ENCODER_OVERHEAD`` (``+ 3``) cycles
    from ``start`` to the end marker's handshake (:func:`sw.cycles.encoder_cost`,
    :mod:`spikeforge.timing`); an output stall stalls the whole
    pipeline (the block RAMs' read enables included).

    Pixel port: ``px_we`` writes ``px_data`` to pixel ``px_addr``; use it while idle (not in
    the cycle of ``start``).

    Raster tap (for the learning unit): ``eval_valid`` is high once per pixel and step, in
    the cycle pixel ``eval_index`` is evaluated; ``eval_spike`` is its spike bit.
    """

    def __init__(self, *, n_in: int, pixel_bits: int, theta: int | None = None):
        self.n_in, self.pixel_bits = n_in, pixel_bits
        pixel_max = (1 << pixel_bits) - 1
        self.theta = pixel_max if theta is None else theta
        if not pixel_max <= self.theta <= 4 * pixel_max:
            raise ValueError(f"theta: {self.theta} is out of range, legal range is "
                             f"[{pixel_max}, {4 * pixel_max}]")
        super().__init__({
            "start": In(1),
            "first": In(1),
            "spikes_out": Out(event_stream(n_in)),
            "px_addr": In(range(n_in)),
            "px_data": In(pixel_bits),
            "px_we": In(1),
            "busy": Out(1),
            "eval_valid": Out(1),
            "eval_index": Out(range(n_in)),
            "eval_spike": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n, pb = self.n_in, self.pixel_bits
        m.submodules.pixels = pmem = Memory(shape=pb, depth=n, init=[])
        u_bits = max(1, (self.theta - 1).bit_length())     # stored u < theta
        m.submodules.accumulators = umem = Memory(shape=u_bits, depth=n, init=[])
        p_wr, p_rd = pmem.write_port(), pmem.read_port()
        u_wr, u_rd = umem.write_port(), umem.read_port()

        scan = InputScan(m, self, n)
        first = Signal()
        p_q = Signal(pb)                  # pixel `current`, registered out of the memories
        u_q = Signal(u_bits)              # its accumulator, zero in a sample's first step
        scan.register(p_q, p_rd.data)
        scan.register(u_q, Mux(first, 0, u_rd.data))

        u = Signal(range(self.theta + (1 << pb) - 1))     # u_q + p <= theta - 1 + pixel_max
        fire = scan.fire
        m.d.comb += [
            u.eq(u_q + p_q),
            fire.eq(scan.evaluating & (u >= self.theta)),
            p_wr.addr.eq(self.px_addr), p_wr.data.eq(self.px_data), p_wr.en.eq(self.px_we),
            p_rd.addr.eq(scan.addr), u_rd.addr.eq(scan.addr),
            p_rd.en.eq(~scan.stall), u_rd.en.eq(~scan.stall),
            u_wr.addr.eq(scan.current), u_wr.data.eq(Mux(fire, u - self.theta, u)),
            u_wr.en.eq(scan.evaluating & ~scan.stall),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += scan.reading.eq(1)               # pixel 0
                    m.d.sync += [scan.addr.eq(1), first.eq(self.first)]
                    m.next = "SCAN"
            scan.states()
        return m
