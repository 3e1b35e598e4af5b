"""A second simulator: the cocotb testbenches on Icarus Verilog give exactly what they give on
Verilator, and both equal the golden model.

Verilator builds with ``--x-initial fast`` and two-state logic; Icarus is four-state and
event-driven, with its own scheduling. The same jobs run on both and every field of what
the testbench recorded must be identical: every spike of every population, the hardware's
cycle counter and the testbench's own edge count, predictions, the readout stream (with its
random back-pressure), the weights read back after every training sample, and for the TTFS
core spike times, winners and fan-in lists. Skipped where ``iverilog`` is not installed
(``bash setup.sh`` installs it when it can).
"""

import dataclasses
import shutil

import numpy as np
import pytest

from spikeforge.config import load_config
from spikeforge.sim.compare import compare_runs, compare_training, compare_ttfs
from spikeforge.sim.rtl import run_rtl
from spikeforge.sim.ttfs_rtl import run_ttfs_rtl
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.golden import run_network
from spikeforge.sw.weights import random_weights

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog (iverilog) is not installed: "
                                       "apt-get install iverilog, or bash setup.sh as root")


def assert_identical(verilator, icarus):
    """Every field of two runs (dataclasses of arrays, lists of them, states) is equal."""
    for f in dataclasses.fields(verilator):
        a, b = getattr(verilator, f.name), getattr(icarus, f.name)
        assert_same(a, b, f.name)


def assert_same(a, b, where):
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert dataclasses.is_dataclass(b), where
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif a is None or b is None:
        assert a is None and b is None, where
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert np.array_equal(a, b), f"{where}: Verilator and Icarus differ"


def both(run, *args, **kwargs):
    return [run(*args, sim=sim, **kwargs) for sim in ("verilator", "icarus")]


def test_inference_same_on_icarus():
    cfg = load_config("digits-tiny")
    rng = np.random.default_rng(7)
    weights = random_weights(cfg, rng, scale=0.5)
    data = load_dataset("digits", cfg.pixel_bits)
    pixels = data.test_pixels[rng.choice(len(data.test_labels), 4, replace=False)]
    pixels[1] = cfg.pixel_max                        # every input spikes at every step
    pixels[2] = 0                                    # silent sample
    verilator, icarus = both(run_rtl, cfg, weights, pixels, readback=True)
    assert_identical(verilator, icarus)
    gold = run_network(cfg, weights, pixels)
    result = compare_runs(gold, icarus)
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    np.testing.assert_array_equal(icarus.edges, gold.cycles)
    assert icarus.readback_ok and len(icarus.stream) > len(pixels)
    assert all(r.any() for r in icarus.rasters)      # not vacuous


def test_training_same_on_icarus():
    from spikeforge.sw.desire import train_steps
    from spikeforge.sw.train import initial_weights

    cfg = load_config("digits-tiny")
    data = load_dataset("digits", cfg.pixel_bits)
    idx = np.random.default_rng(3).choice(len(data.train_labels), 3, replace=False)
    pixels, labels = data.train_pixels[idx], data.train_labels[idx]
    stored = initial_weights(cfg, 3)
    verilator, icarus = both(run_rtl, cfg, stored, pixels, labels=labels, stored=True)
    assert_identical(verilator, icarus)
    steps = train_steps(cfg, stored, pixels, labels)
    result = compare_training(steps, icarus)
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    assert result.weight_mismatches == 0
    moved = zip(stored, steps[-1].weights, strict=True)
    assert any((a != b).any() for a, b in moved)                       # weights moved


def test_ttfs_same_on_icarus():
    from spikeforge.sw import ttfs

    cfg = load_config("ttfs-tiny")
    pixels = load_dataset("digits", cfg.pixel_bits).train_pixels[:4]
    learn = [1, 1, 0, 1]
    start = ttfs.initial_state(cfg, 5)
    verilator, icarus = both(run_ttfs_rtl, cfg, start, pixels, learn=learn)
    assert_identical(verilator, icarus)
    gold, state = ttfs.run_schedule(cfg, start, pixels, learn)
    result = compare_ttfs(gold, icarus, cfg.time_steps)
    assert result.ok, (result.first_divergence, result.details)
    assert (icarus.cycles == icarus.edges).all()


@pytest.mark.slow
def test_host_link_same_on_icarus():
    """The serial top behind the UART model (2 to 3 minutes on Icarus: every UART bit is
    simulated, eight clock cycles each)."""
    from spikeforge.sim.host_link_rtl import run_link
    from spikeforge.sw.desire import inference_weights
    from spikeforge.sw.train import initial_weights

    cfg = load_config("digits-tiny")
    data = load_dataset("digits", cfg.pixel_bits)
    weights = inference_weights(cfg, initial_weights(cfg, 3))
    verilator, icarus = both(run_link, cfg, weights, data.test_pixels[:2])
    assert_identical(verilator, icarus)
    gold = run_network(cfg, weights, data.test_pixels[:2])
    assert icarus.readback_ok and icarus.unchanged_ok and len(icarus.errors) > 0
    assert list(icarus.cycles) == list(gold.cycles)
    assert list(icarus.predictions) == list(gold.predictions)
