"""cocotb: the generated Verilog of several configs against the golden model, on Verilator
(or on Icarus Verilog with ``pytest --sim icarus``).

Each parameter set gets its own build directory (``build/sim/<config>-<hash>-<sim>``). Every
spike of every population, every cycle count (the hardware's counter and the testbench's own
count of clock edges), every prediction and the weight read-back must match exactly.
"""

import dataclasses
import json
import re

import numpy as np
import pytest

from spikeforge.config import load_config
from spikeforge.sim.compare import compare_runs
from spikeforge.sim.rtl import run_rtl
from spikeforge.sw.datasets import SHARED_MNIST_T10K, load_dataset
from spikeforge.sw.desire import train_steps
from spikeforge.sw.golden import run_network
from spikeforge.sw.weights import random_weights


def variant(base, name, **fields):
    return dataclasses.replace(load_config(base), name=name, **fields)


def random_pixels(cfg, rng, n):
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(n, cfg.layers[0]))
    pixels[0] = cfg.pixel_max                       # every input spikes at every step
    pixels[1] = 0                                   # silent sample
    return pixels


def saturating_weights(cfg, rng):
    """Full-range weights, with the columns of each layer pushed to one sign (alternating):
    membranes of a busy sample saturate both high and low."""
    weights = random_weights(cfg, rng, scale=1.0)
    for w in weights:
        w[:, 0::2] = np.abs(w[:, 0::2]).clip(max=cfg.w_max)
        w[:, 1::2] = -np.abs(w[:, 1::2]).clip(max=cfg.w_max)
        w[:, 1::4] = np.abs(w[:, 1::4]).clip(max=cfg.w_max)
    return weights


def no_event_input():
    """digits-tiny built without the stored-raster input (``encoding.event_input = false``):
    the top has no ``from_raster`` / ``raster_*`` ports, which the testbenches must not drive.
    One config, so one build directory, for the inference and the learning case (runs of
    one parameter set take turns on its lock: :func:`sim.rtl.simulate`)."""
    return variant("digits-tiny", "digits-no-events", event_input=False)


CASES = {
    # name: (config, weight scale or weight function, input source, samples)
    "digits-tiny-real": (lambda: load_config("digits-tiny"), 0.5, "digits", 8),
    "digits-no-events": (no_event_input, 0.5, "digits", 3),
    "odd-p3-saturating": (lambda: variant("digits-tiny", "odd-p3-sat", layers=(13, 7, 5),
                                          lanes=3, time_steps=9, weight_bits=6,
                                          membrane_bits=8, threshold=60), saturating_weights,
                          "random", 6),
    "deep-p1": (lambda: variant("digits-tiny", "deep-p1", layers=(10, 6, 5, 3), lanes=1,
                                time_steps=7, threshold=40), 0.8, "random", 5),
    "wide-g1": (lambda: variant("digits-tiny", "wide-g1", layers=(20, 9, 2), lanes=8,
                                time_steps=12, pixel_bits=4, weight_bits=5, membrane_bits=10,
                                threshold=30), 1.0, "random", 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rtl_matches_golden(case, sim):
    make_cfg, scale, source, n = CASES[case]
    cfg = make_cfg()
    rng = np.random.default_rng(sum(map(ord, case)))
    weights = scale(cfg, rng) if callable(scale) else random_weights(cfg, rng, scale=scale)
    if source == "random":
        pixels = random_pixels(cfg, rng, n)
    else:
        data = load_dataset(source, cfg.pixel_bits)
        pixels = data.test_pixels[rng.choice(len(data.test_labels), n, replace=False)]
    gold = run_network(cfg, weights, pixels)
    rtl = run_rtl(cfg, weights, pixels, readback=True, sim=sim)
    result = compare_runs(gold, rtl)
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    np.testing.assert_array_equal(rtl.cycles, gold.cycles)
    np.testing.assert_array_equal(rtl.edges, gold.cycles)
    assert rtl.readback_ok, "weights read back through the weight port differ"
    # the check is not vacuous: every population spiked somewhere
    assert all(r.any() for r in rtl.rasters)


def test_saturating_case_saturates():
    """The saturation-heavy parameter set really drives membranes into saturation."""
    from spikeforge.sw.lif import integrate

    make_cfg, make_weights, _, n = CASES["odd-p3-saturating"]
    cfg = make_cfg()
    rng = np.random.default_rng(sum(map(ord, "odd-p3-saturating")))
    weights = make_weights(cfg, rng)
    pixels = random_pixels(cfg, rng, n)
    raster = run_network(cfg, weights, pixels).rasters[0]
    v = np.zeros((n, cfg.layers[1]), dtype=np.int64)
    unclipped = v + raster[:, 0].astype(np.int64) @ weights[0]
    clipped = integrate(v, weights[0], raster[:, 0], cfg.v_min, cfg.v_max)
    assert (unclipped > cfg.v_max).any() and (unclipped < cfg.v_min).any()
    assert (clipped == cfg.v_max).any() and (clipped == cfg.v_min).any()


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="shared MNIST test set absent")
def test_mnist_ecp5_rtl_on_real_mnist(sim):
    cfg = load_config("mnist-ecp5")
    rng = np.random.default_rng(5)
    weights = random_weights(cfg, rng, scale=0.25)
    data = load_dataset("mnist-t10k", cfg.pixel_bits)
    pixels = data.test_pixels[rng.choice(len(data.test_labels), 2, replace=False)]
    gold = run_network(cfg, weights, pixels)
    rtl = run_rtl(cfg, weights, pixels, sim=sim)
    result = compare_runs(gold, rtl)
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    assert all(r.any() for r in rtl.rasters)


@pytest.mark.parametrize("profile", ["digits-tiny", "digits-up5k", "mnist-ecp5", "ttfs-tiny",
                                     "ttfs-mnist", "digits-stochastic", "digits-near",
                                     "digits-dropout"])
def test_generated_verilog_lints_clean(profile, tmp_path):
    from spikeforge.hw.generate import generate_verilog
    from spikeforge.sim.toolchain import lint_verilog

    verilog = generate_verilog(load_config(profile), tmp_path)
    rc, out = lint_verilog(verilog)
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out
    # the port list written next to the Verilog gives each port's direction as in the Verilog
    ports = json.loads(verilog.with_suffix(".json").read_text())["ports"]
    text = verilog.read_text()
    for name, port in ports.items():
        assert re.search(rf"\b{port['direction']}put\b[^;]*\b{name}\b", text), name


# ---- on-chip learning (desire backpropagation): spikes, every weight after every sample ----

def learning_variant(name, learning=None, **fields):
    base = load_config("digits-tiny")
    learn = dataclasses.replace(base.learning, **(learning or {}))
    return dataclasses.replace(base, name=name, learning=learn, **fields)


def extreme_stored(cfg, rng):
    """Stored weights drawn near both ends of the stored range, so updates saturate."""
    out = []
    for i in range(cfg.n_layers):
        shape = cfg.weight_shape(i)
        near_max = rng.integers(cfg.store_max - 3, cfg.store_max + 1, size=shape)
        near_min = rng.integers(cfg.store_min, cfg.store_min + 4, size=shape)
        middle = rng.integers(cfg.store_min // 4, cfg.store_max // 4, size=shape)
        pick = rng.integers(0, 3, size=shape)
        out.append(np.choose(pick, [near_max, near_min, middle]))
    return out


LEARN_CASES = {
    # name: (config, initial stored weights, input source, samples)
    # own name: a build dir apart from the inference case's (parallel builds would collide)
    "learn-digits-tiny": (lambda: learning_variant("learn-digits-tiny"), "kaiming", "digits", 4),
    "learn-digits-no-events": (no_event_input, "kaiming", "digits", 3),
    "learn-deep-p2-floor": (lambda: learning_variant(
        "learn-deep-p2-floor", dict(rounding="floor", lr_shift=2, weight_frac_bits=3),
        layers=(12, 8, 6, 4), lanes=2, time_steps=10, threshold=30, weight_bits=6,
        membrane_bits=9), "kaiming", "random", 5),
    "learn-saturating-g1": (lambda: learning_variant(
        "learn-saturating-g1", dict(lr_shift=0, weight_frac_bits=1, desire_hidden=0.0,
                                    error_margin=1),
        layers=(16, 7, 3), lanes=7, time_steps=9, threshold=20, weight_bits=5,
        membrane_bits=8), extreme_stored, "random", 5),
    # stochastic rounding: the lane LFSRs carried from sample to sample on both sides
    "learn-digits-stochastic": (lambda: dataclasses.replace(
        load_config("digits-stochastic"), name="learn-digits-stochastic"), "kaiming", "digits", 4),
    # near eligibility: the near rasters recorded beside the spike rasters, read as the
    # update's post term (digits-near, theta_near = 32); and with stochastic rounding on a
    # deeper net with padding lanes (theta_near = ceil(0.3 * 30) = 9)
    "learn-digits-near": (lambda: dataclasses.replace(
        load_config("digits-near"), name="learn-digits-near"), "kaiming", "digits", 4),
    "learn-deep-p3-near-stochastic": (lambda: learning_variant(
        "learn-deep-p3-near-stochastic", dict(rounding="stochastic", lr_shift=2,
                                              weight_frac_bits=2, eligibility="near",
                                              near_fraction=0.3, lfsr_seed=77),
        layers=(12, 8, 7, 4), lanes=3, time_steps=10, threshold=30, weight_bits=6,
        membrane_bits=9), "kaiming", "random", 5),
    # dropout: the mask LFSRs carried from sample to sample on both sides; and two hidden
    # layers (the recorded keep bits mask the backward pass) with stochastic rounding and
    # near eligibility (dropped neurons are never near)
    "learn-digits-dropout": (lambda: dataclasses.replace(
        load_config("digits-dropout"), name="learn-digits-dropout"), "kaiming", "digits", 4),
    "learn-deep-dropout-near-stochastic": (lambda: learning_variant(
        "learn-deep-dropout-near-stochastic",
        dict(rounding="stochastic", lr_shift=4, weight_frac_bits=2, dropout_hidden=0.375,
             dropout_seed=77, lfsr_seed=5, eligibility="near", near_fraction=0.5),
        layers=(12, 8, 6, 4), lanes=2, time_steps=10, threshold=30, weight_bits=6,
        membrane_bits=9), "kaiming", "random", 5),
}


def learning_job(case):
    from spikeforge.sw.train import initial_weights

    make_cfg, init, source, n = LEARN_CASES[case]
    cfg = make_cfg()
    rng = np.random.default_rng(sum(map(ord, case)))
    stored = initial_weights(cfg, 3) if init == "kaiming" else init(cfg, rng)
    if source == "random":
        pixels = random_pixels(cfg, rng, n)
        labels = rng.integers(0, cfg.layers[-1], size=n)
    else:
        data = load_dataset(source, cfg.pixel_bits)
        idx = rng.choice(len(data.train_labels), n, replace=False)
        pixels, labels = data.train_pixels[idx], data.train_labels[idx]
    return cfg, stored, pixels, labels


@pytest.mark.parametrize("case", sorted(LEARN_CASES))
def test_rtl_learning_matches_golden(case, sim):
    from spikeforge.sim.compare import compare_training

    cfg, stored, pixels, labels = learning_job(case)
    steps = train_steps(cfg, stored, pixels, labels)
    rtl = run_rtl(cfg, stored, pixels, labels=labels, stored=True, sim=sim)
    result = compare_training(steps, rtl)
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    assert result.weight_mismatches == 0
    # not vacuous: weights moved, and learning cost cycles on top of inference
    moved = sum(int((a != b).sum()) for a, b in zip(stored, steps[-1].weights, strict=True))
    assert moved > 0
    assert all(s.learn_cycles > 0 for s in steps)


def test_saturating_learning_case_saturates():
    """The saturation case really clips updates at both ends of the stored range."""
    cfg, stored, pixels, labels = learning_job("learn-saturating-g1")
    steps = train_steps(cfg, stored, pixels, labels)
    hit_max = hit_min = False
    weights = stored
    for s in steps:
        for before, after in zip(weights, s.weights, strict=True):
            hit_max |= bool(((after == cfg.store_max) & (before > cfg.store_max - 8)
                             & (before != after)).any())
            hit_min |= bool(((after == cfg.store_min) & (before < cfg.store_min + 8)
                             & (before != after)).any())
        weights = s.weights
    assert hit_max and hit_min


# ---- configs without the stored input raster (encoding.event_input = false) ----

def test_amaranth_testbench_without_event_input():
    """The Amaranth-simulator testbench on a network without the ``from_raster`` /
    ``raster_*`` ports (it used to set ``from_raster`` for every sample): inference and
    training, bit-exact against the golden model."""
    from spikeforge.sim.amaranth_tb import simulate
    from spikeforge.sim.compare import compare_training
    from spikeforge.sw.train import initial_weights

    cfg = variant("digits-tiny", "tiny-no-events", layers=(6, 4, 3), lanes=2, time_steps=8,
                  event_input=False)
    rng = np.random.default_rng(18)
    pixels = random_pixels(cfg, rng, 3)
    stored = initial_weights(cfg, 1)
    gold = run_network(cfg, [w >> cfg.frac_bits for w in stored], pixels)
    result = compare_runs(gold, simulate(cfg, stored, pixels, ready=0.5, seed=2))
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    labels = np.array([0, 2, 1])
    steps = train_steps(cfg, stored, pixels, labels)
    result = compare_training(steps, simulate(cfg, stored, pixels, labels=labels))
    assert result.ok, f"{result.summary_line()}; first divergence: {result.first_divergence}"
    assert any((a != b).any() for a, b in zip(stored, steps[-1].weights, strict=True))
