"""hw/block_ram.py: deep memories cut into one-row column slices behave exactly like the
memories they replace, alone and inside a learning network."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, MemoryInstance, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.block_ram import BlockRamPlatform, slice_width
from sim.amaranth_tb import OnPlatform, simulate
from spikeforge.config import load_config
from sw.weights import random_weights, to_stored


@pytest.mark.parametrize(("family", "depth", "width"), [
    ("ecp5", 512, None), ("ecp5", 1024, None), ("ecp5", 1025, 9), ("ecp5", 2048, 9),
    ("ecp5", 4096, 4), ("ecp5", 6272, 2), ("ecp5", 16384, 1), ("ecp5", 16385, None),
    ("ice40", 6272, None),
])
def test_slice_width(family, depth, width):
    assert slice_width(family, depth) == width


def elaborated(depth, width, family):
    mem = Memory(shape=width, depth=depth, init=[])
    mem.write_port()
    mem.read_port()
    return Fragment.get(OnPlatform(mem, BlockRamPlatform(family)), None)


def memory_pair(depth, width):
    """The same memory twice, with a plain and a transparent synchronous read port and a
    combinational one, all driven by the same signals."""
    m = Module()
    m.domains.sync = ClockDomain("sync")
    ins = {"wa": Signal(range(depth)), "wd": Signal(width), "we": Signal(),
           "ra": Signal(range(depth)), "ren": Signal(), "ca": Signal(range(depth))}
    outs = []
    for plain in (True, False):
        mem = Memory(shape=width, depth=depth, init=[(7 * i) % (1 << width) for i in range(5)])
        wr = mem.write_port()
        rd, rt, rc = (mem.read_port(), mem.read_port(transparent_for=[wr]),
                      mem.read_port(domain="comb"))
        m.submodules[f"mem_{plain}"] = mem if plain else OnPlatform(mem, BlockRamPlatform("ecp5"))
        m.d.comb += [wr.addr.eq(ins["wa"]), wr.data.eq(ins["wd"]), wr.en.eq(ins["we"]),
                     rd.addr.eq(ins["ra"]), rt.addr.eq(ins["ra"]), rd.en.eq(ins["ren"]),
                     rt.en.eq(ins["ren"]), rc.addr.eq(ins["ca"])]
        outs.append((rd.data, rt.data, rc.data))
    return m, ins, outs


def test_sliced_memory_matches_plain_memory_every_cycle():
    depth, width = 3000, 19          # 4096 x 4 slices: 5 of them, the last 3 bits wide
    assert len(elaborated(depth, width, "ecp5").subfragments) == 5

    m, ins, outs = memory_pair(depth, width)
    rng = np.random.default_rng(11)
    seen = {"cycles": 0, "differ": 0}

    async def tb(ctx):
        hot = rng.integers(0, depth, size=8)      # few addresses: reads hit recent writes
        for _ in range(3000):
            pick = lambda: int(rng.choice(hot)) if rng.random() < 0.7 else int(rng.integers(depth))  # noqa: E731
            ctx.set(ins["wa"], pick())
            ctx.set(ins["wd"], int(rng.integers(1 << width)))
            ctx.set(ins["we"], int(rng.random() < 0.5))
            ctx.set(ins["ra"], pick())
            ctx.set(ins["ren"], int(rng.random() < 0.8))
            ctx.set(ins["ca"], pick())
            await ctx.tick()
            plain, cut = ([ctx.get(x) for x in o] for o in outs)
            assert cut == plain
            seen["cycles"] += 1
            seen["differ"] += plain[0] != plain[1]   # transparency did matter sometimes

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen["cycles"] == 3000 and seen["differ"] > 50


def test_ice40_and_shallow_memories_are_left_alone():
    for family, depth in (("ice40", 6272), ("ecp5", 1024)):
        assert isinstance(elaborated(depth, 36, family), MemoryInstance)
    assert len(elaborated(6272, 288, "ecp5").subfragments) == 144    # mnist-ecp5 layer 1


def test_learning_network_on_sliced_memories_equals_plain():
    """digits-tiny at P = 1: layer 1's weight memory is 64 x 32 = 2048 words (9-bit slices);
    spikes, cycles, predictions and every weight after two training samples are equal."""
    cfg = dataclasses.replace(load_config("digits-tiny"), name="sliced", lanes=1,
                              time_steps=6, threshold=20)
    rng = np.random.default_rng(5)
    stored = to_stored(cfg, random_weights(cfg, rng, scale=1.0))
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    labels = np.array([3, -1, 7])
    plain = simulate(cfg, stored, pixels, labels=labels)
    cut = simulate(cfg, stored, pixels, labels=labels, platform=BlockRamPlatform("ecp5"))
    for pop in range(len(cfg.layers)):
        np.testing.assert_array_equal(cut.rasters[pop], plain.rasters[pop])
    np.testing.assert_array_equal(cut.cycles, plain.cycles)
    np.testing.assert_array_equal(cut.predictions, plain.predictions)
    for a, b in zip(cut.weights_after, plain.weights_after, strict=True):
        for wa, wb in zip(a, b, strict=True):
            np.testing.assert_array_equal(wa, wb)
    assert any((w != s).any() for w, s in zip(plain.weights_after[-1], stored, strict=True))
