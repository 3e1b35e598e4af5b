"""hw/block_ram.py: the registered RAM cut into one-row column slices with copied address
registers (the ECP5 board builds) behaves exactly like the plain one (the simulations),
alone and inside a learning network."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from spikeforge.config import load_config
from spikeforge.hw.block_ram import BlockRamPlatform, RegisteredRAM, slice_geometry
from spikeforge.sim.amaranth_tb import OnPlatform, simulate
from spikeforge.sw.weights import random_weights, to_stored


@pytest.mark.parametrize(("family", "depth", "width", "geometry"), [
    ("ecp5", 512, 288, None), ("ecp5", 1024, 288, None), ("ecp5", 1025, 288, (9, 2048)),
    ("ecp5", 2048, 36, (9, 2048)), ("ecp5", 4096, 288, (4, 4096)),
    ("ecp5", 6272, 288, (2, 8192)),       # mnist-ecp5 layer 1: 144 block RAMs, rows 112
    ("ecp5", 9408, 288, None),            # fmnist-ecp5 layer 1: 288 against 160, no
    ("ecp5", 16384, 18, (1, 16384)), ("ecp5", 16385, 4, None),
    ("ice40", 6272, 288, None), (None, 6272, 288, None),
])
def test_slice_geometry(family, depth, width, geometry):
    assert slice_geometry(family, depth, width) == geometry


def memories(ram, family):
    frag = Fragment.get(OnPlatform(ram, BlockRamPlatform(family)), None)
    return [sub for sub, _, _ in frag.subfragments if type(sub).__name__ == "MemoryInstance"]


def test_mnist_weight_memory_is_144_one_bram_slices():
    assert len(memories(RegisteredRAM(width=288, depth=6272), "ecp5")) == 144
    assert len(memories(RegisteredRAM(width=288, depth=6272), "ice40")) == 1
    assert len(memories(RegisteredRAM(width=288, depth=1024), "ecp5")) == 1


def test_sliced_ram_matches_plain_ram_and_the_port_rules_every_cycle():
    """Random accesses on few addresses (reads of words written in the same and the previous
    cycle) and resets: 5 slices of 4096 x 4 with copied registers and the plain RAM both
    return, in every cycle, the word a read-first model of the port predicts."""
    depth, width = 3000, 19
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    plain = RegisteredRAM(width=width, depth=depth)
    cut = RegisteredRAM(width=width, depth=depth)
    m.submodules.plain = plain
    m.submodules.cut = OnPlatform(cut, BlockRamPlatform("ecp5"))
    assert len(memories(RegisteredRAM(width=width, depth=depth), "ecp5")) == 5
    rng = np.random.default_rng(11)
    seen = {"read_old": 0, "read_new": 0, "compared": 0, "resets": 0}

    async def tb(ctx):
        hot = rng.integers(0, depth, size=6)
        words = {}                               # the model: word contents
        expect = [None]                          # the word due after the next edge
        last_write = None
        for cycle in range(4000):
            addr = int(rng.choice(hot)) if rng.random() < 0.8 else int(rng.integers(depth))
            data, we = int(rng.integers(1 << width)), int(rng.random() < 0.5)
            reset = cycle > 10 and rng.random() < 0.01
            for ram in (plain, cut):
                ctx.set(ram.addr, addr)
                ctx.set(ram.wr_data, data)
                ctx.set(ram.wr_en, we)
            ctx.set(cd.rst, reset)
            seen["resets"] += reset
            # read-first: this read sees the words before this cycle's write lands
            expect.append(words.get(addr))
            seen["read_old"] += we and addr in words and words[addr] != data
            seen["read_new"] += last_write == addr
            if we:
                words[addr] = data
            last_write = addr if we else None
            await ctx.tick()
            due = expect.pop(0)
            if due is not None:
                assert ctx.get(plain.rd_data) == due, f"cycle {cycle}"
                assert ctx.get(cut.rd_data) == due, f"cycle {cycle}"
                seen["compared"] += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen["read_old"] > 100 and seen["read_new"] > 100 and seen["resets"] > 10
    assert seen["compared"] > 3000


def test_learning_network_on_sliced_memories_equals_plain():
    """digits-tiny at P = 1: layer 1's weight memory is 64 x 32 = 2048 words (9-bit slices);
    spikes, cycles, predictions and every weight after the training samples are equal."""
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


def test_synthesis_keeps_the_register_copies(tmp_path):
    """Through the synthesis script's KEEP_COPIES, Yosys keeps every copy of the address and
    write-enable registers (without it, opt_merge folds identical flip-flops into one)."""
    import json
    import subprocess

    from amaranth.back import rtlil

    from spikeforge.synth import KEEP_COPIES, _tool

    ram = RegisteredRAM(width=19, depth=3000)            # 5 slices of 4096 x 4, 12-bit address
    (tmp_path / "ram.il").write_text(rtlil.convert(ram, name="ram",
                                                   platform=BlockRamPlatform("ecp5")))
    flops = {}
    for keep in (True, False):
        script = "read_rtlil ram.il; " + (f"{KEEP_COPIES}; " if keep else "")
        script += "synth_ecp5 -top ram; tee -q -o stat.json stat -json"
        subprocess.run([_tool("yosys"), "-q", "-p", script], cwd=tmp_path, check=True)
        cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
        flops[keep] = cells["TRELLIS_FF"]
        assert cells["DP16KD"] == 5
    # 5 copies of the 12-bit address and the write enable, and the write data; no other
    # flip-flop (one read-first port per block RAM: nothing to emulate)
    assert flops == {True: 5 * (12 + 1) + 19, False: 12 + 1 + 19}
