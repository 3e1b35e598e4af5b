"""Input spikes from a stored raster: the rate encoder's drop-in for host-supplied events."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.hw.events import InputScan, event_stream, index_width


class RasterSource(wiring.Component):
    """Replays a stored input spike raster, one step per ``start``, with the interface and
    timing of :class:`~hw.rate_encoder.RateEncoder`.

    Raster: ``spike[t, j]`` (one bit) says that input neuron ``j`` spikes at step ``t``, for
    ``t < steps``, ``j < n_in``. It is kept in a one-bit-wide block RAM at address
    ``t * 2**b + j`` (``b = index_width(n_in)``), ``steps * 2**b`` bits: one bit per word
    maps to the iCE40/ECP5 block RAMs without bit-enable lanes (a ``T``-bit word per neuron
    with bit writes takes an EBR per one or two bit lanes).

    Protocol: a ``start`` pulse while idle scans input neurons ``0 .. n_in-1`` of the next
    step (step 0 with ``first`` high, else the step after the previous scan's), emitting a
    spike event for each stored spike and then an end marker on ``spikes_out``. Nothing of
    the raster changes while it is read: the same raster can run any number of samples.

    Latency and throughput: one neuron per cycle, pipelined as the rate encoder (read;
    register the block RAM output; evaluate, so the stall logic and the read enable start
    from a flip-flop); the first read is issued in the cycle ``start`` is seen, so with the
    output always ready a step takes ``n_in + ENCODER_OVERHEAD`` (``+ 3``) cycles from
    ``start`` to the end marker's handshake, exactly the rate encoder's
    (:func:`sw.cycles.encoder_cost`); an output stall
    stalls the whole pipeline.

    Write port (use it while idle, ``busy`` low): ``set`` writes a 1 to ``spike[set_step,
    set_index]`` in one cycle; a ``clear`` pulse zeroes the whole raster, taking
    ``steps * 2**b`` cycles with ``busy`` high (``start`` wins over ``clear`` in the same
    cycle; ``set`` is ignored while clearing).

    Raster tap (for the learning unit), as the rate encoder's: ``eval_valid`` is high once
    per neuron and step, in the cycle neuron ``eval_index`` is evaluated; ``eval_spike`` is
    its spike bit.
    """

    def __init__(self, *, n_in: int, steps: int):
        if n_in < 1 or steps < 1:
            raise ValueError(f"RasterSource: n_in and steps must be >= 1, got n_in={n_in}, "
                             f"steps={steps}")
        self.n_in, self.steps = n_in, steps
        self.index_bits = index_width(n_in)
        self.step_bits = (steps - 1).bit_length()
        self.depth = steps << self.index_bits
        super().__init__({
            "start": In(1),
            "first": In(1),
            "spikes_out": Out(event_stream(n_in)),
            "set_step": In(range(max(steps, 2))),
            "set_index": In(range(max(n_in, 2))),
            "set": In(1),
            "clear": In(1),
            "busy": Out(1),
            "eval_valid": Out(1),
            "eval_index": Out(range(n_in)),
            "eval_spike": Out(1),
        })

    def address(self, step, index):
        """The bit of ``spike[step, index]`` in the raster memory."""
        return Cat(index[:self.index_bits], step[:self.step_bits])

    def elaborate(self, platform):
        m = Module()
        n = self.n_in
        m.submodules.spikes = mem = Memory(shape=1, depth=self.depth, init=[])
        wr, rd = mem.write_port(), mem.read_port()

        scan = InputScan(m, self, n)
        rd_step = Signal(range(max(self.steps, 2)))    # the step of the neuron read
        bit_q = Signal()                  # neuron `current`'s spike, registered
        scan.register(bit_q, rd.data)
        step = Signal(range(max(self.steps, 2)))       # the step being scanned
        wiped = Signal(range(self.depth))
        m.d.comb += [
            scan.fire.eq(scan.evaluating & bit_q),
            rd_step.eq(step),
            rd.addr.eq(self.address(rd_step, scan.addr)), rd.en.eq(~scan.stall),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [wr.addr.eq(self.address(self.set_step, self.set_index)),
                             wr.data.eq(1), wr.en.eq(self.set)]
                with m.If(self.start):
                    first_step = Mux(self.first, 0, step + 1)
                    m.d.comb += [scan.reading.eq(1), rd_step.eq(first_step)]     # neuron 0
                    m.d.sync += [scan.addr.eq(1), step.eq(first_step)]
                    m.next = "SCAN"
                with m.Elif(self.clear):
                    m.d.sync += wiped.eq(0)
                    m.next = "CLEAR"
            scan.states()
            with m.State("CLEAR"):
                m.d.comb += [self.busy.eq(1), wr.addr.eq(wiped), wr.data.eq(0), wr.en.eq(1)]
                m.d.sync += wiped.eq(wiped + 1)
                with m.If(wiped == self.depth - 1):
                    m.next = "IDLE"
        return m
