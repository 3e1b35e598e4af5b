"""The decoder on the chip and its early exit: golden model, gateware, host link
(docs/decoder.md)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from spikeforge.config import ConfigError, DecoderConfig, load_config
from spikeforge.protocol import decoder_address, decoder_depth, decoder_words
from spikeforge.sw import exit_decoder
from spikeforge.sw.exit_decoder import DecoderWeights, check_decoder, random_decoder
from spikeforge.sw.golden import encode, live_input, run_layers, run_network
from spikeforge.sw.weights import WeightError, load_decoder, random_weights, save_weights
from spikeforge.timing import DECIDE_OVERHEAD

BASE = load_config("digits-tiny")


def small(exit="margin", margin=6, steps=6, min_steps=3, time_steps=8):
    """A 6-5-4 network whose outputs fire often: exits at every step of the range."""
    dec = DecoderConfig(steps=steps, weight_bits=5, exit=exit,
                        margin=margin if exit == "margin" else 0, min_steps=min_steps)
    return dataclasses.replace(BASE, name="dec", threshold=20, membrane_bits=9, weight_bits=6,
                               layers=(6, 5, 4), lanes=2, time_steps=time_steps, decoder=dec)


def direct_decode(cfg, dec, raster):
    """The spec of docs/decoder.md as plain loops, one sample."""
    d, n_out = cfg.decoder, cfg.layers[-1]
    score = [int(x) for x in dec.b]
    for t in range(d.steps):
        for j in range(n_out):
            if raster[t, j]:
                score = [s + int(dec.w[t, j, c]) for c, s in enumerate(score)]
        n = t + 1
        if n < d.first_check:
            continue
        top = max(score)
        second = max(s for c, s in enumerate(score) if c != score.index(top))
        if n == d.steps or (d.exit == "margin" and top - second >= d.margin):
            return n, score, score.index(top)
    raise AssertionError("no exit")


@pytest.mark.parametrize("exit", ["fixed", "margin"])
def test_golden_decoder_follows_the_spec(exit):
    cfg = small(exit)
    rng = np.random.default_rng(1)
    raster = rng.random((300, cfg.time_steps, 4)) < 0.3
    dec = random_decoder(cfg, rng, scale=1.0)
    run = exit_decoder.decode(cfg, dec, raster)
    for b in range(len(raster)):
        n, score, best = direct_decode(cfg, dec, raster[b])
        assert (run.steps[b], list(run.scores[b]), run.decisions[b]) == (n, score, best)
    if exit == "margin":            # every exit step occurs, early ones included
        assert set(run.steps) == set(range(cfg.decoder.min_steps, cfg.decoder.steps + 1))
    else:
        assert (run.steps == cfg.decoder.steps).all()


def test_ties_lead_by_zero_and_go_to_the_lowest_class():
    cfg = small("margin", margin=1, steps=2, min_steps=1)
    dec = DecoderWeights(np.zeros((2, 4, 4), dtype=np.int64), np.array([3, 5, 5, 1]))
    run = exit_decoder.decode(cfg, dec, np.zeros((1, 8, 4), dtype=bool))
    assert (run.steps[0], run.decisions[0]) == (2, 1)     # never leads: runs to T_dec


def test_decoded_run_stops_at_the_exit_and_counts_its_cycles():
    from spikeforge.sw.cycles import phase_cycles

    cfg = small()
    rng = np.random.default_rng(2)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(40, 6))
    dec = random_decoder(cfg, rng)
    plain = run_network(cfg, weights, pixels)
    run = run_network(cfg, weights, pixels, dec)
    n = run.decoder.steps
    assert len(set(n)) > 1
    # all T steps of the decoded sample's live input (it drops from T_dec - L on, not T - L)
    full = run_layers(cfg, weights, live_input(cfg, encode(cfg, pixels), decoding=True))
    assert (full[0].sum(axis=(1, 2)) < plain.rasters[0].sum(axis=(1, 2))).any()
    phases = phase_cycles(cfg, full)
    for b in range(len(pixels)):
        for full_r, r in zip(full, run.rasters, strict=True):
            assert (r[b, :n[b]] == full_r[b, :n[b]]).all() and not r[b, n[b]:].any()
        assert (run.rasters[-1][b, :n[b]] == plain.rasters[-1][b, :n[b]]).all()
        checks = n[b] - cfg.decoder.min_steps + 1
        assert run.cycles[b] == phases[b, :n[b]].sum() + checks * (4 + DECIDE_OVERHEAD)
    assert (run.predictions == run.decoder.decisions).all()
    assert (run.counts == run.rasters[-1].sum(axis=1)).all()


def test_config_checks_the_decoder_section(tmp_path):
    with pytest.raises(ConfigError, match=r"decoder\.steps: 9 is out of range, legal range "
                                          r"is \[1, 8\]"):
        small(steps=9)
    with pytest.raises(ConfigError, match=r"decoder\.min_steps: 7 is out of range"):
        small(min_steps=7)
    with pytest.raises(ConfigError, match=r"decoder\.margin: 0 is out of range"):
        small(margin=0)
    with pytest.raises(ConfigError, match=r"decoder\.exit: 'soon' is not one of"):
        dataclasses.replace(BASE, decoder=DecoderConfig(exit="soon"))
    with pytest.raises(ConfigError, match=r"decoder\.weight_bits: 16 is wider than the weight "
                                          r"port's word \(lanes x stored bits = 12\)"):
        dataclasses.replace(small(), lanes=1, weight_bits=2, decoder=DecoderConfig(weight_bits=16))
    path = tmp_path / "c.toml"
    path.write_text(Path(BASE.source).read_text() + "\n[decoder]\nstep = 3\n")
    with pytest.raises(ConfigError, match=r"decoder\.step: unknown key"):
        load_config(path)
    assert "decoder" in load_config("mnist-ecp5-exit").summary()


def test_decoder_files_and_their_errors(tmp_path):
    cfg = small()
    rng = np.random.default_rng(3)
    weights, dec = random_weights(cfg, rng), random_decoder(cfg, rng)
    save_weights(tmp_path / "w.npz", cfg, weights, dec)
    back = load_decoder(tmp_path / "w.npz", cfg)
    assert (back.w == dec.w).all() and (back.b == dec.b).all()
    save_weights(tmp_path / "plain.npz", cfg, weights)
    assert load_decoder(tmp_path / "plain.npz", cfg) is None
    with pytest.raises(WeightError, match=r"decoder_w: shape \(6, 4, 3\) does not match the "
                                          r"config's \(6, 4, 4\)"):
        check_decoder(cfg, dec.w[:, :, :3], dec.b)
    with pytest.raises(WeightError, match=r"decoder_b: values in \[-16, 16\] exceed the 5-bit "
                                          r"signed range \[-16, 15\]"):
        check_decoder(cfg, dec.w, np.array([-16, 0, 16, 1]))
    with pytest.raises(WeightError, match=r"config 'digits-tiny' has no \[decoder\] section"):
        check_decoder(BASE, dec.w, dec.b)


def test_decoder_addresses_cover_every_weight_once():
    cfg = small(steps=5)
    dec = random_decoder(cfg, np.random.default_rng(4))
    writes = decoder_words(cfg, dec)
    addrs = [a for a, _ in writes]
    assert len(set(addrs)) == len(addrs) == (5 * 4 + 1) * 4
    assert max(addrs) < decoder_depth(cfg)
    assert decoder_address(cfg, 4, 3, 2) == (((3 << 3) | 4) << 2) | 2


@pytest.mark.parametrize("exit", ["fixed", "margin"])
def test_gateware_matches_the_golden_model(exit):
    """Amaranth simulation: every spike, cycle, prediction, exit step and score equals the
    golden model's, the readout stream (random back-pressure) ends at the exit, and a
    training sample between decoded ones runs all T steps and learns as without a
    decoder."""
    from spikeforge.sim.amaranth_tb import simulate
    from spikeforge.sim.compare import compare_runs, compare_training
    from spikeforge.sw.desire import train_step
    from spikeforge.sw.weights import to_stored

    cfg = small(exit)
    rng = np.random.default_rng(5)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(14, 6))
    dec = random_decoder(cfg, rng)
    gold = run_network(cfg, weights, pixels, dec)
    run = simulate(cfg, to_stored(cfg, weights), pixels, decoder=dec, ready=0.5, seed=1)
    result = compare_runs(gold, run)
    assert result.ok, (result.first_divergence, result.details)
    assert (run.steps == gold.decoder.steps).all() and (run.scores == gold.decoder.scores).all()
    if exit == "margin":
        assert len(set(gold.decoder.steps)) > 1

    stored = to_stored(cfg, weights)
    labels = np.array([-1, 2, -1])
    mixed = simulate(cfg, stored, pixels[:3], labels=labels, decoder=dec)
    step = train_step(cfg, stored, pixels[1], 2)
    assert mixed.steps.tolist() == [gold.decoder.steps[0], cfg.time_steps,
                                    run_network(cfg, [w >> cfg.frac_bits for w in step.weights],
                                                pixels[2:3], dec).decoder.steps[0]]
    assert mixed.cycles[1] == step.cycles
    trained = compare_training([step], dataclasses.replace(
        mixed, rasters=[r[1:2] for r in mixed.rasters], predictions=mixed.predictions[1:2],
        cycles=mixed.cycles[1:2], edges=mixed.edges[1:2], stream=None,
        weights_after=mixed.weights_after[1:2], steps=None, scores=None))
    assert trained.ok, trained.first_divergence


def test_export_decoder_then_compare_on_verilator(tmp_path, capsys, sim):
    """``decode --export-decoder`` trains the decoder of a config's [decoder] and writes it
    with the weights; ``compare`` then runs golden model and Verilog decoded on the chip:
    0 mismatches of spikes, cycles, predictions, exit steps and scores."""
    from spikeforge import cli
    from spikeforge.sw.nir_io import config_to_toml
    from spikeforge.sw.train import initial_weights

    cfg = dataclasses.replace(BASE, name="digits-exit", decoder=DecoderConfig(
        steps=8, weight_bits=8, exit="margin", margin=40, min_steps=3))
    toml = tmp_path / "digits-exit.toml"
    toml.write_text(config_to_toml(cfg))
    weights = [w >> cfg.frac_bits for w in initial_weights(cfg, 0)]
    save_weights(tmp_path / "w.npz", cfg, weights)
    out = tmp_path / "dec.npz"
    assert cli.main(["decode", "-c", str(toml), "--weights", str(tmp_path / "w.npz"),
                     "--export-decoder", str(out), "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert "one score unit is" in text and "decoder on the chip: accuracy" in text
    assert load_decoder(out, load_config(toml)) is not None
    assert cli.main(["compare", "-c", str(toml), "--weights", str(out), "-n", "6", "--quiet",
                     "--sim", sim]) == 0
    text = capsys.readouterr().out
    assert "decoded on the chip by the file's decoder" in text
    assert "0 decoder exits/scores" in text and "6 samples, 0 spike mismatches" in text


def test_host_link_loads_the_decoder_and_runs_decoded_samples(sim):
    """Driver -> UART -> serial top: the decoder is written as layer L and read back; RUN
    with the decode flag answers the golden model's decision, cycles, spikes and steps."""
    from spikeforge.sim.host_link_rtl import run_link

    cfg = small()
    rng = np.random.default_rng(6)
    weights = random_weights(cfg, rng, scale=1.0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(6, 6))
    dec = random_decoder(cfg, rng)
    gold = run_network(cfg, weights, pixels, dec)
    got = run_link(cfg, weights, pixels, decoder=dec, sim=sim)
    assert got.decoder_ok and got.readback_ok
    assert got.steps.tolist() == gold.decoder.steps.tolist()
    assert len(set(got.steps)) > 1
    assert got.predictions.tolist() == gold.predictions.tolist()
    assert got.cycles.tolist() == gold.cycles.tolist()
    assert (got.rasters(len(pixels), cfg.time_steps, 4) == gold.rasters[-1]).all()
