"""The TTFS golden model (sw.ttfs) against independent one-at-a-time loops, its config,
its cycle model, its state files and the STDP host loop (checkpoint/resume)."""

import dataclasses

import numpy as np
import pytest

from spikeforge.config import ConfigError, TTFSConfig, load_config
from spikeforge.sim.compare import compare_ttfs
from spikeforge.sim.ttfs_rtl import TTFSRtlRun, pack_lists, unpack_lists
from spikeforge.sw import ttfs, ttfs_cycles
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.stdp_train import train_stdp
from spikeforge.sw.train import CheckpointError
from spikeforge.timing import (
    TTFS_ENCODE_OVERHEAD,
    TTFS_INTEGRATE_OVERHEAD,
    TTFS_NEURON_OVERHEAD,
)


def cfg_tiny(**fields):
    return dataclasses.replace(load_config("ttfs-tiny"), **fields)


def loop_fire(cfg, state, t_in):
    """Step by step, synapse by synapse: V += w for each input spiking at t; fire once."""
    t_out = np.full(cfg.n_out, cfg.never)
    v_out = np.zeros(cfg.n_out, dtype=np.int64)
    for i in range(cfg.n_out):
        v = 0
        for t in range(cfg.time_steps):
            for j in range(cfg.n_in):
                if state.alive[j, i] and t_in[j] == t:
                    v += int(state.weights[j, i])
            if v >= cfg.threshold:
                t_out[i], v_out[i] = t, v
                break
    return t_out, v_out


def loop_stdp(cfg, state, t_in, t_post, i):
    w, alive = state.weights.copy(), state.alive.copy()
    for j in range(cfg.n_in):
        if not alive[j, i]:
            continue
        x = int(w[j, i])
        d = x * (cfg.w_max - x)
        if t_in[j] <= t_post:
            x = min(x + (d * cfg.a_plus >> cfg.stdp_shift), cfg.w_max)
        else:
            x = max(x - (d * cfg.a_minus >> cfg.stdp_shift), 0)
        if x < cfg.prune_threshold:
            alive[j, i], x = False, 0
        w[j, i] = x
    return w, alive


def test_encode_is_ttfs():
    cfg = cfg_tiny(time_steps=11, floor=5)
    times = ttfs.encode(cfg, np.arange(256).reshape(4, 64)).ravel()
    assert (times[:5] == cfg.never).all()                         # below the floor: never
    assert (times[5:] < cfg.time_steps).all() and times[-1] == 0   # full scale: step 0
    assert (np.diff(times[5:]) <= 0).all()                        # stronger -> no later
    assert times[5] == ((255 - 5) * 11) >> 8
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        ttfs.encode(cfg, np.full((1, 64), 256))


@pytest.mark.parametrize("seed", range(4))
def test_fire_matches_loop(seed):
    rng = np.random.default_rng(seed)
    cfg = cfg_tiny(layers=(20, 7), time_steps=6, threshold=int(rng.integers(50, 2500)))
    state = ttfs.check_state(cfg, rng.integers(0, 256, size=(20, 7)),
                             rng.random((20, 7)) < 0.7)
    t_in = ttfs.encode(cfg, rng.integers(0, 256, size=(5, 20)))
    t_out, v_out = ttfs.fire(cfg, state, t_in)
    for b in range(5):
        want_t, want_v = loop_fire(cfg, state, t_in[b])
        assert (t_out[b] == want_t).all() and (v_out[b] == want_v).all()


def test_winners_rank_time_then_value_then_index():
    cfg = cfg_tiny(layers=(64, 6), winners=4)
    t_out = np.array([3, 1, 1, 8, 1, 0])       # 8 = never
    v_out = np.array([9, 5, 7, 0, 7, 1])
    assert ttfs.winners(cfg, t_out, v_out).tolist() == [5, 2, 4, 1]
    assert ttfs.winners(cfg, np.full(6, 8), np.zeros(6)).tolist() == []


@pytest.mark.parametrize("seed", range(3))
def test_stdp_matches_loop_and_pruning_is_for_good(seed):
    rng = np.random.default_rng(seed)
    cfg = cfg_tiny(layers=(30, 5), winners=2, prune_threshold=90, stdp_shift=5, a_minus=3)
    state = ttfs.check_state(cfg, rng.integers(0, 256, size=(30, 5)),
                             rng.random((30, 5)) < 0.8)
    t_in = ttfs.encode(cfg, rng.integers(0, 256, size=(1, 30)))[0]
    t_out = rng.integers(0, cfg.never + 1, size=5)
    after = ttfs.stdp(cfg, state, t_in, t_out, np.array([3, 1]))
    w, alive = state.weights, state.alive
    for i in (3, 1):
        w, alive = loop_stdp(cfg, ttfs.TTFSState(w, alive), t_in, t_out[i], i)
    assert (after.weights == w).all() and (after.alive == alive).all()
    assert not (after.alive & ~state.alive).any()               # nothing comes back
    assert (after.weights[~after.alive] == 0).all()
    untouched = [0, 2, 4]
    assert (after.weights[:, untouched] == state.weights[:, untouched]).all()


def test_pruned_synapses_cost_no_cycles():
    cfg = cfg_tiny(lanes=3, layers=(64, 10))
    dense = np.full(cfg.n_out, cfg.n_in)
    T = cfg.time_steps
    busiest = cfg.lane_neurons(0)                 # lane 0 holds 4 of the 10 neurons
    assert ttfs_cycles.infer_cycles(cfg, dense) == (
        cfg.n_in + TTFS_ENCODE_OVERHEAD + T
        + busiest * (cfg.n_in + T + TTFS_NEURON_OVERHEAD)
        + TTFS_INTEGRATE_OVERHEAD)
    pruned = dense - 40                           # 40 synapses fewer per neuron
    assert ttfs_cycles.infer_cycles(cfg, dense) - ttfs_cycles.infer_cycles(cfg, pruned) \
        == 40 * busiest
    pruned[0::3] = 0                              # lane 0 empty: lane 1 is now the slowest
    assert ttfs_cycles.infer_cycles(cfg, pruned) == ttfs_cycles.infer_cycles(
        cfg, np.where(np.arange(10) % 3 == 1, 24, 0)) == (
        cfg.n_in + TTFS_ENCODE_OVERHEAD + T
        + 3 * (24 + T + TTFS_NEURON_OVERHEAD) + TTFS_INTEGRATE_OVERHEAD)
    assert ttfs_cycles.learn_cycles(cfg, [64]) - ttfs_cycles.learn_cycles(cfg, [10]) == 54
    state = ttfs.initial_state(cfg, 0)
    step = ttfs.learn_step(cfg, state, np.full(64, 200))
    assert step.learn_cycles == ttfs_cycles.learn_cycles(cfg, state.lengths[step.winners])


def test_list_packing_round_trips():
    rng = np.random.default_rng(1)
    for prune in (0, 30):
        cfg = cfg_tiny(lanes=3, layers=(64, 10), prune_threshold=prune)
        alive = rng.random((64, 10)) < (0.6 if prune else 1.1)
        state = ttfs.check_state(cfg, rng.integers(0, 256, size=(64, 10)), alive)
        words, lengths = pack_lists(cfg, state)
        entries = [np.concatenate([w[n * 64:n * 64 + ln] for n, ln in enumerate(lens)])
                   for w, lens in zip(words, lengths, strict=True)]
        back = unpack_lists(cfg, lengths, entries)
        assert (back.weights == state.weights).all() and (back.alive == state.alive).all()


def test_compare_reports_first_weight_divergence():
    cfg = cfg_tiny()
    data = load_dataset("digits", 8)
    state, steps = ttfs.initial_state(cfg, 2), []
    for b in range(3):
        steps.append(ttfs.learn_step(cfg, state, data.train_pixels[b]))
        state = steps[-1].state
    rtl_states = [dataclasses.replace(s.state) for s in steps]
    w = rtl_states[1].weights.copy()
    j, i = np.argwhere(rtl_states[1].alive)[5]
    w[j, i] += 1
    rtl_states[1] = ttfs.TTFSState(w, rtl_states[1].alive)
    rtl = TTFSRtlRun(t_in=np.stack([s.t_in for s in steps]),
                     t_out=np.stack([s.t_out for s in steps]),
                     winners=np.stack([s.winners for s in steps]),
                     cycles=np.array([s.cycles for s in steps]),
                     edges=np.array([s.cycles for s in steps]), states=rtl_states)
    result = compare_ttfs(steps, rtl, cfg.time_steps)
    assert not result.ok and result.weight_mismatches == 1 and result.mask_mismatches == 0
    assert result.first_divergence.startswith(f"sample 1, synapse presynaptic {j} -> neuron {i}")
    assert result.summary_line() == ("compare: 3 samples, 0 spike mismatches, 1 weight "
                                     "mismatches, 0 cycle mismatches")


@pytest.mark.parametrize("fields, message", [
    ({"layers": (64, 16, 10)}, r"network.layers: a TTFS network has one learning layer"),
    ({"threshold": 64 * 255 + 1}, r"neuron.threshold: .* legal range is \[1, 16320\]"),
    ({"floor": 0}, r"encoding.floor: 0 is out of range, legal range is \[1, 255\]"),
    ({"winners": 17}, r"learning.winners: 17 is out of range, legal range is \[1, 8\]"),
    ({"prune_threshold": 256}, r"learning.prune_threshold: .* legal range is \[0, 255\]"),
    ({"init_weights": (100, 50)}, r"learning.init_weights\[1\]: .* legal range is \[100, "),
])
def test_ttfs_config_errors_name_field_and_range(fields, message):
    with pytest.raises(ConfigError, match=message):
        cfg_tiny(**fields)


def test_ttfs_config_file_errors(tmp_path):
    text = (load_config("ttfs-tiny").source and open(load_config("ttfs-tiny").source).read())
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("winners = 1", "winners = 1\nleak_shift = 2"))
    with pytest.raises(ConfigError, match=r"learning.leak_shift: unknown key"):
        load_config(bad)
    bad.write_text(text.replace('rule = "stdp"', 'rule = "desire"'))
    with pytest.raises(ConfigError, match=r"learning.rule: 'desire'"):
        load_config(bad)
    assert isinstance(load_config("ttfs-mnist"), TTFSConfig)


def test_state_file_checks(tmp_path):
    cfg = cfg_tiny()
    state = ttfs.initial_state(cfg, 0)
    path = tmp_path / "s.npz"
    ttfs.save_state(path, cfg, state)
    back = ttfs.load_state(path, cfg)
    assert (back.weights == state.weights).all()
    with pytest.raises(ttfs.TTFSStateError, match=r"expected shape \(64, 8\)"):
        ttfs.load_state(path, cfg_tiny(layers=(64, 8)))
    np.savez(path, weights=state.weights)
    with pytest.raises(ttfs.TTFSStateError, match="missing"):
        ttfs.load_state(path, cfg)
    path.write_bytes(b"not a zip")
    with pytest.raises(ttfs.TTFSStateError, match="cannot read"):
        ttfs.load_state(path, cfg)


def test_stdp_training_resumes_bit_identically(tmp_path):
    cfg = cfg_tiny()
    data = load_dataset("digits", 8)
    kw = dict(epochs=2, seed=3, train_samples=300, test_samples=100)
    full = train_stdp(cfg, data, out_dir=tmp_path / "a", **kw)
    part = train_stdp(cfg, data, out_dir=tmp_path / "b", max_samples=437, **kw)
    assert not part.complete
    rest = train_stdp(cfg, data, out_dir=tmp_path / "b", resume=True, **kw)
    assert rest.complete
    assert (rest.state.weights == full.state.weights).all()
    assert (rest.state.alive == full.state.alive).all()
    assert rest.samples == full.samples
    assert [r.readout_test for r in rest.history] == [r.readout_test for r in full.history]
    assert full.history[-1].connectivity < 1.0              # it pruned
    assert full.history[-1].readout_test > 0.5              # the features carry the class
    for name in ("state", "history", "receptive_fields", "connectivity", "cycles"):
        assert full.files[name].stat().st_size > 0
    with pytest.raises(CheckpointError, match="seed"):
        train_stdp(cfg, data, out_dir=tmp_path / "b", resume=True, **{**kw, "seed": 4})
