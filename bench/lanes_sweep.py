"""Lanes sweep: the area / latency trade-off of P, each point a full board build.

    .venv/bin/python bench/lanes_sweep.py digits-tiny --board ulx3s-85f --lanes 1,2,4,8,16

For every P: the config with ``lanes = P`` through ``spikeforge.synth.build`` (Yosys +
nextpnr, numbers from their JSON reports), and the golden model's cycles on the config's
dataset (same weights for every P: the spikes do not depend on P, the cycles do). Writes a
Markdown table and a plot (LUTs and block RAM against latency at the achieved Fmax).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spikeforge.config import load_config  # noqa: E402
from spikeforge.sw.datasets import load_dataset  # noqa: E402
from spikeforge.sw.throughput import at_clock, measure  # noqa: E402
from spikeforge.sw.train import initial_weights  # noqa: E402
from spikeforge.synth import build, core_clock, lut_usage  # noqa: E402

RAM = {"ice40": "ICESTORM_RAM", "ecp5": "DP16KD"}


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--board", default="ulx3s-85f")
    ap.add_argument("--lanes", default="1,2,4,8,16")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def sweep_point(cfg, board: str, out: Path, stored0, pixels) -> dict:
    """Build one lanes setting and measure its cycles on ``pixels``.

    Returns
    -------
    dict
        The table row: area, Fmax, cycles, latency and SOPs per cycle.
    """
    report = build(cfg, board, out)
    perf = measure(cfg, stored0, pixels)
    clock = core_clock(report)
    lat = at_clock(perf, clock["achieved_mhz"])
    used, avail = lut_usage(report)
    family = "ice40" if "ICESTORM_LC" in report["utilization"] else "ecp5"
    ram = report["utilization"].get(RAM[family], {"used": 0, "available": 0})
    return {"P": cfg.lanes, "lut": used, "lut_available": avail, "ram": ram["used"],
            "ram_available": ram["available"], "fmax": clock["achieved_mhz"],
            "constraint": clock["constraint_mhz"], "met": clock["met"],
            "cycles": perf["infer_cycles_median"],
            "latency_us": lat["infer_latency_us_median"],
            "sops_per_cycle": perf["sops_per_cycle"],
            "ideal": perf["ideal_sops_per_cycle"]}


def markdown_table(rows: list[dict]) -> list[str]:
    """The sweep as the lines of a Markdown table."""
    lines = ["| P | LUT | block RAM | Fmax MHz (constraint) | cycles / inference | latency µs "
             "| SOP / cycle (ideal) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['P']} | {r['lut']} / {r['lut_available']} | {r['ram']} / "
                     f"{r['ram_available']} | {r['fmax']:.1f} ({r['constraint']:g}"
                     f"{'' if r['met'] else ', not met'}) | {r['cycles']:.0f} | "
                     f"{r['latency_us']:.1f} | {r['sops_per_cycle']:.2f} ({r['ideal']}) |")
    return lines


def plot_area(ax, rows: list[dict]) -> None:
    """LUTs and block RAM against latency, each point labelled with its P."""
    lat = [r["latency_us"] for r in rows]
    ax.plot(lat, [r["lut"] for r in rows], "o-", label="LUTs")
    for r in rows:
        ax.annotate(f"P={r['P']}", (r["latency_us"], r["lut"]), textcoords="offset points",
                    xytext=(5, 5))
    ax2 = ax.twinx()
    ax2.plot(lat, [r["ram"] for r in rows], "s--", color="C1", label="block RAM")
    ax.set_xlabel("median inference latency at achieved Fmax (µs)")
    ax.set_ylabel("LUTs")
    ax2.set_ylabel("block RAM")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right")
    ax.set_title("area vs latency")


def plot_fmax(fx, rows: list[dict]) -> None:
    """Achieved Fmax against P, with the constraint."""
    lanes = [r["P"] for r in rows]
    fx.plot(lanes, [r["fmax"] for r in rows], "o-", label="achieved Fmax")
    fx.axhline(rows[0]["constraint"], color="gray", ls=":", label="constraint")
    fx.set_xscale("log", base=2)
    fx.set_xticks(lanes, [str(p) for p in lanes])
    fx.set_xlabel("lanes P")
    fx.set_ylabel("MHz")
    fx.set_title("Fmax (nextpnr)")
    fx.legend()


def plot_sweep(rows: list[dict], name: str, board: str) -> Path:
    """Both plots side by side, saved under ``docs/img``; returns the file's path."""
    fig, (ax, fx) = plt.subplots(1, 2, figsize=(10, 4))
    plot_area(ax, rows)
    plot_fmax(fx, rows)
    fig.suptitle(f"{name} on {board}: lanes sweep")
    fig.tight_layout()
    plot = Path("docs/img") / f"lanes-{name}-{board}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=120)
    return plot


def main() -> None:
    """Build and measure every P; write the JSON, the Markdown table and the plot."""
    args = parse_args()
    base = load_config(args.config)
    out = Path(args.out or f"out/lanes/{base.name}-{args.board}")
    data = load_dataset(base.dataset, base.pixel_bits)
    stored0 = initial_weights(base, 0)
    rows = []
    for p in [int(x) for x in args.lanes.split(",")]:
        cfg = dataclasses.replace(base, name=f"{base.name}-p{p}", lanes=p)
        rows.append(sweep_point(cfg, args.board, out / f"p{p}", stored0,
                                data.test_pixels[:args.samples]))
        print(json.dumps(rows[-1]))
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    lines = markdown_table(rows)
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot = plot_sweep(rows, base.name, args.board)
    print(f"plot: {plot}")


if __name__ == "__main__":
    main()
