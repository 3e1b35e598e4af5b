"""Spike event streams shared by the encoder and the layer engines."""

from amaranth.hdl import unsigned
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
