"""On-chip training loop (sw/train.py) and the ``spikeforge train`` command."""

import dataclasses
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.config import DecoderConfig, DesireConfig, load_config
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.desire import inference_weights, train_step
from spikeforge.sw.golden import run_network
from spikeforge.sw.train import (
    CHECKPOINT_NAME,
    CheckpointError,
    TrainError,
    TrainMonitor,
    config_hash,
    epoch_order,
    evaluate,
    initial_weights,
    load_checkpoint,
    stored_from_inference,
    train,
)
from spikeforge.sw.weights import load_weights, random_weights

# Learning settings pinned here so retuning the shipped profile cannot break these tests.
LEARNING = DesireConfig(weight_frac_bits=8, trace_frac_bits=8, lr_shift=7, lr_decay=0.0)


@pytest.fixture(scope="module")
def cfg():
    return replace(load_config("digits-tiny"), learning=LEARNING)


@pytest.fixture(scope="module")
def digits(cfg):
    return load_dataset("digits", cfg.pixel_bits)


def _same_history(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert (ra.epoch, ra.lr_shift, ra.train_accuracy, ra.test_accuracy,
                ra.median_cycles) == (rb.epoch, rb.lr_shift, rb.train_accuracy,
                                      rb.test_accuracy, rb.median_cycles)


# ---- seeds and initial weights ----

def test_initial_weights_kaiming_in_stored_units(cfg):
    w = initial_weights(cfg, 0)
    assert [a.shape for a in w] == [cfg.weight_shape(i) for i in range(cfg.n_layers)]
    for a in w:
        assert a.dtype == np.int64
        assert cfg.store_min <= a.min() and a.max() <= cfg.store_max
    scale = cfg.threshold * 2 ** cfg.frac_bits
    std = np.sqrt(2 / cfg.layers[0]) * scale
    assert abs(w[0].std() / std - 1) < 0.1
    # The half-LSB offset makes W_store >> F the rounded float weight: no mean bias.
    w_inf = inference_weights(cfg, w)[0]
    assert abs(w_inf.mean()) < 0.3
    for a, b in zip(w, initial_weights(cfg, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w[0], initial_weights(cfg, 1)[0])


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(3, 0, 100)
    np.testing.assert_array_equal(np.sort(a), np.arange(100))
    np.testing.assert_array_equal(a, epoch_order(3, 0, 100))
    assert not np.array_equal(a, epoch_order(3, 1, 100))
    assert not np.array_equal(a, epoch_order(4, 0, 100))


def test_config_hash_tracks_learning_settings(cfg):
    assert config_hash(cfg) == config_hash(replace(cfg))
    other = replace(cfg, learning=replace(cfg.learning, lr_shift=cfg.learning.lr_shift + 1))
    assert config_hash(cfg) != config_hash(other)
    # the LFSR seed counts only where there are LFSRs (older checkpoints keep their hash)
    assert config_hash(cfg) == config_hash(replace(cfg, learning=replace(cfg.learning,
                                                                         lfsr_seed=9)))
    sto = replace(cfg, learning=replace(cfg.learning, rounding="stochastic"))
    assert config_hash(sto) != config_hash(cfg)
    assert config_hash(sto) != config_hash(replace(sto, learning=replace(sto.learning,
                                                                         lfsr_seed=9)))
    # likewise the near fraction counts only with near eligibility; and configs that leave
    # the eligibility at "spike" keep the hash they had before it existed
    assert config_hash(cfg) == config_hash(replace(cfg, learning=replace(cfg.learning,
                                                                         near_fraction=0.25)))
    near = replace(cfg, learning=replace(cfg.learning, eligibility="near"))
    assert config_hash(near) != config_hash(cfg)
    assert config_hash(near) != config_hash(replace(near, learning=replace(near.learning,
                                                                           near_fraction=0.25)))
    from spikeforge.config import load_config
    assert config_hash(load_config("digits-tiny")) == "44c74aff38cd2137"
    # dropout: its settings count only when it is on (profiles without it keep their hash)
    assert config_hash(cfg) == config_hash(replace(cfg, learning=replace(cfg.learning,
                                                                         dropout_seed=9)))
    # the tie break counts only when there is one
    assert config_hash(replace(cfg, tie_break="first_spike")) != config_hash(cfg)
    drop = replace(cfg, learning=replace(cfg.learning, dropout_hidden=0.25))
    assert config_hash(drop) != config_hash(cfg)
    assert config_hash(drop) != config_hash(replace(drop, learning=replace(drop.learning,
                                                                           dropout_seed=9)))
    # a decoder on the chip never counts: what decides after inference does not train
    assert config_hash(replace(cfg, decoder=DecoderConfig(steps=4))) == config_hash(cfg)
    # nor does where the weights live
    assert config_hash(replace(cfg, spram_layers=(1,))) == config_hash(cfg)
    # the encoder's threshold counts when it is set
    assert config_hash(replace(cfg, input_threshold=300)) != config_hash(cfg)
    # the hidden error gate counts when it is on
    gated = replace(cfg, learning=replace(cfg.learning, hidden_gate="error"))
    assert config_hash(gated) != config_hash(cfg)
    # configs without dropout, near eligibility, a tie break, a decoder, SPRAM, an encoder
    # threshold, an early exit and the hidden gate hash as before those keys existed
    for profile in (cfg, sto, load_config("digits-tiny"), load_config("fmnist-ecp5")):
        learning = dataclasses.asdict(profile.learning)
        del learning["dropout_hidden"], learning["dropout_seed"], learning["hidden_gate"]
        if learning["eligibility"] == "spike":
            del learning["eligibility"], learning["near_fraction"]
        if learning["rounding"] != "stochastic":
            del learning["lfsr_seed"]
        data = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)
                if f.compare and f.name not in ("tie_break", "decoder", "spram_layers",
                                                 "input_threshold", "early_exit")}
        text = json.dumps({**data, "learning": learning}, sort_keys=True, default=str)
        assert config_hash(profile) == hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- training ----

def test_training_improves_accuracy(cfg, digits):
    test_px, test_lb = digits.test_pixels[:200], digits.test_labels[:200]
    before = evaluate(cfg, initial_weights(cfg, 0), test_px, test_lb)
    result = train(cfg, digits, epochs=3, seed=0, train_samples=500, test_samples=200)
    assert result.complete and len(result.history) == 3
    after = result.test_accuracy
    w_inf = inference_weights(cfg, result.stored)
    assert after == np.mean(run_network(cfg, w_inf, test_px).predictions == test_lb)
    assert after >= before + 0.25 and after >= 0.3, (before, after)
    for r in result.history:
        assert 0 <= r.train_accuracy <= 1 and r.median_cycles > 0 and r.seconds > 0


def test_training_is_train_step_in_a_loop(cfg, digits):
    """One epoch = sw.desire.train_step over the seeded order with the epoch's lr shift."""
    c = replace(cfg, learning=replace(cfg.learning, lr_decay=2.0))    # epoch 1: shift + 2
    result = train(c, digits, epochs=2, seed=4, train_samples=50, test_samples=10)
    stored, cycles = initial_weights(c, 4), []
    for epoch in range(2):
        for i in epoch_order(4, epoch, 50):
            step = train_step(c, stored, digits.train_pixels[i], int(digits.train_labels[i]),
                              c.learning.lr_shift_at(epoch))
            stored = step.weights
            cycles.append(step.cycles)
    for a, b in zip(result.stored, stored, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.lr_shift for r in result.history] == [7, 9]
    assert result.history[-1].median_cycles == np.median(cycles[50:])


class _Stop(Exception):
    pass


class _StopAt(TrainMonitor):
    def __init__(self, epoch, position):
        self.at = (epoch, position)

    def sample(self, epoch, position, size, correct):
        if (epoch, position) == self.at:
            raise _Stop


def test_resume_is_bit_identical(cfg, digits, tmp_path):
    kw = dict(epochs=3, seed=2, train_samples=120, test_samples=60, checkpoint_every=25)
    straight = train(cfg, digits, out_dir=tmp_path / "a", **kw)

    out = tmp_path / "b"
    part = train(cfg, digits, out_dir=out, max_samples=95, **kw)        # inside epoch 1
    assert not part.complete and part.samples_done == 95
    assert not (out / "weights.npz").exists()
    with pytest.raises(_Stop):                                         # a crash in epoch 2
        train(cfg, digits, out_dir=out, resume=True, monitor=_StopAt(1, 60), **kw)
    _, state = load_checkpoint(out / CHECKPOINT_NAME, cfg)
    assert (state.epoch, state.position) == (1, 50)                   # last periodic one
    part = train(cfg, digits, out_dir=out, resume=True, max_samples=120, **kw)  # epoch end
    _, state = load_checkpoint(out / CHECKPOINT_NAME, cfg)
    assert (state.epoch, state.position) == (2, 50)
    resumed = train(cfg, digits, out_dir=out, resume=True, **kw)
    assert resumed.complete and resumed.samples_done == 360

    for a, b in zip(straight.stored, resumed.stored, strict=True):
        np.testing.assert_array_equal(a, b)
    _same_history(straight.history, resumed.history)
    for name in ("a", "b"):
        with np.load(tmp_path / name / "weights.npz") as f:
            for i in range(cfg.n_layers):
                np.testing.assert_array_equal(f[f"stored_w{i}"], straight.stored[i])
    # A longer run can continue a finished one.
    longer = train(cfg, digits, out_dir=out, resume=True, **{**kw, "epochs": 4})
    assert len(longer.history) == 4
    with pytest.raises(TrainError, match=r"already holds 4 trained epochs"):
        train(cfg, digits, out_dir=out, resume=True, **kw)


def test_stochastic_resume_carries_the_lfsrs(cfg, digits, tmp_path):
    """Stochastic rounding: the lane LFSRs go from sample to sample and into the checkpoint;
    a run stopped inside an epoch and resumed ends bit-identical (weights and LFSRs) to an
    uninterrupted one, and would not if the resume restarted the LFSRs from their seeds."""
    sto = replace(cfg, learning=replace(cfg.learning, rounding="stochastic",
                                        weight_frac_bits=2, lr_shift=5, lfsr_seed=21))
    kw = dict(epochs=2, seed=5, train_samples=70, test_samples=30, checkpoint_every=20)
    straight = train(sto, digits, out_dir=tmp_path / "a", **kw)
    assert len(straight.lfsr) == sto.lanes and straight.lfsr != sto.lfsr_seeds
    stored, state = initial_weights(sto, 5), None        # = train_step in a loop
    for epoch in range(2):
        for i in epoch_order(5, epoch, 70):
            step = train_step(sto, stored, digits.train_pixels[i], int(digits.train_labels[i]),
                              sto.learning.lr_shift_at(epoch), state)
            stored, state = step.weights, step.lfsr
    assert state == straight.lfsr
    for a, b in zip(stored, straight.stored, strict=True):
        np.testing.assert_array_equal(a, b)

    out = tmp_path / "b"
    train(sto, digits, out_dir=out, max_samples=45, **kw)                # inside epoch 1
    _, part = load_checkpoint(out / CHECKPOINT_NAME, sto)
    assert part.position == 45 and len(part.lfsr) == sto.lanes and part.lfsr != sto.lfsr_seeds
    saved = (out / CHECKPOINT_NAME).read_bytes()
    resumed = train(sto, digits, out_dir=out, resume=True, **kw)
    assert resumed.lfsr == straight.lfsr
    for a, b in zip(straight.stored, resumed.stored, strict=True):
        np.testing.assert_array_equal(a, b)
    _same_history(straight.history, resumed.history)

    (out / CHECKPOINT_NAME).write_bytes(saved)        # the same checkpoint, LFSRs at reset
    with np.load(out / CHECKPOINT_NAME) as f:
        fields = dict(f)
    np.savez(out / CHECKPOINT_NAME, **{**fields, "lfsr": np.array(sto.lfsr_seeds)})
    reset = train(sto, digits, out_dir=out, resume=True, **kw)
    assert any((a != b).any() for a, b in zip(reset.stored, straight.stored, strict=True))

    for bad, message in ((np.array([0] * sto.lanes), r"lfsr: state 0 is out of range"),
                         (np.array([1, 2]), r"lfsr: expected 4 lane states \(P\), got 2")):
        np.savez(out / CHECKPOINT_NAME, **{**fields, "lfsr": bad})
        with pytest.raises(CheckpointError, match=r"corrupt checkpoint: " + message):
            load_checkpoint(out / CHECKPOINT_NAME, sto)


def test_dropout_resume_carries_the_mask_lfsrs(cfg, digits, tmp_path):
    """Dropout (with stochastic rounding: both LFSR sets): the mask LFSRs go from sample to
    sample and into the checkpoint; a run killed inside an epoch and resumed ends
    bit-identical (weights, lane and mask LFSRs, history) to an uninterrupted one, and would
    not if the resume restarted the mask LFSRs from their seeds."""
    drop = replace(cfg, learning=replace(cfg.learning, rounding="stochastic",
                                         weight_frac_bits=2, lr_shift=5, lfsr_seed=21,
                                         dropout_hidden=0.25, dropout_seed=4))
    kw = dict(epochs=2, seed=5, train_samples=70, test_samples=30, checkpoint_every=20)
    straight = train(drop, digits, out_dir=tmp_path / "a", **kw)
    assert straight.mask_lfsr != drop.dropout_seeds and len(straight.mask_lfsr) == 1
    stored, state, masks = initial_weights(drop, 5), None, None      # = train_step in a loop
    for epoch in range(2):
        for i in epoch_order(5, epoch, 70):
            step = train_step(drop, stored, digits.train_pixels[i], int(digits.train_labels[i]),
                              drop.learning.lr_shift_at(epoch), state, masks)
            stored, state, masks = step.weights, step.lfsr, step.mask_lfsr
    assert (state, masks) == (straight.lfsr, straight.mask_lfsr)
    for a, b in zip(stored, straight.stored, strict=True):
        np.testing.assert_array_equal(a, b)

    out = tmp_path / "b"
    train(drop, digits, out_dir=out, max_samples=45, **kw)               # killed in epoch 1
    _, part = load_checkpoint(out / CHECKPOINT_NAME, drop)
    assert part.position == 45 and part.mask_lfsr not in ((), drop.dropout_seeds)
    saved = (out / CHECKPOINT_NAME).read_bytes()
    resumed = train(drop, digits, out_dir=out, resume=True, **kw)
    assert (resumed.lfsr, resumed.mask_lfsr) == (straight.lfsr, straight.mask_lfsr)
    for a, b in zip(straight.stored, resumed.stored, strict=True):
        np.testing.assert_array_equal(a, b)
    _same_history(straight.history, resumed.history)

    (out / CHECKPOINT_NAME).write_bytes(saved)     # the same checkpoint, masks at their reset
    with np.load(out / CHECKPOINT_NAME) as f:
        fields = dict(f)
    np.savez(out / CHECKPOINT_NAME, **{**fields, "mask_lfsr": np.array(drop.dropout_seeds)})
    reset = train(drop, digits, out_dir=out, resume=True, **kw)
    assert any((a != b).any() for a, b in zip(reset.stored, straight.stored, strict=True))

    for bad, message in ((np.array([[0] * drop.lanes]), r"mask_lfsr: state 0 is out of range"),
                         (np.array([[1, 2]]), r"mask_lfsr: expected 4 lane states \(P\)"),
                         (np.zeros(0, dtype=np.int64), r"mask_lfsr: expected 1 layers")):
        np.savez(out / CHECKPOINT_NAME, **{**fields, "mask_lfsr": bad})
        with pytest.raises(CheckpointError, match=r"corrupt checkpoint: " + message):
            load_checkpoint(out / CHECKPOINT_NAME, drop)


def test_version_1_checkpoints_still_load(cfg, digits, tmp_path):
    """Checkpoints from before the LFSR states (version 1, no ``lfsr``) resume the rounding
    modes that have none; version 2 (no ``mask_lfsr``) the configs without dropout."""
    kw = dict(epochs=1, seed=0, train_samples=30, test_samples=20)
    train(cfg, digits, out_dir=tmp_path, max_samples=10, **kw)
    ckpt = tmp_path / CHECKPOINT_NAME
    with np.load(ckpt) as f:
        fields = {k: v for k, v in f.items() if k != "lfsr"}
    np.savez(ckpt, **{**fields, "version": np.array(1)})
    _, state = load_checkpoint(ckpt, cfg)
    assert state.lfsr == () and state.position == 10
    np.savez(ckpt, **{**fields, "version": np.array(2)})         # 2 must have it
    with pytest.raises(CheckpointError, match=r"missing fields \['lfsr'\]"):
        load_checkpoint(ckpt, cfg)
    with np.load(ckpt) as f:
        fields = {k: v for k, v in f.items() if k != "mask_lfsr"}
    np.savez(ckpt, **{**fields, "lfsr": np.zeros(0, dtype=np.int64), "version": np.array(2)})
    _, state = load_checkpoint(ckpt, cfg)
    assert state.mask_lfsr == () and state.position == 10
    np.savez(ckpt, **{**fields, "lfsr": np.zeros(0, dtype=np.int64), "version": np.array(3)})
    with pytest.raises(CheckpointError, match=r"missing fields \['mask_lfsr'\]"):
        load_checkpoint(ckpt, cfg)


def test_outputs(cfg, digits, tmp_path):
    result = train(cfg, digits, epochs=2, seed=0, train_samples=60, test_samples=30,
                   out_dir=tmp_path)
    weights = load_weights(result.files["weights"], cfg)              # sw.weights format
    with np.load(result.files["weights"]) as f:
        assert int(f["frac_bits"]) == cfg.frac_bits
        for i, w in enumerate(weights):
            np.testing.assert_array_equal(f[f"stored_w{i}"] >> cfg.frac_bits, w)
    assert result.files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads(result.files["history"].read_text())
    assert history["config_hash"] == config_hash(cfg)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def test_start_from_given_weights(cfg, digits, tmp_path):
    """``init``: the run starts from given inference weights (each mid-LSB in the stored
    format), the seed still orders the samples, and a resume must start from the same ones."""
    start = random_weights(cfg, np.random.default_rng(11), scale=0.5)
    stored = stored_from_inference(cfg, start)
    for w, s in zip(start, stored, strict=True):
        np.testing.assert_array_equal(s >> cfg.frac_bits, w)
        assert ((s & ((1 << cfg.frac_bits) - 1)) == 1 << (cfg.frac_bits - 1)).all()
    kw = dict(epochs=2, seed=3, train_samples=40, test_samples=30, init=start)
    zero = train(cfg, digits, **{**kw, "epochs": 1, "train_samples": 1})
    assert any((a >> cfg.frac_bits != w).sum() < w.size for a, w in
               zip(zero.stored, start, strict=True))       # one sample moves few weights
    straight = train(cfg, digits, out_dir=tmp_path / "a", **kw)
    out = tmp_path / "b"
    train(cfg, digits, out_dir=out, max_samples=50, **kw)
    resumed = train(cfg, digits, out_dir=out, resume=True, **kw)
    for a, b in zip(straight.stored, resumed.stored, strict=True):
        np.testing.assert_array_equal(a, b)
    kaiming = train(cfg, digits, **{**kw, "init": None})
    assert any(not np.array_equal(a, b)
               for a, b in zip(straight.stored, kaiming.stored, strict=True))
    train(cfg, digits, out_dir=out, max_samples=10, **{**kw, "epochs": 3})
    with pytest.raises(CheckpointError, match=r"written with init 'weights-[0-9a-f]{12}', this "
                                              r"run asks for 'kaiming'"):
        train(cfg, digits, out_dir=out, resume=True, **{**kw, "epochs": 3, "init": None})


# ---- checkpoint errors ----

def test_checkpoint_errors(cfg, digits, tmp_path):
    kw = dict(epochs=1, seed=0, train_samples=30, test_samples=20)
    train(cfg, digits, out_dir=tmp_path, **kw)
    ckpt = tmp_path / CHECKPOINT_NAME

    other = replace(cfg, learning=replace(cfg.learning, lr_shift=5))
    with pytest.raises(CheckpointError, match=r"written for config 'digits-tiny' \(hash "
                                              r"[0-9a-f]{16}\), not for config 'digits-tiny'"):
        train(other, digits, out_dir=tmp_path, resume=True, **kw)
    with pytest.raises(CheckpointError, match=r"written with seed 0, this run asks for 7"):
        train(cfg, digits, out_dir=tmp_path, resume=True, **{**kw, "seed": 7})
    with pytest.raises(CheckpointError, match=r"written with train_samples 30, this run asks "
                                              r"for 31"):
        train(cfg, digits, out_dir=tmp_path, resume=True, **{**kw, "train_samples": 31})
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume from"):
        train(cfg, digits, out_dir=tmp_path / "nothing", resume=True, **kw)

    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"corrupt or unreadable checkpoint"):
        train(cfg, digits, out_dir=tmp_path, resume=True, **kw)
    ckpt.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"corrupt or unreadable checkpoint"):
        load_checkpoint(ckpt, cfg)
    (tmp_path / "weights.npz").replace(ckpt)
    with pytest.raises(CheckpointError, match=r"not a spikeforge training checkpoint"):
        load_checkpoint(ckpt, cfg)


def test_bad_arguments(cfg, digits):
    with pytest.raises(TrainError, match=r"train_samples: 5000 is out of range, legal range "
                                         r"is \[1, 1437\]"):
        train(cfg, digits, epochs=1, train_samples=5000)
    with pytest.raises(TrainError, match=r"epochs: 0 is out of range"):
        train(cfg, digits, epochs=0)
    with pytest.raises(TrainError, match=r"has 64 inputs per sample but config 'mnist-ecp5'"):
        train(replace(load_config("mnist-ecp5"), learning=LEARNING), digits, epochs=1)
    with pytest.raises(TrainError, match=r"has no \[learning\] section"):
        train(replace(cfg, learning=None), digits, epochs=1)


# ---- command line ----

def test_cli_train_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "-c", "digits-tiny", "--epochs", "1", "--train-samples", "40",
            "--test-samples", "20", "--out", str(out), "--quiet"]
    assert main(args + ["--max-samples", "25"]) == 0
    assert "continue with --resume" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"train: digits-tiny digits epochs 1 test accuracy \d+\.\d\d%",
                        lines[-1])
    assert (out / "weights.npz").is_file() and (out / "accuracy.png").is_file()


def test_cli_train_errors(tmp_path, capsys, monkeypatch):
    base = ["train", "-c", "digits-tiny", "--epochs", "1", "--quiet",
            "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit):
        main(base + ["--dataset", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "-c", "digits-tiny", "--epochs", "0"])
    assert "--epochs: 0 is out of range, must be >= 1" in capsys.readouterr().err

    assert main(base + ["--resume"]) == 2
    assert "--resume: no checkpoint" in capsys.readouterr().err

    monkeypatch.setenv("SPIKEFORGE_FASHION_DIR", str(tmp_path))
    assert main(base + ["--dataset", "fashion-mnist"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err

    assert main(base + ["--train-samples", "99999"]) == 2
    assert "train_samples: 99999 is out of range" in capsys.readouterr().err

    toml = tmp_path / "nolearning.toml"
    toml.write_text(Path(load_config("digits-tiny").source).read_text().split("[learning]")[0])
    assert main(["train", "-c", str(toml), "--epochs", "1", "--quiet"]) == 2
    assert "has no [learning] section" in capsys.readouterr().err
