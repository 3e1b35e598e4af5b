"""spikeforge/lfsr.py (the LFSR's definition) and hw/lfsr.py (its gateware)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from spikeforge import lfsr
from spikeforge.hw.lfsr import GaloisLfsr


def test_period_is_maximal():
    """Stepping from state 1 returns to it after exactly 2^20 - 1 steps, so the cycle holds
    every non-zero state: x^20 + x^17 + 1 is a maximal-length polynomial."""
    state, steps = lfsr.step(1), 1
    while state != 1:
        assert state != 0
        state = lfsr.step(state)
        steps += 1
        assert steps <= lfsr.PERIOD
    assert steps == lfsr.PERIOD == (1 << 20) - 1
    assert lfsr.step(0) == 0                  # 0 is a cycle of its own: never a seed


def test_non_maximal_polynomial_has_a_shorter_period(monkeypatch):
    """The period check above can fail: x^20 + x^18 + 1 = (x^10 + x^9 + 1)^2 is not even
    irreducible, and its period from state 1 is far shorter."""
    monkeypatch.setattr(lfsr, "TAPS", (1 << 18) | 1)
    state, steps = lfsr.step(1), 1
    while state != 1 and steps <= lfsr.PERIOD:
        state = lfsr.step(state)
        steps += 1
    assert steps < lfsr.PERIOD


def test_sequence_positions_and_jumps():
    seq, pos = lfsr.sequence(), lfsr.positions()
    assert seq.shape == (lfsr.PERIOD,) and seq.dtype == np.uint32
    assert len(np.unique(seq)) == lfsr.PERIOD and seq.min() == 1 and seq.max() == lfsr.MASK
    state = 1
    for k in range(3000):                     # the table is the step function's sequence
        assert seq[k] == state
        state = lfsr.step(state)
    k = np.arange(0, lfsr.PERIOD, 997)
    np.testing.assert_array_equal(pos[seq[k]], k)
    assert pos[0] == -1
    rng = np.random.default_rng(1)
    for _ in range(20):
        s, n = int(rng.integers(1, lfsr.MASK + 1)), int(rng.integers(0, 3 * lfsr.PERIOD))
        assert lfsr.jump(s, n) == seq[(pos[s] + n) % lfsr.PERIOD]
        assert lfsr.advance([s], n)[0] == lfsr.jump(s, n)
    x = 12345
    for n in range(50):
        assert lfsr.jump(12345, n) == x
        x = lfsr.step(x)
    with pytest.raises(ValueError, match=r"LFSR state out of range"):
        lfsr.advance([0], 1)


@pytest.mark.parametrize("lanes", [1, 3, 16])
def test_lane_seeds(lanes):
    """Distinct, non-zero, evenly spread over the period, deterministic in the seed."""
    seeds = lfsr.lane_seeds(0, lanes)
    assert len(set(seeds)) == lanes and all(1 <= s <= lfsr.MASK for s in seeds)
    at = lfsr.positions()[list(seeds)].astype(np.int64)
    spacing = lfsr.PERIOD // lanes
    assert at[0] == spacing // 2
    np.testing.assert_array_equal(np.diff(at), spacing)
    assert lfsr.lane_seeds(0, lanes) == seeds
    moved = lfsr.lane_seeds(5, lanes)
    assert moved == tuple(lfsr.jump(s, 5) for s in seeds)
    with pytest.raises(ValueError, match=r"seed: 1048575 is out of range, legal range is "
                                         r"\[0, 1048574\]"):
        lfsr.lane_seeds(lfsr.PERIOD, lanes)


def test_gateware_steps_like_the_definition():
    """GaloisLfsr in Amaranth's simulator: a random step pattern gives the states of
    spikeforge.lfsr.step; a reset of the clock domain restores the seed."""
    seed = lfsr.lane_seeds(7, 2)[1]
    dut = GaloisLfsr(seed)
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut
    rng = np.random.default_rng(3)
    pattern = rng.random(400) < 0.7
    seen, after_reset = [], []

    async def bench(ctx):
        for go in pattern:
            seen.append(ctx.get(dut.state))
            ctx.set(dut.step, int(go))
            await ctx.tick()
        ctx.set(dut.step, 1)
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        after_reset.append(ctx.get(dut.state))
        await ctx.tick()
        after_reset.append(ctx.get(dut.state))

    sim = Simulator(top)
    sim.add_clock(1e-6, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    want, state = [], seed
    for go in pattern:
        want.append(state)
        state = lfsr.step(state) if go else state
    assert seen == want
    assert len(set(seen)) > 200
    assert after_reset == [seed, lfsr.step(seed)]


def test_gateware_refuses_the_zero_seed():
    with pytest.raises(ValueError, match=r"seed: 0 is out of range, legal range is "
                                         r"\[1, 1048575\]"):
        GaloisLfsr(0)
