"""The readout stream's framing: rasters round-trip, and every kind of loss is caught."""

import numpy as np
import pytest

from spikeforge.sim.compare import _check_stream
from spikeforge.sw.spike_stream import StreamError, rasters_from_stream, stream_items


def rasters(seed=0, batch=4, steps=9, n_out=5):
    rng = np.random.default_rng(seed)
    r = rng.random((batch, steps, n_out)) < 0.3
    r[1] = False                                  # a silent sample: only its end item
    return r


def test_round_trip():
    r = rasters()
    items = stream_items(r)
    assert sum(end for end, *_ in items) == len(r)
    assert (rasters_from_stream(items, 9, 5) == r).all()


@pytest.mark.parametrize("damage, message", [
    (lambda items: items[:2] + items[3:], r"sample 0: end item says \d+ spikes, \d+ arrived"),
    (lambda items: items[:2] + [items[1]] + items[2:], r"out of order or repeated"),
    (lambda items: items[1:2] + items[0:1] + items[2:], r"out of order or repeated"),
    (lambda items: items[:-1], r"sample 3: \d+ spikes without an end item"),
    (lambda items: [(0, 9, 0, 0)] + items, r"outside \[0, 9\) x \[0, 5\)"),
])
def test_framing_errors_are_named(damage, message):
    with pytest.raises(StreamError, match=message):
        rasters_from_stream(damage(stream_items(rasters())), 9, 5)


def test_compare_counts_stream_mismatches():
    r = rasters()
    details = []
    assert _check_stream(r, np.array(stream_items(r)), False, details) == 0 and not details
    other = r.copy()
    other[2, 4, 1] = ~other[2, 4, 1]
    assert _check_stream(r, np.array(stream_items(other)), False, details) == 1
    assert details[-1].startswith("readout stream: sample 2, step 4, neuron 1")
    assert _check_stream(r, np.array(stream_items(r)), True, details) == 1
    assert "readout_overflow" in details[-1]
