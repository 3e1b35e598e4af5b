"""Information-bottleneck sweep: what beta and the prior rate r do to accuracy and spiking.

    .venv/bin/python bench/ib_sweep.py -c mnist-ecp5 --dataset mnist-t10k --steps 6 --epochs 5

For every (beta, r): train the SNN and the conv decoder end to end (``sw.ib``), quantise,
run the golden model on the test split and decode its rasters. Reports test accuracy and
the readout's mean spike rate over the decoded steps (spikes per neuron and step: what the
KL term pulls towards r, and what the readout stream carries).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from spikeforge.config import load_config
from spikeforge.sw.datasets import load_dataset
from spikeforge.sw.golden import run_network
from spikeforge.sw.ib import train_end_to_end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", default="mnist-ecp5")
    ap.add_argument("--dataset", default="mnist-t10k")
    ap.add_argument("--decoder", default="conv")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--betas", default="0,0.01,0.1,1")
    ap.add_argument("--rates", default="0.05,0.2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config)
    data = load_dataset(args.dataset, cfg.pixel_bits)
    rows = []
    betas = [float(b) for b in args.betas.split(",")]
    rates = [float(r) for r in args.rates.split(",")]
    for beta, rate in itertools.product(betas, rates):
        if beta == 0 and rate != rates[0]:
            continue                        # r has no effect without the KL term
        weights, dec = train_end_to_end(cfg, data.train_pixels, data.train_labels,
                                        decoder=args.decoder, steps=args.steps, beta=beta,
                                        rate=rate, epochs=args.epochs, seed=args.seed)
        raster = np.concatenate([run_network(cfg, weights, data.test_pixels[lo:lo + 500])
                                 .rasters[-1] for lo in range(0, len(data.test_labels), 500)])
        window = raster[:, :args.steps]
        acc = float((dec.predict(window) == data.test_labels).mean())
        rows.append({"beta": beta, "r": rate, "accuracy": acc,
                     "spike_rate": float(window.mean()),
                     "spikes_per_sample": float(window.sum(axis=(1, 2)).mean())})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(f"out/bench/ib-sweep-{cfg.name}-{data.name}-T{args.steps}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    lines = ["| beta | r | test accuracy | readout spike rate | spikes per sample |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['beta']:g} | {'—' if r['beta'] == 0 else format(r['r'], 'g')} | "
              f"{100 * r['accuracy']:.2f}% | {r['spike_rate']:.3f} | "
              f"{r['spikes_per_sample']:.1f} |" for r in rows]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
