"""``spikeforge program``: put a bitstream on a board (openFPGALoader)."""

from __future__ import annotations

from spikeforge.config import profile_names
from spikeforge.program import TARGETS


def register(sub) -> None:
    p = sub.add_parser(
        "program", help="load a bitstream onto the board with openFPGALoader (ULX3S: SRAM, "
        "--flash for the flash; iCEBreaker: always its flash)")
    p.add_argument("--board", required=True, choices=TARGETS, metavar="BOARD",
                   help=" or ".join(TARGETS))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bitstream", help="the .bin (iCEBreaker) or .bit (ULX3S) to load")
    source.add_argument("--config", "-c", help="load what spikeforge synth built for this "
                        f"profile ({', '.join(profile_names())}) or .toml: "
                        "out/synth/<config>-<board>/top.bin|bit")
    p.add_argument("--flash", action="store_true",
                   help="write the configuration flash (kept across power cycles) instead of "
                        "loading the SRAM; the iCEBreaker is always programmed through its flash")
    p.add_argument("--dry-run", action="store_true",
                   help="print the openFPGALoader command instead of running it")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikeforge import program

    config = args.config
    if config is not None and config.endswith(".toml"):
        from spikeforge.config import load_config
        config = load_config(config).name
    bitstream = program.bitstream_for(args.board, bitstream=args.bitstream, config=config)
    if args.dry_run:
        print(" ".join(program.command(args.board, bitstream, flash=args.flash)))
        return 0
    print(f"program: {program.program(args.board, bitstream, flash=args.flash)}")
    return 0
