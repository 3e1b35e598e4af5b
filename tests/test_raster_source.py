"""The stored-raster input source against the rate encoder it stands in for: the same events,
raster tap and handshakes, cycle for cycle, under random output stalls."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from spikeforge.hw.raster_source import RasterSource
from spikeforge.hw.rate_encoder import RateEncoder
from spikeforge.sw import cycles
from spikeforge.sw.encode import rate_encode

PORTS = ("busy", "eval_valid", "eval_index", "eval_spike")


def run_side_by_side(n_in, steps, pixels, raster, *, ready, seed, dirt=0, theta=None):
    """Load ``pixels`` into a RateEncoder and ``raster`` ``(T, n_in)`` into a RasterSource
    (after setting ``dirt`` random bits and clearing them), run ``steps`` steps on both with
    the same ``start``/``first`` and the same random ``spikes_out.ready``. Returns per source
    the record ``[(valid, index, end, busy, eval...)]`` per cycle, the events of each step and
    the cycles each step took (from the ``start`` cycle to the end marker's handshake, both
    counted), and the cycles the clear kept ``busy`` high."""
    rng = np.random.default_rng(seed)
    m = Module()
    m.submodules.enc = enc = RateEncoder(n_in=n_in, pixel_bits=8, theta=theta)
    m.submodules.ras = ras = RasterSource(n_in=n_in, steps=steps)
    out = {"records": ([], []), "events": ([], []), "cycles": ([], []), "clear_cycles": 0}

    async def tb(ctx):
        for j, p in enumerate(pixels):
            ctx.set(enc.px_addr, j)
            ctx.set(enc.px_data, int(p))
            ctx.set(enc.px_we, 1)
            await ctx.tick()
        ctx.set(enc.px_we, 0)
        for _ in range(dirt):
            ctx.set(ras.set_step, int(rng.integers(steps)))
            ctx.set(ras.set_index, int(rng.integers(n_in)))
            ctx.set(ras.set, 1)
            await ctx.tick()
        ctx.set(ras.set, 0)
        ctx.set(ras.clear, 1)
        await ctx.tick()
        ctx.set(ras.clear, 0)
        while ctx.get(ras.busy):
            out["clear_cycles"] += 1
            await ctx.tick()
        for t, j in np.argwhere(raster):
            ctx.set(ras.set_step, int(t))
            ctx.set(ras.set_index, int(j))
            ctx.set(ras.set, 1)
            await ctx.tick()
        ctx.set(ras.set, 0)
        for t in range(steps):
            for dut in (enc, ras):
                ctx.set(dut.start, 1)
                ctx.set(dut.first, t == 0)
            await ctx.tick()
            for dut in (enc, ras):
                ctx.set(dut.start, 0)
            done, step_events = [False, False], ([], [])
            n = 2                               # the start cycle was the first
            while not all(done):
                take = bool(rng.random() < ready)
                for k, dut in enumerate((enc, ras)):
                    ctx.set(dut.spikes_out.ready, take)
                    s = dut.spikes_out
                    row = (ctx.get(s.valid), ctx.get(s.payload.index) if ctx.get(s.valid)
                           else None, ctx.get(s.payload.end),
                           *(ctx.get(getattr(dut, p)) for p in PORTS))
                    out["records"][k].append(row)
                    if row[0] and take and not done[k]:
                        if row[2]:
                            done[k] = True
                            out["cycles"][k].append(n)
                        else:
                            step_events[k].append(row[1])
                await ctx.tick()
                n += 1
            for k in range(2):
                out["events"][k].append(step_events[k])

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("n_in,steps,ready,theta", [(5, 6, 1.0, None), (8, 4, 0.5, None),
                                                   (13, 9, 0.3, None), (11, 10, 0.7, 320),
                                                   (6, 12, 1.0, 1020)])
def test_raster_source_is_the_rate_encoder_on_its_raster(n_in, steps, ready, theta):
    """Loaded with the rate encoder's own raster (the spec's, :func:`sw.encode.rate_encode`,
    at the default threshold 255 or a higher ``encoding.threshold``), the source is
    indistinguishable from the encoder at its ports (events, end markers, busy, the learning
    unit's raster tap), stall for stall; with the output always ready a step is
    ``encoder_cost`` cycles."""
    rng = np.random.default_rng(n_in)
    pixels = rng.integers(0, 256, n_in)
    pixels[0], pixels[-1] = 255, 0
    raster = rate_encode(pixels[None], steps, theta or 255)[0]
    out = run_side_by_side(n_in, steps, pixels, raster, ready=ready, seed=steps, dirt=7,
                           theta=theta)
    enc, ras = out["records"]
    assert enc == ras
    assert out["events"][1] == [list(np.flatnonzero(r)) for r in raster]
    assert raster.any() and not raster.all()
    if ready == 1.0:
        assert out["cycles"][0] == out["cycles"][1] == [cycles.encoder_cost(n_in)] * steps
    else:
        assert max(out["cycles"][1]) > cycles.encoder_cost(n_in)   # stalls really happened
    depth = steps << max(1, (n_in - 1).bit_length())
    assert out["clear_cycles"] == depth


def test_raster_source_replays_any_raster():
    """A raster no rate encoder makes (a burst at one step, silence, a lone spike) comes out
    as stored, each step in ``encoder_cost`` cycles."""
    n_in, steps = 6, 5
    rng = np.random.default_rng(3)
    raster = rng.random((steps, n_in)) < 0.4
    raster[1] = True
    raster[2] = False
    raster[4] = False
    raster[4, 5] = True
    out = run_side_by_side(n_in, steps, np.zeros(n_in, int), raster, ready=1.0, seed=0, dirt=20)
    assert out["events"][1] == [list(np.flatnonzero(r)) for r in raster]
    assert out["cycles"][1] == [cycles.encoder_cost(n_in)] * steps


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_raster_source_refuses_empty_shapes():
    import gc

    with pytest.raises(ValueError, match=r"n_in and steps must be >= 1, got n_in=4, steps=0"):
        RasterSource(n_in=4, steps=0)
    gc.collect()        # the half-built component's warning fires here, under the filter
