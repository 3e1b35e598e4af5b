"""Amaranth-simulator check of the whole Network against the golden model."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.network import Network
from spikeforge.config import load_config
from sw.golden import run_network
from sw.weights import pack_words, random_weights, to_stored


def simulate_network(cfg, weights, pixels):
    """Run samples through the Amaranth simulator; return (rasters, cycles, predictions)."""
    dut = Network(cfg)
    results = []

    async def tb(ctx):
        for i, w in enumerate(to_stored(cfg, weights)):
            ctx.set(dut.w_layer, i)
            for addr, word in enumerate(pack_words(cfg, i, w)):
                ctx.set(dut.w_addr, addr)
                ctx.set(dut.w_wdata, word)
                ctx.set(dut.w_we, 1)
                await ctx.tick()
        ctx.set(dut.w_we, 0)
        for sample in pixels:
            for addr, px in enumerate(sample):
                ctx.set(dut.px_addr, addr)
                ctx.set(dut.px_data, int(px))
                ctx.set(dut.px_we, 1)
                await ctx.tick()
            ctx.set(dut.px_we, 0)
            rasters = [np.zeros((cfg.time_steps, n), dtype=bool) for n in cfg.layers]
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            edges = 0
            while True:
                for pop in range(len(cfg.layers)):
                    if ctx.get(getattr(dut, f"trace{pop}_valid")):
                        idx = ctx.get(getattr(dut, f"trace{pop}_index"))
                        rasters[pop][ctx.get(dut.trace_step), idx] = True
                await ctx.tick()
                edges += 1
                if ctx.get(dut.done):
                    break
            assert ctx.get(dut.fifo_overflow) == 0
            pred = ctx.get(dut.prediction) if ctx.get(dut.prediction_valid) else -1
            results.append((rasters, edges, ctx.get(dut.cycles), pred))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results


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
