"""``spikeforge qat``: offline quantisation-aware surrogate-gradient training."""

from __future__ import annotations

from pathlib import Path

from spikeforge.commands.common import add_config, int_at_least, require_rate
from spikeforge.config import load_config
from spikeforge.sw.datasets import DATASET_NAMES


def register(sub) -> None:
    p = sub.add_parser("qat", help="offline quantisation-aware surrogate-gradient training")
    add_config(p)
    p.add_argument("--dataset", choices=DATASET_NAMES)
    p.add_argument("--epochs", type=int_at_least(1), default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="weight file to write (.npz)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.qat import evaluate_integer, train_qat
    from spikeforge.sw.weights import save_weights

    cfg = load_config(args.config)
    require_rate(cfg, "qat")
    data = load_for_config(cfg, args.dataset)
    weights = train_qat(cfg, data.train_pixels, data.train_labels, epochs=args.epochs,
                        seed=args.seed)
    acc = evaluate_integer(cfg, weights, data.test_pixels, data.test_labels)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_weights(args.output, cfg, weights)
    print(f"qat: {cfg.name} on {data.name}: golden-model test accuracy {100 * acc:.2f}% "
          f"({len(data.test_labels)} samples); weights in {args.output}")
    return 0
