"""A FuseSoC core of a config, for reuse in other projects (``spikeforge generate --fusesoc``).

The folder holds the generated Verilog and a CAPI2 ``.core`` file:

* ``rtl/spikeforge_top.v``: the network (:func:`hw.generate.generate_verilog`, the same
  Verilog ``spikeforge generate`` writes and the cocotb regressions simulate), and
  ``rtl/lint.vlt``, Verilator's waivers for Amaranth's output;
* ``<board>/top.v`` and its constraint file for the iCEBreaker and the ULX3S-85F: the board
  top (network, UART host link, PLL) that ``spikeforge synth`` builds
  (:func:`spikeforge.synth.generic`).

Targets: ``lint`` (Verilator ``--lint-only -Wall`` of the network), ``sim`` (Verilator's C++
model of the network, for a testbench of the user's), ``icebreaker`` (Yosys + nextpnr-ice40,
icestorm flow) and ``ulx3s-85f`` (Yosys + nextpnr-ecp5, trellis flow) at the boards' target
clocks. The core's name is ``spikeforge:snn:<config>:<version>``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from spikeforge.hw.boards import BOARDS

__all__ = ["core_name", "write_core"]


def core_name(cfg) -> str:
    """The VLNV of a config's core: ``spikeforge:snn:<config>:<version>``."""
    from spikeforge import __version__

    name = re.sub(r"[^a-z0-9_-]", "_", cfg.name.lower())
    return f"spikeforge:snn:{name}:{__version__}"


def write_core(cfg, out_dir) -> Path:
    """Write the core of ``cfg`` into ``out_dir``; return the ``.core`` file."""
    from spikeforge.hw.generate import TOP_NAME, generate_verilog
    from spikeforge.sim.toolchain import LINT_WAIVERS
    from spikeforge.synth import generic

    out = Path(out_dir)
    rtl = out / "rtl"
    generate_verilog(cfg, rtl)
    shutil.copyfile(LINT_WAIVERS, rtl / "lint.vlt")
    boards = {}
    for name, b in BOARDS.items():
        verilog, constraints, _script = generic(cfg, name, out / name)
        boards[name] = (b, verilog.relative_to(out), constraints.relative_to(out))

    lines = ["CAPI=2:", "", f"name: {core_name(cfg)}",
             f"description: \"spikeforge SNN: {cfg.summary()}\"", "", "filesets:",
             "  rtl:", "    files:", f"      - rtl/{TOP_NAME}.v", "    file_type: verilogSource",
             "  waivers:", "    files:", "      - rtl/lint.vlt: {file_type: vlt}"]
    for name, (b, verilog, constraints) in boards.items():
        kind = "PCF" if b.family == "ice40" else "LPF"
        lines += [f"  {name}:", "    files:",
                  f"      - {verilog.as_posix()}: {{file_type: verilogSource}}",
                  f"      - {constraints.as_posix()}: {{file_type: {kind}}}"]
    lines += ["", "targets:", "  default: &default", "    filesets: [rtl]",
              f"    toplevel: {TOP_NAME}", "",
              "  lint:", "    default_tool: verilator", "    filesets: [rtl, waivers]",
              f"    toplevel: {TOP_NAME}", "    tools:", "      verilator:",
              "        mode: lint-only", "        verilator_options: [-Wall]", "",
              "  sim:", "    default_tool: verilator", "    filesets: [rtl]",
              f"    toplevel: {TOP_NAME}", "    tools:", "      verilator:", "        mode: cc"]
    for name, (b, _verilog, _constraints) in boards.items():
        if b.family == "ice40":
            tool, options = "icestorm", [f"--{b.device}", "--package", b.package]
        else:
            tool, options = "trellis", [f"--{b.device}", "--package", b.package]
        options += ["--freq", f"{b.target_mhz:g}"]
        lines += ["", f"  {name}:", f"    default_tool: {tool}", f"    filesets: [{name}]",
                  "    toplevel: top", "    tools:", f"      {tool}:",
                  f"        nextpnr_options: [{', '.join(options)}]"]
        if tool == "icestorm":
            lines += ["        pnr: next"]
    core = out / f"spikeforge_{re.sub(r'[^a-z0-9_]', '_', cfg.name.lower())}.core"
    core.write_text("\n".join(lines) + "\n")
    return core
