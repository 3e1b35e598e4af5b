"""Accuracy against latency of the decoder on the chip and its early exit (issue 22).

    .venv/bin/python bench/exit_latency.py -c mnist-ecp5 --dataset mnist-t10k --weights W.npz \
        --fmax 76.0

On the same trained network and the test split, one row per way of deciding:

* ``rate T=20``: the chip's own count rule after all ``T`` steps (today's latency);
* ``rate, settled``: the same rule with ``network.early_exit = "settled"``: each sample
  stops after the first step at which its decision can no longer change (the top count
  leads the second by more than the steps left): the same predictions, every one
  (checked), in fewer steps;
* ``fixed T_dec``: the decoder on the chip (``[decoder]``, ``exit = "fixed"``), trained
  quantisation-aware on the training split's rasters (:func:`sw.decoders.train_exit_decoder`),
  deciding after ``T_dec`` steps, for each ``--steps-list`` value;
* ``margin m``: the same decoder of ``--margin-steps`` steps with ``exit = "margin"`` from
  ``--min-steps`` on, one decoder trained once, for each lead ``m`` of ``--margins`` (in
  logits; the integer margin is the lead over the decoder's scale).

Accuracy, the steps run, cycles per image (mean, median, 99th percentile; exactly the
golden model's cycle model, which the RTL matches sample by sample), the mean latency at
``--fmax`` and the synaptic operations per image. Writes ``exit_latency.md``, the plot
``accuracy_vs_latency.png`` and the decoders (``decoder-<row>.npz``: the network's weights
with the decoder, loadable by ``spikeforge compare``) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from spikeforge.config import DecoderConfig, load_config
from spikeforge.sw import cycles, exit_decoder
from spikeforge.sw.datasets import load_for_config
from spikeforge.sw.decode_sweep import readout_rasters
from spikeforge.sw.decoders import train_exit_decoder
from spikeforge.sw.golden import decide, run_network, settled_steps
from spikeforge.sw.throughput import synaptic_ops
from spikeforge.sw.weights import load_weights, save_weights


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--dataset")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--fmax", type=float, default=75.0, help="clock in MHz (default 75)")
    ap.add_argument("--steps-list", default="4,6,8", help="'' for none")
    ap.add_argument("--margin-steps", type=int, default=8)
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--margins", default="2,4,6", help="leads in logits; '' for none")
    ap.add_argument("--weight-bits", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    return ap.parse_args()


def row(name, cfg, rasters, labels, predictions, steps, fmax) -> dict:
    """One table row from the decisions and the steps each sample ran (``None``: all)."""
    cyc = cycles.sample_cycles(cfg, rasters, steps)
    ran = np.full(len(labels), cfg.time_steps) if steps is None else steps
    return {"name": name, "accuracy": 100 * float((predictions == labels).mean()),
            "steps": float(ran.mean()), "mean": float(cyc.mean()),
            "median": float(np.median(cyc)), "p99": float(np.percentile(cyc, 99)),
            "us": float(cyc.mean()) / fmax,
            "sops": float(synaptic_ops(cfg, rasters, steps).mean())}


def settled_row(cfg, weights, pixels, labels, full_predictions, fmax) -> dict:
    """The ``rate, settled`` row; raises if a settled decision differs from the full run's."""
    settled = dataclasses.replace(cfg, early_exit="settled")
    run = run_network(settled, weights, pixels)
    bad = np.flatnonzero(run.predictions != full_predictions)
    if len(bad):
        raise AssertionError(f"settled decision differs at sample {bad[0]}")
    return row("rate, settled", settled, run.rasters, labels, run.predictions,
               settled_steps(settled, run.rasters[-1]), fmax)


def main() -> int:
    args = parse_args()
    cfg = load_config(args.config)
    data = load_for_config(cfg, args.dataset)
    weights = load_weights(args.weights, cfg)
    out = Path(args.out or f"out/exit/{cfg.name}-{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"exit_latency: {cfg.summary()}; {data.summary()}", flush=True)
    test = run_network(cfg, weights, data.test_pixels)
    y = np.asarray(data.test_labels)
    rows = [row(f"rate T={cfg.time_steps}", cfg, test.rasters, y,
                decide(cfg, test.rasters[-1]), None, args.fmax),
            settled_row(cfg, weights, data.test_pixels, y, decide(cfg, test.rasters[-1]),
                        args.fmax)]
    print(rows[-1], flush=True)
    steps_list = [int(s) for s in args.steps_list.split(",") if s]
    margins = [float(s) for s in args.margins.split(",") if s]
    if steps_list or margins:
        train_r = readout_rasters(cfg, weights, data.train_pixels)

    def fit(dcfg, name):
        c = dataclasses.replace(cfg, decoder=dcfg)
        dec, scale = train_exit_decoder(c, train_r, data.train_labels, epochs=args.epochs,
                                        seed=args.seed)
        save_weights(out / f"decoder-{name}.npz", c, weights, dec)
        return c, dec, scale

    for steps in steps_list:
        c, dec, _ = fit(DecoderConfig(steps=steps, weight_bits=args.weight_bits), f"T{steps}")
        run = exit_decoder.decode(c, dec, test.rasters[-1])
        rows.append(row(f"fixed T_dec={steps}", c, test.rasters, y, run.decisions, run.steps,
                        args.fmax))
        print(rows[-1], flush=True)
    m_steps = args.margin_steps
    if margins:
        c, dec, scale = fit(DecoderConfig(steps=m_steps, weight_bits=args.weight_bits,
                                          exit="margin", margin=1, min_steps=args.min_steps),
                            f"margin-T{m_steps}")
    for lead in margins:
        margin = max(1, round(lead / scale))
        cm = dataclasses.replace(c, decoder=dataclasses.replace(c.decoder, margin=margin))
        run = exit_decoder.decode(cm, dec, test.rasters[-1])
        rows.append(row(f"margin {lead:g} ({margin}), T_dec={m_steps}, from {args.min_steps}",
                        cm, test.rasters, y, run.decisions, run.steps, args.fmax))
        print(rows[-1], flush=True)
    report(rows, out, f"{cfg.name} on {data.name} ({len(y)} test images), {args.fmax:g} MHz")
    return 0


def report(rows: list[dict], out: Path, title: str) -> None:
    """``exit_latency.md`` and ``accuracy_vs_latency.png`` in ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = [f"{title}", "",
             "| decision | accuracy % | steps run | cycles mean | median | p99 | µs mean | "
             "SOPs/image |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['accuracy']:.2f} | {r['steps']:.2f} | {r['mean']:.0f} | "
              f"{r['median']:.0f} | {r['p99']:.0f} | {r['us']:.1f} | {r['sops']:.0f} |"
              for r in rows]
    (out / "exit_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        marker = "o" if r["name"].startswith("rate") else (
            "s" if r["name"].startswith("fixed") else "^")
        ax.plot(r["us"], r["accuracy"], marker, label=r["name"])
    ax.set_xlabel("mean latency per image (µs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_latency.png")
    print(f"plot {out / 'accuracy_vs_latency.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
