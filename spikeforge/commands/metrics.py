"""``spikeforge metrics``: NeuroBench's metrics of one network (``sw/neurobench_metrics.py``,
the optional extra ``.[neurobench]``) next to the project's own counts."""

from __future__ import annotations

import json

from spikeforge.commands.common import UsageError, add_config, int_at_least
from spikeforge.sw.datasets import DATASET_NAMES

ROWS = (  # (label, neurobench key, own key)
    ("classification accuracy", "accuracy", "accuracy"),
    ("synaptic operations / sample", "effective_acs", "sops"),
    ("  of them on non-zero weights", "effective_acs", "nonzero_acs"),
    ("activation sparsity", "activation_sparsity", "activation_sparsity"),
    ("connection sparsity", "connection_sparsity", "connection_sparsity"),
    ("footprint (bytes)", "footprint_bytes", "footprint_bytes"),
)


def register(sub) -> None:
    p = sub.add_parser("metrics", help="NeuroBench metrics of a network (footprint, "
                       "sparsity, synaptic operations, accuracy) next to spikeforge's own "
                       "counts; needs the extra .[neurobench]")
    add_config(p)
    p.add_argument("--weights", help="weights (.npz; default: the initial weights spikeforge "
                   "train starts from, seed 0)")
    p.add_argument("--dataset", choices=DATASET_NAMES, help="dataset (default: the config's); "
                   "its test split")
    p.add_argument("--samples", type=int_at_least(1), help="the first N test samples "
                   "(default: all)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikeforge.config import load_config
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.desire import inference_weights
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import load_weights

    try:
        import neurobench  # noqa: F401
    except ImportError:
        raise UsageError("metrics: the neurobench package is not installed: pip install -e "
                         "'.[neurobench]' (bash setup.sh installs it)") from None
    from spikeforge.sw.neurobench_metrics import measure

    cfg = load_config(args.config)
    if cfg.encoding != "rate":
        raise UsageError(f"metrics: {cfg.name} is a TTFS config; rate-coded configs only")
    data = load_for_config(cfg, args.dataset)
    if args.weights:
        weights = load_weights(args.weights, cfg)
    else:
        weights = inference_weights(cfg, initial_weights(cfg, 0))
    n = args.samples or len(data.test_labels)
    result = measure(cfg, weights, data.test_pixels[:n], data.test_labels[:n])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    nb, own = result["neurobench"], result["own"]
    print(f"metrics: {cfg.name}, {result['samples']} test samples of {data.name}")
    print("| metric | NeuroBench | spikeforge |\n|---|---:|---:|")
    for label, nb_key, own_key in ROWS:
        print(f"| {label} | {nb[nb_key]:.6g} | {own[own_key]:.6g} |")
    print("metrics: NeuroBench counts an AC per input spike and non-zero weight, spikeforge a "
          "SOP per input spike and weight (the engine adds zeros too); NeuroBench's footprint "
          f"is float32 parameters, the core stores {cfg.store_bits} bits per weight")
    return 0
