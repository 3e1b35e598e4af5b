"""Verilog generation for a config's :class:`~hw.network.Network`."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib.wiring import In

from spikeforge.hw.network import Network
from spikeforge.hw.serial_top import SerialTop
from spikeforge.hw.ttfs_network import TTFSNetwork

TOP_NAME = "spikeforge_top"
SIM_UART_DIVISOR = 8            # clock cycles per UART bit of the simulated serial top


def core_top(cfg, top: str = "core"):
    """The component a top kind stands for: ``core`` (the network with its parallel host
    ports) or ``serial`` (the network behind the UART host link, as on a board)."""
    if top == "serial":
        return SerialTop(cfg, SIM_UART_DIVISOR)
    if top != "core":
        raise ValueError(f"top {top!r}: expected 'core' or 'serial'")
    return TTFSNetwork(cfg) if cfg.encoding == "ttfs" else Network(cfg)


def generate_verilog(cfg, out_dir, top: str = "core") -> Path:
    """Write ``<out_dir>/spikeforge_top.v`` (plus a ``.json`` of the config) and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dut = core_top(cfg, top)
    text = verilog.convert(dut, name=TOP_NAME, emit_src=False)
    path = out_dir / f"{TOP_NAME}.v"
    path.write_text(text)
    ports = {"__".join(str(p) for p in path): {"width": len(Value.cast(sig)),
                                                "direction": "in" if member.flow == In else "out"}
             for path, member, sig in dut.signature.flatten(dut)}
    (out_dir / f"{TOP_NAME}.json").write_text(json.dumps(
        {"config": cfg.name, "summary": cfg.summary(), "top": TOP_NAME, "ports": ports},
        indent=2))
    return path
