"""Spike event streams shared by the encoder and the layer engines."""

from amaranth.hdl import Mux, Signal, unsigned
from amaranth.lib import data, stream


def index_width(n: int) -> int:
    """Bits for a neuron index in ``[0, n)`` (at least one)."""
    return max(1, (n - 1).bit_length())


def event_layout(n: int) -> data.StructLayout:
    """One item of a spike stream for a population of ``n`` neurons.

    ``end = 0``: neuron ``index`` spiked. ``end = 1``: the time step is over (``index`` is
    ignored).
    """
    return data.StructLayout({"index": unsigned(index_width(n)), "end": 1})


def event_stream(n: int) -> stream.Signature:
    return stream.Signature(event_layout(n))


def readout_layout(n_out: int, steps: int) -> data.StructLayout:
    """One item of the readout spike stream (``Network.readout``).

    ``end = 0``: output neuron ``neuron`` spiked at step ``step``. ``end = 1``: the sample is
    over; ``count`` is the number of spike items it sent (the framing check).
    """
    return data.StructLayout({"end": 1, "step": unsigned(index_width(steps)),
                              "neuron": unsigned(index_width(n_out)),
                              "count": unsigned((steps * n_out).bit_length())})


class InputScan:
    """The scan pipeline an input source (:class:`hw.rate_encoder.RateEncoder`,
    :class:`hw.raster_source.RasterSource`) is built on, one neuron per cycle: read neuron
    ``addr`` (when ``reading``); the source registers what its memories return with
    :meth:`register`; then it evaluates neuron ``current`` (when ``evaluating``) and drives
    ``fire``. A spike that ``spikes_out`` does not take (``stall``) holds the whole pipeline,
    the memories' read enables included (the source drives them with ``~stall``). Drives
    ``spikes_out``'s index and the raster tap (``eval_*``); :meth:`states` adds the ``SCAN``
    and ``END`` states to the source's state machine.
    """

    def __init__(self, m, source, n: int):
        self.m, self.source, self.n = m, source, n
        self.addr = Signal(range(n + 1))       # next neuron to read; 0 while idle
        self.reading = Signal()                # a read is issued in this cycle
        self.rd_valid = Signal()               # the memories' outputs hold neuron rd_index
        self.rd_index = Signal(range(n))
        self.evaluating = Signal()             # the registered data hold neuron `current`
        self.current = Signal(range(n))
        self.fire = Signal()
        self.stall = Signal()
        m.d.comb += [
            self.stall.eq(self.fire & ~source.spikes_out.ready),
            source.spikes_out.payload.index.eq(self.current),
            source.eval_valid.eq(self.evaluating & ~self.stall),
            source.eval_index.eq(self.current), source.eval_spike.eq(self.fire),
        ]
        self.register(self.rd_valid, self.reading)
        self.register(self.rd_index, self.addr)
        self.register(self.evaluating, self.rd_valid)
        self.register(self.current, self.rd_index)

    def register(self, reg, value) -> None:
        """``reg <- value`` as the pipeline moves (not while it stalls)."""
        with self.m.If(~self.stall):
            self.m.d.sync += reg.eq(value)

    def states(self) -> None:
        """``SCAN`` (read while ``addr < n``; leave when the last neuron has been evaluated:
        ``addr == n`` and no read in flight) and ``END`` (hand over the end marker, back to
        ``IDLE`` with ``addr`` at 0), inside the source's ``with m.FSM()``."""
        m, out, addr, n = self.m, self.source.spikes_out, self.addr, self.n
        with m.State("SCAN"):
            m.d.comb += [self.source.busy.eq(1), out.valid.eq(self.fire),
                         self.reading.eq(addr < n)]
            with m.If(~self.stall):
                m.d.sync += addr.eq(Mux(addr < n, addr + 1, addr))
                with m.If((addr == n) & ~self.rd_valid):
                    m.next = "END"
        with m.State("END"):
            m.d.comb += [self.source.busy.eq(1), out.valid.eq(1), out.payload.end.eq(1)]
            with m.If(out.ready):
                m.d.sync += addr.eq(0)
                m.next = "IDLE"
