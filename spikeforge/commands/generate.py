"""``spikeforge generate`` and ``spikeforge lint``: a config's Verilog, and Verilator's lint
of it."""

from __future__ import annotations

from pathlib import Path

from spikeforge.commands.common import add_config
from spikeforge.config import load_config


def register(sub) -> None:
    p = sub.add_parser("generate", help="write the top-level Verilog of a config, or a "
                       "FuseSoC core of it")
    add_config(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="output folder")
    where.add_argument("--fusesoc", metavar="DIR",
                       help="write a FuseSoC core into DIR: the network's Verilog, the board "
                            "tops with their constraints, and a .core with targets lint, sim, "
                            "icebreaker and ulx3s-85f (fusesoc --cores-root DIR run --target "
                            "lint spikeforge:snn:<config>)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    p.set_defaults(func=run_generate)

    p = sub.add_parser("lint", help="generate a config's Verilog and lint it with Verilator")
    add_config(p)
    p.set_defaults(func=run_lint)


def run_generate(args) -> int:
    from spikeforge.hw.generate import generate_verilog

    cfg = load_config(args.config)
    if args.fusesoc:
        from spikeforge.fusesoc import core_name, write_core

        core = write_core(cfg, args.fusesoc)
        print(f"generate: {cfg.summary()}")
        print(f"generate: wrote the FuseSoC core {core_name(cfg)} in {core}")
        return lint(core.parent / "rtl" / "spikeforge_top.v") if args.lint else 0
    path = generate_verilog(cfg, args.output)
    print(f"generate: {cfg.summary()}")
    print(f"generate: wrote {path}")
    if args.lint:
        return lint(path)
    return 0


def run_lint(args) -> int:
    import tempfile

    from spikeforge.hw.generate import generate_verilog

    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        return lint(generate_verilog(cfg, tmp))


def lint(path: Path) -> int:
    """``verilator --lint-only -Wall`` of ``path`` with the waivers: its warnings, a summary
    line, and exit 1 on any warning."""
    from spikeforge.sim.toolchain import LINT_WAIVERS, lint_verilog

    rc, out = lint_verilog(path)
    warnings = [line for line in out.splitlines() if line.startswith("%")]
    for line in warnings:
        print(line)
    print(f"lint: verilator --lint-only -Wall {LINT_WAIVERS.name} {path.name}: "
          f"{len(warnings)} warnings/errors, exit {rc}")
    return 1 if rc or warnings else 0
