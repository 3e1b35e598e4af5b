"""``spikeforge qat``: offline quantisation-aware surrogate-gradient training."""

from __future__ import annotations

from pathlib import Path

from spikeforge.commands.common import (
    UsageError,
    add_config,
    bounded_float,
    int_at_least,
    profiles_where,
    require_rate,
)
from spikeforge.config import load_config
from spikeforge.sw.datasets import DATASET_NAMES


def register(sub) -> None:
    from spikeforge.sw.recipes import RECIPE_SIZES, RECIPES, SCHEDULES

    p = sub.add_parser("qat", help="offline quantisation-aware surrogate-gradient training")
    add_config(p)
    p.add_argument("--dataset", choices=DATASET_NAMES)
    p.add_argument("--recipe", choices=("auto", *RECIPES), default="auto",
                   help="base training recipe (auto: by training-set size, " + ", ".join(
                       f"{name} below {n}" for name, n in RECIPE_SIZES.items())
                   + ", else large); the options below replace its fields")
    p.add_argument("--epochs", type=int_at_least(1), help="passes over the training set")
    p.add_argument("--lr", type=bounded_float("> 0", lambda v: v > 0),
                   help="Adam learning rate, in units of w_max")
    p.add_argument("--batch-size", type=int_at_least(1))
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--desire-weight", type=bounded_float(">= 0", lambda v: v >= 0),
                   help="weight of a hinge that puts the output counts where on-chip desire "
                        "backpropagation leaves them alone (a start for train --init)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="weight file to write (.npz)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.qat import evaluate_integer, train_qat
    from spikeforge.sw.recipes import recipe_from_options
    from spikeforge.sw.weights import save_weights

    cfg = load_config(args.config)
    require_rate(cfg, "qat")
    if args.desire_weight and cfg.learning is None:
        raise UsageError(f"--desire-weight: config {cfg.name!r} has no [learning] section to "
                         f"take the desire targets from; profiles with one: "
                         f"{profiles_where(lambda c: getattr(c, 'learning', None))}")
    data = load_for_config(cfg, args.dataset)
    n_train = len(data.train_labels)
    recipe = recipe_from_options(args, n_train)
    print(f"qat: {cfg.name} on {data.name} ({n_train} training samples): {recipe}")
    weights = train_qat(cfg, data.train_pixels, data.train_labels, recipe=recipe,
                        seed=args.seed)
    acc = evaluate_integer(cfg, weights, data.test_pixels, data.test_labels)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_weights(args.output, cfg, weights)
    print(f"qat: {cfg.name} on {data.name}: golden-model test accuracy {100 * acc:.2f}% "
          f"({len(data.test_labels)} samples); weights in {args.output}")
    return 0
