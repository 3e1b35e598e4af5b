"""The subcommands of ``spikeforge``: one module each, or one per small group, each owning its
arguments next to its code (the way Glasgow's applets do).

Every module has ``register(subparsers)``, which adds its parser(s) and sets ``func`` to the
function that runs the command: ``func(args) -> int``, the exit code. A command raises one of
:data:`common.USER_ERRORS` for a command line that cannot run (:mod:`spikeforge.cli` prints it
as one line and exits 2); everything else it raises is a bug and propagates.
"""

from spikeforge.commands import (
    board,
    compare,
    configs,
    decode,
    demo,
    generate,
    interop,
    metrics,
    program,
    qat,
    sweep,
    synth,
    train,
)

#: In the order ``spikeforge --help`` lists them.
COMMANDS = (demo, generate, compare, qat, train, decode, synth, program, board, sweep,
            metrics, interop, configs)
