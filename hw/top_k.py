"""k-winner-take-all bookkeeping: a sorted list of the ``k`` best fired neurons so far."""

from __future__ import annotations

from amaranth.hdl import Signal, unsigned
from amaranth.lib import data


def candidate_layout(time_bits: int, value_bits: int, local_bits: int,
                     lane_bits: int) -> data.StructLayout:
    """One ranked neuron: fire ``time``, firing ``value``, and its index as ``(local, lane)``
    (global index ``local * P + lane``, so ordering by ``(local, lane)`` is ordering by index)."""
    return data.StructLayout({"valid": 1, "time": unsigned(time_bits),
                              "value": unsigned(value_bits), "local": unsigned(local_bits),
                              "lane": unsigned(lane_bits)})


def ranks_before(a, b, one_lane: bool = False):
    """``a`` is ranked before ``b``: valid, and (earlier, or as early with a larger value, or a
    tie on both with the lower index); anything valid is ranked before an invalid entry.
    ``one_lane``: both come from the same lane (only ``local`` tells them apart)."""
    same_tv = (a.time == b.time) & (a.value == b.value)
    lower = a.local < b.local
    if not one_lane:
        lower = lower | ((a.local == b.local) & (a.lane < b.lane))
    better = ((a.time < b.time) | ((a.time == b.time) & (a.value > b.value))
              | (same_tv & lower))
    return a.valid & (~b.valid | better)


class TopK:
    """``k`` registers kept sorted best-first (``ranks_before``); ``insert(m, cand, en)`` adds
    a candidate in one cycle (dropping the ``k``-th if it is worse), ``clear(m)`` empties it.
    The result does not depend on the insertion order: the ranking is a total order.
    ``one_lane``: every candidate comes from the same lane (a lane's own list)."""

    def __init__(self, k: int, layout: data.StructLayout, name: str, one_lane: bool = False):
        self.k, self.one_lane = k, one_lane
        self.entries = [Signal(layout, name=f"{name}{q}") for q in range(k)]

    def insert(self, m, cand, enable) -> None:
        # monotone over the sorted entries: F..F T..T
        before = [ranks_before(cand, e, self.one_lane) for e in self.entries]
        with m.If(enable & cand.valid):
            for q, e in enumerate(self.entries):
                if q == 0:
                    with m.If(before[0]):
                        m.d.sync += e.eq(cand)
                else:
                    with m.If(before[q] & before[q - 1]):
                        m.d.sync += e.eq(self.entries[q - 1])
                    with m.Elif(before[q]):
                        m.d.sync += e.eq(cand)

    def clear(self, m) -> None:
        m.d.sync += [e.valid.eq(0) for e in self.entries]
