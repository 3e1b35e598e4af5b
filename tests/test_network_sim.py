"""Amaranth-simulator check of the whole Network against the golden model."""

import dataclasses

import numpy as np
import pytest

from spikeforge.config import load_config
from spikeforge.hw.network import Network
from spikeforge.sim.amaranth_tb import simulate
from spikeforge.sw.golden import encode, run_network, run_raster
from spikeforge.sw.weights import random_weights, to_stored


def simulate_network(cfg, weights, pixels):
    """Run samples through the Amaranth simulator; return (rasters, cycles, predictions)."""
    run = simulate(cfg, to_stored(cfg, weights), pixels)
    assert not run.fifo_overflow
    return [([r[b] for r in run.rasters], int(run.edges[b]), int(run.cycles[b]),
             int(run.predictions[b])) for b in range(len(pixels))]


CASES = {
    "tiny-p1": dict(layers=(5, 3, 2), lanes=1, time_steps=6),
    "odd-p3": dict(layers=(7, 5, 4), lanes=3, time_steps=8),
    "deep-p2": dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
    "wide-p4": dict(layers=(9, 8, 3), lanes=4, time_steps=7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_network_matches_golden(case):
    base = load_config("digits-tiny")
    cfg = dataclasses.replace(base, name=case, threshold=20, membrane_bits=9, weight_bits=6,
                              **CASES[case])
    rng = np.random.default_rng(7)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    pixels[0, :] = cfg.pixel_max          # saturating input
    gold = run_network(cfg, weights, pixels)
    for b, (rasters, edges, cycles, pred) in enumerate(simulate_network(cfg, weights, pixels)):
        for pop, raster in enumerate(rasters):
            np.testing.assert_array_equal(raster, gold.rasters[pop][b], err_msg=f"pop {pop}")
        assert cycles == gold.cycles[b]
        assert edges == cycles
        assert pred == gold.predictions[b]


@pytest.mark.parametrize("case", ["tiny-p1", "deep-p2"])
def test_inference_drops_the_input_no_output_depends_on(case):
    """The output at step t reads the input of step t - L at the latest: an inference sample
    drops the input of the later steps (golden here, the RTL in the test above) and gets
    the same output spikes, every one, in fewer cycles."""
    from spikeforge.sw.cycles import sample_cycles
    from spikeforge.sw.golden import run_layers

    cfg = dataclasses.replace(load_config("digits-tiny"), name=case, threshold=20,
                              membrane_bits=9, weight_bits=6, **CASES[case])
    rng = np.random.default_rng(3)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(8, cfg.layers[0]))
    whole = run_layers(cfg, weights, encode(cfg, pixels))
    run = run_network(cfg, weights, pixels)
    live = cfg.live_input_steps()
    assert live == cfg.time_steps - cfg.n_layers
    assert whole[0][:, live:].any() and not run.rasters[0][:, live:].any()
    np.testing.assert_array_equal(run.rasters[0][:, :live], whole[0][:, :live])
    np.testing.assert_array_equal(run.rasters[-1], whole[-1])
    before = sample_cycles(cfg, whole)
    assert (run.cycles <= before).all() and (run.cycles < before).any()


@pytest.mark.parametrize("tie_break", ["none", "first_spike"])
def test_settled_exit_matches_golden_with_the_same_predictions(tie_break):
    """``early_exit = "settled"``: the RTL stops each sample where the golden model does
    (rasters, cycles), and the predictions are those of the full run."""
    base = load_config("digits-tiny")
    cfg = dataclasses.replace(base, name="settled", threshold=20, membrane_bits=9,
                              weight_bits=6, tie_break=tie_break, **CASES["tiny-p1"])
    settled = dataclasses.replace(cfg, early_exit="settled")
    rng = np.random.default_rng(5)
    weights = random_weights(cfg, rng, scale=1.0)
    weights[-1][:, 0] = cfg.w_max                     # an output neuron that leads early
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(6, cfg.layers[0]))
    full = run_network(cfg, weights, pixels)
    gold = run_network(settled, weights, pixels)
    np.testing.assert_array_equal(gold.predictions, full.predictions)
    assert (gold.cycles < full.cycles).any()      # a sample that ended sooner saved cycles
    for b, (rasters, _, cycles, pred) in enumerate(simulate_network(settled, weights, pixels)):
        for pop, raster in enumerate(rasters):
            np.testing.assert_array_equal(raster, gold.rasters[pop][b], err_msg=f"pop {pop}")
        assert (cycles, pred) == (gold.cycles[b], gold.predictions[b])


def test_inference_only_network_has_no_learning_unit():
    """A config without [learning] builds the plain inference network, bit-exact as well."""
    cfg = dataclasses.replace(load_config("digits-tiny"), name="infer-only", learning=None,
                              layers=(6, 4, 3), lanes=2, time_steps=6, threshold=20,
                              membrane_bits=9, weight_bits=6)
    assert not hasattr(Network(cfg), "learn")
    rng = np.random.default_rng(3)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(2, cfg.layers[0]))
    gold = run_network(cfg, weights, pixels)
    for b, (rasters, _, cycles, _) in enumerate(simulate_network(cfg, weights, pixels)):
        for pop, raster in enumerate(rasters):
            np.testing.assert_array_equal(raster, gold.rasters[pop][b])
        assert cycles == gold.cycles[b]


@pytest.mark.parametrize("case", ["tiny-p1", "deep-p2"])
def test_network_runs_stored_input_rasters(case):
    """Per-sample input select: pixel samples and samples on a stored input raster (random,
    or the rate encoder's own raster of a pixel sample) interleaved; every spike, cycle count
    and prediction equals the golden model's on that raster, and the encoder's raster run
    from the store is the pixel sample again, spike for spike and cycle for cycle."""
    base = load_config("digits-tiny")
    cfg = dataclasses.replace(base, name=case, threshold=20, membrane_bits=9, weight_bits=6,
                              **CASES[case])
    rng = np.random.default_rng(17)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(4, cfg.layers[0]))
    random_raster = rng.random((cfg.time_steps, cfg.layers[0])) < 0.5
    encoded = encode(cfg, pixels[:1])[0]
    inputs = [None, random_raster, encoded, None]
    run = simulate(cfg, to_stored(cfg, weights), pixels, input_rasters=inputs)
    assert not run.fifo_overflow
    used = np.stack([encode(cfg, pixels[b:b + 1])[0] if r is None else r
                     for b, r in enumerate(inputs)])
    gold = run_raster(cfg, weights, used)
    for pop in range(len(cfg.layers)):
        np.testing.assert_array_equal(run.rasters[pop], gold.rasters[pop], err_msg=f"pop {pop}")
    np.testing.assert_array_equal(run.cycles, gold.cycles)
    np.testing.assert_array_equal(run.edges, gold.cycles)
    np.testing.assert_array_equal(run.predictions, gold.predictions)
    for pop in range(len(cfg.layers)):
        np.testing.assert_array_equal(run.rasters[pop][2], run.rasters[pop][0])
    assert run.cycles[2] == run.cycles[0] and run.predictions[2] == run.predictions[0]
    assert run.rasters[1][1].any() and not (run.rasters[0][1] == run.rasters[0][0]).all()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_network_without_event_input_has_no_raster():
    """``encoding.event_input = false`` builds the network without the stored-raster input
    (no ports, no memory); asking the testbench for raster samples is an error."""
    import gc

    cfg = dataclasses.replace(load_config("digits-tiny"), name="no-events", layers=(5, 3, 2),
                              lanes=1, time_steps=6, event_input=False)
    assert not hasattr(Network(cfg), "from_raster")
    assert hasattr(Network(dataclasses.replace(cfg, event_input=True)), "from_raster")
    gc.collect()            # the unelaborated networks warn here, under the filter
    stored = to_stored(cfg, random_weights(cfg, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"config 'no-events' is built without input events"):
        simulate(cfg, stored, np.zeros((1, 5)), input_rasters=[np.ones((6, 5), bool)])


def test_tie_break_first_spike_matches_golden():
    """``tie_break = "first_spike"``: few steps and four outputs make ties of the largest
    count common; the RTL's decision equals the golden model's on every sample, and the
    samples include ties it breaks, ties it cannot break (same count and first step) and a
    clear winner."""
    from spikeforge.sw.golden import decide

    base = load_config("digits-tiny")
    cfg = dataclasses.replace(base, name="ties", threshold=20, membrane_bits=9, weight_bits=6,
                              layers=(6, 5, 4), lanes=2, time_steps=5, tie_break="first_spike")
    rng = np.random.default_rng(8)      # 7 ties broken, 7 left, 26 clear of 40
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(40, cfg.layers[0]))
    gold = run_network(cfg, weights, pixels)
    plain = decide(dataclasses.replace(cfg, tie_break="none"), gold.rasters[-1])
    broken = (plain == -1) & (gold.predictions >= 0)
    assert broken.any() and (gold.predictions == -1).any() and (plain >= 0).any()
    got = simulate_network(cfg, weights, pixels)
    assert [pred for *_, pred in got] == gold.predictions.tolist()
    for b, (rasters, _, cycles, _) in enumerate(got):
        np.testing.assert_array_equal(rasters[-1], gold.rasters[-1][b])
        assert cycles == gold.cycles[b]
