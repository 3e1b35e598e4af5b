"""sw/desire.py against plain integer loops of the spec, written here with Python ints.

Every fast path of the golden model (BLAS products, live-row gathers, vectorised rounding) is
checked against a slow reference that reads like the spec: per-spike saturating integration
in ascending presynaptic order, trace recursion, eligibility sums, desire thresholds taken
from the published real-valued rules with exact fractions, and the rounded, saturated update.
"""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from spikeforge import lfsr
from spikeforge.config import ConfigError, DesireConfig, NetworkConfig, load_config
from spikeforge.sw import cycles, desire
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.golden import encode, run_layers, run_network, run_raster
from spikeforge.sw.lif import fire, integrate

# ---------------------------------------------------------------------------------------------
# The spec as plain loops over Python ints
# ---------------------------------------------------------------------------------------------


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def ref_encode(cfg, pixels):
    """Non-leaky IF rate encoder: list over t of lists of 0/1."""
    theta, u, raster = cfg.encoder_threshold, [0] * len(pixels), []
    for _ in range(cfg.time_steps):
        row = []
        for j, p in enumerate(pixels):
            u[j] += int(p)
            s = int(u[j] >= theta)
            u[j] -= theta * s
            row.append(s)
        raster.append(row)
    return raster


def ref_live_input(cfg, raster):
    """An inference sample's input: the steps from ``T - L`` on carry no spike (the output
    at step t reads the input of step t - L at the latest)."""
    live = cfg.time_steps - cfg.n_layers
    return [row if t < live else [0] * len(row) for t, row in enumerate(raster)]


def whole_input_rasters(cfg, stored, pixels):
    """The golden layers on a sample's whole input raster, no step dropped (a training
    sample's inference pass)."""
    return run_layers(cfg, desire.inference_weights(cfg, stored), encode(cfg, pixels[None]))


def ref_layer(cfg, w, pre, near_threshold=None, keep=None):
    """One LIF layer: step t >= 1 adds W[j] for every s_pre[t-1][j], ascending j, saturating
    after each addition; then fire, subtract-reset, leak (arithmetic shift floors).
    ``near_threshold``: also the near raster, ``V >= theta_near`` of the membrane the spike
    test reads (0 at t = 0); returns ``(spikes, near)`` then. Dropout (``keep``, one 0/1 per
    neuron): a dropped neuron's spike (and near bit) is forced to 0 at every step, so it is
    never reset either (the float reference's ``s &= keep; v -= s``)."""
    n_post = len(w[0])
    keep = [1] * n_post if keep is None else keep
    v, out, near = [0] * n_post, [[0] * n_post], [[0] * n_post]
    for t in range(1, cfg.time_steps):
        for j, s in enumerate(pre[t - 1]):
            if s:
                for i in range(n_post):
                    v[i] = clamp(v[i] + w[j][i], cfg.v_min, cfg.v_max)
        row, near_row = [], []
        for i in range(n_post):
            near_row.append(int(near_threshold is not None and v[i] >= near_threshold)
                            & keep[i])
            s = int(v[i] >= cfg.threshold) & keep[i]
            v[i] -= cfg.threshold * s
            v[i] -= v[i] >> cfg.leak_shift
            row.append(s)
        out.append(row)
        near.append(near_row)
    return out if near_threshold is None else (out, near)


def ref_near_lif_step(cfg, w, pre, near_threshold):
    """The near raster from a straight loop of :func:`sw.lif.lif_step`'s two halves:
    ``integrate`` (per-spike saturating adds), the near test on its result, then ``fire``
    (threshold, reset, leak). Returns ``(spikes, near)`` as lists, ``(T, N_post)``."""
    w = np.asarray(w, dtype=np.int64)
    pre = np.asarray(pre, dtype=bool)
    v = np.zeros((1, w.shape[1]), dtype=np.int64)
    spikes, near = [[0] * w.shape[1]], [[0] * w.shape[1]]
    for t in range(1, cfg.time_steps):
        v = integrate(v, w, pre[None, t - 1], cfg.v_min, cfg.v_max)
        near.append((v[0] >= near_threshold).astype(int).tolist())
        v, s = fire(v, cfg.threshold, cfg.leak_shift)
        spikes.append(s[0].astype(int).tolist())
    return spikes, near


def ref_traces(cfg, pre):
    """``x[0] = 0``, ``x[t] = x[t-1] - (x[t-1] >> k) + ONE * s_pre[t-1]``."""
    n = len(pre[0])
    x = [[0] * n]
    for t in range(1, len(pre)):
        x.append([x[t - 1][j] - (x[t - 1][j] >> cfg.leak_shift) + cfg.trace_one * pre[t - 1][j]
                  for j in range(n)])
    return x


def ref_eligibility(x, post):
    """``acc[j][i] = sum_t s_post[t][i] * x[t][j]``."""
    return [[sum(post[t][i] * x[t][j] for t in range(len(x))) for i in range(len(post[0]))]
            for j in range(len(x[0]))]


def ref_backward_sums(w, coef):
    """``S_j = sum_i W[j][i] * coef_i``."""
    return [sum(w[j][i] * coef[i] for i in range(len(coef))) for j in range(len(w))]


def ref_output_desire(cfg, counts, label):
    """Published rule in exact fractions: error ``c/C*`` (label ``1 - c/C*``) > desire_out."""
    c_star, thr = cfg.target_count, Fraction(str(cfg.learning.desire_out))
    active, sign, error = [], [], []
    for i, c in enumerate(counts):
        is_label = i == label
        signed = Fraction(c_star - c if is_label else c, c_star)
        active.append(signed > thr)
        sign.append(is_label)
        error.append(abs((c_star if is_label else 0) - c))
    return active, sign, error


def ref_hidden_desire(cfg, sums, counts):
    """Published rule in exact fractions: ``|S| / (C* theta) >= desire_hidden``."""
    c_star, thr = cfg.target_count, Fraction(str(cfg.learning.desire_hidden))
    active = [Fraction(abs(s), c_star * cfg.threshold) >= thr for s in sums]
    sign = [s > 0 for s in sums]
    error = [abs((c_star if sg else 0) - c) for sg, c in zip(sign, counts, strict=True)]
    return active, sign, error


def ref_round(cfg, acc, lr_shift):
    """``|dW| = round(acc / 2**lr_shift)``: half up (nearest) or truncated (floor)."""
    q, r = divmod(acc, 1 << lr_shift)
    if cfg.learning.rounding == "nearest" and lr_shift > 0 and 2 * r >= (1 << lr_shift):
        q += 1
    return q


def ref_update(cfg, w, active, sign, acc, lr_shift):
    out = [row[:] for row in w]
    for j in range(len(w)):
        for i in range(len(w[0])):
            if active[i]:
                step = ref_round(cfg, acc[j][i], lr_shift)
                out[j][i] = clamp(w[j][i] + (step if sign[i] else -step),
                                  cfg.store_min, cfg.store_max)
    return out


def ref_stochastic_updates(cfg, stored, rasters, desires, accs, lr_shift, state):
    """Stochastic rounding in the hardware's order: LIF layers ``L-1 .. 0``; in each, the
    presynaptic ``j`` that spiked in steps ``0 .. T-2``, ascending; for each, the groups of
    ``P`` holding an active neuron, ascending: one pair, whose lane ``p`` rounds column
    ``gP + p`` with the low ``shift`` bits of LFSR ``p``, then every LFSR steps once.
    Returns the new weights of every layer and the LFSR states after them."""
    T, P, L = cfg.time_steps, cfg.lanes, cfg.n_layers
    shift = min(lr_shift, cfg.acc_max.bit_length() + 1)
    state = [int(s) for s in state]
    new = [None] * L
    for layer in reversed(range(L)):
        active, sign, _ = desires[layer]
        n_pre, n_post = len(stored[layer]), len(active)
        steps = [[0] * n_post for _ in range(n_pre)]
        groups = [g for g in range(-(-n_post // P))
                  if any(active[c] for c in range(g * P, min((g + 1) * P, n_post)))]
        for j in range(n_pre):
            if not any(rasters[layer][t][j] for t in range(T - 1)):
                continue
            for g in groups:
                for p in range(P):
                    c = g * P + p
                    if c < n_post and active[c]:
                        r = state[p] & ((1 << shift) - 1)
                        steps[j][c] = (accs[layer][j][c] + r) >> shift
                state = [lfsr.step(x) for x in state]
        new[layer] = [[clamp(w + (steps[j][i] if sign[i] else -steps[j][i]), cfg.store_min,
                             cfg.store_max) if active[i] else w
                       for i, w in enumerate(row)] for j, row in enumerate(stored[layer])]
    return new, tuple(state)


def ref_keep_masks(cfg, sample):
    """Dropout's keep-masks of training sample ``sample`` (0-based, since reset), one list of
    0/1 per LIF layer (``None`` where nothing is dropped): neuron ``g*P + p`` of a hidden
    layer ``l`` is kept iff the low 8 bits of lane ``p``'s mask LFSR, stepped one step at a
    time ``8 * (sample * G_l + g)`` times from its seed ``cfg.dropout_seeds[l][p]``, are at
    least ``dropout_hidden * 256``."""
    P, k = cfg.lanes, cfg.dropout_threshold
    keeps = [None] * cfg.n_layers
    for layer, seeds in zip(cfg.dropout_layers, cfg.dropout_seeds, strict=True):
        G, n = cfg.groups(layer), cfg.layers[layer + 1]
        keep = []
        for g in range(G):
            for p in range(P):
                state = seeds[p]
                for _ in range(8 * (sample * G + g)):
                    state = lfsr.step(state)
                keep.append(int((state & 0xFF) >= k))
        keeps[layer] = keep[:n]
    return keeps


def ref_train_step(cfg, stored, pixels, label, lr_shift, input_raster=None, lfsr_state=None,
                   keeps=None):
    """One training sample from the spec; returns a dict of plain lists. ``input_raster``
    (``T`` rows of ``N_in`` 0/1) replaces the encoder's raster of ``pixels``; stochastic
    rounding starts from ``lfsr_state`` (default: the reset states); ``keeps`` (per LIF layer
    0/1 per neuron or ``None``, :func:`ref_keep_masks`): dropout, dropped neurons never fire
    and pass no desire down."""
    stored = [[[int(v) for v in row] for row in w] for w in stored]
    f = cfg.frac_bits
    w_inf = [[[v >> f for v in row] for row in w] for w in stored]
    keeps = keeps or [None] * cfg.n_layers
    rasters = [ref_encode(cfg, pixels) if input_raster is None
               else [[int(s) for s in row] for row in input_raster]]
    near = [None]        # near eligibility: every LIF population's near raster
    for w, keep in zip(w_inf, keeps, strict=True):
        if cfg.near_eligibility:
            spikes, n = ref_layer(cfg, w, rasters[-1], cfg.near_threshold, keep)
            rasters.append(spikes)
            near.append(n)
        else:
            rasters.append(ref_layer(cfg, w, rasters[-1], keep=keep))
    counts = [[sum(col) for col in zip(*r, strict=True)] for r in rasters]
    L = cfg.n_layers
    desires, sums = [None] * L, [None] * L
    desires[L - 1] = ref_output_desire(cfg, counts[L], label)
    for layer in range(L - 1, 0, -1):
        active, sign, error = desires[layer]
        keep = keeps[layer] or [1] * len(active)
        coef = [(e if s else -e) if a and kp else 0
                for a, s, e, kp in zip(active, sign, error, keep, strict=True)]
        sums[layer - 1] = ref_backward_sums(w_inf[layer], coef)
        desires[layer - 1] = ref_hidden_desire(cfg, sums[layer - 1], counts[layer])
    # step 4: the trace pairs with the post spikes, or with near eligibility the near raster
    posts = near if cfg.near_eligibility else rasters
    accs = [ref_eligibility(ref_traces(cfg, rasters[layer]), posts[layer + 1])
            for layer in range(L)]
    state = ()
    if cfg.learning.rounding == "stochastic":
        seeds = cfg.lfsr_seeds if lfsr_state is None else lfsr_state
        new, state = ref_stochastic_updates(cfg, stored, rasters, desires, accs, lr_shift, seeds)
    else:
        new = [ref_update(cfg, stored[layer], desires[layer][0], desires[layer][1], accs[layer],
                          lr_shift) for layer in range(L)]
    return dict(rasters=rasters, counts=counts, desires=desires, sums=sums, weights=new,
                lfsr=state, near=near if cfg.near_eligibility else None)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

CFG = load_config("digits-tiny")


def with_learning(cfg, **learning):
    return dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning, **learning))


def random_stored(cfg, rng, scale=1.0):
    """Stored weights ~ N(0, (scale * 2/sqrt(N_pre) * theta * 2^F)^2), saturated."""
    out = []
    for layer in range(cfg.n_layers):
        n_pre, n_post = cfg.weight_shape(layer)
        w = rng.standard_normal((n_pre, n_post)) * scale * 2 / np.sqrt(n_pre)
        out.append(np.clip(np.rint(w * cfg.threshold * 2 ** cfg.frac_bits),
                           cfg.store_min, cfg.store_max).astype(np.int64))
    return out


def rows(a):
    return np.asarray(a).astype(np.int64).tolist()


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("leak_shift, trace_frac_bits", [(2, 4), (1, 0), (3, 7), (5, 12)])
def test_traces_match_loop(leak_shift, trace_frac_bits):
    cfg = with_learning(dataclasses.replace(CFG, leak_shift=leak_shift),
                        trace_frac_bits=trace_frac_bits)
    rng = np.random.default_rng(leak_shift)
    pre = rng.random((cfg.time_steps, 13)) < 0.4
    pre[:, 0] = True          # a neuron spiking at every step reaches trace_max
    pre[:, 1] = False
    x = desire.traces(cfg, pre)
    assert x.dtype.kind == "i"
    assert rows(x) == ref_traces(cfg, rows(pre))
    assert x[:, 0].max() <= cfg.trace_max
    assert x[-1, 0] == ref_traces(cfg, [[1]] * cfg.time_steps)[-1][0]


def test_eligibility_matches_loop():
    rng = np.random.default_rng(1)
    for steps, n_pre, n_post, top in [(20, 9, 7, 64), (5, 1, 1, 1), (40, 6, 11, 1 << 14)]:
        x = rng.integers(0, top + 1, size=(steps, n_pre))
        post = rng.random((steps, n_post)) < 0.5
        acc = desire.eligibility(x, post)
        assert acc.shape == (n_pre, n_post) and acc.dtype.kind == "i"
        assert rows(acc) == ref_eligibility(rows(x), rows(post))


def test_backward_sums_match_loop():
    rng = np.random.default_rng(2)
    for n_pre, n_post, wb in [(32, 10, 8), (7, 3, 2), (100, 64, 16)]:
        lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        w = rng.integers(lo, hi + 1, size=(n_pre, n_post))
        w[0, :] = lo                      # extremes of the weight range
        w[1, :] = hi
        coef = rng.integers(-20, 21, size=n_post)
        coef[0] = 0
        s = desire.backward_sums(w, coef)
        assert s.dtype.kind == "i"
        assert s.tolist() == ref_backward_sums(rows(w), coef.tolist())


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
@pytest.mark.parametrize("lr_shift", [0, 1, 3, 8])
def test_update_rounding_and_saturation(rounding, lr_shift):
    cfg = with_learning(CFG, rounding=rounding)
    lo, hi = cfg.store_min, cfg.store_max
    # Accumulators around every rounding boundary of this shift, and large ones.
    unit = 1 << lr_shift
    accs = sorted({0, 1, unit // 2 - 1, unit // 2, unit // 2 + 1, unit - 1, unit, unit + 1,
                   3 * unit // 2, 3 * unit // 2 + 1, 5 * unit - 1, 1000 * unit + unit // 2}
                  - {-1})
    accs = [a for a in accs if a >= 0]
    # Stored weights at and next to both saturation limits, and in the middle.
    ws = [lo, lo + 1, lo + 2, -1, 0, 1, hi - 2, hi - 1, hi]
    acc = np.array([[a] * 4 for a in accs for _ in ws], dtype=np.int64)
    stored = np.array([[w] * 4 for _ in accs for w in ws], dtype=np.int64)
    d = desire.Desire(active=np.array([True, True, False, False]),
                      sign=np.array([True, False, True, False]),
                      error=np.array([3, 3, 3, 3]))
    new = desire.update(cfg, stored, d, acc, lr_shift)
    assert rows(new) == ref_update(cfg, rows(stored), d.active.tolist(), d.sign.tolist(),
                                   rows(acc), lr_shift)
    # Inactive columns never move; saturation holds the limits.
    assert (new[:, 2:] == stored[:, 2:]).all()
    assert new.min() >= lo and new.max() <= hi


def test_update_rounding_by_hand():
    cfg = with_learning(CFG, rounding="nearest")
    d = desire.Desire(active=np.array([True, True]), sign=np.array([True, False]),
                      error=np.array([1, 1]))
    acc = np.array([[127, 128], [383, 384]])
    stored = np.array([[0, 0], [cfg.store_max - 1, cfg.store_min + 1]])
    # nearest, 2^8: 127 -> 0, 128 -> 1 (half up), 383 -> 1, 384 -> 2 (saturates both ways)
    assert desire.update(cfg, stored, d, acc, 8).tolist() == [
        [0, -1], [cfg.store_max, cfg.store_min]]
    floor = with_learning(CFG, rounding="floor")
    assert desire.update(floor, stored, d, acc, 8).tolist() == [
        [0, 0], [cfg.store_max - 1 + 1, cfg.store_min + 1 - 1]]


@pytest.mark.parametrize("lr_shift", [0, 1, 4, 12, 13, 20, 21, 40])
def test_update_stochastic_matches_loop(lr_shift):
    """``(acc + r) >> s`` with the given offsets, ``s`` the lr_shift clamped to the LFSR's
    20 bits (not to acc_bits + 1, digits-tiny's 12), saturated, inactive columns left
    alone."""
    cfg = with_learning(CFG, rounding="stochastic", weight_frac_bits=2)
    shift = min(lr_shift, cfg.max_rounding_shift)
    assert cfg.max_rounding_shift == 20 and cfg.acc_max.bit_length() + 1 == 12
    rng = np.random.default_rng(lr_shift)
    acc = rng.integers(0, cfg.acc_max + 1, size=(40, 6))
    acc[:, 0] = cfg.acc_max
    r = rng.integers(0, 1 << shift, size=acc.shape)
    r[0], r[1] = 0, (1 << shift) - 1
    stored = rng.integers(cfg.store_min, cfg.store_max + 1, size=acc.shape)
    stored[2], stored[3] = cfg.store_min, cfg.store_max
    d = desire.Desire(active=np.array([True, True, True, False, True, False]),
                      sign=np.array([True, False, True, True, False, False]),
                      error=np.ones(6, dtype=int))
    new = desire.update(cfg, stored, d, acc, lr_shift, r)
    want = [[clamp(w + ((a + o) >> shift) * (1 if d.sign[i] else -1), cfg.store_min,
                   cfg.store_max) if d.active[i] else w
             for i, (w, a, o) in enumerate(zip(ws, accs, rs, strict=True))]
            for ws, accs, rs in zip(rows(stored), rows(acc), rows(r), strict=True)]
    assert rows(new) == want
    with pytest.raises(ValueError, match=r"offsets: stochastic rounding needs the LFSR draws"):
        desire.update(cfg, stored, d, acc, lr_shift)


@pytest.mark.parametrize("shift", [1, 4, 9, 12])
def test_stochastic_rounding_is_unbiased_over_the_period(shift):
    """Over the LFSR's whole period the low ``s`` bits take every value 2^(20-s) times (0 once
    less): the mean of ``(acc + r) >> s`` is ``acc / 2^s`` to within 2^-19 relative, where
    nearest and floor rounding are off by up to half a step."""
    mask = (1 << shift) - 1
    r = lfsr.sequence().astype(np.int64) & mask
    for acc in (0, 1, 3, (1 << shift) - 1, (1 << shift) + 1, 5 * (1 << shift) // 3, 1000):
        mean = ((acc + r) >> shift).mean()
        assert abs(mean - acc / (1 << shift)) <= (acc / (1 << shift) + 1) * 2.0 ** -19, acc


def test_stochastic_updates_are_unbiased():
    """The golden model's own draws (:func:`sw.desire.rounding_offsets`, consecutive pairs of
    one layer) moved through :func:`sw.desire.update`: the mean step of each column is
    ``acc / 2^s`` within 0.03, for fractions where nearest and floor are far off."""
    cfg = with_learning(CFG, rounding="stochastic", weight_frac_bits=0, lfsr_seed=99)
    shift, rows_ = 4, 6000
    fracs = np.array([1, 3, 5, 8, 11, 15, 0, 2, 7, 13])            # sixteenths, per column
    acc = np.broadcast_to(2 * 16 + fracs, (rows_, 10))
    offsets = desire.rounding_offsets(cfg, 1, cfg.lfsr_seeds, 0, rows_, np.arange(3), shift)
    assert offsets.shape == (rows_, 10) and offsets.max() == 15 and offsets.min() == 0
    d = desire.Desire(active=np.ones(10, dtype=bool), sign=np.ones(10, dtype=bool),
                      error=np.ones(10, dtype=int))
    moved = desire.update(cfg, np.zeros((rows_, 10), dtype=np.int64), d, acc, shift, offsets)
    want = acc[0] / 16
    np.testing.assert_allclose(moved.mean(axis=0), want, atol=0.03)
    nearest = desire.update(with_learning(cfg, rounding="nearest"),
                            np.zeros((1, 10), dtype=np.int64), d, acc[:1], shift)[0]
    assert np.abs(nearest - want).max() >= 0.4          # what the test would miss otherwise


def test_output_desire_boundary():
    # C* = 16, desire_out = 0.30: floor(4.8) = 4, so an error E > 4 is active, E = 4 is not.
    assert CFG.target_count == 16 and CFG.out_desire_threshold == 4
    counts = np.array([4, 5, 12, 11, 0, 16, 17, 20, 3, 4])
    for label in (2, 3, 5, 6):
        d = desire.output_desire(CFG, counts, label)
        a, s, e = ref_output_desire(CFG, counts.tolist(), label)
        assert d.active.tolist() == a and d.sign.tolist() == s and d.error.tolist() == e
    d = desire.output_desire(CFG, counts, 2)        # label at 12: E = 16 - 12 = 4
    assert d.active.tolist() == [False, True, False, True, False, True, True, True, False,
                                 False]
    assert desire.output_desire(CFG, counts, 3).active[3]      # label at 11: E = 5
    assert not desire.output_desire(CFG, counts, 5).active[5]  # label at C*: E = 0
    assert not desire.output_desire(CFG, counts, 6).active[6]  # label above C*: E < 0
    assert desire.output_desire(CFG, counts, 6).error[6] == 1  # |16 - 17|


def test_output_desire_boundary_exact_product():
    # C* = 10, desire_out = 0.30: 0.3 * 10 = 3 exactly; E = 3 is not active (strict >).
    cfg = dataclasses.replace(CFG, learning=dataclasses.replace(CFG.learning, error_margin=10))
    assert cfg.target_count == 10 and cfg.out_desire_threshold == 3
    counts = np.array([3, 4, 7, 6, 0, 0, 0, 0, 0, 0])
    for label in (2, 3):
        d = desire.output_desire(cfg, counts, label)
        assert d.active.tolist() == ref_output_desire(cfg, counts.tolist(), label)[0]
    assert desire.output_desire(cfg, counts, 2).active[:3].tolist() == [False, True, False]
    assert desire.output_desire(cfg, counts, 3).active[3]


def test_hidden_desire_boundary():
    # ceil(0.05 * C* * theta) = ceil(0.05 * 16 * 64) = ceil(51.2) = 52.
    assert CFG.hidden_desire_threshold == 52
    sums = np.array([52, 51, -52, -51, 0, 1000, -1000, 53])
    counts = np.array([0, 3, 16, 20, 5, 17, 2, 9])
    d = desire.hidden_desire(CFG, sums, counts)
    a, s, e = ref_hidden_desire(CFG, sums.tolist(), counts.tolist())
    assert d.active.tolist() == a == [True, False, True, False, False, True, True, True]
    assert d.sign.tolist() == s == [True, True, False, False, False, True, False, True]
    assert d.error.tolist() == e == [16, 13, 16, 20, 5, 1, 2, 7]
    # An exactly representable product: 0.0625 * 16 * 64 = 64; |S| = 64 active, 63 not.
    cfg = with_learning(CFG, desire_hidden=0.0625)
    assert cfg.hidden_desire_threshold == 64
    d = desire.hidden_desire(cfg, np.array([64, 63, -64, -63]), np.zeros(4, dtype=int))
    assert d.active.tolist() == [True, False, True, False]


def test_hidden_gate_keeps_neurons_short_of_their_desire():
    """``hidden_gate = "error"``: of the neurons the backward sum makes active, a desire to
    fire more stays only below ``C* = 16`` spikes, a desire to fire less only above 0."""
    cfg = with_learning(CFG, hidden_gate="error")
    sums = np.array([52, 51, -52, -51, 0, 1000, -1000, 53, 60, -60, 60])
    counts = np.array([0, 3, 16, 20, 5, 17, 2, 9, 16, 0, 15])
    gated, ungated = (desire.hidden_desire(c, sums, counts) for c in (cfg, CFG))
    assert ungated.active.tolist() == [True, False, True, False, False, True, True, True,
                                       True, True, True]
    assert gated.active.tolist() == [True, False, True, False, False, False, True, True,
                                     False, False, True]
    assert (gated.sign == ungated.sign).all() and (gated.error == ungated.error).all()


def test_desire_coef():
    d = desire.Desire(active=np.array([True, True, False]), sign=np.array([True, False, True]),
                      error=np.array([3, 4, 5]))
    assert d.coef.tolist() == [3, -4, 0]


# ---------------------------------------------------------------------------------------------
# Whole training steps
# ---------------------------------------------------------------------------------------------

def assert_step_equal(cfg, step, ref, lr_shift):
    run = step.run
    assert len(run.rasters) == len(ref["rasters"])
    for pop, (r, rr) in enumerate(zip(run.rasters, ref["rasters"], strict=True)):
        assert r.shape == (1, cfg.time_steps, cfg.layers[pop])
        assert rows(r[0]) == rr, f"population {pop}: spikes differ"
    assert rows(run.counts[0]) == ref["counts"][-1]
    best = max(ref["counts"][-1])
    unique = ref["counts"][-1].count(best) == 1
    assert int(run.predictions[0]) == (ref["counts"][-1].index(best) if unique else -1)
    if ref["near"] is None:
        assert run.near is None
    else:
        assert run.near[0] is None
        for pop in range(1, len(cfg.layers)):
            assert run.near[pop].shape == (1, cfg.time_steps, cfg.layers[pop])
            assert rows(run.near[pop][0]) == ref["near"][pop], f"population {pop}: near"
    ref_rasters = [np.array(r, dtype=bool)[None] for r in ref["rasters"]]
    assert int(run.cycles[0]) == int(cycles.sample_cycles(cfg, ref_rasters)[0])
    assert step.infer_cycles == int(run.cycles[0])
    for layer in range(cfg.n_layers):
        a, s, e = ref["desires"][layer]
        d = step.desires[layer]
        assert d.active.tolist() == a, f"layer {layer}: desire active differs"
        assert d.sign.tolist() == s, f"layer {layer}: desire sign differs"
        assert d.error.tolist() == e, f"layer {layer}: desire error differs"
        if ref["sums"][layer] is None:
            assert step.sums[layer] is None
        else:
            assert step.sums[layer].tolist() == ref["sums"][layer]
        assert step.weights[layer].shape == cfg.weight_shape(layer)
        assert rows(step.weights[layer]) == ref["weights"][layer], f"layer {layer}: weights"
    learn = cycles.learn_cycles(cfg, [r[0] for r in ref_rasters],
                                [np.array(ref["desires"][x][0]) for x in range(cfg.n_layers)])
    assert step.learn_cycles == int(learn)
    assert step.lfsr == ref["lfsr"], "lane LFSRs after the sample"


TRAIN_CASES = {
    # name: (config changes, learning changes, weight scale)
    "digits-tiny": ({}, {}, 1.0),
    "floor-lr3": ({}, {"rounding": "floor", "lr_shift": 3}, 1.0),
    # 9-bit membranes and big weights: per-spike saturation in most steps; lr 2^0 makes
    # the update saturate at store_min/store_max.
    "saturating": ({"membrane_bits": 9, "threshold": 20},
                   {"lr_shift": 0, "weight_frac_bits": 2}, 3.0),
    "deep-odd": ({"layers": (64, 13, 9, 10), "time_steps": 11, "leak_shift": 1},
                 {"error_margin": 3, "desire_hidden": 0.2, "trace_frac_bits": 2}, 1.5),
    # stochastic rounding: few stored fraction bits, a shift at which the rounding matters;
    # P = 3 with padding lanes in every layer, and no fraction bits at all
    "stochastic": ({}, {"rounding": "stochastic", "weight_frac_bits": 2, "lr_shift": 5,
                        "lfsr_seed": 3}, 1.0),
    "stochastic-deep": ({"layers": (64, 13, 9, 10), "time_steps": 11, "leak_shift": 1,
                         "lanes": 3},
                        {"rounding": "stochastic", "error_margin": 3, "desire_hidden": 0.2,
                         "trace_frac_bits": 2, "weight_frac_bits": 0, "lr_shift": 3}, 1.5),
    # near eligibility: digits-tiny's (theta_near 32), a low fraction on saturating
    # membranes (ceil(0.15 * 20) = 3), and with stochastic rounding on three layers
    # (ceil(0.7 * 64) = 45)
    "near": ({}, {"eligibility": "near"}, 1.0),
    "near-saturating": ({"membrane_bits": 9, "threshold": 20},
                        {"lr_shift": 0, "weight_frac_bits": 2, "eligibility": "near",
                         "near_fraction": 0.15}, 3.0),
    "near-stochastic-deep": ({"layers": (64, 13, 9, 10), "time_steps": 11, "leak_shift": 1,
                              "lanes": 3},
                             {"rounding": "stochastic", "error_margin": 3,
                              "desire_hidden": 0.2, "trace_frac_bits": 2,
                              "weight_frac_bits": 0, "lr_shift": 3, "eligibility": "near",
                              "near_fraction": 0.7}, 1.5),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_step_matches_reference(case):
    changes, learning, scale = TRAIN_CASES[case]
    cfg = with_learning(dataclasses.replace(CFG, name=case, **changes), **learning)
    ds = load_dataset("digits", cfg.pixel_bits)
    rng = np.random.default_rng(11)
    stored = random_stored(cfg, rng, scale)
    state = None
    for i in range(6):
        pixels, label = ds.train_pixels[i], int(ds.train_labels[i])
        lr_shift = cfg.learning.lr_shift + (i % 2)
        if i % 2:       # held as the trainer holds them: the narrow type, int32 membranes
            stored = [np.asarray(w, dtype=cfg.store_dtype) for w in stored]
        step = desire.train_step(cfg, stored, pixels, label, lr_shift=lr_shift, lfsr=state)
        assert all(n.dtype == w.dtype for n, w in zip(step.weights, stored, strict=True))
        ref = ref_train_step(cfg, stored, pixels.tolist(), label, lr_shift, lfsr_state=state)
        assert_step_equal(cfg, step, ref, lr_shift)
        # the inference part is exactly the golden model's layers on the whole input (a
        # training sample drops no input step), and its output the inference sample's
        for a, b in zip(step.run.rasters, whole_input_rasters(cfg, stored, pixels), strict=True):
            assert (a == b).all()
        gold = run_network(cfg, desire.inference_weights(cfg, stored), pixels[None])
        assert (step.run.rasters[-1] == gold.rasters[-1]).all()
        stored, state = step.weights, step.lfsr
    assert (state != cfg.lfsr_seeds) == (cfg.learning.rounding == "stochastic")


@pytest.mark.skipif(not __import__("spikeforge.sw.datasets").sw.datasets.SHARED_MNIST_T10K.exists(),
                    reason="shared MNIST test set absent")
def test_train_step_mnist_wide_input():
    """784 inputs (live-row gathers of the first layer) on a real MNIST sample."""
    cfg = NetworkConfig(name="mnist-small", layers=(784, 12, 10), time_steps=12, lanes=4,
                        weight_bits=8, membrane_bits=12, threshold=64, leak_shift=2,
                        learning=DesireConfig(lr_shift=5))
    ds = load_dataset("mnist-t10k", 8)
    stored = random_stored(cfg, np.random.default_rng(5), 2.0)
    for i in range(2):
        pixels, label = ds.train_pixels[i], int(ds.train_labels[i])
        step = desire.train_step(cfg, stored, pixels, label)
        ref = ref_train_step(cfg, stored, pixels.tolist(), label, cfg.learning.lr_shift)
        assert_step_equal(cfg, step, ref, cfg.learning.lr_shift)
        stored = step.weights


def test_train_step_leaves_inputs_alone_and_clips_out_of_range_columns():
    cfg = CFG
    ds = load_dataset("digits", cfg.pixel_bits)
    stored = random_stored(cfg, np.random.default_rng(3))
    before = [w.copy() for w in stored]
    step = desire.train_step(cfg, stored, ds.train_pixels[0], int(ds.train_labels[0]))
    assert all((a == b).all() for a, b in zip(stored, before, strict=True))
    assert all(a is not b for a, b in zip(stored, step.weights, strict=True))
    # a stored weight outside the stored range is saturated when its column learns
    bad = [w.copy() for w in stored]
    bad[1][:, :] = cfg.store_max + 5
    ref = ref_train_step(cfg, bad, ds.train_pixels[0].tolist(), int(ds.train_labels[0]),
                         cfg.learning.lr_shift)
    got = desire.train_step(cfg, bad, ds.train_pixels[0], int(ds.train_labels[0]))
    assert rows(got.weights[1]) == ref["weights"][1]


@pytest.mark.parametrize("case", ["digits-tiny", "deep-odd", "stochastic-deep",
                                  "near-stochastic-deep"])
def test_train_step_raster_matches_reference(case):
    """Training from a given input raster (host-sent events: bursts, silent steps, any
    density) against the spec's loops fed the same raster."""
    changes, learning, scale = TRAIN_CASES[case]
    cfg = with_learning(dataclasses.replace(CFG, name=case, **changes), **learning)
    rng = np.random.default_rng(19)
    stored = random_stored(cfg, rng, scale)
    moved, state = 0, None
    for i, density in enumerate((0.1, 0.3, 0.6)):
        raster = rng.random((cfg.time_steps, cfg.layers[0])) < density
        raster[i] = False                       # a silent step
        label = int(rng.integers(cfg.layers[-1]))
        step = desire.train_step_raster(cfg, stored, raster, label, lfsr=state)
        ref = ref_train_step(cfg, stored, None, label, cfg.learning.lr_shift, raster.tolist(),
                             lfsr_state=state)
        assert_step_equal(cfg, step, ref, cfg.learning.lr_shift)
        moved += sum(int((a != b).sum()) for a, b in zip(step.weights, stored, strict=True))
        stored, state = step.weights, step.lfsr
    assert moved > 0


# ---------------------------------------------------------------------------------------------
# Dropout of the hidden neurons (mask LFSRs)
# ---------------------------------------------------------------------------------------------

DROPOUT_CASES = {
    # name: (config changes, learning changes, weight scale)
    "dropout": ({}, {"dropout_hidden": 0.25}, 1.0),
    # two hidden layers (a dropped neuron of the second passes no desire down), P = 3 with
    # padding lanes, half the neurons dropped
    "dropout-deep": ({"layers": (64, 13, 9, 10), "time_steps": 11, "leak_shift": 1,
                      "lanes": 3},
                     {"error_margin": 3, "desire_hidden": 0.2, "trace_frac_bits": 2,
                      "dropout_hidden": 0.5, "dropout_seed": 7}, 1.5),
    # with stochastic rounding: two sets of LFSRs carried side by side
    "dropout-stochastic-deep": ({"layers": (64, 13, 9, 10), "time_steps": 11,
                                 "leak_shift": 1, "lanes": 2},
                                {"rounding": "stochastic", "error_margin": 3,
                                 "desire_hidden": 0.2, "trace_frac_bits": 2,
                                 "weight_frac_bits": 0, "lr_shift": 3,
                                 "dropout_hidden": 0.375}, 1.5),
    # with near eligibility: a dropped neuron is never near either
    "dropout-near-deep": ({"layers": (64, 13, 9, 10), "time_steps": 11, "leak_shift": 1,
                           "lanes": 3},
                          {"error_margin": 3, "desire_hidden": 0.2, "trace_frac_bits": 2,
                           "eligibility": "near", "near_fraction": 0.4,
                           "dropout_hidden": 0.25, "dropout_seed": 1}, 1.5),
}


@pytest.mark.parametrize("case", sorted(DROPOUT_CASES))
def test_dropout_train_steps_match_reference(case):
    """Training samples one after another, the mask LFSRs carried along, against the spec's
    loops: keep-masks from LFSRs stepped one step at a time from their seeds, LIF layers
    whose dropped neurons never fire (nor reset), backward sums without the dropped neurons'
    coefficients. The masks matter (spiking neurons are dropped; with two hidden layers the
    masked coefficients change a backward sum), and inference never drops."""
    changes, learning, scale = DROPOUT_CASES[case]
    cfg = with_learning(dataclasses.replace(CFG, name=case, **changes), **learning)
    assert cfg.dropout_threshold
    ds = load_dataset("digits", cfg.pixel_bits)
    stored = random_stored(cfg, np.random.default_rng(11), scale)
    state = masks = None
    silenced = changed_sums = dropped = unnear = 0
    for i in range(5):
        pixels, label = ds.train_pixels[i], int(ds.train_labels[i])
        lr_shift = cfg.learning.lr_shift
        step = desire.train_step(cfg, stored, pixels, label, lr_shift=lr_shift, lfsr=state,
                                 mask_lfsr=masks)
        keeps = ref_keep_masks(cfg, i)
        assert [None if k is None else k.astype(int).tolist() for k in step.keeps] == keeps
        ref = ref_train_step(cfg, stored, pixels.tolist(), label, lr_shift, lfsr_state=state,
                             keeps=keeps)
        assert_step_equal(cfg, step, ref, lr_shift)
        plain = ref_train_step(cfg, stored, pixels.tolist(), label, lr_shift,
                               lfsr_state=state)
        for layer in cfg.dropout_layers:
            gone = np.array(keeps[layer]) == 0
            dropped += int(gone.sum())
            silenced += int(np.array(plain["rasters"][layer + 1])[:, gone].sum())
            if cfg.near_eligibility:
                unnear += int(np.array(plain["near"][layer + 1])[:, gone].sum())
        changed_sums += sum(a != b for layer in range(cfg.n_layers - 1)
                            for a, b in zip(ref["sums"][layer], plain["sums"][layer],
                                            strict=True))
        # inference: the same weights, no dropout
        gold = whole_input_rasters(cfg, stored, pixels)
        assert [rows(r[0]) for r in gold] == plain["rasters"]
        stored, state, masks = step.weights, step.lfsr, step.mask_lfsr
    assert masks == tuple(tuple(int(x) for x in lfsr.advance(seeds, 8 * 5 * cfg.groups(layer)))
                          for layer, seeds in zip(cfg.dropout_layers, cfg.dropout_seeds,
                                                  strict=True))
    p = Fraction(str(cfg.learning.dropout_hidden))
    n = 5 * sum(cfg.layers[layer + 1] for layer in cfg.dropout_layers)
    assert abs(dropped - p * n) < 4 * (n * p * (1 - p)) ** 0.5 + 1, (dropped, n)
    assert silenced > 0, "no dropped neuron would have fired: the case tests little"
    assert unnear > 0 or not cfg.near_eligibility, "no dropped neuron would have been near"
    if cfg.n_layers > 2:
        assert changed_sums > 0, "no backward sum saw a dropped neuron's coefficient"


def test_dropout_mask_rate_and_independence():
    """Over the LFSR's whole period a neuron is dropped with probability ``k / 256`` to within
    ``2^-20`` (the low byte takes every value ``2^12`` times, 0 once less), and a lane's
    neighbouring groups (8 steps apart: disjoint state bits) are dropped independently (the
    two bytes take every pair of values ``2^4`` times, (0, 0) once less); one step apart they
    would share 7 of the 8 bits."""
    seq = lfsr.sequence().astype(np.int64)
    for k in (1, 51, 64, 128, 255):
        drop = (seq & 0xFF) < k
        assert int(drop.sum()) == k * 4096 - 1
        after = np.roll(drop, -8)                   # the lane's next group
        assert int((drop & after).sum()) == k * k * 16 - 1      # (k/256)^2 of the period
    drop = (seq & 0xFF) < 64
    assert (drop & np.roll(drop, -1)).sum() / drop.sum() > 0.49     # one step: correlated


def test_dropout_state_errors():
    cfg = with_learning(CFG, dropout_hidden=0.25)
    assert desire.check_mask_lfsr(cfg, None) == cfg.dropout_seeds
    assert desire.check_mask_lfsr(CFG, None) == desire.check_mask_lfsr(CFG, ()) == ()
    stored = random_stored(cfg, np.random.default_rng(0))
    pixels = load_dataset("digits", 8).train_pixels[0]
    for bad, message in ((((1, 2, 3),), r"mask_lfsr: expected 4 lane states \(P\) per "
                                        r"layer, got 3"),
                         ((), r"mask_lfsr: expected 1 layers of mask LFSR states"),
                         (((0, 1, 1, 1),), r"mask_lfsr: state 0 is out of range, legal range "
                                           r"is \[1, 1048575\]")):
        with pytest.raises(ValueError, match=message):
            desire.train_step(cfg, stored, pixels, 1, mask_lfsr=bad)
    with pytest.raises(ValueError, match=r"mask_lfsr: expected 0 layers"):
        desire.train_step(CFG, stored, pixels, 1, mask_lfsr=cfg.dropout_seeds)


def test_train_step_errors():
    ds = load_dataset("digits", CFG.pixel_bits)
    stored = random_stored(CFG, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"label: 10 is out of range, legal range is \[0, 9\]"):
        desire.train_step(CFG, stored, ds.train_pixels[0], 10)
    with pytest.raises(ValueError, match="has no \\[learning\\] section"):
        desire.train_step(dataclasses.replace(CFG, learning=None), stored,
                          ds.train_pixels[0], 1)
    raster = np.zeros((CFG.time_steps, CFG.layers[0]), dtype=np.int64)
    with pytest.raises(ValueError, match=r"input raster: expected shape \(20, 64\), got "
                                         r"\(64, 20\)"):
        desire.train_step_raster(CFG, stored, raster.T, 1)
    raster[3, 5] = 2
    with pytest.raises(ValueError, match=r"input raster: values must be 0 or 1"):
        desire.train_step_raster(CFG, stored, raster, 1)
    with pytest.raises(ValueError, match=r"input raster: expected shape \(B, 20, 64\), got "
                                         r"\(20, 64\)"):
        run_raster(CFG, desire.inference_weights(CFG, stored), raster)


def test_batched_inference_matches_loop():
    """The compiled forward pass on a batch mixing saturating and quiet samples equals the
    plain-int loop of the spec, sample by sample."""
    cfg = dataclasses.replace(CFG, membrane_bits=9, threshold=20, time_steps=9)
    ds = load_dataset("digits", cfg.pixel_bits)
    stored = random_stored(cfg, np.random.default_rng(8), 2.5)
    w_inf = desire.inference_weights(cfg, stored)
    pixels = np.array(ds.test_pixels[:7])
    pixels[1] = 0                                  # no input at all
    pixels[2] //= 8                                # faint: stays in range
    run = run_network(cfg, w_inf, pixels)
    for b in range(len(pixels)):
        rasters = [ref_live_input(cfg, ref_encode(cfg, pixels[b].tolist()))]
        for w in w_inf:
            rasters.append(ref_layer(cfg, rows(w), rasters[-1]))
        for pop, r in enumerate(rasters):
            assert rows(run.rasters[pop][b]) == r, f"sample {b}, population {pop}"


def test_threaded_layers_equal_one_thread():
    """``workers`` splits the batch over threads: every spike is the same as on one thread,
    for a batch with saturating, quiet and ordinary samples."""
    import spikeforge.sw.golden as golden

    cfg = dataclasses.replace(CFG, membrane_bits=9, threshold=20, time_steps=9)
    ds = load_dataset("digits", cfg.pixel_bits)
    w_inf = desire.inference_weights(cfg, random_stored(cfg, np.random.default_rng(9), 2.5))
    pixels = np.array(ds.test_pixels[:23])
    pixels[1] = 0
    pixels[2] //= 8
    raster = golden.encode(cfg, pixels)
    one = golden.run_layers(cfg, w_inf, raster)
    for workers in (2, 3):
        many = golden.run_layers(cfg, w_inf, raster, workers=workers)
        for a, b in zip(one, many, strict=True):
            np.testing.assert_array_equal(a, b)
    assert one[-1].any()


def random_layer_config(rng):
    """A random small layer config (membranes up to 3 bits wider than the least legal
    width), or ``None`` where the draw is not a legal config."""
    wb, theta = int(rng.integers(2, 9)), int(rng.integers(1, 200))
    mb = max(3, (theta - 1 + (1 << (wb - 1)) - 1).bit_length() + 1) + int(rng.integers(0, 4))
    try:
        return dataclasses.replace(
            CFG, layers=(int(rng.integers(2, 24)), int(rng.integers(2, 9)), 10),
            lanes=2, time_steps=int(rng.integers(2, 12)), weight_bits=wb,
            membrane_bits=mb, threshold=theta, leak_shift=int(rng.integers(1, 4)))
    except ValueError:
        return None


def test_run_layer_random_configs_match_loop():
    """Random small layers, membranes up to 3 bits wider than the least legal width: quiet,
    saturating and mixed batches, weights read with 0 to 2 fraction bits."""
    import spikeforge.sw.golden as golden

    rng = np.random.default_rng(12)
    checked = 0
    while checked < 60:
        cfg = random_layer_config(rng)
        if cfg is None:
            continue
        checked += 1
        frac = int(rng.integers(0, 3))
        n_pre, n_post = cfg.weight_shape(0)
        w = rng.integers(cfg.w_min, cfg.w_max + 1, size=(n_pre, n_post)) << frac
        if rng.random() < 0.5:                  # one loud column among quiet ones
            w[:, 1:] //= 4
        pre = rng.random((3, cfg.time_steps, n_pre)) < rng.random()
        got = golden.run_layer(cfg, w, pre, frac)
        for b in range(3):
            want = ref_layer(cfg, rows(w >> frac), rows(pre[b]))
            assert rows(got[b]) == want, f"config {cfg.summary()}, sample {b}"
        # int16 weights integrate in int32 (golden.membrane_type): the very same spikes
        assert golden.membrane_type(cfg, w.astype(np.int16)) is np.int32
        assert (golden.run_layer(cfg, w.astype(np.int16), pre, frac) == got).all()


@pytest.mark.parametrize("pixel_bits, steps", [(8, 20), (1, 5), (4, 33), (12, 7)])
def test_encoder_lookup_matches_rate_encoder(monkeypatch, pixel_bits, steps):
    import spikeforge.sw.golden as golden
    from spikeforge.sw.encode import rate_encode

    cfg = dataclasses.replace(CFG, pixel_bits=pixel_bits, time_steps=steps)
    rng = np.random.default_rng(pixel_bits)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    pixels[0, :2] = (0, cfg.pixel_max)
    want = rate_encode(pixels, steps, cfg.encoder_threshold)
    got = golden.encode(cfg, pixels)
    assert got.shape == want.shape and got.dtype == want.dtype and (got == want).all()
    assert rows(got[1]) == ref_encode(cfg, pixels[1].tolist())
    monkeypatch.setattr(golden, "ENCODER_TABLE_MAX", 1)        # no table: the loop itself
    assert (golden.encode(cfg, pixels) == want).all()


# ---------------------------------------------------------------------------------------------
# Near eligibility: the near raster and the update it feeds
# ---------------------------------------------------------------------------------------------

def with_near(cfg, fraction=0.5):
    return with_learning(cfg, eligibility="near", near_fraction=fraction)


def test_near_raster_random_layers_match_loops():
    """:func:`sw.golden.run_layer` with a near threshold, on random small layers (quiet,
    saturating and mixed batches, near thresholds from 1 to theta, one and two threads):
    the spikes are those of the plain run, and the near raster is the plain-int loop's and
    the ``integrate``/``fire`` loop's; spikes imply near."""
    import spikeforge.sw.golden as golden

    rng = np.random.default_rng(31)
    checked = 0
    while checked < 60:
        cfg = random_layer_config(rng)
        if cfg is None:
            continue
        checked += 1
        theta = cfg.threshold
        near_theta = int(rng.choice([1, theta, int(rng.integers(1, theta + 1))]))
        frac = int(rng.integers(0, 3))
        n_pre, n_post = cfg.weight_shape(0)
        w = rng.integers(cfg.w_min, cfg.w_max + 1, size=(n_pre, n_post)) << frac
        if rng.random() < 0.5:                  # one loud column among quiet ones
            w[:, 1:] //= 4
        pre = rng.random((5, cfg.time_steps, n_pre)) < rng.random()
        pre[1] = False                          # a silent sample
        spikes, near = golden.run_layer(cfg, w, pre, frac, workers=int(rng.integers(1, 3)),
                                        near_threshold=near_theta)
        assert (spikes == golden.run_layer(cfg, w, pre, frac)).all()
        assert not (spikes & ~near).any(), "a spike without its near bit"
        assert not near[:, 0].any()
        for b in range(len(pre)):
            want_s, want_n = ref_layer(cfg, rows(w >> frac), rows(pre[b]), near_theta)
            where = f"config {cfg.summary()}, theta_near {near_theta}, sample {b}"
            assert rows(spikes[b]) == want_s, where
            assert rows(near[b]) == want_n, where
            assert ref_near_lif_step(cfg, w >> frac, pre[b], near_theta) == (want_s, want_n)


def test_near_raster_early_exits():
    """The fast path's two early exits look at theta_near with a near raster: a layer whose
    input can never reach theta but does reach theta_near, and membranes that stay near
    after the last input (no spike to keep the loop going)."""
    import spikeforge.sw.golden as golden

    cfg = dataclasses.replace(CFG, layers=(3, 2, 10), time_steps=8)    # theta 64, leak 2
    w = np.array([[50, 20], [10, 5], [0, 0]])
    pre = np.zeros((1, 8, 3), dtype=bool)
    pre[0, 0, 0] = True                     # one input spike (step 1 integrates it): V = 50
    spikes, near = golden.run_layer(cfg, w, pre, near_threshold=32)
    assert not spikes.any()
    # V = 50, 38 (leak 12), 29: near at steps 1 and 2, after the only input
    assert rows(near[0, :, 0]) == [0, 1, 1, 0, 0, 0, 0, 0]
    assert not near[0, :, 1].any()
    assert (rows(spikes[0]), rows(near[0])) == ref_layer(cfg, rows(w), rows(pre[0]), 32)
    # two input spikes; neuron 0 fires at step 2 (50, 38 + 50 = 88), neuron 1 never
    # (20, 15 + 20 = 35, then 27, 21, 16 without input) but stays near 20 until step 4,
    # after the last step with input (2) and with nothing firing
    pre[0, 1, 0] = True
    spikes, near = golden.run_layer(cfg, w, pre, near_threshold=20)
    assert rows(spikes[0, :, 0]) == [0, 0, 1, 0, 0, 0, 0, 0] and not spikes[0, :, 1].any()
    assert rows(near[0, :, 0]) == [0, 1, 1, 0, 0, 0, 0, 0]
    assert rows(near[0, :, 1]) == [0, 1, 1, 1, 1, 0, 0, 0]
    assert (rows(spikes[0]), rows(near[0])) == ref_layer(cfg, rows(w), rows(pre[0]), 20)


def test_near_fraction_one_is_the_spike_rule():
    """``near_fraction = 1``: theta_near = theta, the near raster is the spike raster and a
    training sample learns exactly what the spike rule learns."""
    cfg = with_near(CFG, 1.0)
    assert cfg.near_threshold == cfg.threshold
    ds = load_dataset("digits", cfg.pixel_bits)
    stored = random_stored(cfg, np.random.default_rng(4))
    for i in range(3):
        near = desire.train_step(cfg, stored, ds.train_pixels[i], int(ds.train_labels[i]))
        spike = desire.train_step(CFG, stored, ds.train_pixels[i], int(ds.train_labels[i]))
        for a, b in zip(near.run.near[1:], near.run.rasters[1:], strict=True):
            assert (a == b).all()
        for a, b in zip(near.weights, spike.weights, strict=True):
            assert (a == b).all()
        assert near.cycles == spike.cycles
        stored = near.weights


def test_near_eligibility_changes_only_the_post_term():
    """Near vs spike on the same samples: the spikes, counts, desires, backward sums and
    cycles are the same (they read spikes); the weights differ, only in active columns, and
    a neuron that never fired but was near potentiates; the update is the spec's
    eligibility of the near raster."""
    cfg = with_near(CFG)
    ds = load_dataset("digits", cfg.pixel_bits)
    stored = random_stored(cfg, np.random.default_rng(6))
    differ = silent_moved = 0
    for i in range(4):
        x, y = ds.train_pixels[i], int(ds.train_labels[i])
        near = desire.train_step(cfg, stored, x, y)
        spike = desire.train_step(CFG, stored, x, y)
        for a, b in zip(near.run.rasters, spike.run.rasters, strict=True):
            assert (a == b).all()
        for dn, ds_ in zip(near.desires, spike.desires, strict=True):
            assert (dn.active == ds_.active).all() and (dn.sign == ds_.sign).all()
            assert (dn.error == ds_.error).all()
        assert (near.infer_cycles, near.learn_cycles) == (spike.infer_cycles, spike.learn_cycles)
        for layer in range(cfg.n_layers):
            moved = near.weights[layer] != stored[layer]
            assert not moved[:, ~near.desires[layer].active].any()
            differ += int((near.weights[layer] != spike.weights[layer]).sum())
            never = ~near.run.rasters[layer + 1][0].any(axis=0)
            silent_moved += int(moved[:, never & near.desires[layer].sign].sum())
        stored = near.weights
    assert differ > 0 and silent_moved > 0


def test_decide_breaks_ties_by_the_first_spike():
    """Counts (2, 2, 1) with first spikes at steps (3, 1, 0): neuron 1 wins; (2, 2) both
    first at step 1: no decision; nothing fires: no decision; "none" never breaks a tie."""
    import spikeforge.sw.golden as golden

    raster = np.zeros((3, 5, 3), dtype=bool)
    raster[0, [3, 4], 0] = raster[0, [1, 4], 1] = raster[0, 0, 2] = True
    raster[1, [1, 2], 0] = raster[1, [1, 3], 1] = True
    cfg = dataclasses.replace(CFG, tie_break="first_spike")
    assert golden.first_spike_steps(raster)[0].tolist() == [3, 1, 0]
    assert golden.first_spike_steps(raster)[2].tolist() == [5, 5, 5]
    assert golden.decide(cfg, raster).tolist() == [1, -1, -1]
    assert golden.decide(CFG, raster).tolist() == [-1, -1, -1]
    with pytest.raises(ConfigError, match=r"network\.tie_break: 'last' is not one of"):
        dataclasses.replace(CFG, tie_break="last")
