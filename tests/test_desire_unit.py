"""Amaranth-simulator check of on-chip desire backpropagation against the golden model:
every spike, every stored weight after every training sample, every cycle count."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikeforge import lfsr
from spikeforge.config import DesireConfig, load_config
from spikeforge.hw.desire_backward import BackwardPass
from spikeforge.hw.desire_formats import desire_lane, desire_word
from spikeforge.hw.desire_output import OutputDesire
from spikeforge.hw.desire_update import WeightUpdate
from spikeforge.sim.amaranth_tb import simulate
from spikeforge.sw import desire
from spikeforge.sw.desire import (
    Desire,
    backward_sums,
    eligibility,
    hidden_desire,
    output_desire,
    traces,
    train_step,
    train_step_raster,
    train_steps,
    update,
)
from spikeforge.sw.golden import encode
from spikeforge.timing import (
    BACKWARD_OVERHEAD,
    OUT_DESIRE_OVERHEAD,
    PAIR_OVERHEAD,
    WEIGHT_READ_LATENCY,
)


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
    # stochastic rounding (per-lane LFSRs): padding lanes at P = 3, and three layers at P = 2
    # with no stored fraction bits at all
    "stochastic-p3": (dict(layers=(7, 5, 4), lanes=3, time_steps=8),
                      dict(rounding="stochastic", weight_frac_bits=1, lr_shift=4, lfsr_seed=5)),
    "stochastic-deep": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                        dict(rounding="stochastic", weight_frac_bits=0, lr_shift=3)),
    # near eligibility (theta_near = ceil(0.4 * 20) = 8): padding lanes at P = 3; and with
    # stochastic rounding over three layers (theta_near = ceil(0.65 * 20) = 13)
    "near-p3": (dict(layers=(7, 5, 4), lanes=3, time_steps=8),
                dict(eligibility="near", near_fraction=0.4)),
    "near-stochastic-deep": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                             dict(rounding="stochastic", weight_frac_bits=0, lr_shift=3,
                                  eligibility="near", near_fraction=0.65)),
    # dropout of the hidden neurons (mask LFSRs): padding lanes at P = 3; two hidden layers
    # (the second's keep bits recorded and masking the backward pass); and together with
    # stochastic rounding, both LFSR sets carried from sample to sample
    "dropout-p3": (dict(layers=(7, 5, 4), lanes=3, time_steps=8),
                   dict(rounding="floor", dropout_hidden=0.5, dropout_seed=3)),
    "dropout-deep": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                     dict(lr_shift=2, dropout_hidden=0.375)),
    "dropout-stochastic": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                           dict(rounding="stochastic", weight_frac_bits=0, lr_shift=3,
                                lfsr_seed=11, dropout_hidden=0.25, dropout_seed=11)),
    # with near eligibility: a dropped neuron's near bits are 0 too
    "dropout-near": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                     dict(lr_shift=2, eligibility="near", near_fraction=0.4,
                          dropout_hidden=0.375, dropout_seed=2)),
    # hidden neurons learn only while short of their desire: padding lanes at P = 3 (C* = 1,
    # so firing neurons told to fire more are past it); two hidden layers with stochastic
    # rounding and near eligibility (a silent neuron told to fire less is not depressed)
    "gate-p3": (dict(layers=(7, 5, 4), lanes=3, time_steps=8),
                dict(hidden_gate="error", desire_hidden=0.0, error_margin=7)),
    "gate-deep": (dict(layers=(6, 5, 4, 3), lanes=2, time_steps=8),
                  dict(rounding="stochastic", weight_frac_bits=0, lr_shift=3,
                       hidden_gate="error", desire_hidden=0.0, error_margin=6,
                       eligibility="near", near_fraction=0.4)),
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


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("extra", [0, 1, 2, 6, 40])
def test_rounding_shift_beyond_the_accumulator(extra, rounding):
    """The unit clamps lr_shift to acc_bits + 1 in nearest rounding (any larger shift
    rounds every acc to 0, as that one does) and to the LFSR's 20 bits in stochastic
    rounding (which draws that many bits then), and starts its accumulators at the
    rounding offset: shifts around and far beyond the accumulator width give the golden
    model's weights."""
    cfg = case_config("tiny-p1")
    cfg = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning,
                                                                rounding=rounding))
    acc_bits = cfg.acc_max.bit_length()
    check_training(cfg, min(acc_bits - 1 + extra, 40))


def test_stochastic_rounding_is_what_the_unit_does():
    """The stochastic cases above can tell the rounding modes apart: on their samples the
    golden model's stochastic weights differ from its nearest and floor ones."""
    for case in ("stochastic-p3", "stochastic-deep"):
        cfg = case_config(case)
        _, stored, pixels, labels = training_samples(cfg)
        final = {}
        for rounding in ("stochastic", "nearest", "floor"):
            c = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning,
                                                                      rounding=rounding))
            final[rounding] = train_steps(c, stored, pixels, labels)[-1].weights
        for other in ("nearest", "floor"):
            assert any((a != b).any() for a, b in zip(final["stochastic"], final[other],
                                                      strict=True)), (case, other)


def test_near_eligibility_is_what_the_unit_does():
    """The near cases above can tell the eligibilities apart: on their samples the golden
    model's near weights differ from its spike ones, and near neurons that never fire are
    among those that potentiate."""
    for case in ("near-p3", "near-stochastic-deep"):
        cfg = case_config(case)
        _, stored, pixels, labels = training_samples(cfg)
        spike = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning,
                                                                      eligibility="spike"))
        near_steps = train_steps(cfg, stored, pixels, labels)
        final = {"near": near_steps[-1].weights,
                 "spike": train_steps(spike, stored, pixels, labels)[-1].weights}
        assert any((a != b).any() for a, b in zip(final["near"], final["spike"], strict=True))
        silent_near = sum(int((n[0].any(axis=0) & ~r[0].any(axis=0)).sum())
                          for step in near_steps
                          for n, r in zip(step.run.near[1:], step.run.rasters[1:], strict=True))
        assert silent_near > 0, case


def test_hidden_gate_is_what_the_unit_does():
    """The gate cases above can tell the gate from none: on their samples some active hidden
    neuron is already where its desire wants it, so the gated weights differ."""
    for case in ("gate-p3", "gate-deep"):
        cfg = case_config(case)
        _, stored, pixels, labels = training_samples(cfg)
        ungated = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning,
                                                                        hidden_gate="none"))
        final = [train_steps(c, stored, pixels, labels)[-1].weights for c in (cfg, ungated)]
        assert any((a != b).any() for a, b in zip(*final, strict=True)), case


@pytest.mark.filterwarnings("ignore:.*LIFLayer object .* created but never used")
def test_near_hardware_only_with_near_eligibility():
    """The near comparators, taps and rasters exist only with ``eligibility = "near"``: a
    spike config's layers, recorder and unit have none of them (its Verilog is unchanged),
    and the layer refuses a near threshold outside ``[1, theta]``."""
    from amaranth.hdl import Fragment

    from spikeforge.hw.desire_raster import RasterRecorder
    from spikeforge.hw.desire_unit import DesireUnit
    from spikeforge.hw.lif_layer import LIFLayer

    def built(component):
        Fragment.get(component, None)        # elaborates (and so uses) it
        return component

    spike, near = case_config("odd-p3"), case_config("near-p3")
    assert near.near_threshold == 8
    for cfg, has in ((spike, False), (near, True)):
        unit = built(DesireUnit(cfg))
        for layer in range(cfg.n_layers):
            lif = built(LIFLayer.from_config(cfg, layer))
            assert ("eos_near" in lif.signature.members) == has
            assert lif.near_threshold == (8 if has else None)
            assert (f"eos{layer}_near" in unit.signature.members) == has
        assert len(built(RasterRecorder(cfg)).near_reads) == (cfg.n_layers if has else 0)
    kw = dict(n_pre=3, n_post=2, lanes=1, weight_bits=4, membrane_bits=8, threshold=10,
              leak_shift=2)
    for bad in (0, 11):
        with pytest.raises(ValueError, match=r"near_threshold: .* legal range is \[1, 10\]"):
            LIFLayer(**kw, near_threshold=bad)
    assert built(LIFLayer(**kw, near_threshold=10)).near_threshold == 10


def test_reset_in_learning_restarts_the_lfsrs():
    """A reset of the clock domain in the middle of the first sample's learning pass (after
    many pairs stepped the LFSRs): the LFSRs restart from their seeds, so the rerun (weights
    reloaded) learns exactly what the golden model learns from the reset states."""
    cfg = case_config("stochastic-p3")
    _, stored, pixels, labels = training_samples(cfg)
    steps = train_steps(cfg, stored, pixels[:2], labels[:2])
    first = steps[0]
    reset_cycle = first.infer_cycles + (3 * first.learn_cycles) // 4
    run = simulate(cfg, stored, pixels[:2], labels=labels[:2], reset_cycle=reset_cycle)
    assert run.resets == 1
    for b, step in enumerate(steps):
        for layer, (w_rtl, w_gold) in enumerate(zip(run.weights_after[b], step.weights,
                                                    strict=True)):
            np.testing.assert_array_equal(w_rtl, w_gold, err_msg=f"sample {b} layer {layer}")
        assert run.cycles[b] == step.cycles


def training_samples(cfg, n=4):
    """The seeded start weights, pixels and labels :func:`check_training` uses."""
    rng = np.random.default_rng(11)
    stored = [rng.integers(cfg.store_min // 2, cfg.store_max // 2 + 1, size=cfg.weight_shape(i))
              for i in range(cfg.n_layers)]
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(n, cfg.layers[0]))
    pixels[0, :] = cfg.pixel_max
    labels = rng.integers(0, cfg.layers[-1], size=n)
    return rng, stored, pixels, labels


def check_training(cfg, lr_shift):
    """Four training samples through the RTL and the golden model (the lane LFSRs and the
    dropout mask LFSRs carried from sample to sample), bit for bit; returns how many weights
    moved."""
    _, stored, pixels, labels = training_samples(cfg)
    got = simulate_training(cfg, stored, pixels, labels, lr_shift)
    weights, state, masks = stored, None, None
    changed = 0
    for b, (rasters, cycles, edges, pred, after) in enumerate(got):
        step = train_step(cfg, weights, pixels[b], int(labels[b]), lr_shift, state, masks)
        for pop, raster in enumerate(rasters):
            np.testing.assert_array_equal(raster, step.run.rasters[pop][0],
                                          err_msg=f"sample {b} pop {pop}")
        assert pred == step.run.predictions[0]
        for layer, (w_rtl, w_gold) in enumerate(zip(after, step.weights, strict=True)):
            np.testing.assert_array_equal(w_rtl, w_gold, err_msg=f"sample {b} layer {layer}")
        changed += sum(int((a != w).sum()) for a, w in zip(step.weights, weights, strict=True))
        assert (cycles, edges) == (step.cycles, step.cycles), f"sample {b}"
        weights, state, masks = step.weights, step.lfsr, step.mask_lfsr
    return changed


def assert_sample_matches(run, b, rasters, weights):
    """Sample ``b`` of a :func:`simulate` run against the golden model's: every
    population's raster (``rasters[pop]``, a batch of one) and the weights after it."""
    for pop, raster in enumerate(rasters):
        np.testing.assert_array_equal(run.rasters[pop][b], raster[0],
                                      err_msg=f"sample {b} pop {pop}")
    for layer, (w_rtl, w_gold) in enumerate(zip(run.weights_after[b], weights, strict=True)):
        np.testing.assert_array_equal(w_rtl, w_gold, err_msg=f"sample {b} layer {layer}")


@pytest.mark.parametrize("case", ["deep-p2", "tiny-p1", "stochastic-p3", "near-p3"])
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
    weights, changed, state = stored, 0, None
    for b, raster in enumerate(inputs):
        if raster is None:
            step = train_step(cfg, weights, pixels[b], int(labels[b]), lr_shift, state)
        else:
            step = train_step_raster(cfg, weights, raster, int(labels[b]), lr_shift, state)
        assert_sample_matches(run, b, step.run.rasters, step.weights)
        assert (run.cycles[b], run.edges[b]) == (step.cycles, step.cycles), f"sample {b}"
        assert run.predictions[b] == step.run.predictions[0]
        changed += sum(int((a != w).sum()) for a, w in zip(step.weights, weights, strict=True))
        weights, state = step.weights, step.lfsr
    assert changed > 0, "no weight moved: the case tests nothing"
    from_pixels = simulate(cfg, stored, pixels[:1], labels=labels[:1], lr_shift=lr_shift)
    assert from_pixels.cycles[0] == run.cycles[0]
    for a, b in zip(from_pixels.weights_after[0], run.weights_after[0], strict=True):
        np.testing.assert_array_equal(a, b)


# ---- the unit's parts, each against the golden model's function of its step, cycle by
# cycle against the latency its docstring states (spikeforge.timing) ----

def run_bench(dut, schedule, cycles, strobes, watch):
    """Clock ``dut`` for ``cycles`` cycles. Before each: the ``strobes`` low, then the
    ``(port, value)`` pairs of ``schedule[cycle]`` set; then ``watch(ctx)`` recorded.
    Returns the list of what ``watch`` saw, one entry per cycle."""
    seen = []

    async def bench(ctx):
        for cycle in range(cycles):
            for port in strobes:
                ctx.set(port, 0)
            for port, value in schedule.get(cycle, []):
                ctx.set(port, value)
            seen.append(watch(ctx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def raster_words(rng, cfg, counts):
    """Raster words: lane ``p`` of word ``g`` with ``counts[gP + p]`` spikes, at random steps."""
    T, P = cfg.time_steps, cfg.lanes
    words = []
    for g in range(-(-len(counts) // P)):
        word = 0
        for p, c in enumerate(counts[g * P:(g + 1) * P]):
            word |= sum(1 << int(b) for b in rng.permutation(T)[:c]) << (p * T)
        words.append(word)
    return words


def desire_bits(cfg, desire, lanes):
    """The :func:`hw.desire_formats.desire_word` of ``desire``'s neurons ``lanes``, as bits."""
    lane = desire_lane(cfg)
    return desire_word(cfg).const([
        lane.const({"active": int(desire.active[n]), "sign": int(desire.sign[n]),
                    "error": int(desire.error[n])}) for n in lanes]).as_value().value


def weight_bits(cfg, weights):
    """A weight word of the stored weights ``weights`` (``P`` of them), as bits."""
    mask = (1 << cfg.store_bits) - 1
    return sum((int(w) & mask) << (p * cfg.store_bits) for p, w in enumerate(weights))


def group_flags(active, P):
    """Bit ``g`` set when ``active[gP .. gP+P-1]`` holds a True."""
    padded = np.zeros(-(-len(active) // P) * P, dtype=bool)
    padded[:len(active)] = active
    return sum(int(padded[g * P:(g + 1) * P].any()) << g for g in range(len(padded) // P))


def desire_writes(dut, ctx):
    """``(addr, en, word)`` of the desire write in this cycle, or ``None``."""
    if not ctx.get(dut.desire_wr.en):
        return None
    return (ctx.get(dut.desire_wr.addr), ctx.get(dut.desire_wr.en),
            ctx.get(dut.desire_wr.data))


@pytest.mark.parametrize("case", ["odd-p3", "tiny-p1", "one-layer-p4"])
def test_output_desire_part(case):
    """:class:`OutputDesire`: the golden :func:`sw.desire.output_desire` of random spike
    counts and label, each group's word written ``OUT_DESIRE_OVERHEAD`` cycles after its
    issue; padding lanes never active; ``active_groups`` right."""
    cfg = case_config(case)
    rng = np.random.default_rng(5)
    n_out, P, G = cfg.layers[-1], cfg.lanes, cfg.groups(cfg.n_layers - 1)
    counts = rng.integers(0, cfg.time_steps + 1, size=G * P)    # padding lanes spike too
    label = int(rng.integers(0, n_out))
    dut = OutputDesire(cfg)
    words = raster_words(rng, cfg, counts)
    schedule = {0: [(dut.start, 1), (dut.label, label)]}
    for g in range(G):
        schedule.setdefault(1 + g, []).extend([(dut.issue, 1), (dut.group, g)])
        schedule.setdefault(2 + g, []).append((dut.raster.as_value(), words[g]))
    cycles = G + OUT_DESIRE_OVERHEAD + 3
    seen = run_bench(dut, schedule, cycles, [dut.start, dut.issue], lambda ctx: (
        desire_writes(dut, ctx), ctx.get(dut.active_groups)))
    writes = {c: w for c, (w, _) in enumerate(seen) if w is not None}
    assert sorted(writes) == [1 + g + OUT_DESIRE_OVERHEAD for g in range(G)]
    gold = output_desire(cfg, counts[:n_out], label)
    assert gold.active.any(), "no active output neuron: the case tests little"
    for g in range(G):
        addr, _, word = writes[1 + g + OUT_DESIRE_OVERHEAD]
        assert addr == g
        for p in range(P):
            n = g * P + p
            if n >= n_out:
                assert not word[p].active, f"padding lane {p} of group {g} active"
            else:
                assert (word[p].active, word[p].sign, word[p].error) == (
                    gold.active[n], gold.sign[n], gold.error[n]), f"neuron {n}"
    assert seen[-1][1] == group_flags(gold.active, P)


@pytest.mark.parametrize("case,layer", [("odd-p3", 1), ("deep-p2", 2), ("deep-p2", 1),
                                        ("gate-p3", 1), ("gate-deep", 2)])
def test_backward_pass_part(case, layer):
    """:class:`BackwardPass`: the golden :func:`sw.desire.hidden_desire` of
    :func:`sw.desire.backward_sums` for random weights and desires, the weights arriving
    ``WEIGHT_READ_LATENCY`` cycles after each issue, each presynaptic neuron's desire written
    ``BACKWARD_OVERHEAD`` cycles after the issue of its last word."""
    cfg = case_config(case)
    rng = np.random.default_rng(7 + layer)
    P = cfg.lanes
    n_pre, n_post, G = cfg.layers[layer], cfg.layers[layer + 1], cfg.groups(layer)
    stored = rng.integers(cfg.store_min, cfg.store_max + 1, size=(n_pre, G * P))
    post = Desire(active=rng.random(G * P) < 0.7, sign=rng.random(G * P) < 0.5,
                  error=rng.integers(0, cfg.coef_max + 1, size=G * P))
    post.active[n_post:] = False           # the padding lanes' desires are never active
    pre_counts = rng.integers(0, cfg.time_steps + 1, size=n_pre)
    pre_words = raster_words(rng, cfg, pre_counts)
    dut = BackwardPass(cfg, layer)
    schedule = {}
    for i in range(n_pre * G):
        j, g = divmod(i, G)
        schedule.setdefault(i, []).extend([
            (dut.issue, 1), (dut.first, int(g == 0)), (dut.last, int(g == G - 1)),
            (dut.jg, j // P), (dut.jp, j % P)])
        schedule.setdefault(i + 1, []).extend([
            (dut.desires.as_value(), desire_bits(cfg, post, range(g * P, (g + 1) * P))),
            (dut.pre_raster.as_value(), pre_words[j // P])])
        schedule.setdefault(i + WEIGHT_READ_LATENCY, []).append(
            (dut.weights.as_value(), weight_bits(cfg, stored[j, g * P:(g + 1) * P])))
    cycles = n_pre * G + BACKWARD_OVERHEAD + 2
    seen = run_bench(dut, schedule, cycles, [dut.issue], lambda ctx: (
        desire_writes(dut, ctx), ctx.get(dut.active_groups)))
    writes = {c: w for c, (w, _) in enumerate(seen) if w is not None}
    assert sorted(writes) == [j * G + G - 1 + BACKWARD_OVERHEAD for j in range(n_pre)]
    w_inf = stored[:, :n_post] >> cfg.frac_bits
    gold = hidden_desire(cfg, backward_sums(w_inf, post.coef[:n_post]), pre_counts)
    assert gold.active.any(), "no active presynaptic neuron: the case tests little"
    for j in range(n_pre):
        addr, en, word = writes[j * G + G - 1 + BACKWARD_OVERHEAD]
        assert (addr, en) == (j // P, 1 << (j % P)), f"neuron {j}"
        got = word[j % P]
        assert (got.active, got.sign, got.error) == (
            gold.active[j], gold.sign[j], gold.error[j]), f"neuron {j}"
    assert seen[-1][1] == group_flags(gold.active, P)


@pytest.mark.parametrize("case", ["odd-p3", "tiny-p1", "saturating", "stochastic-p3"])
def test_weight_update_part(case):
    """:class:`WeightUpdate`: pairs back to back as the controller runs them
    (``T + PAIR_OVERHEAD`` cycles each, the write in the last), each new word the golden
    :func:`sw.desire.update` of :func:`sw.desire.eligibility` of :func:`sw.desire.traces`, at
    lr_shifts from 0 to beyond the accumulator; stochastic rounding: pair ``k`` rounds with
    the low bits of the lane LFSRs ``k`` steps after their seeds, and after the pairs the
    LFSRs stepped once per pair."""
    cfg = case_config(case)
    rng = np.random.default_rng(9)
    T, P = cfg.time_steps, cfg.lanes
    acc_bits = cfg.acc_max.bit_length()
    stochastic = cfg.learning.rounding == "stochastic"
    moved = 0
    for lr_shift in (0, 2, acc_bits, acc_bits + 3):
        dut = WeightUpdate(cfg)
        schedule = {0: [(dut.start, 1), (dut.lr_shift, lr_shift)]}
        want = {}
        for k in range(4):
            pre = rng.random(T) < 0.6
            post = rng.random((T, P)) < 0.6
            stored = rng.integers(cfg.store_min, cfg.store_max + 1, size=P)
            desire = Desire(active=rng.random(P) < 0.8, sign=rng.random(P) < 0.5,
                            error=rng.integers(0, cfg.coef_max + 1, size=P))
            c = 1 + k * (T + PAIR_OVERHEAD)       # the pair's first cycle (UISSUE)
            schedule.setdefault(c, []).extend([
                (dut.issue, 1), (dut.pre_bits, sum(int(s) << t for t, s in enumerate(pre[:-1])))])
            schedule.setdefault(c + 1, []).extend([
                (dut.start_acc, 1),
                (dut.post_raster.as_value(), sum(int(post[t, p]) << (p * T + t)
                                                 for t in range(T) for p in range(P)))])
            schedule.setdefault(c + T, []).append((dut.stop_acc, 1))
            schedule.setdefault(c + T + 1, []).extend([
                (dut.weights.as_value(), weight_bits(cfg, stored)),
                (dut.desires.as_value(), desire_bits(cfg, desire, range(P)))])
            acc = eligibility(traces(cfg, pre[:, None]), post)
            offsets = None
            if stochastic:
                shift = min(lr_shift, cfg.max_rounding_shift)
                offsets = lfsr.advance(cfg.lfsr_seeds, k).astype(np.int64)[None, :] & (
                    (1 << shift) - 1)
            want[c + T + PAIR_OVERHEAD - 1] = list(
                update(cfg, stored[None, :], desire, acc, lr_shift, offsets)[0])
            moved += int((want[c + T + PAIR_OVERHEAD - 1] != stored).sum())
        strobes = [dut.start, dut.issue, dut.start_acc, dut.stop_acc]
        seen = run_bench(dut, schedule, max(want) + 1, strobes, lambda ctx, dut=dut: (
            [int(w) for w in ctx.get(dut.wdata)], ctx.get(dut.lfsr) if stochastic else None))
        for cycle, words in want.items():
            assert seen[cycle][0] == words, f"lr_shift {lr_shift}, cycle {cycle}"
        if stochastic:
            W = lfsr.WIDTH
            lanes = [(seen[-1][1] >> (p * W)) & lfsr.MASK for p in range(P)]
            assert lanes == list(lfsr.advance(cfg.lfsr_seeds, len(want)))
    assert moved > 0, "no weight moved: the case tests nothing"


# ---- dropout of the hidden neurons ----

DROPOUT = ("dropout-p3", "dropout-deep", "dropout-stochastic", "dropout-near")


def test_dropout_is_what_the_chip_does():
    """The dropout cases can tell dropout from none: on their samples the golden model drops
    neurons that would have fired, and (two hidden layers) its backward sums see the
    masked coefficients."""
    for case in DROPOUT:
        cfg = case_config(case)
        _, stored, pixels, labels = training_samples(cfg)
        off = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning,
                                                                    dropout_hidden=0))
        on, plain = (train_steps(c, stored, pixels, labels) for c in (cfg, off))
        silenced = sum(int(b.run.rasters[layer + 1][0][:, ~a.keeps[layer]].sum())
                       for a, b in zip(on, plain, strict=True) for layer in cfg.dropout_layers)
        assert silenced > 0, case
        assert any((a.weights[x] != b.weights[x]).any() for a, b in zip(on, plain, strict=True)
                   for x in range(cfg.n_layers)), case
    deep = case_config("dropout-deep")
    _, stored, pixels, labels = training_samples(deep)
    steps = train_steps(deep, stored, pixels, labels)
    befores = [stored] + [step.weights for step in steps[:-1]]
    # the sums into the first hidden population as they would be without the masking
    unmasked = [backward_sums(np.asarray(before[1]) >> deep.frac_bits, step.desires[1].coef)
                for before, step in zip(befores, steps, strict=True)]
    assert any((u != step.sums[0]).any() for u, step in zip(unmasked, steps, strict=True)), \
        "no backward sum saw a dropped neuron's coefficient"


@pytest.mark.parametrize("labels", [[1, -1, 0, -1, 2], [-1, 0, -1, 1]])
def test_dropout_skips_inference_samples(labels):
    """Inference samples between training samples: no neuron dropped, the mask LFSRs do not
    move (the golden model carries them over the inference samples untouched). Busy
    weights: every inference sample fires neurons that the current masks would drop."""
    from spikeforge.sim.random_cases import Case, golden

    cfg = case_config("dropout-deep")
    rng = np.random.default_rng(31)
    stored = [rng.integers(cfg.store_min // 4, cfg.store_max + 1, size=cfg.weight_shape(i))
              for i in range(cfg.n_layers)]
    labels = np.array(labels)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(len(labels), cfg.layers[0]))
    run = simulate(cfg, stored, pixels, labels=labels)
    gold = golden(Case(cfg=cfg, stored=stored, pixels=pixels, labels=labels, ready=None,
                       reset=None, seed=0, kinds={}))
    masks = cfg.dropout_seeds
    for b, g in enumerate(gold):
        assert_sample_matches(run, b, g.run.rasters, g.weights)
        assert run.cycles[b] == g.cycles, f"sample {b}"
        keeps = desire.dropout_keeps(cfg, masks)
        if g.step is None:      # not vacuous: the masks would silence some of its spikes
            assert any(g.run.rasters[layer + 1][0][:, ~keeps[layer]].any()
                       for layer in cfg.dropout_layers), f"sample {b}"
        else:
            assert [k.tolist() for k in g.step.keeps[:-1]] == [k.tolist() for k in keeps[:-1]]
            masks = g.step.mask_lfsr


@pytest.mark.parametrize("where", ["inference", "learning"])
def test_reset_restarts_the_mask_lfsrs(where):
    """A reset of the clock domain in the first training sample, after its last step's
    passes moved the masks on to the next sample (at the end of its inference, or in its
    learning pass): the mask LFSRs restart from their seeds, so the rerun (weights reloaded)
    drops exactly what the golden model drops from the reset states."""
    cfg = case_config("dropout-stochastic")
    _, stored, pixels, labels = training_samples(cfg)
    steps = train_steps(cfg, stored, pixels[:2], labels[:2])
    first = steps[0]
    reset_cycle = (first.infer_cycles - 2 if where == "inference"
                   else first.infer_cycles + first.learn_cycles // 2)
    run = simulate(cfg, stored, pixels[:2], labels=labels[:2], reset_cycle=reset_cycle)
    assert run.resets == 1
    for b, step in enumerate(steps):
        assert_sample_matches(run, b, step.run.rasters, step.weights)
        assert run.cycles[b] == step.cycles


@pytest.mark.parametrize("groups, lanes, k", [(3, 2, 96), (1, 4, 200), (4, 3, 1)])
def test_dropout_mask_part(groups, lanes, k):
    """:class:`DropoutMask` as a LIF layer's end-of-step passes drive it: in every pass of a
    training sample (the clear pass included) group ``g``'s keep bits, in the cycle of its
    evaluation, are :func:`sw.desire.dropout_keeps`' of the sample; inference samples (enable
    low) keep all and move nothing; the last step's pass moves on to the next sample."""
    from spikeforge.hw.dropout_mask import DropoutMask

    seeds = lfsr.lane_seeds(1000 + groups, lanes)
    cfg = SimpleNamespace(lanes=lanes, dropout_layers=(0,), dropout_threshold=k, n_layers=2,
                          layers=(1, groups * lanes), groups=lambda layer: groups)
    dut = DropoutMask(seeds, groups, k)
    steps, samples = 3, [True, False, True, True]
    schedule, want, cycle = {}, {}, 0
    state = (seeds,)
    for train in samples:
        keep = desire.dropout_keeps(cfg, state)[0] if train else np.ones(groups * lanes, bool)
        for t in range(steps):
            for g in range(groups):
                schedule[cycle] = [(dut.enable, int(train)), (dut.valid, 1), (dut.group, g),
                                   (dut.last_step, int(t == steps - 1))]
                want[cycle] = sum(int(keep[g * lanes + p]) << p for p in range(lanes))
                cycle += 2 + (g + t) % 2            # gaps between the groups, as in a pass
            cycle += 3
        if train:
            state = desire.next_mask_lfsr(cfg, state)
    seen = run_bench(dut, schedule, cycle, [dut.valid], lambda ctx: ctx.get(dut.keep))
    for c, bits in want.items():
        assert seen[c] == bits, f"cycle {c}"
    assert any(bits != (1 << lanes) - 1 for bits in want.values()) or k == 1


@pytest.mark.parametrize("n", [1, 2, 3, 5, 20, 64, 65])
def test_lowest_set_bit_tree(n):
    """The update's group select (a tree of halves) is the lowest set bit, 0 when none."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from spikeforge.hw.desire_unit import lowest_set_bit

    m = Module()
    bits, index, found = Signal(n), Signal(8), Signal()
    any_bit, lowest = lowest_set_bit(bits)
    m.d.comb += [index.eq(lowest), found.eq(any_bit)]
    rng = np.random.default_rng(n)
    values = [0, (1 << n) - 1, *(1 << k for k in range(n)),
              *(int(rng.integers(0, 1 << min(n, 62))) << int(rng.integers(0, max(1, n - 61)))
                for _ in range(200))]

    async def tb(ctx):
        for v in values:
            ctx.set(bits, v)
            assert ctx.get(index) == ((v & -v).bit_length() - 1 if v else 0), v
            assert ctx.get(found) == (v != 0), v

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
