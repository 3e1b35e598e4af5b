"""Spike event streams shared by the encoder and the layer engines."""

from amaranth.hdl import Mux, unsigned
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
    """One item of the readout spike stream (``Network.events``).

    ``end = 0``: output neuron ``neuron`` spiked at step ``step``. ``end = 1``: the sample is
    over; ``count`` is the number of spike items it sent (the framing check).
    """
    return data.StructLayout({"end": 1, "step": unsigned(index_width(steps)),
                              "neuron": unsigned(index_width(n_out)),
                              "count": unsigned((steps * n_out).bit_length())})


def scan_states(m, source, *, n: int, addr, reading, rd_valid, fire, stall):
    """The ``SCAN`` and ``END`` states of an input scanner (:class:`hw.rate_encoder.RateEncoder`,
    :class:`hw.raster_source.RasterSource`), inside its ``with m.FSM()``: read neuron ``addr``
    (``reading``) while ``addr < n``, one per cycle unless ``stall``; emit ``fire``; leave when
    the last neuron has been evaluated (``addr == n`` and no read in flight: ``rd_valid`` low),
    then hand over the end marker and return to ``IDLE`` with ``addr`` back at 0.
    """
    out = source.spikes_out
    with m.State("SCAN"):
        m.d.comb += [source.busy.eq(1), out.valid.eq(fire), reading.eq(addr < n)]
        with m.If(~stall):
            m.d.sync += addr.eq(Mux(addr < n, addr + 1, addr))
            with m.If((addr == n) & ~rd_valid):
                m.next = "END"
    with m.State("END"):
        m.d.comb += [source.busy.eq(1), out.valid.eq(1), out.payload.end.eq(1)]
        with m.If(out.ready):
            m.d.sync += addr.eq(0)
            m.next = "IDLE"
