"""The readout spike stream the gateware sends to the host, and the rasters it stands for.

Framing (``hw.network.Network.readout``, ``hw.events.readout_layout``): per sample, one item
``(step, neuron)`` per output spike in the order the last layer emits them (ascending step,
then neuron), then one end item carrying the number of spike items the sample sent. An item
is the tuple ``(end, step, neuron, count)`` here.
"""

from __future__ import annotations

import numpy as np


class StreamError(ValueError):
    """The stream breaks its framing: a count that disagrees, an item out of range or order,
    a sample without its end item."""


def stream_items(raster: np.ndarray) -> list[tuple[int, int, int, int]]:
    """What the gateware sends for rasters ``(B, T, n_out)`` (the golden model's last layer)."""
    items = []
    for sample in np.asarray(raster, dtype=bool):
        spikes = np.argwhere(sample)                # row-major: by step, then neuron
        items += [(0, int(t), int(n), 0) for t, n in spikes]
        items.append((1, 0, 0, len(spikes)))
    return items


def rasters_from_stream(items, steps: int, n_out: int) -> np.ndarray:
    """Rasters ``(B, T, n_out)`` from a stream of items, checking the framing of every sample
    (:class:`StreamError` names the sample and what is wrong)."""
    rasters, current, last = [], np.zeros((steps, n_out), dtype=bool), (-1, -1)
    sent = 0
    for end, step, neuron, count in items:
        sample = len(rasters)
        if end:
            if count != sent:
                raise StreamError(f"sample {sample}: end item says {count} spikes, "
                                  f"{sent} arrived (events lost or duplicated)")
            rasters.append(current)
            current, last, sent = np.zeros((steps, n_out), dtype=bool), (-1, -1), 0
            continue
        if not (0 <= step < steps and 0 <= neuron < n_out):
            raise StreamError(f"sample {sample}: spike (step {step}, neuron {neuron}) outside "
                              f"[0, {steps}) x [0, {n_out})")
        if (step, neuron) <= last:
            raise StreamError(f"sample {sample}: spike (step {step}, neuron {neuron}) after "
                              f"(step {last[0]}, neuron {last[1]}): out of order or repeated")
        current[step, neuron], last, sent = True, (step, neuron), sent + 1
    if sent:
        raise StreamError(f"sample {len(rasters)}: {sent} spikes without an end item")
    return np.stack(rasters) if rasters else np.zeros((0, steps, n_out), dtype=bool)
