"""Quantisation-aware training: the exported integer weights work under the golden model."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from spikeforge.config import load_config
from spikeforge.sw.encode import rate_encode
from spikeforge.sw.golden import run_network
from spikeforge.sw.qat import _forward, evaluate_float, evaluate_integer, train_float, train_qat
from spikeforge.sw.recipes import RECIPE_SIZES, RECIPES, Recipe
from spikeforge.sw.weights import check_weights, random_weights

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cfg():
    return load_config("digits-tiny")


@pytest.fixture(scope="module")
def digits(cfg):
    data = load_digits()
    pixels = np.round(data.data * cfg.pixel_max / 16).astype(np.int64)
    return train_test_split(pixels, data.target, test_size=0.2, random_state=0,
                            stratify=data.target)


def test_forward_matches_golden_model(cfg, digits):
    """The torch forward pass reproduces the golden model's output spike counts exactly."""
    pixels = digits[1][:100]
    weights = random_weights(cfg, np.random.default_rng(1), scale=0.25)
    raster = torch.from_numpy(rate_encode(pixels, cfg.time_steps, cfg.encoder_threshold))
    latents = [torch.from_numpy(w / cfg.w_max).to(torch.float32) for w in weights]
    with torch.no_grad():
        counts = _forward(cfg, latents, raster.to(torch.float32)).numpy()
    golden = run_network(cfg, weights, pixels).counts
    assert golden.sum() > 0
    np.testing.assert_array_equal(counts.astype(np.int64), golden)


def test_trained_weights_classify_held_out_digits(cfg, digits):
    train_x, test_x, train_y, test_y = digits
    weights = train_qat(cfg, train_x, train_y, epochs=10, seed=0, progress=False)
    check_weights(cfg, weights)
    assert all(w.dtype == np.int64 for w in weights)
    accuracy = evaluate_integer(cfg, weights, test_x, test_y)
    assert accuracy >= 0.85, f"golden-model held-out accuracy {accuracy:.3f}"


def test_same_seed_same_weights(cfg, digits):
    train_x, _, train_y, _ = digits
    runs = [train_qat(cfg, train_x[:300], train_y[:300], epochs=2, seed=3, progress=False)
            for _ in range(2)]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_qat(cfg, train_x[:300], train_y[:300], epochs=2, seed=4, progress=False)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], other, strict=True))


def test_evaluate_integer_counts_ties_as_wrong(cfg, digits):
    """All-zero weights leave every output silent: a 10-way tie, so accuracy 0."""
    _, test_x, _, test_y = digits
    zeros = [np.zeros(cfg.weight_shape(i), dtype=np.int64) for i in range(cfg.n_layers)]
    assert evaluate_integer(cfg, zeros, test_x[:50], test_y[:50]) == 0.0


def _float_snn_counts(cfg, weights, raster) -> np.ndarray:
    """The float reference written out step by step from its definition (the module
    docstring of sw.qat): layer l integrates s_{l-1}[t-1], fires at V >= theta, subtracts
    theta, leaks V <- V (1 - 2**-k); no clamp, no rounding."""
    spikes = raster.astype(np.float64)
    for w in weights:
        batch, steps, _ = spikes.shape
        v = np.zeros((batch, w.shape[1]))
        out = np.zeros((batch, steps, w.shape[1]))
        for t in range(1, steps):
            v = v + spikes[:, t - 1] @ w
            out[:, t] = v >= cfg.threshold
            v = (v - cfg.threshold * out[:, t]) * (1 - 2.0 ** -cfg.leak_shift)
        spikes = out
    return spikes.sum(axis=1)


def test_float_reference_is_the_float_network(cfg, digits):
    """The float reference's forward pass is the plain float SNN: same encoder raster and
    delays, multiplicative leak, no clamp, unrounded weights."""
    pixels = digits[1][:60]
    rng = np.random.default_rng(5)
    weights = [rng.normal(0, 12.3, cfg.weight_shape(i)) for i in range(cfg.n_layers)]
    raster = rate_encode(pixels, cfg.time_steps, cfg.encoder_threshold)
    latents = [torch.from_numpy(w / cfg.w_max) for w in weights]
    with torch.no_grad():
        counts = _forward(cfg, latents, torch.from_numpy(raster).to(torch.float64),
                          exact=False).numpy()
    expected = _float_snn_counts(cfg, weights, raster)
    assert expected.sum() > 0
    np.testing.assert_array_equal(counts, expected)
    # and it is not the integer network: the same weights rounded give other counts
    with torch.no_grad():
        exact = _forward(cfg, latents, torch.from_numpy(raster).to(torch.float64)).numpy()
    assert not np.array_equal(exact, counts)


def test_float_reference_learns_and_reports_ties(cfg, digits):
    train_x, test_x, train_y, test_y = digits
    weights = train_float(cfg, train_x, train_y, epochs=10, seed=0, progress=False)
    assert all(w.dtype == np.float64 for w in weights)
    result = evaluate_float(cfg, weights, test_x, test_y)
    assert result["accuracy"] >= 0.85, result
    # a plain argmax breaks ties towards the lowest index: never below the chip's readout
    assert result["argmax_accuracy"] >= result["accuracy"]
    zeros = [np.zeros(cfg.weight_shape(i)) for i in range(cfg.n_layers)]
    silent = evaluate_float(cfg, zeros, test_x[:50], test_y[:50])
    assert silent["ties"] == 1.0 and silent["accuracy"] == 0.0


def test_recipe_choice_and_errors():
    assert Recipe.for_training_set(1437) == RECIPES["small"]
    assert Recipe.for_training_set(RECIPE_SIZES["small"]) == RECIPES["medium"]
    assert Recipe.for_training_set(RECIPE_SIZES["medium"] - 1) == RECIPES["medium"]
    assert Recipe.for_training_set(60_000) == RECIPES["large"]
    with pytest.raises(ValueError, match=r"recipe 'tiny': legal names are \['small', 'medium', "
                                         r"'large'\]"):
        Recipe.named("tiny")
    with pytest.raises(ValueError, match=r"schedule 'step'; legal values are"):
        Recipe(schedule="step")
    with pytest.raises(ValueError, match=r"batch_size >= 1 and lr > 0"):
        Recipe(lr=0.0)


def test_qat_keeps_what_the_float_network_learns(cfg):
    """Issue 19's target on the embedded data: with the same recipe, seed and data, the
    integer network under the golden model is within 1 point of the float SNN."""
    from spikeforge.sw.datasets import load_for_config

    data = load_for_config(cfg)
    common = dict(seed=0, progress=False)
    weights = train_qat(cfg, data.train_pixels, data.train_labels, **common)
    qat = evaluate_integer(cfg, weights, data.test_pixels, data.test_labels)
    floats = train_float(cfg, data.train_pixels, data.train_labels, **common)
    ref = evaluate_float(cfg, floats, data.test_pixels, data.test_labels)["accuracy"]
    assert qat >= ref - 0.01, f"QAT {qat:.4f} vs float {ref:.4f}"
    assert qat >= 0.96, f"QAT {qat:.4f}"


def test_desire_hinge_is_zero_where_the_rule_rests(cfg):
    """The desire term vanishes exactly when the label neuron has at least
    (1 - desire_out) C* + 1 spikes and every other one at most desire_out C* - 1."""
    from spikeforge.sw.qat import _desire_hinge

    c_star = cfg.time_steps - cfg.learning.error_margin
    low = (1 - cfg.learning.desire_out) * c_star + 1
    high = cfg.learning.desire_out * c_star - 1
    labels = torch.tensor([0, 1])
    rest = torch.full((2, cfg.layers[-1]), float(np.floor(high)))
    rest[0, 0] = rest[1, 1] = float(np.ceil(low))
    assert float(_desire_hinge(cfg, rest, labels)) == 0.0
    short = rest.clone()
    short[0, 0] -= 2.0                   # the label two spikes short of its floor
    expected = (2.0 - (np.ceil(low) - low)) / 2 / c_star
    assert float(_desire_hinge(cfg, short, labels)) == pytest.approx(expected)
    no_learning = load_config("ttfs-tiny")
    with pytest.raises(ValueError, match=r"no \[learning\] section"):
        _desire_hinge(no_learning, rest, labels)


def test_recipe_from_options_and_the_desire_weight_error(tmp_path, capsys):
    """The command line's recipe: the base by name or size, fields given replace its own;
    --desire-weight needs a config with a [learning] section (one error line, exit 2)."""
    from argparse import Namespace

    from spikeforge.cli import main
    from spikeforge.sw.recipes import recipe_from_options

    auto = Namespace(recipe="auto", lr=None, batch_size=32, epochs=None)
    assert recipe_from_options(auto, 1437) == replace(RECIPES["small"], batch_size=32)
    named = Namespace(recipe="large", lr=0.5)
    assert recipe_from_options(named, 10) == replace(RECIPES["large"], lr=0.5)

    text = (REPO / "configs" / "digits-tiny.toml").read_text()
    path = tmp_path / "no-learning.toml"
    path.write_text(text[:text.index("[learning]")])
    assert main(["qat", "-c", str(path), "--desire-weight", "1", "--epochs", "1",
                 "-o", str(tmp_path / "w.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.fullmatch(
        r"spikeforge qat: error: --desire-weight: config 'digits-tiny' has no \[learning\] "
        r"section to take the desire targets from; profiles with one: .*digits-tiny.*", err[0])
    assert not (tmp_path / "w.npz").exists()
