"""Importing a foreign float network (issue 21): the fidelity check, the format search, the
source's timing, friendlier loading. The float networks are built to reproduce each failure a
user met: outlier neurons, tiny later-layer weights, a zero-delay source."""

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.config import ConfigError, load_config
from spikeforge.sw import golden
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.desire_float import FloatDesireNet
from spikeforge.sw.import_fidelity import SourceTiming, float_forward, measure
from spikeforge.sw.nir_io import load_float_layers, quantise_float
from spikeforge.sw.weights import load_weights


@pytest.fixture(scope="module")
def trained():
    """A float desire network (the published reference: decay 0.75, threshold 1, subtract
    reset, first layer reading the input of the same step) trained on digits: ~78%."""
    data = load_dataset("digits")
    net = FloatDesireNet((64, 48, 10), time_steps=20, leak_shift=2, lr=1e-4, lr_decay=0.0,
                         seed=0, timing="published")
    pixels = data.train_pixels / 255.0
    for epoch in range(5):
        for i in np.random.default_rng(epoch).permutation(len(pixels)):
            net.train_step(pixels[i], int(data.train_labels[i]), epoch)
    return net, data


def _save(tmp_path, name, weights):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **{f"w{i}": w for i, w in enumerate(weights)})
    return path


def _import(tmp_path, src, *extra, name="x"):
    toml, npz = tmp_path / f"{name}.toml", tmp_path / f"{name}.npz"
    rc = main(["import", "--float", str(src), "--config-out", str(toml), "--weights-out",
               str(npz), *extra])
    return rc, toml, npz


def _fidelity_line(out: str) -> str:
    return next(line for line in out.splitlines() if "predictions agree on" in line)


def _agree(line: str) -> float:
    return float(line.split("predictions agree on ")[1].split("%")[0])


def test_float_forward_is_the_published_reference(trained):
    """The check's float model of the source is the desire reference's own run (same
    spikes) with the published timing."""
    net, data = trained
    raster = golden.encode(load_config("digits-tiny"), data.test_pixels[:40])
    ours = float_forward(net.weights, [net.decay] * 2, raster, SourceTiming(0, 1))
    ref = net.run_raster(raster)
    for a, b in zip(ours, ref.rasters, strict=True):
        assert (a != b).mean() < 0.002          # float32 vs float64 at the threshold


def test_default_import_of_a_trained_network_is_faithful(trained, tmp_path, capsys):
    """Defaults (auto formats, the published timing compensated): predictions agree on at
    least 95%, the accuracy within 1 point of the float network's, and the formats printed
    with the reason."""
    net, data = trained
    rc, toml, npz = _import(tmp_path, _save(tmp_path, "net", net.weights))
    out = capsys.readouterr().out
    assert rc == 0
    line = _fidelity_line(out)
    assert _agree(line) >= 95
    acc, fl = (float(x.split("%")[0]) for x in line.split("accuracy ")[1].split("(float "))
    assert abs(acc - fl) <= 1.0
    assert "auto formats: chose weight_bits" in out and "20 + 1 = 21 time steps" in out
    cfg = load_config(toml)
    assert cfg.time_steps == 21 and cfg.leak_shift == 2
    w = load_weights(npz, cfg)
    run = golden.run_network(cfg, w, data.test_pixels[:300])
    assert f"accuracy {100 * (run.predictions == data.test_labels[:300]).mean():.2f}%" in line


def test_outlier_neurons_refused_at_8_bits_and_fixed_by_auto(trained, tmp_path, capsys):
    """A few first-layer neurons with weights of 160 threshold units: 8 bits scaled by the
    largest weight leave threshold 1 and round nearly every other weight to 0. That import
    is refused, naming the layer, the cause and the fixes, and writes nothing; auto
    (the default) finds a scale and width that are faithful."""
    net, _ = trained
    w0 = net.weights[0].copy()
    w0[:5, :3] = 160.0
    src = _save(tmp_path, "outlier", [w0, net.weights[1]])
    rc, toml, npz = _import(tmp_path, src, "--weight-bits", "8", "--quantise", "max")
    err = capsys.readouterr().err
    assert rc == 2 and not toml.exists() and not npz.exists()
    assert "threshold 1" in err and "rounded to 0" in err and "--weight-bits" in err
    assert "nothing written" in err
    rc, toml, _ = _import(tmp_path, src)
    out = capsys.readouterr().out
    assert rc == 0 and _agree(_fidelity_line(out)) >= 95
    assert load_config(toml).threshold > 1
    # --force writes the unfaithful one, with a warning
    rc, toml, _ = _import(tmp_path, src, "--weight-bits", "8", "--force", name="forced")
    assert rc == 0 and toml.exists() and "warning" in capsys.readouterr().err


def test_tiny_later_weights_silence_the_output_and_are_refused(trained, tmp_path, capsys):
    """The output layer's weights 100x smaller (the source's threshold 100x lower there is
    the same network); scaled by layer 0's largest weight at 8 bits they all round to 0:
    the output layer never fires, and the error says so."""
    net, _ = trained
    src = _save(tmp_path, "tiny", [net.weights[0], net.weights[1] / 100])
    rc, toml, _ = _import(tmp_path, src, "--weight-bits", "8")
    err = capsys.readouterr().err
    assert rc == 2 and not toml.exists()
    assert "output layer never fires" in err and "w1" in err


def test_zero_delay_source_is_compensated(trained):
    """The same weights checked as a delay-1 source (as ours) and as what they are (delay
    0): compensating the step makes far more output count vectors identical."""
    net, data = trained
    pixels, labels = data.test_pixels[:200], data.test_labels[:200]
    scores = {}
    for assumed in (1, 0):
        timing = SourceTiming(assumed, 1)
        q = quantise_float(net.weights, weight_bits=16, membrane_bits=24,
                           time_steps=20 + timing.extra_steps(2))
        # the float source is always the zero-delay one; ours assumes `assumed`
        src = float_forward(net.weights, q.decays, golden.encode(q.cfg, pixels)[:, :20],
                            SourceTiming(0, 1))
        fid = measure(q, timing, pixels, labels, "t", float_run=src if assumed == 0 else None)
        if assumed == 1:   # measured against the true (zero-delay) source's counts
            ours = golden.run_network(q.cfg, q.weights, pixels).counts
            fid.counts_identical = float((ours == src[-1].sum(axis=1)).all(axis=1).mean())
        scores[assumed] = fid.counts_identical
    assert scores[0] >= 0.5 and scores[0] > scores[1] + 0.3


def test_timing_and_leak_are_reported(trained, tmp_path, capsys):
    """--input-delay 1 --layer-delay 1 is our own timing: no extra steps; --decay 0.8 maps
    to leak_shift 2 and the error is printed."""
    net, _ = trained
    rc, toml, _ = _import(tmp_path, _save(tmp_path, "n", net.weights), "--input-delay", "1",
                          "--decay", "0.8", "--force")
    out = capsys.readouterr().out
    assert rc == 0 and load_config(toml).time_steps == 20
    assert "the same as ours, 20 time steps" in out
    assert "decay 0.8 per step -> leak_shift 2" in out and "0.05 off" in out


def test_torch_state_dict_with_any_key_names(tmp_path, capsys):
    """A state dict whose layers are ``layers.N.weights`` (not nn.Linear's ``*.weight``):
    every 2-D float tensor is found, listed and oriented by the chain; --keys chooses."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, w1 = rng.normal(0, 0.3, (64, 30)), rng.normal(0, 0.3, (30, 10))
    state = {"layers.0.weights": torch.tensor(w0.T.copy()), "step": torch.tensor(3),
             "layers.1.weights": torch.tensor(w1.T.copy()),
             "extra.proj": torch.tensor(rng.normal(size=(5, 5)))}
    torch.save(state, tmp_path / "s.pt")
    with pytest.raises(ConfigError, match=r"do not chain.*--keys"):
        load_float_layers(tmp_path / "s.pt")
    mats, lines = load_float_layers(tmp_path / "s.pt",
                                    keys=["layers.0.weights", "layers.1.weights"])
    assert np.allclose(mats[0], w0) and np.allclose(mats[1], w1)
    assert "layers.0.weights (30, 64)" in lines[0] and "step ()" in lines[0]
    assert "skipped step, extra.proj" in lines[-1]
    with pytest.raises(ConfigError, match=r"--keys: \['nope'\] not in .* it holds: "):
        load_float_layers(tmp_path / "s.pt", keys=["nope"])
    del state["extra.proj"]
    torch.save(state, tmp_path / "t.pt")
    mats, lines = load_float_layers(tmp_path / "t.pt", n_inputs=64)
    assert [m.shape for m in mats] == [(64, 30), (30, 10)]
    assert "took 2 layers" in lines[1]


def test_nothing_written_before_the_inputs_are_validated(tmp_path, capsys):
    """784 inputs without --dataset, or with one of the wrong size: a clear error, and no
    config written."""
    rng = np.random.default_rng(1)
    src = _save(tmp_path, "big", [rng.normal(0, 0.1, (784, 20)), rng.normal(0, 0.3, (20, 10))])
    rc, toml, _ = _import(tmp_path, src)
    assert rc == 2 and not toml.exists()
    assert "--dataset: the network reads 784 inputs" in capsys.readouterr().err
    rc, toml, _ = _import(tmp_path, src, "--dataset", "digits")
    assert rc == 2 and not toml.exists()
    assert "--dataset digits: 64 inputs per sample, the network reads 784" in (
        capsys.readouterr().err)
