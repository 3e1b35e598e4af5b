"""The bulk Verilator C++ harness (sim/bulk.py): whole sample sets through the RTL.

The harness must agree with the golden model on every spike, cycle count, prediction and
readout item, and a corrupted RTL input must show up as a mismatch with its first
divergence named.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.config import load_config
from spikeforge.sim.bulk import BulkError, make_job, run_bulk, run_job
from spikeforge.sim.compare import compare_runs
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.golden import run_network
from spikeforge.sw.weights import random_weights, unpack_words


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("digits-tiny")
    weights = random_weights(cfg, np.random.default_rng(0), scale=0.5)
    return cfg, weights, load_dataset("digits", cfg.pixel_bits).test_pixels


def test_bulk_matches_golden_on_the_whole_test_set(tiny):
    cfg, weights, pixels = tiny
    gold = run_network(cfg, weights, pixels)
    rtl = run_bulk(cfg, weights, pixels, jobs=2)          # two harness processes
    result = compare_runs(gold, rtl)
    assert result.ok, (result.first_divergence, result.details)
    assert result.samples == len(pixels) == 360
    assert (rtl.cycles == gold.cycles).all() and (rtl.edges == gold.cycles).all()
    assert (rtl.predictions == gold.predictions).all()
    assert not rtl.probe_errors.any() and not rtl.readout_overflow
    assert sum(r.sum() for r in rtl.rasters) > 0                  # spikes were recorded
    assert len(rtl.stream) == gold.rasters[-1].sum() + len(pixels)   # spikes + end items
    assert rtl.sim_cycles > rtl.edges.sum()


def test_bulk_saturating_weights_and_extreme_inputs(tiny):
    cfg, _, _ = tiny
    rng = np.random.default_rng(1)
    weights = random_weights(cfg, rng, scale=1.0)
    for w in weights:                       # columns pushed to one sign: membranes saturate
        w[:, 0::2] = np.abs(w[:, 0::2]).clip(max=cfg.w_max)
        w[:, 1::2] = -np.abs(w[:, 1::2]).clip(max=cfg.w_max)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(30, cfg.layers[0]))
    pixels[0], pixels[1] = cfg.pixel_max, 0          # every input at every step; silent
    result = compare_runs(run_network(cfg, weights, pixels), run_bulk(cfg, weights, pixels))
    assert result.ok, (result.first_divergence, result.details)


def test_corrupted_weight_word_is_caught(tiny):
    """Flip the sign bit of one stored weight in the RTL's job only: the comparison must
    fail, and its first divergence must be the one the corrupted weights predict."""
    cfg, weights, pixels = tiny
    pixels = pixels[:60]
    gold = run_network(cfg, weights, pixels)
    job = make_job(cfg, weights, pixels)
    pre = int(pixels.sum(axis=0).argmax())           # the brightest input: spikes most
    word = pre * cfg.groups(0)                      # its word of group 0; lane 0 -> neuron 0
    job.words[0][word, 0] ^= 1 << (cfg.store_bits - 1)
    rtl = run_job(cfg, job)
    result = compare_runs(gold, rtl)
    assert not result.ok and result.spike_mismatches > 0
    assert ", layer 1, neuron 0: expected " in result.first_divergence
    # what the corrupted weights make the golden model do, the RTL did exactly
    stored = [unpack_words(cfg, i, [sum(int(c) << (32 * k) for k, c in enumerate(row))
                                    for row in w]) for i, w in enumerate(job.words)]
    bad = run_network(cfg, [s >> cfg.frac_bits for s in stored], pixels)
    assert compare_runs(bad, rtl).ok
    want = compare_runs(gold, SimpleNamespace(rasters=bad.rasters, predictions=bad.predictions,
                                              cycles=bad.cycles, edges=bad.cycles))
    assert result.first_divergence == want.first_divergence


def test_cycle_limit_fails_loudly(tiny):
    cfg, weights, pixels = tiny
    job = make_job(cfg, weights, pixels[:3], max_cycles=100)
    with pytest.raises(BulkError, match=r"sample 0: done did not rise within 100 cycles"):
        run_job(cfg, job)


def test_cli_compare_samples_all(tiny, capsys):
    assert main(["compare", "-c", "digits-tiny", "--samples", "all", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "360 samples (digits test)" in out and "bulk Verilator harness" in out
    assert "M cycles/s" in out and "samples/s" in out
    assert out.strip().splitlines()[-1] == \
        "compare: 360 samples, 0 spike mismatches, 0 cycle mismatches"


@pytest.mark.parametrize("bad", ["0", "some", "-3"])
def test_cli_samples_argument(bad):
    with pytest.raises(SystemExit):
        main(["compare", "-c", "digits-tiny", "--samples", bad])
