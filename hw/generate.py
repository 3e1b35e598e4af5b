"""Verilog generation for a config's :class:`~hw.network.Network`."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib.wiring import In

from hw.network import Network
from hw.ttfs_network import TTFSNetwork

TOP_NAME = "spikeforge_top"


def generate_verilog(cfg, out_dir) -> Path:
    """Write ``<out_dir>/spikeforge_top.v`` (plus a ``.json`` of the config) and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dut = TTFSNetwork(cfg) if cfg.encoding == "ttfs" else Network(cfg)
    text = verilog.convert(dut, name=TOP_NAME, emit_src=False)
    path = out_dir / f"{TOP_NAME}.v"
    path.write_text(text)
    ports = {"__".join(str(p) for p in path): {"width": len(Value.cast(sig)),
                                                "direction": "in" if flow == In else "out"}
             for path, flow, sig in dut.signature.flatten(dut)}
    (out_dir / f"{TOP_NAME}.json").write_text(json.dumps(
        {"config": cfg.name, "summary": cfg.summary(), "top": TOP_NAME, "ports": ports},
        indent=2))
    return path
