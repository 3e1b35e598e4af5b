"""The command line's one way to fail: a user error is one line ``spikeforge <command>: error:
...`` on stderr naming the problem and the legal values, exit 2; a bug propagates."""

from __future__ import annotations

import re

import pytest

from spikeforge import cli
from spikeforge.commands import compare, configs
from spikeforge.config import profile_names
from spikeforge.hw.boards import BOARDS
from spikeforge.sw.datasets import DATASET_NAMES


def _error_line(capsys, argv: list[str]) -> str:
    """Run ``spikeforge argv``, which must fail with exit 2 (returned, or argparse's
    SystemExit) and exactly one error line; return that line."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    assert rc == 2, (argv, rc, captured.err)
    errors = captured.err.splitlines()
    assert len(errors) == 1, f"not one line on stderr:\n{captured.err}"
    assert errors[0].startswith(f"spikeforge {argv[0]}: error: "), errors[0]
    return errors[0]


def _names(names) -> str:
    """The legal names as argparse lists them: 'a', 'b', 'c'."""
    return ", ".join(re.escape(repr(n)) for n in names)


WRONG = {
    "unknown profile": (
        ["compare", "-c", "nosuch", "-n", "2"],
        r"config 'nosuch': no such profile; shipped profiles are \[(.*, )?'digits-tiny', .*\]"),
    "samples 0": (
        ["compare", "-c", "digits-tiny", "--samples", "0"],
        r"argument --samples/-n: 0 is out of range, must be >= 1"),
    "samples not a number": (
        ["compare", "-c", "digits-tiny", "--samples", "some"],
        r"argument --samples/-n: expected an integer >= 1, got 'some'"),
    "too many samples": (
        ["compare", "-c", "digits-tiny", "--samples", "5000"],
        r"samples: 5000 is out of range, legal range is \[1, 360\] \(the test samples of "
        r"digits\) or all"),
    "all samples of random inputs": (
        ["compare", "-c", "digits-tiny", "--random", "--samples", "all"],
        r"--samples all: needs a dataset, not --random"),
    "unknown dataset": (
        ["compare", "-c", "digits-tiny", "--dataset", "cifar"],
        rf"argument --dataset: invalid choice: 'cifar' \(choose from {_names(DATASET_NAMES)}\)"),
    "dataset of another input size": (
        ["compare", "-c", "mnist-ecp5", "--dataset", "digits", "-n", "2"],
        r"dataset 'digits' has 64 inputs but the config's network.layers\[0\] is 784"),
    "bulk engine with --learn": (
        ["compare", "-c", "digits-tiny", "--engine", "bulk", "--learn", "-n", "2"],
        r"--engine bulk: not with --learn \(cocotb only\); use --engine auto or cocotb"),
    "missing weights file": (
        ["compare", "-c", "digits-tiny", "--weights", "/nonexistent/w.npz", "-n", "2"],
        r"/nonexistent/w.npz: not a readable .npz weight file: .*No such file"),
    "TTFS config with --lr-shift": (
        ["compare", "-c", "ttfs-tiny", "--lr-shift", "3", "-n", "2"],
        r"--weight-scale/--lr-shift: not used by TTFS configs"),
    "unknown board": (
        ["synth", "--board", "de10"],
        rf"argument --board: invalid choice: 'de10' \(choose from {_names(BOARDS)}\)"),
    "baud the board clock cannot make": (
        ["synth", "--baud", "20000000", "--generic", "--out", "unused"],
        r"20000000 baud at 24\.000 MHz: the nearest divisor 1 is 20\.0% off \(at most 2%\)"),
    "TTFS config on a board": (
        ["synth", "-c", "ttfs-tiny", "--generic", "--out", "unused"],
        r"synth: the board tops hold rate-coded networks only; use a rate-coded config "
        r"\((.*, )?digits-tiny, digits-up5k, .*\)"),
    "steps beyond T": (
        ["decode", "-c", "digits-tiny", "--weights", "w.npz", "--steps", "30"],
        r"--steps: 30 is out of range, legal range is \[1, 20\]"),
    "steps 0": (
        ["decode", "-c", "digits-tiny", "--steps", "0"],
        r"argument --steps: 0 is out of range, must be >= 1"),
    "bad steps list": (
        ["decode", "-c", "digits-tiny", "--sweep", "--steps-list", "2,x"],
        r"argument --steps-list: '2,x': expected comma-separated integers >= 1 such as 2,4,8"),
    "fixed decoder trained end to end": (
        ["decode", "-c", "digits-tiny", "--train-snn", "--decoder", "rate"],
        r"--train-snn: needs a learned --decoder \(linear, mlp, conv\), not rate"),
    "prior rate outside (0, 1)": (
        ["decode", "-c", "digits-tiny", "--train-snn", "--prior-rate", "1.5"],
        r"argument --prior-rate: 1.5 is out of range, must be in \(0, 1\)"),
    "decoder export without a [decoder]": (
        ["decode", "-c", "digits-tiny", "--weights", "w.npz", "--export-decoder", "o.npz"],
        r"--export-decoder: config 'digits-tiny' has no \[decoder\] section"),
    "bulk engine with a decoder on the chip": (
        ["compare", "-c", "mnist-ecp5-exit", "--engine", "bulk", "-n", "2"],
        r"--engine bulk: not with a decoder on the chip \(cocotb only\)"),
    "resume without a checkpoint": (
        ["train", "-c", "digits-tiny", "--epochs", "1", "--resume", "--out", "/nonexistent/x"],
        r"--resume: no checkpoint /nonexistent/x/checkpoint.npz"),
    "TTFS config for QAT": (
        ["qat", "-c", "ttfs-tiny", "-o", "unused.npz"],
        r"qat: config 'ttfs-tiny' is ttfs-coded; use a rate-coded config "
        r"\((.*, )?digits-tiny, .*\)"),
    "demo of no samples": (
        ["demo", "--samples", "0"],
        r"argument --samples: 0 is out of range, must be >= 1"),
    "time step 0": (
        ["export", "-c", "digits-tiny", "--nir", "unused.nir", "--dt", "0"],
        r"argument --dt: 0 is out of range, must be > 0"),
    "missing float weights": (
        ["import", "--float", "/nonexistent/f.npz", "--config-out", "unused.toml"],
        r"--float '/nonexistent/f.npz': no such file"),
}


@pytest.mark.parametrize("argv, message", WRONG.values(), ids=WRONG.keys())
def test_wrong_invocation_is_one_error_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # nothing a failing command writes lands in the tree
    line = _error_line(capsys, argv)
    assert re.search(message, line), line
    assert not any(tmp_path.iterdir()), "a failing command wrote files"


def test_profiles_are_named_on_an_unknown_profile(capsys):
    line = _error_line(capsys, ["lint", "-c", "nosuch"])
    for name in profile_names():
        assert repr(name) in line


def test_internal_error_is_not_relabelled(monkeypatch, capsys):
    """A bug (any exception outside the user-error classes) propagates with its traceback
    instead of becoming a one-line error and exit 2."""
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(configs, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["configs"])
    assert "error:" not in capsys.readouterr().err


def test_value_error_of_a_bug_is_not_relabelled(monkeypatch, capsys):
    """A plain ValueError from inside a command (not a ConfigError, DatasetError, ...) is a
    bug too, even though the user-error classes derive from ValueError."""
    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(compare, "choose_engine", broken)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["compare", "-c", "digits-tiny", "-n", "2"])
    assert "error:" not in capsys.readouterr().err
