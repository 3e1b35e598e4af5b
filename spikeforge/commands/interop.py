"""``spikeforge export`` and ``spikeforge import``: a config and its integer weights as a NIR
graph, and NIR graphs or float weights back into a config and integer weights
(``docs/nir.md``)."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

from spikeforge.commands.common import UsageError, add_config, bounded_float, int_at_least
from spikeforge.config import DATASETS, ConfigError, load_config
from spikeforge.sw.import_fidelity import AUTO_WEIGHT_BITS, CHECK_SAMPLES
from spikeforge.sw.nir_io import DT, PERCENTILE, QUANTISE

_POSITIVE = bounded_float("> 0", lambda v: v > 0)
_DT = f"{DT:.0e}".replace("e-0", "e-")         # 1e-4, as the help texts write it
#: ``import`` options that go into the config of a foreign graph or float weights.
CONFIG_OPTIONS = ("membrane_bits", "lanes", "pixel_bits", "threshold", "name")


def _weight_bits(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("export", help="write a config and its weights as a NIR graph "
                                      "(Neuromorphic Intermediate Representation, docs/nir.md)")
    add_config(p)
    p.add_argument("--weights", help=".npz weight file (default: the initial weights "
                                     "spikeforge train starts from; random ones from --seed "
                                     "without [learning])")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--nir", required=True, help="NIR file to write (HDF5, .nir)")
    p.add_argument("--dt", type=_POSITIVE, default=DT,
                   help=f"time step the LIF time constants assume (default {_DT}, snnTorch's)")
    p.set_defaults(func=run_export)
    _register_import(sub)


def _register_import(sub) -> None:
    p = sub.add_parser("import", help="a NIR graph or float weights -> config TOML + integer "
                                      "weights (docs/nir.md)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--nir", help="NIR file: Input -> (Linear|Affine -> LIF|IF|CubaLIF)+ -> "
                                   "Output")
    src.add_argument("--float", help="float weights: .npz with w0, w1, ... of shape (n_pre, "
                                     "n_post) in threshold units, or a torch state dict "
                                     "(.pt) of bias-free nn.Linear layers")
    p.add_argument("--config-out", required=True, help="config TOML to write")
    p.add_argument("--weights-out", help="integer weights to write (.npz, for --weights)")
    p.add_argument("--quantise", choices=QUANTISE, default=QUANTISE[0],
                   help=f"foreign weights: threshold from the largest |w| (max, default) or "
                        f"the {PERCENTILE:.0f}th percentile per layer (outliers clip)")
    p.add_argument("--dt", type=_POSITIVE, default=None,
                   help=f"time step of the graph's time constants (default: the exporter's "
                        f"metadata, else {_DT}, snnTorch's)")
    p.add_argument("--weight-bits", type=_weight_bits, default="auto",
                   help="integer weight width, or auto (default): the smallest of "
                        f"{', '.join(map(str, AUTO_WEIGHT_BITS))} (with the scale and the "
                        "smallest membrane width) whose predictions agree with the float "
                        "network's on --min-agreement of the check samples")
    p.add_argument("--membrane-bits", type=int, help="raised to the least legal width")
    p.add_argument("--time-steps", type=int, help="the source's time steps T (default 20); "
                   "the config gets T plus the steps that compensate the source's timing")
    p.add_argument("--lanes", type=int)
    p.add_argument("--pixel-bits", type=int)
    p.add_argument("--threshold", type=int, help="integer threshold (default: from --quantise)")
    p.add_argument("--leak-shift", type=int, help="default: from the graph's tau, or from "
                                                  "--decay for --float")
    p.add_argument("--decay", type=bounded_float("in (0, 1]", lambda v: 0 < v <= 1),
                   help="--float: the source's membrane factor per step (default 0.75, or "
                        "1 - 2^-K with --leak-shift K); leak_shift = round(-log2(1 - decay))")
    p.add_argument("--input-delay", type=int, choices=(0, 1),
                   help="1 if the source's first layer reads the input spikes of the step "
                        "before (as ours), 0 if those of the same step (default: 0)")
    p.add_argument("--layer-delay", type=int, choices=(0, 1),
                   help="the same between layers (default: 1 for --float, as the desire "
                        "reference code; 0 for NIR graphs, as snnTorch and Norse step them)")
    p.add_argument("--keys", type=lambda t: [k for k in t.split(",") if k],
                   help="--float .pt: the state dict's weight tensors, comma-separated in "
                        "layer order (default: every 2-D float tensor in the dict's order)")
    p.add_argument("--name", help="config name (default: the file's)")
    p.add_argument("--dataset", choices=DATASETS,
                   help="the data the network reads; the check runs on its first test "
                        "images (default: digits for 64 inputs, otherwise required)")
    p.add_argument("--check-samples", type=int_at_least(1), default=CHECK_SAMPLES,
                   help=f"samples the fidelity check runs (default {CHECK_SAMPLES})")
    p.add_argument("--min-agreement", type=bounded_float("in [0, 100]",
                                                         lambda v: 0 <= v <= 100),
                   default=95.0, help="percent of the check samples whose prediction must "
                                      "agree with the float network's (default 95)")
    p.add_argument("--force", action="store_true",
                   help="write an unfaithful import anyway (a warning instead of an error)")
    p.add_argument("--evaluate", type=int_at_least(1), default=None, metavar="N",
                   help="also run the golden model on the first N test samples of the dataset")
    p.set_defaults(func=run_import)


def run_export(args) -> int:
    """A config and its integer weights as a NIR graph (``docs/nir.md``)."""
    from spikeforge.sw.nir_io import default_weights, lif_parameters, write_nir
    from spikeforge.sw.weights import load_weights

    cfg = load_config(args.config)
    if args.weights:
        weights, note = load_weights(args.weights, cfg), f"weights {args.weights}"
    else:
        weights, note = default_weights(cfg, args.seed)
    write_nir(args.nir, cfg, weights, dt=args.dt)
    print(f"export: {cfg.summary()}")
    print(f"export: {note}")
    print(f"export: wrote {args.nir}: Input -> (Linear -> LIF) x {cfg.n_layers} -> Output, "
          f"dt {args.dt:g}, tau {lif_parameters(cfg, args.dt)['tau']:g}, "
          f"v_threshold {cfg.threshold}; formats in the graph metadata")
    return 0


def run_import(args) -> int:
    """A NIR graph or float weights -> config TOML + integer weights (``docs/nir.md``): read,
    quantise (``--weight-bits auto``: search the formats), check the result against the
    float network, and only then write."""
    from spikeforge.sw import import_fidelity as fidelity
    from spikeforge.sw.nir_io import config_to_toml

    source, quantise, lines, timing, data = _read_source(args)
    imp = quantise(None if args.weight_bits == "auto" else args.weight_bits, None, None)
    if imp.exact:
        for line in imp.lines:
            print(line)
    else:
        for line in lines:
            print(line)
        pixels, labels, where = _check_inputs(imp.cfg, data, args.check_samples)
        target = args.min_agreement / 100
        if args.weight_bits == "auto":
            fid, imp = _auto(quantise, timing, pixels, labels, where, target)
        else:
            fid = fidelity.measure(imp, timing, pixels, labels, where)
        for line in imp.lines + fid.lines():
            print(line)
        bad = fidelity.problems(fid, target)
        for why in bad:
            if not args.force:
                raise ConfigError(f"import: {why}; nothing written (--force writes it anyway)")
            print(f"import: warning: {why}", file=sys.stderr)
    cfg = imp.cfg
    out = Path(args.config_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_toml(cfg, header=f"imported by spikeforge import from {source}"))
    load_config(out)          # what was written loads back as a legal config
    print(f"import: wrote {out}")
    if args.weights_out:
        from spikeforge.sw.weights import save_weights

        Path(args.weights_out).parent.mkdir(parents=True, exist_ok=True)
        save_weights(args.weights_out, cfg, imp.weights)
        print(f"import: wrote {args.weights_out}")
    if args.evaluate:
        _evaluate(cfg, imp.weights, args.evaluate)
    return 0


def _read_source(args):
    """The source read and checked: ``(description, quantise(bits, percentile, membrane),
    report lines, SourceTiming, check data)``; nothing is quantised yet. ``check data``:
    ``(Dataset, "")``, or ``(None, why)`` when the dataset's files are not here."""
    from spikeforge.sw.import_fidelity import SourceTiming
    from spikeforge.sw.nir_io import (
        chain_shape,
        import_graph,
        load_float_layers,
        load_nir,
        quantise_float,
    )

    options = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k) is not None}
    steps = 20 if args.time_steps is None else args.time_steps
    defaults = (0, 0) if args.nir else (0, 1)        # NIR: snnTorch's; float: desire's
    timing = SourceTiming(*(d if a is None else a for a, d in
                            zip((args.input_delay, args.layer_delay), defaults, strict=True)))
    data = _load_data(args.dataset, args) if args.dataset else None
    if args.nir:
        if args.keys or args.decay is not None:
            raise UsageError("--keys and --decay are for --float; a NIR graph names its "
                             "layers and time constants")
        graph = load_nir(args.nir)
        n_layers, n_in = chain_shape(graph)
        if args.leak_shift is not None:
            options["leak_shift"] = args.leak_shift
        convert = functools.partial(import_graph, graph, quantise=args.quantise, dt=args.dt)
        description, lines = f"NIR graph {args.nir}", []
    else:
        mats, lines = load_float_layers(args.float, keys=args.keys,
                                        n_inputs=_inputs(args.dataset, data))
        n_layers, n_in = len(mats), mats[0].shape[0]
        decay, leak_shift, note = _leak(args)
        lines.append(note)
        options.update(decay=decay, leak_shift=leak_shift,
                       name=args.name or Path(args.float).stem)
        convert = functools.partial(quantise_float, mats, quantise=args.quantise)
        description = f"float weights {args.float} (threshold units)"
    dataset, data = _dataset(args, n_in, data)
    options.update(dataset=dataset, time_steps=steps + timing.extra_steps(n_layers))

    def quantise(bits, percentile, membrane):
        opts = dict(options, percentile=percentile)
        if bits is not None:
            opts["weight_bits"] = bits
        if membrane is not None or bits is None:
            opts["membrane_bits"] = membrane
        return convert(**opts)

    extra = timing.extra_steps(n_layers)
    lines.append(f"timing: the source's {timing.describe()}: "
                 + (f"ours lags it by {extra} step(s) at the output, so the config runs "
                    f"{steps} + {extra} = {steps + extra} time steps (the output counts over "
                    f"them are the source's over {steps})" if extra else
                    f"the same as ours, {steps} time steps"))
    return description, quantise, lines, timing, data


def _load_data(name: str, args):
    """``(Dataset, "")`` of ``name`` at the import's pixel width, or ``(None, why)`` when its
    files are not on this machine."""
    from spikeforge.sw.datasets import DatasetError, load_dataset

    try:
        return load_dataset(name, args.pixel_bits or 8), ""
    except DatasetError as exc:
        return None, str(exc)


def _inputs(name: str | None, data) -> int | None:
    """Inputs per sample of dataset ``name`` (its files, or its known size without them)."""
    if name is None:
        return None
    if data[0] is not None:
        return data[0].n_inputs
    return 64 if name == "digits" else 784


def _dataset(args, n_in: int, data):
    """``(name, check data)`` of ``--dataset``, checked against the network's inputs;
    digits for 64 inputs without it."""
    if args.dataset is None:
        if n_in == 64:
            return "digits", _load_data("digits", args)
        raise UsageError(f"--dataset: the network reads {n_in} inputs; name its data "
                         f"({', '.join(d for d in DATASETS if d != 'digits')} for 28x28 = "
                         f"784): the config records it and the check runs on it; nothing "
                         f"written")
    want = _inputs(args.dataset, data)
    if want != n_in:
        raise UsageError(f"--dataset {args.dataset}: {want} inputs per sample, the network "
                         f"reads {n_in}; nothing written")
    return args.dataset, data


def _leak(args) -> tuple[float, int, str]:
    """--float: the source's decay, our leak shift and what the mapping costs."""
    if args.decay is None:
        k = 2 if args.leak_shift is None else args.leak_shift
        decay = 1.0 - 2.0 ** -k
    else:
        decay = args.decay
        k = args.leak_shift
        if k is None:
            k = 16 if decay >= 1 else min(16, max(1, round(-math.log2(1.0 - decay))))
    ours = 1.0 - 2.0 ** -k
    return decay, k, (f"leak: the source's decay {decay:g} per step -> leak_shift {k} "
                      f"(V - (V >> {k}) = {ours:g} V, {abs(ours - decay):.3g} "
                      f"{'exact' if ours == decay else 'off'}; floored shifts)")


def _check_inputs(cfg, data, n: int):
    """``(pixels, labels, description)`` of the fidelity check: the first ``n`` test images
    of the dataset, or random images when its files are not on this machine."""
    import numpy as np

    dataset, why = data
    if dataset is not None:
        return (dataset.test_pixels[:n], dataset.test_labels[:n],
                f"{cfg.dataset} test samples (the first)")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(n, cfg.layers[0]))
    pixels[rng.random(pixels.shape) < 0.7] = 0
    return pixels, None, f"random images ({cfg.dataset} not here: {why})"


def _auto(quantise, timing, pixels, labels, where, target):
    """--weight-bits auto, with a progress bar over the formats tried."""
    from tqdm import tqdm

    from spikeforge.sw.import_fidelity import choose_formats

    with tqdm(desc="import: formats", unit="format", dynamic_ncols=True,
              disable=not sys.stderr.isatty()) as bar:
        imp, fid, lines = choose_formats(quantise, timing, pixels, labels, where, target,
                                         progress=bar.update)
    imp.lines.extend(lines)
    return fid, imp


def _evaluate(cfg, weights, n: int) -> None:
    from tqdm import tqdm

    from spikeforge.sw.nir_io import evaluate

    with tqdm(total=n, desc="import: evaluate", unit="sample", dynamic_ncols=True) as bar:
        acc, n = evaluate(cfg, weights, n, progress=bar.update)
    print(f"import: golden model accuracy {100 * acc:.2f}% on the first {n} {cfg.dataset} "
          f"test samples")
