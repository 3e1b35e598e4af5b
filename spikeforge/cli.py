"""``spikeforge`` command line: demo, generate, lint, compare, qat, train, decode, synth,
export, import, configs.

A thin dispatcher: every subcommand lives in :mod:`spikeforge.commands` with its arguments.
One way to fail: a user error (:data:`spikeforge.commands.common.USER_ERRORS`) prints one line
``spikeforge <command>: error: <message>`` to stderr and exits 2, as argparse does for its own
errors; any other exception is a bug and propagates with its traceback. Comparison mismatches
and failed builds exit 1.
"""

from __future__ import annotations

import argparse
import sys

from spikeforge.commands import COMMANDS
from spikeforge.commands.common import USER_ERRORS


class _Parser(argparse.ArgumentParser):
    """argparse, failing the way every other user error fails: one line, exit 2 (the usage
    text stays behind ``--help``, which the line points to)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spikeforge",
        description="On-chip-learning SNN co-design: Amaranth gateware, bit-exact golden "
                    "model, cocotb/Verilator regressions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"spikeforge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
