"""Number formats of the on-chip learning unit (:mod:`hw.desire_unit` and its parts).

The rule and its formats are specified in ``docs/learning.md`` (inference formats:
``docs/number_formats.md``); the golden model is :mod:`sw.desire`. The layouts below are views
of the bits the memories hold, nothing more: lane ``p`` of a word of ``P`` lanes of ``w`` bits
sits at bits ``[p*w, (p+1)*w)``.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Signal, signed, unsigned
from amaranth.lib import data


def memory_depth(cfg, layer: int) -> int:
    """Words of LIF layer ``layer``'s raster and desire memories: one per group of ``P``
    neurons, at least 2 (a 1-word memory would get a 0-bit address)."""
    return max(cfg.groups(layer), 2)


def keep_layers(cfg) -> tuple[int, ...]:
    """The LIF layers whose dropout keep bits the learning unit records: the hidden layers
    (``cfg.dropout_layers``) with a backward pass of their own (``l >= 1``), which masks the
    coefficients of their dropped neurons. Empty without dropout or with one hidden layer."""
    return tuple(layer for layer in cfg.dropout_layers if layer >= 1)


def error_bits(cfg) -> int:
    """Width of a stored ``|E|``: the largest, ``cfg.coef_max``, fits."""
    return cfg.coef_max.bit_length()


def error_shape(cfg):
    """Signed shape of an error ``E = sign01 * C* - c`` for any spike count ``c`` in ``0 .. T``."""
    return signed(max(cfg.target_count, cfg.time_steps).bit_length() + 2)


def desire_lane(cfg) -> data.StructLayout:
    """One neuron's stored desire: ``active`` (bit 0: the neuron learns), ``sign`` (bit 1: it
    should fire more) and ``error`` (``|E|``, unsigned, :func:`error_bits` wide)."""
    return data.StructLayout({"active": 1, "sign": 1, "error": error_bits(cfg)})


def desire_word(cfg) -> data.ArrayLayout:
    """A desire memory word: the :func:`desire_lane` of each neuron of a group of ``P``."""
    return data.ArrayLayout(desire_lane(cfg), cfg.lanes)


def raster_word(cfg) -> data.ArrayLayout:
    """A LIF layer's raster memory word: lane ``p`` of word ``g`` holds neuron ``gP + p``'s
    spikes, bit ``t`` its spike of step ``t``."""
    return data.ArrayLayout(unsigned(cfg.time_steps), cfg.lanes)


def weight_word(cfg) -> data.ArrayLayout:
    """A weight memory word: ``P`` stored weights, each signed ``weight_bits + F`` bits, whose
    top ``weight_bits`` (``W_inf = W_store >> F``) the inference engine reads."""
    return data.ArrayLayout(signed(cfg.store_bits), cfg.lanes)


def spike_count(lane):
    """The number of spikes in a raster lane (its popcount), unsigned ``0 .. len(lane)``."""
    return sum(lane[i] for i in range(len(lane)))


def coefficient(desire):
    """``sign * active * |E|`` of a :func:`desire_lane` view: signed, ``error_bits + 1`` bits."""
    return Mux(desire.active, Mux(desire.sign, desire.error, -desire.error), 0)


def abs_error(m, cfg, sign, count, name: str):
    """``|E| = |sign01 * C* - c|`` of a neuron with ``count`` spikes and desire sign ``sign``,
    :func:`error_bits` wide (``E`` itself is the comb signal ``name``, of
    :func:`error_shape`)."""
    diff = Signal(error_shape(cfg), name=name)
    m.d.comb += diff.eq(Mux(sign, cfg.target_count - count, count))
    return Mux(diff < 0, -diff, diff)[:error_bits(cfg)]
