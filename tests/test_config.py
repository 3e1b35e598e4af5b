"""Config loading: shipped profiles load; every invalid TOML fails at load time with a message
naming the field and its legal range."""

import dataclasses
import re
from fractions import Fraction
from pathlib import Path

import pytest

from spikeforge.config import (
    CONFIG_DIR,
    ConfigError,
    NetworkConfig,
    TTFSConfig,
    load_config,
    profile_names,
)

BASE = """\
name = "test-net"
dataset = "digits"

[network]
layers = [64, 32, 10]
time_steps = 20
lanes = 4

[neuron]
weight_bits = 8
membrane_bits = 16
threshold = 64
leak_shift = 2

[encoding]
kind = "rate"
pixel_bits = 8
"""


# Legal layer sizes as the messages print them; the lower bound (1 or 2) is policy, not tested.
LAYERS = r"\[\d, 4096\]"


def write(tmp_path, text, name="net.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def variant(key, value):
    """BASE with the line ``key = ...`` replaced by ``key = value`` (value is TOML text)."""
    text, n = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}", BASE)
    assert n == 1, key
    return text


def without(key):
    text, n = re.subn(rf"(?m)^{re.escape(key)} = .*\n", "", BASE)
    assert n == 1, key
    return text


# ---- valid configs -------------------------------------------------------------------------

def test_profiles_are_shipped():
    assert {"digits-tiny", "mnist-ecp5"} <= set(profile_names())


@pytest.mark.parametrize("name", profile_names())
def test_profile_loads_by_name_and_path(name):
    by_name = load_config(name)
    by_path = load_config(CONFIG_DIR / f"{name}.toml")
    by_str_path = load_config(str(CONFIG_DIR / f"{name}.toml"))
    assert isinstance(by_name, TTFSConfig if by_name.encoding == "ttfs" else NetworkConfig)
    assert by_name == by_path == by_str_path
    assert by_name.name == name
    assert len(by_name.layers) >= 2
    assert by_name.summary().startswith(name)


def test_digits_tiny_values():
    cfg = load_config("digits-tiny")
    assert cfg.layers == (64, 32, 10)
    assert (cfg.time_steps, cfg.lanes) == (20, 4)
    assert (cfg.weight_bits, cfg.membrane_bits, cfg.threshold, cfg.leak_shift) == (8, 16, 64, 2)
    assert (cfg.encoding, cfg.pixel_bits, cfg.dataset) == ("rate", 8, "digits")
    assert (cfg.w_min, cfg.w_max, cfg.v_min, cfg.v_max) == (-128, 127, -32768, 32767)
    assert cfg.groups(0) == 8 and cfg.groups(1) == 3
    assert cfg.n_synapses == 64 * 32 + 32 * 10


def test_base_text_is_valid(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.name == "test-net"
    assert cfg.source == str(tmp_path / "net.toml")


def test_name_defaults_to_file_stem(tmp_path):
    cfg = load_config(write(tmp_path, without("name"), "my-profile.toml"))
    assert cfg.name == "my-profile"


def test_pixel_bits_is_optional(tmp_path):
    assert load_config(write(tmp_path, without("pixel_bits"))).pixel_bits == 8


def test_event_input_is_optional_and_on_by_default(tmp_path):
    assert load_config(write(tmp_path, BASE)).event_input is True
    off = BASE.replace('kind = "rate"\n', 'kind = "rate"\nevent_input = false\n')
    assert load_config(write(tmp_path, off)).event_input is False
    assert all(load_config(name).event_input for name in ("digits-tiny", "digits-up5k"))


def test_encoder_threshold_is_optional(tmp_path):
    """``encoding.threshold`` defaults to the full-scale pixel; a set one is the encoder's."""
    assert load_config(write(tmp_path, BASE)).encoder_threshold == 255
    text = BASE.replace('kind = "rate"\n', 'kind = "rate"\nthreshold = 320\n')
    cfg = load_config(write(tmp_path, text))
    assert (cfg.input_threshold, cfg.encoder_threshold) == (320, 320)
    assert "theta_in=320" in cfg.summary()


def test_early_exit_is_optional_and_excludes_a_decoder(tmp_path):
    from spikeforge.config import DecoderConfig

    assert load_config(write(tmp_path, BASE)).early_exit == "none"
    cfg = load_config(write(tmp_path, BASE.replace("lanes = 4\n",
                                                   'lanes = 4\nearly_exit = "settled"\n')))
    assert cfg.early_exit == "settled" and "settled" in cfg.summary()
    with pytest.raises(ConfigError, match=r"network\.early_exit: the \[decoder\] has an exit "
                                          r"of its own"):
        dataclasses.replace(cfg, decoder=DecoderConfig(steps=4))


def test_edge_values_are_legal(tmp_path):
    text = variant("layers", "[2, 2]")
    text = re.sub(r"(?m)^lanes = .*$", "lanes = 1", text)
    text = re.sub(r"(?m)^time_steps = .*$", "time_steps = 1", text)
    text = re.sub(r"(?m)^threshold = .*$", "threshold = 1", text)
    text = re.sub(r"(?m)^weight_bits = .*$", "weight_bits = 2", text)
    text = re.sub(r"(?m)^membrane_bits = .*$", "membrane_bits = 3", text)
    cfg = load_config(write(tmp_path, text))
    assert cfg.min_membrane_bits == 3
    # lanes may equal the largest (non-input) layer
    assert load_config(write(tmp_path, variant("lanes", "32"))).lanes == 32
    # the tightest membrane that holds threshold - 1 + max weight = 63 + 127 = 190
    assert load_config(write(tmp_path, variant("membrane_bits", "9"))).v_max == 255


# ---- invalid configs: (TOML text, regex the ConfigError message must match) -------------------

INVALID = {
    "layer size zero": (
        variant("layers", "[64, 0, 10]"),
        r"network\.layers\[1\]: 0 is out of range, legal range is " + LAYERS),
    "layer size negative": (
        variant("layers", "[64, 32, -10]"),
        r"network\.layers\[2\]: -10 is out of range, legal range is " + LAYERS),
    "layer size too large": (
        variant("layers", "[64, 5000, 10]"),
        r"network\.layers\[1\]: 5000 is out of range, legal range is " + LAYERS),
    "input size zero": (
        variant("layers", "[0, 32, 10]"),
        r"network\.layers\[0\]: 0 is out of range, legal range is " + LAYERS),
    "single layer": (
        variant("layers", "[64]"),
        r"network\.layers: expected a list of at least 2 sizes"),
    "empty layers": (
        variant("layers", "[]"),
        r"network\.layers: expected a list of at least 2 sizes"),
    "layers not a list": (
        variant("layers", "64"),
        r"network\.layers: expected a list of at least 2 sizes"),
    "layer size float": (
        variant("layers", "[64, 32.0, 10]"),
        r"network\.layers\[1\]: expected an integer in " + LAYERS + r", got 32\.0"),
    "time steps zero": (
        variant("time_steps", "0"),
        r"network\.time_steps: 0 is out of range, legal range is \[1, 1024\]"),
    "time steps negative": (
        variant("time_steps", "-3"),
        r"network\.time_steps: -3 is out of range, legal range is \[1, 1024\]"),
    "time steps too many": (
        variant("time_steps", "1025"),
        r"network\.time_steps: 1025 is out of range, legal range is \[1, 1024\]"),
    "zero lanes": (
        variant("lanes", "0"),
        r"network\.lanes: 0 is out of range, legal range is \[1, 32\]"),
    "lanes above largest layer": (
        variant("lanes", "33"),
        r"network\.lanes: 33 is out of range, legal range is \[1, 32\]"),
    "weight bits too few": (
        variant("weight_bits", "1"),
        r"neuron\.weight_bits: 1 is out of range, legal range is \[2, 16\]"),
    "weight bits too many": (
        variant("weight_bits", "17"),
        r"neuron\.weight_bits: 17 is out of range, legal range is \[2, 16\]"),
    "membrane bits too few": (
        variant("membrane_bits", "2"),
        r"neuron\.membrane_bits: 2 is out of range, legal range is \[3, 32\]"),
    "membrane bits too many": (
        variant("membrane_bits", "33"),
        r"neuron\.membrane_bits: 33 is out of range, legal range is \[3, 32\]"),
    "membrane too narrow for threshold - 1 + max weight": (
        variant("membrane_bits", "8"),
        r"neuron\.membrane_bits: 8 bits \(max 127\) cannot hold threshold - 1 \+ max weight "
        r"= 190; legal range is \[9, 32\]"),
    "threshold too large for any membrane": (
        BASE.replace("weight_bits = 8", "weight_bits = 16")
            .replace("membrane_bits = 16", "membrane_bits = 32")
            .replace("threshold = 64", "threshold = 2147483647"),
        r"neuron\.threshold: .*legal range is \[1, 2147450881\]"),
    "threshold zero": (
        variant("threshold", "0"),
        r"neuron\.threshold: 0 is out of range, legal range is \[1, 32767\]"),
    "threshold negative": (
        variant("threshold", "-5"),
        r"neuron\.threshold: -5 is out of range, legal range is \[1, 32767\]"),
    "threshold above v_max": (
        variant("threshold", "40000"),
        r"neuron\.threshold: 40000 is out of range, legal range is \[1, 32767\]"),
    "leak shift zero": (
        variant("leak_shift", "0"),
        r"neuron\.leak_shift: 0 is out of range, legal range is \[1, 16\]"),
    "pixel bits zero": (
        variant("pixel_bits", "0"),
        r"encoding\.pixel_bits: 0 is out of range, legal range is \[1, 16\]"),
    "event input not a bool": (
        BASE.replace('kind = "rate"\n', 'kind = "rate"\nevent_input = 1\n'),
        r"encoding\.event_input: expected true or false, got 1"),
    "unknown early exit": (
        BASE.replace("lanes = 4\n", 'lanes = 4\nearly_exit = "soon"\n'),
        r"network\.early_exit: 'soon' is not one of \('none', 'settled'\)"),
    "encoder threshold below full scale": (
        BASE.replace('kind = "rate"\n', 'kind = "rate"\nthreshold = 254\n'),
        r"encoding\.threshold: 254 is out of range, legal range is \[255, 1020\]"),
    "encoder threshold above 4x": (
        BASE.replace('kind = "rate"\n', 'kind = "rate"\nthreshold = 1021\n'),
        r"encoding\.threshold: 1021 is out of range, legal range is \[255, 1020\]"),
    "unknown key": (
        BASE.replace("lanes = 4\n", "lanes = 4\nlane = 4\n"),
        r"network\.lane: unknown key; known: \['early_exit', 'lanes', 'layers', "
        r"'spram_layers', 'tie_break', 'time_steps'\]"),
    "unknown top-level key": (
        'colour = "blue"\n' + BASE,
        r"colour: unknown section or key; known: \["),
    "unknown section": (
        BASE + "\n[training]\nepochs = 3\n",
        r"training: unknown section or key; known: .*'encoding'.*'network'.*'neuron'"),
    "missing key": (
        without("threshold"),
        r"neuron\.threshold: missing"),
    "missing key lanes": (
        without("lanes"),
        r"network\.lanes: missing"),
    "missing section": (
        BASE.split("[neuron]")[0] + "[encoding]\nkind = \"rate\"\n",
        r"\[neuron\]: missing table with keys \['leak_shift', 'membrane_bits', 'threshold', "
        r"'weight_bits'\]"),
    "section given as a value": (
        BASE.split("[network]")[0] + "network = 5\n[neuron]" + BASE.split("[neuron]")[1],
        r"\[network\]: missing table"),
    "bad TOML": (
        BASE.replace("lanes = 4", "lanes = = 4"),
        r"not valid TOML"),
    "bad TOML unterminated": (
        BASE.replace('kind = "rate"', 'kind = "rate'),
        r"not valid TOML"),
    "unknown encoding": (
        variant("kind", '"poisson"'),
        r"encoding\.kind: 'poisson' is not one of \('rate', 'ttfs'\)"),
    "unknown dataset": (
        variant("dataset", '"cifar10"'),
        r"dataset: 'cifar10' is not one of \("),
    "bool passed as int": (
        variant("time_steps", "true"),
        r"network\.time_steps: expected an integer in \[1, 1024\], got True"),
    "bool passed as layer size": (
        variant("layers", "[64, true, 10]"),
        r"network\.layers\[1\]: expected an integer in " + LAYERS + r", got True"),
    "bool passed as lanes": (
        variant("lanes", "false"),
        r"network\.lanes: expected an integer in \[1, 32\], got False"),
    "string passed as int": (
        variant("threshold", '"64"'),
        r"neuron\.threshold: expected an integer in \[1, 32767\], got '64'"),
    "float passed as int": (
        variant("weight_bits", "8.0"),
        r"neuron\.weight_bits: expected an integer in \[2, 16\], got 8\.0"),
    "empty name": (
        variant("name", '""'),
        r"name: expected a non-empty string"),
}


@pytest.mark.parametrize("text, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_fails_at_load(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_unknown_profile_name():
    with pytest.raises(ConfigError,
                       match=r"config 'no-such-net': no such profile; shipped profiles are "
                             r"\[.*'digits-tiny'.*\]"):
        load_config("no-such-net")


def test_missing_toml_path(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file"):
        load_config(tmp_path / "absent.toml")


def test_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file"):
        load_config(tmp_path)


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match=r"network\.lanes: 11 is out of range"):
        NetworkConfig(name="x", layers=(4, 10), time_steps=5, lanes=11, weight_bits=8,
                      membrane_bits=16, threshold=64, leak_shift=2)


def test_learning_needs_three_time_steps(tmp_path):
    """Desire learning needs steps 0 .. T-2 for the traces and one after them: T >= 3."""
    learning = Path(load_config("digits-tiny").source).read_text().split("[learning]")[1]
    text = variant("time_steps", "2") + "\n[learning]" + learning
    with pytest.raises(ConfigError, match=r"network\.time_steps: 2 is out of range for "
                                          r"\[learning\], legal range is \[3, \d+\]"):
        load_config(write(tmp_path, text))
    legal = re.sub(r"(?m)^error_margin = .*$", "error_margin = 1", text)
    assert load_config(write(tmp_path, legal.replace("time_steps = 2", "time_steps = 3")))


# ---- stochastic rounding: the lane LFSRs ---------------------------------------------------

def learning_text(**changes):
    """BASE with digits-tiny's [learning] section, ``changes`` set (TOML text values)."""
    learning = Path(load_config("digits-tiny").source).read_text().split("[learning]")[1]
    for key, value in changes.items():
        learning, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", learning)
        if not n:
            learning += f"{key} = {value}\n"
    return BASE + "\n[learning]" + learning


def test_stochastic_rounding_config(tmp_path):
    from spikeforge import lfsr

    cfg = load_config(write(tmp_path, learning_text(rounding='"stochastic"', weight_frac_bits=0,
                                                    lfsr_seed=12345)))
    assert cfg.learning.rounding == "stochastic" and cfg.frac_bits == 0
    assert cfg.lfsr_seeds == lfsr.lane_seeds(12345, cfg.lanes) and len(cfg.lfsr_seeds) == 4
    assert cfg.summary().endswith("lr 2^-0, stochastic (Galois LFSR x^20+x^17+1 per lane, "
                                  "20 bits, seed 12345)")
    assert cfg.max_rounding_shift == lfsr.WIDTH
    # the other modes take the key (unused) and have no LFSRs
    nearest = load_config(write(tmp_path, learning_text(lfsr_seed=7)))
    assert nearest.lfsr_seeds == () and "LFSR" not in nearest.summary()
    assert load_config("digits-tiny").learning.lfsr_seed == 0


@pytest.mark.parametrize("seed", ["-1", "1048575", '"3"', "true"])
def test_lfsr_seed_range(tmp_path, seed):
    with pytest.raises(ConfigError, match=r"learning\.lfsr_seed: (.* is out of range, legal "
                                          r"range is|expected an integer in) \[0, 1048574\]"):
        load_config(write(tmp_path, learning_text(lfsr_seed=seed)))


def test_rounding_shift_clamp_per_mode(tmp_path):
    """Nearest and floor clamp lr_shift to acc_bits + 1 (where every acc rounds to 0);
    stochastic to the LFSR's 20 bits, also where acc_bits + 1 is more (long traces) or far
    less (the default traces, acc_bits + 1 = 12)."""
    from spikeforge import lfsr

    long = learning_text(rounding='"stochastic"', trace_frac_bits=12).replace(
        "time_steps = 20", "time_steps = 200")
    cfg = load_config(write(tmp_path, long))
    assert cfg.acc_max.bit_length() + 1 > lfsr.WIDTH == cfg.max_rounding_shift
    short = load_config(write(tmp_path, learning_text(rounding='"stochastic"')))
    assert short.acc_max.bit_length() + 1 < lfsr.WIDTH == short.max_rounding_shift
    for mode in ("nearest", "floor"):
        other = load_config(write(tmp_path, long.replace('"stochastic"', f'"{mode}"')))
        assert other.max_rounding_shift == other.acc_max.bit_length() + 1


# ---- near eligibility --------------------------------------------------------------------

@pytest.mark.parametrize("fraction, theta_near", [
    ("0.5", 32), ("0.3", 20), ("1", 64), ("1.0", 64), ("0.015625", 1), ("0.015626", 2),
    ("1e-9", 1), ("0.99", 64), ("0.98", 63)])
def test_near_threshold_is_exact(tmp_path, fraction, theta_near):
    """``ceil(near_fraction * theta)`` from the decimal as written (0.3 * 64 = 19.2 -> 20;
    1/64 of 64 is exactly 1, a hair more is 2), always in [1, theta]."""
    cfg = load_config(write(tmp_path, learning_text(eligibility='"near"',
                                                    near_fraction=fraction)))
    assert cfg.near_eligibility and cfg.near_threshold == theta_near
    assert f", near eligibility V>={theta_near} (" in cfg.summary()


def test_eligibility_defaults_to_spike(tmp_path):
    cfg = load_config("digits-tiny")
    assert (cfg.learning.eligibility, cfg.learning.near_fraction) == ("spike", 0.5)
    assert not cfg.near_eligibility and "near eligibility" not in cfg.summary()
    near = load_config("digits-near")
    assert near.near_eligibility and near.near_threshold == 32
    # the profile is digits-tiny with near eligibility and its learning options, nothing else
    import dataclasses
    assert dataclasses.replace(
        near, name="digits-tiny", source=cfg.source, tie_break="none",
        learning=dataclasses.replace(near.learning, eligibility="spike", error_margin=4,
                                     desire_out=0.3, desire_hidden=0.05,
                                     lr_decay=0.35)) == cfg
    # near_fraction is taken (and checked) with "spike" too, unused
    assert not load_config(write(tmp_path, learning_text(near_fraction=0.25))).near_eligibility


@pytest.mark.parametrize("value, message", [
    ('"nearby"', r"learning\.eligibility: 'nearby' is not one of \('spike', 'near'\)"),
    ('"Spike"', r"learning\.eligibility: 'Spike' is not one of \('spike', 'near'\)"),
    ("1", r"learning\.eligibility: 1 is not one of \('spike', 'near'\)"),
])
def test_eligibility_values(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, learning_text(eligibility=value)))


@pytest.mark.parametrize("value", ["0", "0.0", "-0.5", "1.01", "2", "inf", "nan"])
def test_near_fraction_range(tmp_path, value):
    with pytest.raises(ConfigError, match=r"learning\.near_fraction: .* is out of range, "
                                          r"legal range is \(0, 1\]"):
        load_config(write(tmp_path, learning_text(eligibility='"near"', near_fraction=value)))


@pytest.mark.parametrize("value", ['"0.5"', "true", "[0.5]"])
def test_near_fraction_type(tmp_path, value):
    with pytest.raises(ConfigError, match=r"learning\.near_fraction: expected a number in "
                                          r"\(0, 1\], got"):
        load_config(write(tmp_path, learning_text(near_fraction=value)))


def test_unknown_learning_key_lists_the_new_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"learning\.near: unknown key; known: \[.*"
                                          r"'eligibility', .*'near_fraction', .*\]"):
        load_config(write(tmp_path, learning_text(near="0.5")))
# ---- dropout of the hidden neurons: the mask LFSRs ------------------------------------------

def test_dropout_config(tmp_path):
    from spikeforge import lfsr

    cfg = load_config(write(tmp_path, learning_text(dropout_hidden="0.25", dropout_seed=99)))
    assert cfg.dropout_threshold == 64 and cfg.dropout_layers == (0,)
    D = lfsr.PERIOD // cfg.lanes
    # one hidden population (H = 1): lane p at dropout_seed + D/2 + p*D + D/4
    assert cfg.dropout_seeds == (lfsr.lane_seeds(99 + D // 4, cfg.lanes),)
    assert cfg.dropout_seeds[0] == tuple(lfsr.jump(1, 99 + D // 2 + p * D + D // 4)
                                         for p in range(cfg.lanes))
    assert cfg.summary().endswith("nearest; hidden dropout 0.25 = 64/256, unscaled (mask "
                                  "Galois LFSR x^20+x^17+1 per lane and hidden layer, seed 99)")
    # three hidden populations: D/8 apart, all between a rounding lane and the next lane's
    deep = dataclasses.replace(cfg, layers=(64, 9, 8, 7, 10))
    assert deep.dropout_layers == (0, 1, 2)
    assert deep.dropout_seeds == tuple(lfsr.lane_seeds(99 + h * D // 8, 4) for h in (1, 2, 3))
    flat = {s for lanes in deep.dropout_seeds for s in lanes} | set(lfsr.lane_seeds(99, 4))
    assert len(flat) == 16                   # distinct from each other and the rounding lanes
    # off: no masks, no text, and the seed is unused
    off = load_config(write(tmp_path, learning_text(dropout_seed=5)))
    assert (off.dropout_threshold, off.dropout_layers, off.dropout_seeds) == (0, (), ())
    assert "dropout" not in off.summary()
    assert load_config("digits-dropout").dropout_threshold == 64
    assert load_config("digits-tiny").learning.dropout_hidden == 0


@pytest.mark.parametrize("value, k", [("0", 0), ("0.5", 128), ("0.00390625", 1),
                                      ("0.99609375", 255), ("0.19921875", 51), ("0.125", 32)])
def test_dropout_hidden_exact_multiples_of_1_256(tmp_path, value, k):
    cfg = load_config(write(tmp_path, learning_text(dropout_hidden=value)))
    assert cfg.dropout_threshold == k
    assert Fraction(value) == Fraction(k, 256)


@pytest.mark.parametrize("value, message", [
    ("0.2", r"0\.2 is not a multiple of 1/256; legal values are k/256 for k = 0 \.\. 255 "
            r"\(e\.g\. 0, 0\.125, 0\.25, 0\.5\); the nearest: 0\.19921875 \(51/256\) and "
            r"0\.203125 \(52/256\)"),
    ("0.999", r"0\.999 is not a multiple of 1/256; .*the nearest: 0\.99609375 \(255/256\)$"),
    ("1", r"1 is out of range \[0, 1\); legal values are k/256"),
    ("1.0", r"1\.0 is out of range \[0, 1\)"),
    ("-0.25", r"-0\.25 is out of range \[0, 1\)"),
    ('"0.25"', r"expected a number, got '0\.25'; legal values are k/256"),
    ("true", r"expected a number, got True"),
    ("nan", r"expected a number, got nan"),
])
def test_dropout_hidden_refused(tmp_path, value, message):
    with pytest.raises(ConfigError, match=r"learning\.dropout_hidden: " + message):
        load_config(write(tmp_path, learning_text(dropout_hidden=value)))


@pytest.mark.parametrize("seed", ["-1", "1048575", '"3"', "true"])
def test_dropout_seed_range(tmp_path, seed):
    with pytest.raises(ConfigError, match=r"learning\.dropout_seed: (.* is out of range, legal "
                                          r"range is|expected an integer in) \[0, 1048574\]"):
        load_config(write(tmp_path, learning_text(dropout_hidden="0.25", dropout_seed=seed)))


def test_dropout_needs_a_hidden_layer(tmp_path):
    text = learning_text(dropout_hidden="0.25").replace("layers = [64, 32, 10]",
                                                        "layers = [64, 10]")
    assert "layers = [64, 10]" in text
    with pytest.raises(ConfigError, match=r"learning\.dropout_hidden: 0\.25 needs a hidden "
                                          r"layer \(network\.layers \[64, 10\] has none\); "
                                          r"legal value here is 0"):
        load_config(write(tmp_path, text))


# ---- hidden error gate ---------------------------------------------------------------------

def test_hidden_gate(tmp_path):
    """Off by default (hashes as before it existed); "error" is named in the summary and
    changes both hashes."""
    from spikeforge.protocol import gateware_hash
    from spikeforge.sw.train import config_hash

    plain = load_config(write(tmp_path, learning_text()))
    assert plain.learning.hidden_gate == "none" and "hidden neurons learn" not in plain.summary()
    named = load_config(write(tmp_path, learning_text(hidden_gate='"none"')))
    assert (gateware_hash(named), config_hash(named)) == (gateware_hash(plain),
                                                          config_hash(plain))
    gated = load_config(write(tmp_path, learning_text(hidden_gate='"error"')))
    assert "hidden neurons learn until their count meets the desire" in gated.summary()
    assert gateware_hash(gated) != gateware_hash(plain)
    assert config_hash(gated) != config_hash(plain)


@pytest.mark.parametrize("value", ['"errors"', '"None"', "true"])
def test_hidden_gate_values(tmp_path, value):
    with pytest.raises(ConfigError, match=r"learning\.hidden_gate: .* is not one of "
                                          r"\('none', 'error'\)"):
        load_config(write(tmp_path, learning_text(hidden_gate=value)))
