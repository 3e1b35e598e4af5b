"""Amaranth-simulator check of the whole Network against the golden model."""

import dataclasses

import numpy as np
import pytest

from hw.network import Network
from sim.amaranth_tb import simulate
from spikeforge.config import load_config
from sw.golden import run_network
from sw.weights import random_weights, to_stored


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
