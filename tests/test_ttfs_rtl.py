"""cocotb on Verilator: the TTFS core's Verilog against the golden model, learning included.

Every case trains the RTL and the golden model on the same samples (some samples inference
only) and compares every input and output spike, the winners, every weight and prune mask
after every training sample, and every cycle count (the core's counter and the
testbench's own count of clock edges).
"""

import dataclasses

import numpy as np
import pytest

from spikeforge import cli
from spikeforge.config import load_config
from spikeforge.sim.compare import compare_ttfs
from spikeforge.sim.ttfs_rtl import run_ttfs_rtl
from spikeforge.sw import ttfs
from spikeforge.sw.datasets import load_dataset


def variant(**fields):
    return dataclasses.replace(load_config("ttfs-tiny"), **fields)


CASES = {
    # name: (config, pixel source, learn flags)
    "ttfs-tiny-digits": (lambda: load_config("ttfs-tiny"), "digits", [1] * 6 + [0, 1]),
    "k3-p3-aggressive-prune": (lambda: variant(name="k3p3", lanes=3, winners=3, layers=(64, 10),
                                               prune_threshold=60, a_minus=3, time_steps=5),
                               "random", [1, 1, 0, 1, 1, 1, 0, 1]),
    "dense-no-pruning": (lambda: variant(name="dense", lanes=4, winners=2, prune_threshold=0,
                                         threshold=900), "random", [1, 1, 0, 1, 1]),
    "p1-4bit-prune-most": (lambda: variant(name="p1", lanes=1, winners=2, layers=(30, 5),
                                           prune_threshold=200, threshold=300, pixel_bits=4,
                                           floor=3, time_steps=16, init_weights=(0, 255),
                                           stdp_shift=4, a_plus=3), "random", [1] * 7),
}


def pixels_for(cfg, source, n, rng):
    if source == "digits":
        return load_dataset("digits", cfg.pixel_bits).train_pixels[:n]
    px = rng.integers(0, cfg.pixel_max + 1, size=(n, cfg.n_in))
    px[1] = 0                       # silent: nobody fires, nobody learns
    px[2] = cfg.pixel_max           # every input at step 0
    return px


@pytest.mark.parametrize("case", sorted(CASES))
def test_ttfs_rtl_learns_like_golden(case, sim):
    make_cfg, source, learn = CASES[case]
    cfg = make_cfg()
    rng = np.random.default_rng(11)
    pixels = pixels_for(cfg, source, len(learn), rng)
    start = ttfs.initial_state(cfg, 5)
    gold, state = ttfs.run_schedule(cfg, start, pixels, learn)
    rtl = run_ttfs_rtl(cfg, start, pixels, learn=learn, sim=sim)
    result = compare_ttfs(gold, rtl, cfg.time_steps)
    assert result.ok, (result.first_divergence, result.details)
    assert result.weight_mismatches == 0 and result.mask_mismatches == 0
    assert (rtl.cycles == rtl.edges).all()
    if cfg.pruning:
        assert state.connectivity < start.connectivity      # the case really pruned
    assert any(len(g.winners) for g in gold if hasattr(g, "winners"))


def test_compare_learn_cli_contract(capsys):
    rc = cli.main(["compare", "--learn", "-c", "ttfs-tiny", "-n", "5", "--seed", "23",
                   "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[-2] == "compare: 0 prune-mask mismatches, 0 winner mismatches"
    assert out[-1] == ("compare: 5 samples, 0 spike mismatches, 0 weight mismatches, "
                       "0 cycle mismatches")
