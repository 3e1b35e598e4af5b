"""``spikeforge decode``: decode the readout spike raster of a trained network (fixed rules vs
learned ANN decoders), sweep T, reconstruct images, or train SNN and decoder end to end
through the information bottleneck."""

from __future__ import annotations

import argparse
from pathlib import Path

from spikeforge.commands.common import (
    UsageError,
    add_config,
    bounded_float,
    int_at_least,
    require_rate,
)
from spikeforge.config import load_config
from spikeforge.sw.datasets import DATASET_NAMES
from spikeforge.sw.decoders import DECODERS, LEARNED


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode the readout spike raster: rate / first-spike "
                                      "rules vs learned ANN decoders (torch)")
    add_config(p)
    p.add_argument("--dataset", choices=DATASET_NAMES, help="dataset (default: the config's)")
    p.add_argument("--weights", help="trained network (.npz from spikeforge train or qat)")
    p.add_argument("--decoder", choices=DECODERS, default="conv")
    p.add_argument("--steps", type=int_at_least(1), default=8,
                   help="decode from the first T time steps (default 8)")
    p.add_argument("--sweep", action="store_true",
                   help="every decoder at every T of --steps-list: Markdown table + plot")
    p.add_argument("--steps-list", type=steps_list, default=[2, 4, 8, 12, 20],
                   help="T values of --sweep (default 2,4,8,12,20)")
    p.add_argument("--epochs", type=int_at_least(1), default=15,
                   help="training epochs of the learned decoders (default 15)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--rtl-samples", type=int_at_least(0), default=0,
                   help="also run N test samples through the RTL and check that the decoder "
                        "reads identical rasters from its readout stream")
    p.add_argument("--out", help="sweep output folder (default out/decode/<config>-<dataset>)")
    p.add_argument("--reconstruct", action="store_true",
                   help="train the decoder to reconstruct the image (binary cross-entropy) and "
                        "score it with a classifier trained on the original images")
    p.add_argument("--train-snn", action="store_true",
                   help="train the SNN and the decoder end to end through the information "
                        "bottleneck (cross-entropy + beta * KL(spike rate || Bernoulli(r)))")
    p.add_argument("--beta", type=bounded_float(">= 0", lambda v: v >= 0), default=0.01,
                   help="with --train-snn (default 0.01)")
    p.add_argument("--prior-rate", type=bounded_float("in (0, 1)", lambda v: 0 < v < 1),
                   default=0.2, help="with --train-snn: r of the Bernoulli prior (default 0.2)")
    p.add_argument("--snn-epochs", type=int_at_least(1), default=10,
                   help="with --train-snn: epochs (default 10)")
    p.add_argument("-o", "--output", help="with --train-snn: weight file to write (.npz)")
    p.add_argument("--export-decoder", metavar="OUT.npz",
                   help="train the decoder on the chip of the config's [decoder] "
                        "(quantisation-aware, on the training split's rasters) and write "
                        "the network's weights with it, for compare, synth and the host link")
    p.set_defaults(func=run)


def steps_list(text: str) -> list[int]:
    """``--steps-list``: comma-separated T values, each >= 1."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers >= 1 "
                                         f"such as 2,4,8")
    return values


def run(args) -> int:
    """Decode the readout raster of a trained network: fixed rules vs learned ANN decoders;
    or train the SNN and its decoder end to end through the information bottleneck."""
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.decode_sweep import golden_rasters

    cfg = load_config(args.config)
    require_rate(cfg, "decode", "TTFS configs have no rate readout")
    _check_options(cfg, args)
    data = load_for_config(cfg, args.dataset)
    predict = None
    if args.train_snn:
        weights, predict = _train_snn(cfg, data, args)
    else:
        from spikeforge.sw.weights import load_weights

        weights = load_weights(args.weights, cfg)
    print(f"decode: {cfg.summary()}; {data.summary()}")
    if args.export_decoder:
        return _export_decoder(cfg, data, args, weights)
    train_r, test_r = golden_rasters(cfg, weights, data)
    if args.reconstruct:
        return _reconstruct(cfg, data, args, train_r, test_r)
    if args.sweep:
        return _sweep(cfg, data, args, train_r, test_r)
    if predict is None:
        from spikeforge.sw.decoders import predictor

        predict = predictor(args.decoder, train_r, data.train_labels, steps=args.steps,
                            epochs=args.epochs, seed=args.seed)
    if args.rtl_samples and not _rtl_check(cfg, weights, data, args, test_r, predict):
        return 1
    acc = float((predict(test_r) == data.test_labels).mean())
    print(f"decode: {args.decoder} T={args.steps} accuracy {100 * acc:.2f}%")
    return 0


def _check_options(cfg, args) -> None:
    """The option values and combinations the config and the other options allow."""
    legal = f"legal range is [1, {cfg.time_steps}]"
    if args.steps > cfg.time_steps:
        raise UsageError(f"--steps: {args.steps} is out of range, {legal}")
    if args.sweep and max(args.steps_list) > cfg.time_steps:
        raise UsageError(f"--steps-list: {max(args.steps_list)} is out of range, {legal}")
    for flag, on in (("--train-snn", args.train_snn), ("--reconstruct", args.reconstruct)):
        if on and args.decoder not in LEARNED:
            raise UsageError(f"{flag}: needs a learned --decoder ({', '.join(LEARNED)}), "
                             f"not {args.decoder}")
    if args.export_decoder and cfg.decoder is None:
        raise UsageError(f"--export-decoder: config {cfg.name!r} has no [decoder] section "
                         f"(e.g. mnist-ecp5-exit)")
    if args.export_decoder and args.train_snn:
        raise UsageError("--export-decoder: not with --train-snn (train the network first)")
    if not args.train_snn and not args.weights:
        raise UsageError("decode: --weights W.npz is required (a trained network, e.g. "
                          "out/train/<config>-<dataset>/weights.npz from spikeforge train, "
                          "or spikeforge qat -o W.npz), or --train-snn")


def _export_decoder(cfg, data, args, weights) -> int:
    """``--export-decoder``: train the decoder on the chip, write it with the weights, and
    report what it decides on the test split against the count rule after ``T`` steps."""
    import numpy as np

    from spikeforge.sw import exit_decoder
    from spikeforge.sw.cycles import sample_cycles
    from spikeforge.sw.decode_sweep import readout_rasters
    from spikeforge.sw.decoders import train_exit_decoder
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.weights import save_weights

    d = cfg.decoder
    dec, scale = train_exit_decoder(cfg, readout_rasters(cfg, weights, data.train_pixels),
                                    data.train_labels, epochs=args.epochs, seed=args.seed)
    out = Path(args.export_decoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, cfg, weights, dec)
    # the decoded run is the plain run up to each exit (sw.golden.run_raster): decode its
    # rasters instead of running the test split twice
    plain = run_network(cfg, weights, data.test_pixels)
    decoded = exit_decoder.decode(cfg, dec, plain.rasters[-1])
    decoded_cycles = sample_cycles(cfg, plain.rasters, decoded.steps)
    y = np.asarray(data.test_labels)
    rate_cycles = sample_cycles(cfg, plain.rasters)
    print(f"decode: decoder on the chip in {out}: one score unit is {scale:.4g} logits"
          + (f"; the exit margin {d.margin} is a lead of {d.margin * scale:.3g} logits"
             if d.exit == "margin" else ""))
    print(f"decode: count rule after {cfg.time_steps} steps: accuracy "
          f"{100 * (plain.predictions == y).mean():.2f}%, {rate_cycles.mean():.0f} cycles "
          f"per image (mean)")
    print(f"decode: decoder on the chip: accuracy {100 * (decoded.decisions == y).mean():.2f}%, "
          f"{decoded.steps.mean():.2f} steps, {decoded_cycles.mean():.0f} cycles per image "
          f"(mean; median {np.median(decoded_cycles):.0f}, 99th percentile "
          f"{np.percentile(decoded_cycles, 99):.0f}): "
          f"{rate_cycles.mean() / decoded_cycles.mean():.2f}x fewer")
    return 0


def _train_snn(cfg, data, args):
    """``--train-snn``: SNN weights and decoder trained end to end; writes the weights,
    returns them and the decoder's ``predict(rasters)``."""
    from spikeforge.sw.ib import train_end_to_end
    from spikeforge.sw.weights import save_weights

    weights, dec = train_end_to_end(
        cfg, data.train_pixels, data.train_labels, decoder=args.decoder, steps=args.steps,
        beta=args.beta, rate=args.prior_rate, epochs=args.snn_epochs, seed=args.seed)
    out = Path(args.output or f"out/decode/{cfg.name}-{data.name}-ib-{args.decoder}"
                              f"-T{args.steps}.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, cfg, weights)
    print(f"decode: end-to-end (beta {args.beta}, prior rate {args.prior_rate}) SNN "
          f"weights in {out}")

    def predict(r):
        return dec.predict(r[:, :args.steps])
    return weights, predict


def _out_dir(cfg, data, args) -> Path:
    out = Path(args.out or f"out/decode/{cfg.name}-{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _reconstruct(cfg, data, args, train_r, test_r) -> int:
    from spikeforge.sw.decode_sweep import reconstruction_quality

    q = reconstruction_quality(args.decoder, train_r, test_r, data, steps=args.steps,
                               epochs=args.epochs, seed=args.seed,
                               out_dir=_out_dir(cfg, data, args),
                               title=f"{cfg.name} {args.decoder} T={args.steps}")
    print(f"decode: reconstructions in {q['plot']}")
    print(f"decode: reconstruct {args.decoder} T={args.steps} held-out classifier "
          f"accuracy {100 * q['reconstructed']:.2f}% (originals {100 * q['originals']:.2f}%)")
    return 0


def _sweep(cfg, data, args, train_r, test_r) -> int:
    from spikeforge.sw.decode_sweep import plot_sweep, sweep

    out = _out_dir(cfg, data, args)
    table = sweep(train_r, data.train_labels, test_r, data.test_labels,
                  steps_list=args.steps_list, epochs=args.epochs, seed=args.seed)
    print("\n".join(plot_sweep(table, out, f"{cfg.name} on {data.name}")))
    return 0


def _rtl_check(cfg, weights, data, args, test_r, predict) -> bool:
    """``--rtl-samples N``: the RTL's readout-stream rasters decode identically."""
    from spikeforge.sw.decode_sweep import rtl_check

    n = args.rtl_samples
    gold_acc, rtl_acc, same = rtl_check(cfg, weights, data.test_pixels[:n],
                                        data.test_labels[:n], test_r[:n], predict)
    print(f"decode: {n} test samples through the RTL: readout stream rasters and "
          f"decisions {'identical to' if same else 'DIFFERENT from'} the golden model's; "
          f"{args.decoder} T={args.steps} accuracy golden {100 * gold_acc:.2f}%, RTL "
          f"{100 * rtl_acc:.2f}%")
    return same
