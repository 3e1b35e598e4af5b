"""``spikeforge configs``: the shipped profiles."""

from __future__ import annotations

from spikeforge.config import load_config, profile_names


def register(sub) -> None:
    p = sub.add_parser("configs", help="list the shipped profiles")
    p.set_defaults(func=run)


def run(args) -> int:
    for name in profile_names():
        print(load_config(name).summary())
    return 0
