"""sw/lif.py: the folded saturating sum and integrate() against one-add-at-a-time loops."""

import numpy as np
import pytest

from spikeforge.sw.lif import integrate, saturating_sum


def one_at_a_time(v, addends, v_min, v_max):
    v = np.array(v, dtype=np.int64)
    for a in addends:
        v = np.minimum(np.maximum(v + a, v_min), v_max)
    return v


@pytest.mark.parametrize("seed", range(4))
def test_saturating_sum_equals_sequential_clipping(seed):
    rng = np.random.default_rng(seed)
    hits_low = hits_high = 0
    for _ in range(400):
        k, n = int(rng.integers(0, 70)), int(rng.integers(1, 8))
        v_min, v_max = -int(rng.integers(1, 60)), int(rng.integers(1, 60))
        v = rng.integers(v_min, v_max + 1, n)
        addends = rng.integers(-40, 41, (k, n))
        expected = one_at_a_time(v, addends, v_min, v_max)
        np.testing.assert_array_equal(saturating_sum(v, addends, v_min, v_max), expected)
        hits_low += int((expected == v_min).sum())
        hits_high += int((expected == v_max).sum())
    assert hits_low > 50 and hits_high > 50     # both limits were really exercised


def test_integrate_saturates_per_spike_in_ascending_order():
    # Column 0 gets +100 then -100 in a [-128, 50] range: 0 -> 50 -> -50, not 0; column 1
    # gets -100 then +100: 0 -> -100 -> 0.
    w = np.array([[100, -100], [-100, 100]])
    out = integrate(np.zeros((1, 2), dtype=np.int64), w, np.array([[True, True]]), -128, 50)
    np.testing.assert_array_equal(out, [[-50, 0]])


def test_integrate_equals_loop_on_random_busy_layers():
    rng = np.random.default_rng(7)
    v_min, v_max = -256, 255
    w = rng.integers(-60, 61, (50, 9))
    v = rng.integers(v_min, v_max + 1, (6, 9))
    spikes = rng.random((6, 50)) < 0.5
    expected = np.stack([one_at_a_time(v[b], w[spikes[b]], v_min, v_max) for b in range(6)])
    np.testing.assert_array_equal(integrate(v, w, spikes, v_min, v_max), expected)
