"""Decoders of the readout raster: the fixed rules, learned decoders reading timing, and the
``spikeforge decode`` command (including its RTL cross-check)."""

import numpy as np
import pytest

from spikeforge import cli
from spikeforge.config import load_config
from spikeforge.sw.decoders import first_spike_decode, rate_decode, train_decoder
from spikeforge.sw.weights import random_weights, save_weights


def test_rate_and_first_spike_rules():
    r = np.zeros((3, 5, 4), dtype=bool)
    r[0, 1, 2] = r[0, 3, 2] = r[0, 0, 1] = True      # counts: n2 = 2, n1 = 1; first: n1
    r[1, 2, 0] = r[1, 2, 3] = True                   # tie everywhere: wrong for both
    assert rate_decode(r).tolist() == [2, -1, -1]
    assert first_spike_decode(r).tolist() == [1, -1, -1]
    r[1, 4, 3] = True                                # same first step, n3 has more spikes
    assert first_spike_decode(r)[1] == 3


@pytest.mark.parametrize("kind", ["linear", "mlp", "conv"])
def test_learned_decoders_read_timing_that_counts_miss(kind):
    """Two neurons each spike once; the class is which one spikes first. Counts tie on every
    sample, so the rate rule is always wrong; a decoder of the raster learns it."""
    rng = np.random.default_rng(0)
    n, steps = 1200, 6
    y = rng.integers(0, 2, size=n)
    r = np.zeros((n, steps, 2), dtype=bool)
    early, late = rng.integers(0, 3, size=n), rng.integers(3, 6, size=n)
    r[np.arange(n), np.where(y == 0, early, late), 0] = True
    r[np.arange(n), np.where(y == 0, late, early), 1] = True
    assert (rate_decode(r) == -1).all()
    dec = train_decoder(kind, r[:1000], y[:1000], classes=2, epochs=20)
    assert (dec.predict(r[1000:]) == y[1000:]).mean() > 0.95


def test_decode_command_and_rtl_cross_check(tmp_path, capsys):
    cfg = load_config("digits-tiny")
    w = tmp_path / "w.npz"
    save_weights(w, cfg, random_weights(cfg, np.random.default_rng(3), scale=0.6))
    rc = cli.main(["decode", "-c", "digits-tiny", "--weights", str(w), "--decoder", "linear",
                   "--steps", "7", "--epochs", "3", "--rtl-samples", "4"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert "readout stream rasters and decisions identical to the golden model's" in out[-2]
    assert out[-1].startswith("decode: linear T=7 accuracy ")
    assert cli.main(["decode", "-c", "digits-tiny", "--decoder", "rate"]) == 2
    assert "--weights W.npz is required" in capsys.readouterr().err


def test_kl_bernoulli():
    import torch

    from spikeforge.sw.ib import kl_bernoulli

    p = torch.tensor([0.2, 0.5, 0.9])
    want = (p * torch.log(p / 0.2) + (1 - p) * torch.log((1 - p) / 0.8)).mean()
    assert torch.isclose(kl_bernoulli(p, 0.2), want)
    assert kl_bernoulli(torch.tensor([0.2]), 0.2).item() == pytest.approx(0.0, abs=1e-7)


def test_end_to_end_training_gives_integer_weights_and_a_decoder_of_golden_rasters():
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.ib import train_end_to_end
    from spikeforge.sw.weights import check_weights

    cfg = load_config("digits-tiny")
    data = load_dataset("digits", cfg.pixel_bits)
    weights, dec = train_end_to_end(cfg, data.train_pixels[:600], data.train_labels[:600],
                                    decoder="linear", steps=8, epochs=4, progress=False)
    check_weights(cfg, weights)                     # integers in the config's range
    raster = run_network(cfg, weights, data.test_pixels).rasters[-1]
    acc = (dec.predict(raster[:, :8]) == data.test_labels).mean()
    assert acc > 0.5                                # the decoder reads the golden raster


def test_reconstruction_decoder_and_held_out_classifier(tmp_path):
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.decode_sweep import reconstruction_quality

    cfg = load_config("digits-tiny")
    data = load_dataset("digits", cfg.pixel_bits)
    rng = np.random.default_rng(0)
    # a raster that carries the class: neuron = label spikes at every step
    def raster(labels):
        r = rng.random((len(labels), 6, 10)) < 0.05
        r[np.arange(len(labels)), :, labels] = True
        return r
    q = reconstruction_quality("linear", raster(data.train_labels), raster(data.test_labels),
                               data, steps=6, epochs=10, seed=0, out_dir=tmp_path, title="t")
    assert q["originals"] > 0.9
    assert q["reconstructed"] > 0.8                  # class prototypes come back
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
