"""``spikeforge train``: on-chip learning run by the golden model, checkpointed and resumable:
desire backpropagation, or STDP with pruning for TTFS configs."""

from __future__ import annotations

import sys
from pathlib import Path

from spikeforge.commands.common import UsageError, add_config, int_at_least, profiles_where
from spikeforge.config import ConfigError, load_config
from spikeforge.sw.datasets import DATASET_NAMES
from spikeforge.sw.train import DEFAULT_CHECKPOINT_EVERY, TrainMonitor


def register(sub) -> None:
    p = sub.add_parser("train", help="on-chip training with the golden model: desire "
                                     "backpropagation, or STDP + pruning (TTFS configs)")
    add_config(p)
    p.add_argument("--dataset", choices=DATASET_NAMES, help="dataset (default: the config's)")
    p.add_argument("--epochs", type=int_at_least(1), required=True)
    p.add_argument("--out", help="output folder: checkpoint, weights, history, accuracy plot "
                                 "(default: out/train/<config>-<dataset>)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="initial weights and sample order (default 0)")
    p.add_argument("--train-samples", type=int_at_least(1),
                   help="train on the first N training samples (default: all)")
    p.add_argument("--test-samples", type=int_at_least(1),
                   help="test on the first N test samples (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out (same config, dataset, seed, "
                        "sample counts); the result is bit-identical to an uninterrupted run")
    p.add_argument("--checkpoint-every", type=int_at_least(0),
                   default=DEFAULT_CHECKPOINT_EVERY,
                   help=f"also checkpoint every N samples within an epoch (default "
                        f"{DEFAULT_CHECKPOINT_EVERY}, 0: only at epoch ends)")
    p.add_argument("--max-samples", type=int_at_least(0),
                   help="stop after N samples in this call (checkpointed; go on with --resume)")
    p.add_argument("--init", metavar="W.npz",
                   help="start from these weights (e.g. spikeforge qat's) instead of the "
                        "seed's Kaiming draw; desire-backpropagation configs only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """On-chip desire-backpropagation training, sample by sample, with the golden model."""
    from spikeforge.sw.train import CHECKPOINT_NAME, train

    cfg = load_config(args.config)
    if cfg.encoding == "ttfs":
        return _train_ttfs(cfg, args)
    if cfg.learning is None:
        raise ConfigError(f"config {cfg.name!r} has no [learning] section; on-chip training "
                          f"needs one (see configs/digits-tiny.toml; profiles with one: "
                          f"{profiles_where(lambda c: getattr(c, 'learning', None))})")
    out = _out_dir(cfg, args)
    if args.resume and not (out / CHECKPOINT_NAME).is_file():
        raise UsageError(f"--resume: no checkpoint {out / CHECKPOINT_NAME} (run without "
                         f"--resume to start, or give the --out of the run to continue)")
    init = None
    if args.init is not None:
        from spikeforge.sw.weights import load_weights

        init = load_weights(args.init, cfg)
    data = _load(cfg, args, out)
    result, rc = _run_training(train, cfg, data, args, out / CHECKPOINT_NAME, DesireBar(args),
                               ("weights", "history", "plot"), init=init)
    if result is None:
        return rc
    print(f"train: {cfg.name} {data.name} epochs {len(result.history)} test accuracy "
          f"{100 * result.test_accuracy:.2f}%")
    return 0


def _train_ttfs(cfg, args) -> int:
    """``train`` of a TTFS config: unsupervised on-chip STDP with pruning (golden model)."""
    from spikeforge.sw.stdp_train import CHECKPOINT_NAME, train_stdp

    if args.init is not None:
        raise UsageError(f"--init: config {cfg.name!r} learns with STDP from its own start; "
                         f"--init is for desire-backpropagation configs")
    out = _out_dir(cfg, args)
    data = _load(cfg, args, out)
    run_, rc = _run_training(train_stdp, cfg, data, args, out / CHECKPOINT_NAME, StdpBar(args),
                             ("state", "history", "receptive_fields", "connectivity",
                              "cycles"))
    if run_ is None:
        return rc
    last = run_.history[-1]
    print(f"train: {cfg.name} {data.name} epochs {len(run_.history)} readout test accuracy "
          f"{100 * last.readout_test:.2f}%, connectivity {100 * last.connectivity:.2f}%")
    return 0


def _out_dir(cfg, args) -> Path:
    dataset = args.dataset or cfg.dataset
    return Path(args.out) if args.out else Path("out") / "train" / f"{cfg.name}-{dataset}"


def _load(cfg, args, out: Path):
    """The dataset, after the two header lines."""
    from spikeforge.sw.datasets import load_for_config

    data = load_for_config(cfg, args.dataset)
    print(f"train: {cfg.summary()}")
    print(f"train: {data.summary()}; seed {args.seed}, output {out}")
    return data


def _run_training(train_fn, cfg, data, args, checkpoint: Path, monitor,
                  outputs: tuple[str, ...], **extra):
    """Run ``train_fn(cfg, data, ...the train options of args...)``.

    Returns ``(result, 0)`` when it completed (the ``outputs`` files are printed); otherwise
    ``(None, exit code)``: Ctrl-C becomes a message (130), and a ``--max-samples`` stop says
    where the checkpoint is (0). A :class:`sw.train.TrainError` is a user error and
    propagates. The progress bar is closed either way.
    """
    try:
        result = train_fn(cfg, data, epochs=args.epochs, seed=args.seed,
                          out_dir=checkpoint.parent, train_samples=args.train_samples,
                          test_samples=args.test_samples, resume=args.resume,
                          checkpoint_every=args.checkpoint_every, max_samples=args.max_samples,
                          monitor=monitor, **extra)
    except KeyboardInterrupt:
        print(f"\ntrain: interrupted; {checkpoint} holds the last checkpoint, continue with "
              f"--resume", file=sys.stderr)
        return None, 130
    finally:
        monitor.close()
    if not result.complete:
        print(f"train: stopped after {result.samples_done} samples (--max-samples); "
              f"checkpoint {result.files['checkpoint']}; continue with --resume")
        return None, 0
    for key in outputs:
        print(f"train: {key} in {result.files[key]}")
    return result, 0


class _Bar(TrainMonitor):
    """A tqdm progress bar over the training samples (``--quiet``: none)."""

    desc = "train"

    def __init__(self, args):
        self.epochs, self.quiet, self.bar = args.epochs, args.quiet, None

    def start(self, total, done):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="sample", desc=self.desc,
                        disable=self.quiet, dynamic_ncols=True, smoothing=0.05)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    @staticmethod
    def write(line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line)


class DesireBar(_Bar):
    """Progress of desire-backpropagation training: running train accuracy, epoch lines."""

    def sample(self, epoch, position, size, correct):
        self.bar.update(1)
        if position % 50 == 0 or position == size:
            self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.epochs} train "
                                     f"{100 * correct / position:.1f}%", refresh=False)

    def evaluating(self, epoch, samples):
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.epochs} testing {samples} samples")

    def epoch_end(self, r):
        self.write(f"train: epoch {r.epoch}/{self.epochs} lr_shift {r.lr_shift}: train "
                   f"{100 * r.train_accuracy:.2f}%, test {100 * r.test_accuracy:.2f}%, "
                   f"median {r.median_cycles:.0f} cycles/sample, {r.seconds:.1f} s")


class StdpBar(_Bar):
    """Progress of STDP training: epoch, readout accuracy and connectivity lines."""

    desc = "stdp"

    def sample(self, epoch, position, size, with_winner):
        self.bar.update(1)
        if position % 200 == 0 or position == size:
            self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.epochs}", refresh=False)

    def evaluating(self, epoch, samples):
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.epochs} readout")

    def epoch_end(self, r):
        self.write(f"train: epoch {r.epoch}/{self.epochs}: readout train "
                   f"{100 * r.readout_train:.2f}%, test {100 * r.readout_test:.2f}%, "
                   f"connectivity {100 * r.connectivity:.2f}%, median cycles inference "
                   f"{r.median_infer_cycles:.0f} + learning {r.median_learn_cycles:.0f}, "
                   f"{r.seconds:.1f} s")
