"""Randomized golden-vs-RTL equivalence (issue 7): random legal configs, weights and inputs,
adversarial streams, resets in mid-sample, and mutations of the golden model the property
must catch.

Quick tier (default run, derandomized: the same examples every run; ``--hypothesis-seed=N``
or ``SPIKEFORGE_SEED=N`` draws others): :func:`test_random_inference` and
:func:`test_random_learning` on the Amaranth simulation of the Network. Deep tier
(``-m deep``): hundreds more configs, larger ones, many more LIFLayer stream runs, and a few
random configs through Verilator. A failing case is shrunk by hypothesis and written to
``out/repro/<hash>.json``; the failure message prints the replay command
(``.venv/bin/python -m spikeforge.sim.replay FILE``). Example counts: ``SPIKEFORGE_QUICK_EXAMPLES``,
``SPIKEFORGE_DEEP_EXAMPLES``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import types

import numpy as np
import pytest
from hypothesis import Phase, assume, given, seed, settings

from spikeforge.config import DesireConfig, NetworkConfig
from spikeforge.hw.lif_layer import LIFLayer
from spikeforge.sim import random_cases
from spikeforge.sim.amaranth_tb import simulate_lif
from spikeforge.sim.random_cases import COVERAGE, Case, cases, check_case, load_case, run_case
from spikeforge.sw import desire as desire_model
from spikeforge.sw import golden as golden_model
from spikeforge.sw.lif import lif_step

QUICK_EXAMPLES = int(os.environ.get("SPIKEFORGE_QUICK_EXAMPLES", "100"))
DEEP_EXAMPLES = int(os.environ.get("SPIKEFORGE_DEEP_EXAMPLES", "300"))


def _seeded(test):
    """``SPIKEFORGE_SEED=N``: run the property with that seed instead of derandomized."""
    value = os.environ.get("SPIKEFORGE_SEED")
    return seed(int(value))(test) if value else test


# ---------------------------------------------------------------- 1. the properties

def inference_property(case):
    check_case(case)


def learning_property(case):
    check_case(case)


INFERENCE_CASES = cases(learning=False)
LEARNING_CASES = cases(learning=True)
QUICK = settings(max_examples=QUICK_EXAMPLES)

test_random_inference = _seeded(QUICK(given(case=INFERENCE_CASES)(inference_property)))
test_random_learning = _seeded(QUICK(given(case=LEARNING_CASES)(learning_property)))
test_random_inference.__doc__ = ("Random inference configs, weights, inputs, back-pressure "
                                 "and resets: golden == Amaranth RTL, bit-exact.")
test_random_learning.__doc__ = ("Random learning configs (training and inference samples): "
                                "golden == Amaranth RTL incl. every stored weight after every "
                                "sample.")


@pytest.mark.deep
@_seeded
@settings(max_examples=DEEP_EXAMPLES)
@given(case=cases(size="deep"))
def test_deep_random_configs(case):
    """Deep tier: hundreds of larger random configs, inference and learning mixed."""
    check_case(case)


@pytest.mark.deep
@settings(max_examples=int(os.environ.get("SPIKEFORGE_DEEP_VERILATOR", "4")),
          phases=[Phase.explicit, Phase.generate])
@given(case=cases(size="quick", resets=False))
def test_deep_random_verilator(case):
    """Deep tier: a few random configs through the generated Verilog (cocotb/Verilator);
    configs whose output layer stays silent are skipped (a build costs ~30 s), and every
    sample of a learning config trains (the cocotb testbench does not mix)."""
    from spikeforge.sim.random_cases import golden
    from spikeforge.sim.replay import verilator_check

    if case.labels is not None:
        case = dataclasses.replace(case, labels=np.maximum(case.labels, 0))
    assume(any(g.run.rasters[-1].any() for g in golden(case)))
    check_case(case)
    ok, line = verilator_check(case)
    COVERAGE.count("verilator configs")
    assert ok, line


# ---------------------------------------------------------------- reproducer and mutations

def test_reproducer_round_trip(tmp_path):
    """A case written as a reproducer loads back identical and replays clean."""
    from spikeforge.sim.replay import main

    rng = np.random.default_rng(1)
    cfg = NetworkConfig(name="repro", layers=(5, 4, 3), time_steps=6, lanes=3, weight_bits=5,
                        membrane_bits=7, threshold=9, leak_shift=2, pixel_bits=3,
                        learning=DesireConfig(weight_frac_bits=2, lr_shift=1))
    case = Case(cfg=cfg, stored=[rng.integers(cfg.store_min, cfg.store_max + 1,
                                              size=cfg.weight_shape(i)) for i in range(2)],
                pixels=rng.integers(0, cfg.pixel_max + 1, size=(2, 5)),
                labels=np.array([1, -1]), ready=0.5, reset=40, seed=3)
    path = random_cases.save_case(case, directory=tmp_path)
    back = load_case(path)
    assert back.cfg == cfg
    for a, b in zip(back.stored, case.stored, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.pixels, case.pixels)
    np.testing.assert_array_equal(back.labels, case.labels)
    assert (back.ready, back.reset, back.seed) == (0.5, 40, 3)
    from spikeforge.config import load_config
    assert load_config(path.with_suffix(".toml")) == dataclasses.replace(
        cfg, source=str(path.with_suffix(".toml")))
    assert main([str(path)]) == 0


def mutant(module, old: str, new: str) -> dict:
    """``module``'s functions with one source line changed (``old`` must occur once)."""
    source = inspect.getsource(module)
    assert source.count(old) == 1, (f"mutation site {old!r} not found exactly once in "
                                    f"{module.__name__}: update the mutation test")
    name = f"{module.__name__}_mutant"
    copy = types.ModuleType(name)
    sys.modules[name] = copy            # dataclasses look their module up while defined
    # a compiled function is recompiled, not loaded from the unchanged file's cache
    source = source.replace(old, new).replace("cache=True", "cache=False")
    try:
        exec(compile(source, module.__file__, "exec"), copy.__dict__)
    finally:
        del sys.modules[name]
    return copy.__dict__


MUTATIONS = {
    # name: (module, line as written, broken line, golden.<function> to replace)
    "leak-shift": (golden_model, "v[i] = x - (x >> leak_shift)",
                   "v[i] = x - (x >> (leak_shift + 1))", "_lif_layer_kernel"),
    "reset-to-zero": (golden_model, "x -= theta", "x -= x", "_lif_layer_kernel"),
    "saturation-bound": (golden_model, "min(max(vt(v[i] + vt(row[i] >> shift)), lo), hi)",
                         "min(max(vt(v[i] + vt(row[i] >> shift)), lo), 2 * hi)",
                         "_lif_layer_kernel"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_quick_property_catches_golden_mutation(name, monkeypatch, tmp_path, capsys):
    """Break one line of the golden model: the quick tier's property (same examples, no
    shrinking) must fail, write a reproducer, and that reproducer must replay as a mismatch
    with the mutation and clean without it."""
    from spikeforge.sim.replay import main

    module, old, new, function = MUTATIONS[name]
    monkeypatch.setattr(golden_model, function, mutant(module, old, new)[function])
    monkeypatch.setenv("SPIKEFORGE_REPRO_DIR", str(tmp_path))
    monkeypatch.setattr(random_cases, "RECORD", False)
    prop = settings(QUICK, phases=[Phase.explicit, Phase.generate])(
        given(case=INFERENCE_CASES)(inference_property))
    with pytest.raises(AssertionError, match="first divergence") as failure:
        prop()
    assert "python -m spikeforge.sim.replay" in str(failure.value)
    (repro,) = tmp_path.glob("*.json")
    assert json.loads(repro.read_text())["first_divergence"]
    assert main([str(repro)]) == 1
    assert "first divergence: " in capsys.readouterr().out
    monkeypatch.undo()
    assert main([str(repro)]) == 0


LEARNING_MUTATIONS = {
    # name: (module, line as written, broken line, desire.<function> to replace)
    # the keep-masks of a sample's groups in reverse order
    "dropout-group-order": (desire_model,
                            "steps = DROPOUT_BITS * np.arange(groups, dtype=np.int64)[:, None]",
                            "steps = DROPOUT_BITS * np.arange(groups, dtype=np.int64)[::-1, "
                            "None]", "_mask_states"),
    # the mask LFSRs one step per group instead of a byte
    "dropout-one-step": (desire_model,
                         "steps = DROPOUT_BITS * np.arange(groups, dtype=np.int64)[:, None]",
                         "steps = np.arange(groups, dtype=np.int64)[:, None]", "_mask_states"),
}


@pytest.mark.parametrize("name", sorted(LEARNING_MUTATIONS))
def test_learning_property_catches_dropout_mutation(name, monkeypatch, tmp_path):
    """Break the golden model's dropout masks: the quick tier's learning property (same
    examples, no shrinking) must fail with a first divergence."""
    module, old, new, function = LEARNING_MUTATIONS[name]
    monkeypatch.setattr(desire_model, function, mutant(module, old, new)[function])
    monkeypatch.setenv("SPIKEFORGE_REPRO_DIR", str(tmp_path))
    monkeypatch.setattr(random_cases, "RECORD", False)
    prop = settings(QUICK, phases=[Phase.explicit, Phase.generate])(
        given(case=LEARNING_CASES)(learning_property))
    with pytest.raises(AssertionError, match="first divergence"):
        prop()


# ---------------------------------------------------------------- 2. adversarial streams

def random_lif(rng):
    """Random LIFLayer parameters, stored weights and ``steps`` (clear passes included)."""
    n_pre, n_post = (int(x) for x in rng.integers(2, 13, size=2))
    lanes = int(rng.integers(1, n_post + 1))
    weight_bits = int(rng.integers(2, 11))
    frac_bits = int(rng.integers(0, 4))
    w_max = (1 << (weight_bits - 1)) - 1
    membrane_bits = int(max(3, w_max.bit_length() + 1) + rng.integers(0, 4))
    v_max = (1 << (membrane_bits - 1)) - 1
    threshold = int(rng.integers(1, v_max - w_max + 2))
    params = dict(n_pre=n_pre, n_post=n_post, lanes=lanes, weight_bits=weight_bits,
                  membrane_bits=membrane_bits, threshold=threshold,
                  leak_shift=int(rng.integers(1, 7)), frac_bits=frac_bits)
    store_bits = weight_bits + frac_bits
    stored = rng.integers(-(1 << (store_bits - 1)), 1 << (store_bits - 1),
                          size=(n_pre, n_post))
    steps = []
    for t in range(int(rng.integers(8, 25))):
        density = rng.choice([0.0, 0.2, 0.5, 1.0])
        spikes = np.flatnonzero(rng.random(n_pre) < density)
        steps.append((t == 0 or rng.random() < 0.1, spikes))
    return params, stored, steps


def golden_lif(params, stored, steps):
    """Expected outputs per step (:func:`sw.lif.lif_step`) and the saturating adds."""
    w = np.asarray(stored) >> params["frac_bits"]
    mb = params["membrane_bits"]
    v_min, v_max = -(1 << (mb - 1)), (1 << (mb - 1)) - 1
    v = np.zeros((1, params["n_post"]), dtype=np.int64)
    expected, hits = [], [0, 0]
    for clear, indices in steps:
        if clear:
            v[:] = 0
            expected.append([])
            continue
        s_in = np.zeros((1, params["n_pre"]), dtype=bool)
        s_in[0, indices] = True
        u = v[0].copy()                       # count the clipped adds, in hardware order
        for j in indices:
            raw = u + w[j]
            hits[0] += int((raw > v_max).sum())
            hits[1] += int((raw < v_min).sum())
            u = np.clip(raw, v_min, v_max)
        v, fired = lif_step(v, w, s_in, threshold=params["threshold"],
                            leak_shift=params["leak_shift"], v_min=v_min, v_max=v_max)
        expected.append(np.flatnonzero(fired[0]).tolist())
    return expected, hits


STALLS = [(0.0, 1.0), (0.5, 0.5), (0.8, 0.2), (0.3, 0.9)]


def check_lif_streams(seed_value):
    rng = np.random.default_rng(seed_value)
    params, stored, steps = random_lif(rng)
    gap, ready = STALLS[seed_value % len(STALLS)]
    expected, hits = golden_lif(params, stored, steps)
    run = simulate_lif(LIFLayer(**params), stored, steps, gap=gap, ready=ready,
                       seed=seed_value)
    assert not run.violations, run.violations[:3]
    sent = sum(len(ix) + 1 for _, ix in steps)
    assert run.events_in == sent, f"{run.events_in} input items taken, {sent} sent"
    for t, (want, got) in enumerate(zip(expected, run.outputs, strict=True)):
        assert got == want, f"{params}, gap {gap}, ready {ready}: step {t}: expected spikes " \
                            f"{want}, got {got} (events lost, duplicated or out of order)"
    COVERAGE.count("lif runs")
    COVERAGE.count("lif steps", len(steps))
    COVERAGE.count("lif events in", sent)
    COVERAGE.count("lif events out", sum(len(o) + 1 for o in run.outputs))
    COVERAGE.count("lif input gap cycles", run.gap_cycles)
    COVERAGE.count("lif output stall cycles", run.stall_cycles)
    COVERAGE.count("lif saturating adds at v_max", hits[0])
    COVERAGE.count("lif saturating adds at v_min", hits[1])
    return run


@pytest.mark.parametrize("seed_value", range(12))
def test_lif_layer_under_random_stalls(seed_value):
    """LIFLayer alone, random valid gaps in and random back-pressure out: every step's spikes
    are the golden LIF step's, none lost, duplicated or reordered, and an offered output item
    never changes before it is taken."""
    check_lif_streams(seed_value)


@pytest.mark.deep
@pytest.mark.parametrize("seed_value", range(12, 412))
def test_deep_lif_layer_under_random_stalls(seed_value):
    check_lif_streams(seed_value)


def busy_config(learning=None):
    """A config whose output layer spikes a lot (a full readout FIFO, saturation)."""
    return NetworkConfig(name="busy", layers=(9, 7, 5), time_steps=8, lanes=3, weight_bits=5,
                         membrane_bits=6, threshold=4, leak_shift=2, pixel_bits=4,
                         learning=learning)


def busy_case(cfg, **fields):
    rng = np.random.default_rng(5)
    stored = [rng.integers(cfg.store_min // 4, cfg.store_max + 1, size=cfg.weight_shape(i))
              for i in range(cfg.n_layers)]
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    pixels[0] = cfg.pixel_max
    labels = np.array([0, 2, 4]) if cfg.learning is not None else None
    return Case(cfg=cfg, stored=stored, pixels=pixels, labels=labels, **fields)


@pytest.mark.parametrize("ready", [0.05, 0.3])
def test_readout_back_pressure_changes_nothing(ready):
    """The events stream with heavy random back-pressure: the same items as the golden last
    layer, no overflow, and the same cycle counts as with the host always ready."""
    free = run_case(busy_case(busy_config(), ready=1.0))
    held = run_case(busy_case(busy_config(), ready=ready, seed=9))
    for outcome in (free, held):
        assert outcome.ok, outcome.first_divergence()
    assert held.rtl.stall_cycles > 0 and held.rtl.stream[:, 0].sum() == 3
    assert int(held.rtl.rasters[-1].sum()) > 20          # not vacuous: a busy readout
    np.testing.assert_array_equal(held.rtl.cycles, free.rtl.cycles)
    np.testing.assert_array_equal(held.rtl.stream, free.rtl.stream)
    COVERAGE.count("readout stall cycles", held.rtl.stall_cycles)


@pytest.mark.parametrize("learning", [False, True], ids=["inference", "learning"])
def test_reset_in_mid_sample_then_fresh_sample(learning):
    """Reset asserted at many points of the first sample (and, for a learning config, of
    its learning pass); the host reloads and reruns: exactly the golden result each time."""
    desire = DesireConfig(weight_frac_bits=2, lr_shift=1, desire_hidden=0.0) if learning \
        else None
    cfg = busy_config(desire)
    phases = set()
    for percent in (1, 23, 58, 74, 91, 99):
        outcome = run_case(busy_case(cfg, reset=percent, ready=0.5, seed=percent))
        assert outcome.ok, f"reset at {percent}%: {outcome.first_divergence()}"
        assert outcome.rtl.resets == 1
        phases.add(outcome.reset_phase)
        COVERAGE.count("reset runs")
        COVERAGE.count("reset hits", outcome.rtl.resets)
    if learning:
        assert phases == {"inference", "learning"}, phases
        moved = sum(int((a != b).sum()) for a, b in
                    zip(outcome.gold[-1].weights, outcome.case.stored, strict=True))
        assert moved > 0, "no weight moved: the learning pass did nothing to interrupt"
