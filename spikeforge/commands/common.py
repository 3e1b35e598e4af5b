"""What the subcommands share: the user-error path, option types and the ``--config`` option.

A *user error* is a command line that cannot run as given: an unknown profile, dataset or
board, a value out of range, options that do not go together, a missing or unreadable file.
It is raised as one of :data:`USER_ERRORS` (:class:`UsageError` for what only the command
line can get wrong, the owning module's error class for the rest); :func:`spikeforge.cli.main`
prints it as one line ``spikeforge <command>: error: <message>`` and exits 2, as argparse does
for its own errors. Any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib

from spikeforge.config import ConfigError, load_config, profile_names
from spikeforge.program import ProgramError
from spikeforge.sim.toolchain import ToolchainError
from spikeforge.sw.datasets import DatasetError
from spikeforge.sw.train import TrainError
from spikeforge.sw.weights import WeightError


class UsageError(ValueError):
    """Options that do not go together, or a value out of its legal range: the message names
    the option and its legal values."""


#: The exceptions that are the user's to fix (exit 2, one line); anything else is a bug.
USER_ERRORS = (UsageError, ConfigError, DatasetError, WeightError, TrainError, ToolchainError,
               ProgramError)


def add_config(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--config/-c``: a shipped profile or a TOML path; required unless ``default``."""
    p.add_argument("--config", "-c", default=default, required=default is None,
                   help=f"profile name ({', '.join(profile_names())}) or path to a .toml file"
                        + (f" (default: {default})" if default else ""))


def int_at_least(lo: int):
    """Argument type: an integer ``>= lo``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range, must be >= {lo}")
        return value
    return parse


def bounded_float(legal: str, ok):
    """Argument type: a number for which ``ok(value)`` holds; ``legal`` says which, for the
    message (``"> 0"``, ``"in (0, 1)"``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {legal}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value:g} is out of range, must be {legal}")
        return value
    return parse


@contextlib.contextmanager
def rtl_bar(n: int, desc: str, quiet: bool):
    """A progress bar over ``n`` RTL samples; yields the ``progress(done)`` callback the RTL
    runners take, and fills the bar when the run returns."""
    from tqdm import tqdm

    with tqdm(total=n, desc=desc, unit="sample", disable=quiet, dynamic_ncols=True) as bar:
        yield lambda done: bar.update(done - bar.n)
        bar.update(n - bar.n)


def profiles_where(keep) -> str:
    """The shipped profiles whose config satisfies ``keep(cfg)``, comma-separated: the legal
    values for messages about a config that lacks something."""
    return ", ".join(name for name in profile_names() if keep(load_config(name)))


def require_rate(cfg, command: str, why: str = "") -> None:
    """Refuse a TTFS config for ``command``, which runs rate-coded networks only."""
    if cfg.encoding != "rate":
        rate = profiles_where(lambda c: c.encoding == "rate")
        raise ConfigError(f"{command}: {why or f'config {cfg.name!r} is {cfg.encoding}-coded'}"
                          f"; use a rate-coded config ({rate})")
