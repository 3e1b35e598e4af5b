"""Amaranth-simulator check of on-chip desire backpropagation against the golden model:
every spike, every stored weight after every training sample, every cycle count."""

import dataclasses

import numpy as np
import pytest

from spikeforge.config import DesireConfig, load_config
from spikeforge.sim.amaranth_tb import simulate
from spikeforge.sw.desire import train_step, train_step_raster
from spikeforge.sw.golden import encode


def simulate_training(cfg, stored, pixels, labels, lr_shift):
    """Train on samples one by one in the Amaranth simulator.

    Returns per sample ``(rasters, cycles, edges, prediction, stored weights after it)``.
    """
    run = simulate(cfg, stored, pixels, labels=labels, lr_shift=lr_shift)
    return [([r[b] for r in run.rasters], int(run.cycles[b]), int(run.edges[b]),
             int(run.predictions[b]), run.weights_after[b]) for b in range(len(pixels))]


CASES = {
    # name: (network overrides, learning overrides)
    "tiny-p1": (dict(layers=(5, 3, 2), lanes=1, time_steps=6), {}),
    "odd-p3": (dict(layers=(7, 5, 4), lanes=3, time_steps=8), dict(rounding="floor")),
    "deep-p2": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8), dict(lr_shift=2)),
    "one-layer-p4": (dict(layers=(9, 6), lanes=4, time_steps=7), dict(error_margin=2)),
    "saturating": (dict(layers=(8, 6, 3), lanes=2, time_steps=10),
                   dict(weight_frac_bits=1, lr_shift=0, desire_hidden=0.0)),
}


def case_config(case):
    net, learn = CASES[case]
    base = load_config("digits-tiny")
    learning = dataclasses.replace(DesireConfig(), **{"weight_frac_bits": 3, "lr_shift": 3,
                                                      **learn})
    return dataclasses.replace(base, name=case, threshold=20, membrane_bits=9, weight_bits=6,
                               learning=learning, **net)


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_matches_golden(case):
    cfg = case_config(case)
    changed = check_training(cfg, cfg.learning.lr_shift)
    assert changed > 0, "no weight moved: the case tests nothing"


@pytest.mark.parametrize("extra", [0, 1, 2, 40])
def test_rounding_shift_beyond_the_accumulator(extra):
    """The unit clamps lr_shift to acc_bits + 1 (any larger shift rounds every acc to 0, as
    that one does) and starts its accumulators at the rounding half: shifts around and far
    beyond the accumulator width give the golden model's weights."""
    cfg = case_config("tiny-p1")
    acc_bits = cfg.acc_max.bit_length()
    check_training(cfg, min(acc_bits - 1 + extra, 40))


def check_training(cfg, lr_shift):
    """Four training samples through the RTL and the golden model, bit for bit; returns how
    many weights moved."""
    rng = np.random.default_rng(11)
    stored = [rng.integers(cfg.store_min // 2, cfg.store_max // 2 + 1, size=cfg.weight_shape(i))
              for i in range(cfg.n_layers)]
    n = 4
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(n, cfg.layers[0]))
    pixels[0, :] = cfg.pixel_max
    labels = rng.integers(0, cfg.layers[-1], size=n)
    got = simulate_training(cfg, stored, pixels, labels, lr_shift)
    weights = stored
    changed = 0
    for b, (rasters, cycles, edges, pred, after) in enumerate(got):
        step = train_step(cfg, weights, pixels[b], int(labels[b]), lr_shift)
        for pop, raster in enumerate(rasters):
            np.testing.assert_array_equal(raster, step.run.rasters[pop][0],
                                          err_msg=f"sample {b} pop {pop}")
        assert pred == step.run.predictions[0]
        for layer, (w_rtl, w_gold) in enumerate(zip(after, step.weights, strict=True)):
            np.testing.assert_array_equal(w_rtl, w_gold, err_msg=f"sample {b} layer {layer}")
        changed += sum(int((a != w).sum()) for a, w in zip(step.weights, weights, strict=True))
        assert (cycles, edges) == (step.cycles, step.cycles), f"sample {b}"
        weights = step.weights
    return changed


@pytest.mark.parametrize("case", ["deep-p2", "tiny-p1"])
def test_training_on_input_rasters_matches_golden(case):
    """Training samples on the stored input raster (the learning unit records it through the
    same tap): spikes, learned weights and cycles equal :func:`sw.desire.train_step_raster`;
    on the rate encoder's own raster of a pixel sample the chip learns exactly what it
    learns from the pixels."""
    cfg = case_config(case)
    rng = np.random.default_rng(26)
    stored = [rng.integers(cfg.store_min // 2, cfg.store_max // 2 + 1, size=cfg.weight_shape(i))
              for i in range(cfg.n_layers)]
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    pixels[0, ::2] = cfg.pixel_max
    labels = rng.integers(0, cfg.layers[-1], size=3)
    encoded = encode(cfg, pixels[:1])[0]
    inputs = [encoded, rng.random((cfg.time_steps, cfg.layers[0])) < 0.7, None]
    lr_shift = cfg.learning.lr_shift
    run = simulate(cfg, stored, pixels, labels=labels, lr_shift=lr_shift, input_rasters=inputs)
    weights, changed = stored, 0
    for b, raster in enumerate(inputs):
        if raster is None:
            step = train_step(cfg, weights, pixels[b], int(labels[b]), lr_shift)
        else:
            step = train_step_raster(cfg, weights, raster, int(labels[b]), lr_shift)
        for pop in range(len(cfg.layers)):
            np.testing.assert_array_equal(run.rasters[pop][b], step.run.rasters[pop][0],
                                          err_msg=f"sample {b} pop {pop}")
        for layer, (w_rtl, w_gold) in enumerate(zip(run.weights_after[b], step.weights,
                                                    strict=True)):
            np.testing.assert_array_equal(w_rtl, w_gold, err_msg=f"sample {b} layer {layer}")
        assert (run.cycles[b], run.edges[b]) == (step.cycles, step.cycles), f"sample {b}"
        assert run.predictions[b] == step.run.predictions[0]
        changed += sum(int((a != w).sum()) for a, w in zip(step.weights, weights, strict=True))
        weights = step.weights
    assert changed > 0, "no weight moved: the case tests nothing"
    from_pixels = simulate(cfg, stored, pixels[:1], labels=labels[:1], lr_shift=lr_shift)
    assert from_pixels.cycles[0] == run.cycles[0]
    for a, b in zip(from_pixels.weights_after[0], run.weights_after[0], strict=True):
        np.testing.assert_array_equal(a, b)
