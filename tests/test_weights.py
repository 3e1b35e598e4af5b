"""Weight sets: packing into memory words, .npz files, and clear errors for bad files."""

import numpy as np
import pytest

from spikeforge.config import NetworkConfig, load_config
from spikeforge.sw.weights import (
    WeightError,
    check_weights,
    load_weights,
    pack_words,
    random_weights,
    save_weights,
    unpack_words,
)


def make_cfg(layers, lanes, weight_bits, name="t"):
    w_max = (1 << (weight_bits - 1)) - 1
    membrane_bits = max(3, (1 + w_max).bit_length() + 1)
    return NetworkConfig(name=name, layers=tuple(layers), time_steps=4, lanes=lanes,
                         weight_bits=weight_bits, membrane_bits=membrane_bits, threshold=2,
                         leak_shift=2)


# (layers, lanes, weight_bits): exact multiples, padding lanes, one lane, lanes = layer size
PACK_CASES = [
    ((64, 32, 10), 4, 8),    # G = 8 and 3 (10 = 2*4 + 2: two padding lanes)
    ((5, 7, 3), 3, 5),       # 7 = 2*3 + 1, 3 = 1*3
    ((6, 4, 4), 4, 2),       # 2-bit weights, values in [-2, 1]
    ((3, 9, 2), 1, 16),      # one lane, 16-bit weights
    ((4, 16, 5), 16, 3),     # one word per presynaptic neuron; 11 padding lanes in layer 1
    ((2, 3, 4, 5), 2, 7),    # three LIF layers
]


@pytest.mark.parametrize("layers, lanes, bits", PACK_CASES)
def test_pack_unpack_round_trip(layers, lanes, bits):
    cfg = make_cfg(layers, lanes, bits)
    rng = np.random.default_rng(sum(layers) * 31 + lanes * 7 + bits)
    for layer in range(cfg.n_layers):
        n_pre, n_post = cfg.weight_shape(layer)
        w = rng.integers(cfg.w_min, cfg.w_max + 1, size=(n_pre, n_post))
        w[0, 0], w[-1, -1] = cfg.w_min, cfg.w_max  # both extremes, incl. the most negative
        words = pack_words(cfg, layer, w)
        assert len(words) == n_pre * cfg.groups(layer)
        assert all(isinstance(x, int) and 0 <= x < 1 << (lanes * bits) for x in words)
        back = unpack_words(cfg, layer, words)
        assert back.dtype == np.int64
        np.testing.assert_array_equal(back, w)


@pytest.mark.parametrize("layers, lanes, bits", PACK_CASES)
def test_padding_lanes_are_zero(layers, lanes, bits):
    cfg = make_cfg(layers, lanes, bits)
    for layer in range(cfg.n_layers):
        n_pre, n_post = cfg.weight_shape(layer)
        groups = cfg.groups(layer)
        used = n_post - (groups - 1) * lanes  # lanes in use in the last group
        words = pack_words(cfg, layer, np.full((n_pre, n_post), -1))  # all bits set
        for j in range(n_pre):
            last = words[j * groups + groups - 1]
            assert last >> (used * bits) == 0
            assert last == (1 << (used * bits)) - 1
            for g in range(groups - 1):
                assert words[j * groups + g] == (1 << (lanes * bits)) - 1


def test_pack_layout_by_hand():
    cfg = make_cfg((2, 3, 2), lanes=2, weight_bits=4)
    w = np.array([[1, -1, 7], [-8, 0, -2]])
    # word j*G + g; lane p in bits [4p, 4p+4), two's complement; missing lane 1 of group 1 is 0
    assert pack_words(cfg, 0, w) == [0xF1, 0x7, 0x08, 0xE]
    np.testing.assert_array_equal(unpack_words(cfg, 0, [0xF1, 0x7, 0x08, 0xE]), w)


def test_pack_accepts_lists():
    cfg = make_cfg((2, 3, 2), lanes=2, weight_bits=4)
    assert pack_words(cfg, 1, [[1, -1], [0, 3], [-8, 7]]) == [0xF1, 0x30, 0x78]


def test_pack_rejects_out_of_range_and_bad_shape():
    cfg = make_cfg((2, 3, 2), lanes=2, weight_bits=4)
    with pytest.raises(WeightError, match=r"w0: values in \[0, 8\] exceed the 4-bit signed "
                                          r"range \[-8, 7\]"):
        pack_words(cfg, 0, np.array([[0, 0, 8], [0, 0, 0]]))
    with pytest.raises(WeightError, match=r"w1: shape \(3, 3\) does not match the config's "
                                          r"\(3, 2\)"):
        pack_words(cfg, 1, np.zeros((3, 3), dtype=int))


def test_unpack_rejects_wrong_word_count():
    cfg = make_cfg((2, 3, 2), lanes=2, weight_bits=4)
    with pytest.raises(WeightError, match=r"w0: expected 2 x 2 = 4 words, got 6"):
        unpack_words(cfg, 0, [0] * 6)


# ---- files ---------------------------------------------------------------------------------

@pytest.fixture
def cfg():
    return load_config("digits-tiny")


@pytest.fixture
def weights(cfg):
    w = random_weights(cfg, np.random.default_rng(1), scale=1.0)
    for a in w:  # both extremes in every layer
        a[0, 0], a[-1, -1] = cfg.w_min, cfg.w_max
    return w


def test_random_weights_fit(cfg):
    for scale in (0.1, 0.5, 1.0):
        w = check_weights(cfg, random_weights(cfg, np.random.default_rng(0), scale=scale))
        assert [a.shape for a in w] == [(64, 32), (32, 10)]


def test_save_load_round_trip(tmp_path, cfg, weights):
    path = tmp_path / "w.npz"
    save_weights(path, cfg, weights)
    back = load_weights(path, cfg)
    assert len(back) == cfg.n_layers
    for a, b in zip(back, weights, strict=True):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    with np.load(path) as data:
        assert str(data["config"]) == cfg.name


def test_save_rejects_bad_weights(tmp_path, cfg, weights):
    bad = [weights[0], weights[1] + 200]
    with pytest.raises(WeightError, match=r"w1: values in .* exceed the 8-bit signed range "
                                          r"\[-128, 127\]"):
        save_weights(tmp_path / "w.npz", cfg, bad)
    assert not (tmp_path / "w.npz").exists()


def test_load_wrong_shape(tmp_path, cfg, weights):
    path = tmp_path / "w.npz"
    np.savez(path, w0=weights[0][:, :16], w1=weights[1])
    with pytest.raises(WeightError, match=r"w0: shape \(64, 16\) does not match the config's "
                                          r"\(64, 32\)"):
        load_weights(path, cfg)


def test_load_transposed(tmp_path, cfg, weights):
    path = tmp_path / "w.npz"
    np.savez(path, w0=weights[0], w1=weights[1].T)
    with pytest.raises(WeightError, match=r"w1: shape \(10, 32\) does not match the config's "
                                          r"\(32, 10\)"):
        load_weights(path, cfg)


def test_load_wrong_layer_count_for_config(tmp_path, weights):
    # a file made for a 3-layer net loaded against a config expecting 4 LIF layers
    path = tmp_path / "w.npz"
    np.savez(path, w0=weights[0], w1=weights[1])
    cfg4 = make_cfg((64, 32, 10, 10, 10), lanes=4, weight_bits=8, name="deep")
    with pytest.raises(WeightError, match=r"missing arrays \['w2', 'w3'\] for config 'deep'"):
        load_weights(path, cfg4)


@pytest.mark.parametrize("value, lo_hi", [(128, r"\[-128, 128\]"), (-129, r"\[-129, 127\]")])
def test_load_out_of_range(tmp_path, cfg, weights, value, lo_hi):
    path = tmp_path / "w.npz"
    w1 = weights[1].copy()
    w1[3, 4] = value
    np.savez(path, w0=weights[0], w1=w1)
    with pytest.raises(WeightError, match=rf"w1: values in {lo_hi} exceed the 8-bit signed "
                                          rf"range \[-128, 127\]"):
        load_weights(path, cfg)


def test_load_float_weights(tmp_path, cfg, weights):
    path = tmp_path / "w.npz"
    np.savez(path, w0=weights[0].astype(np.float32), w1=weights[1])
    with pytest.raises(WeightError, match=r"w0: dtype float32 is not an integer type"):
        load_weights(path, cfg)


def test_load_missing_array(tmp_path, cfg, weights):
    path = tmp_path / "w.npz"
    np.savez(path, w0=weights[0])
    with pytest.raises(WeightError, match=r"w\.npz: missing arrays \['w1'\] for config "
                                          r"'digits-tiny'"):
        load_weights(path, cfg)


@pytest.mark.parametrize("content", [
    b"this is not a weight file\n",
    b"",
    b"PK\x03\x04" + b"\x00" * 40,  # zip signature, garbage after it
], ids=["text", "empty", "bad-zip"])
def test_load_corrupt_file(tmp_path, cfg, content):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    with pytest.raises(WeightError, match=r"w\.npz: not a readable \.npz weight file"):
        load_weights(path, cfg)


def test_load_truncated_npz(tmp_path, cfg, weights):
    good = tmp_path / "good.npz"
    save_weights(good, cfg, weights)
    path = tmp_path / "w.npz"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightError, match=r"w\.npz: not a readable \.npz weight file"):
        load_weights(path, cfg)


def test_load_npy_instead_of_npz(tmp_path, cfg, weights):
    path = tmp_path / "w.npy"
    np.save(path, weights[0])
    with pytest.raises(WeightError, match=r"w\.npy: not an \.npz weight file.*\['w0', 'w1'\]"):
        load_weights(path, cfg)


def test_load_missing_file(tmp_path, cfg):
    with pytest.raises(WeightError, match=r"absent\.npz: not a readable \.npz weight file"):
        load_weights(tmp_path / "absent.npz", cfg)


def test_check_weights_layer_count(cfg, weights):
    with pytest.raises(WeightError, match=r"weights: expected 2 layer arrays, got 1"):
        check_weights(cfg, weights[:1])
