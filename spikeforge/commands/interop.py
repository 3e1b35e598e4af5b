"""``spikeforge export`` and ``spikeforge import``: a config and its integer weights as a NIR
graph, and NIR graphs or float weights back into a config and integer weights
(``docs/nir.md``)."""

from __future__ import annotations

from pathlib import Path

from spikeforge.commands.common import add_config, bounded_float, int_at_least
from spikeforge.config import DATASETS, load_config
from spikeforge.sw.nir_io import DT, PERCENTILE, QUANTISE

_POSITIVE = bounded_float("> 0", lambda v: v > 0)
_DT = f"{DT:.0e}".replace("e-0", "e-")         # 1e-4, as the help texts write it
#: ``import`` options that go into the config of a foreign graph or float weights.
CONFIG_OPTIONS = ("weight_bits", "membrane_bits", "time_steps", "lanes", "pixel_bits",
                  "threshold", "leak_shift", "name", "dataset")


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
    p.add_argument("--weight-bits", type=int)
    p.add_argument("--membrane-bits", type=int, help="raised to the least legal width")
    p.add_argument("--time-steps", type=int)
    p.add_argument("--lanes", type=int)
    p.add_argument("--pixel-bits", type=int)
    p.add_argument("--threshold", type=int, help="integer threshold (default: from --quantise)")
    p.add_argument("--leak-shift", type=int, help="default: from the graph's tau (2 for --float)")
    p.add_argument("--name", help="config name (default: the file's)")
    p.add_argument("--dataset", choices=DATASETS)
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
    """A NIR graph or float weights -> config TOML + integer weights (``docs/nir.md``)."""
    from spikeforge.sw.nir_io import config_to_toml, evaluate, read_float, read_nir
    from spikeforge.sw.weights import save_weights

    options = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k) is not None}
    if args.nir:
        result = read_nir(args.nir, quantise=args.quantise, dt=args.dt, **options)
        source = f"NIR graph {args.nir}"
    else:
        result = read_float(args.float, quantise=args.quantise, **options)
        source = f"float weights {args.float} (threshold units)"
    for line in result.lines:
        print(line)
    cfg = result.cfg
    out = Path(args.config_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_toml(cfg, header=f"imported by spikeforge import from {source}"))
    load_config(out)          # what was written loads back as a legal config
    print(f"import: wrote {out}")
    if args.weights_out:
        Path(args.weights_out).parent.mkdir(parents=True, exist_ok=True)
        save_weights(args.weights_out, cfg, result.weights)
        print(f"import: wrote {args.weights_out}")
    if args.evaluate:
        acc, n = evaluate(cfg, result.weights, args.evaluate)
        print(f"import: golden model accuracy {100 * acc:.2f}% on the first {n} {cfg.dataset} "
              f"test samples")
    return 0
