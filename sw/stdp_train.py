"""On-chip STDP learning with pruning, one sample at a time (host side of the TTFS core).

The core learns unsupervised: the host streams samples (no labels); each one is inferred,
its k-WTA winners apply STDP and synapses that fall under the prune threshold are removed
(:func:`sw.ttfs.learn_step` is the bit-exact model). This is the host loop around it:

* initial state: :func:`sw.ttfs.initial_state` (uniform ``init_weights``, from ``seed``);
* sample order per epoch: :func:`sw.train.epoch_order` (the same as desire training);
* recorded for every sample: connectivity after it, inference and learning cycles (the
  cycle model the RTL matches), the first winner (``-1``: nobody fired);
* after every epoch: the linear readout's train/test accuracy (:mod:`sw.readout`);
* atomic checkpoints every ``checkpoint_every`` samples and at epoch ends; resuming gives
  a state bit-identical to an uninterrupted run.

Output files (``out_dir``): ``checkpoint.npz``, ``state.npz`` (:func:`sw.ttfs.save_state`,
loadable by ``spikeforge compare --weights``), ``history.json``, and the plots of
:mod:`sw.ttfs_plots` (receptive fields, connectivity and cycles vs samples, readout
accuracy per epoch).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.sw import ttfs
from spikeforge.sw.readout import readout_accuracy
from spikeforge.sw.train import (
    CHECKPOINT_READ_ERRORS,
    CheckpointError,
    TrainError,
    TrainMonitor,
    _atomic_savez,
    _check_count,
    _check_seed,
    _one_blas_thread,
    config_hash,
    epoch_order,
)

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_FORMAT = "spikeforge-stdp-checkpoint"
CHECKPOINT_VERSION = 1
READOUT_SAMPLES = 10000
_PER_SAMPLE = ("connectivity", "infer_cycles", "learn_cycles", "winner")


@dataclass
class STDPEpoch:
    epoch: int
    readout_train: float
    readout_test: float
    connectivity: float
    median_infer_cycles: float
    median_learn_cycles: float
    seconds: float


@dataclass
class STDPRun:
    """State and everything recorded so far (per sample: ``connectivity``, ``infer_cycles``,
    ``learn_cycles``, ``winner``, over all epochs in order)."""

    state: ttfs.TTFSState
    epoch: int = 0
    position: int = 0
    samples: dict = field(default_factory=lambda: {k: [] for k in _PER_SAMPLE})
    history: list[STDPEpoch] = field(default_factory=list)
    complete: bool = False
    files: dict = field(default_factory=dict)

    @property
    def samples_done(self) -> int:
        """Training samples learned so far, over all epochs."""
        return len(self.samples["winner"])


def _identity(cfg, dataset, seed, n_train, n_test, n_readout) -> dict:
    return {"config_name": cfg.name, "config_hash": config_hash(cfg), "dataset": dataset,
            "seed": seed, "train_samples": n_train, "test_samples": n_test,
            "readout_samples": n_readout}


def _save(path: Path, ident: dict, run: STDPRun) -> None:
    _atomic_savez(path, {
        "format": np.array(CHECKPOINT_FORMAT), "version": np.array(CHECKPOINT_VERSION),
        "identity": np.array(json.dumps(ident)),
        "history": np.array(json.dumps([asdict(r) for r in run.history])),
        "epoch": np.array(run.epoch), "position": np.array(run.position),
        "weights": run.state.weights, "alive": run.state.alive,
        **{f"s_{k}": np.asarray(v) for k, v in run.samples.items()},
    })


def load_checkpoint(path: Path, cfg, ident: dict) -> STDPRun:
    """Read a checkpoint of this exact run (``ident``), or raise :class:`CheckpointError`."""
    hint = "delete it, or start without --resume, to train from scratch"
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (run without --resume)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data.files or str(data["format"]) != CHECKPOINT_FORMAT:
                raise CheckpointError(f"{path}: not a spikeforge STDP checkpoint; {hint}")
            if int(data["version"]) != CHECKPOINT_VERSION:
                raise CheckpointError(f"{path}: checkpoint version {int(data['version'])}, "
                                      f"expected {CHECKPOINT_VERSION}; {hint}")
            theirs = json.loads(str(data["identity"]))
            history = [STDPEpoch(**r) for r in json.loads(str(data["history"]))]
            state = ttfs.check_state(cfg, data["weights"], data["alive"])
            samples = {k: list(data[f"s_{k}"]) for k in _PER_SAMPLE}
            epoch, position = int(data["epoch"]), int(data["position"])
    except CheckpointError:
        raise
    except CHECKPOINT_READ_ERRORS as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({exc}); {hint}") \
            from exc
    for key, value in ident.items():
        if theirs.get(key) != value:
            raise CheckpointError(f"{path}: checkpoint was written with {key} "
                                  f"{theirs.get(key)!r}, this run asks for {value!r}; resume "
                                  f"with the same settings, or use another --out directory")
    done = epoch * ident["train_samples"] + position
    if len(history) != epoch or any(len(v) != done for v in samples.values()):
        raise CheckpointError(f"{path}: corrupt checkpoint: records do not match epoch "
                              f"{epoch}, position {position}; {hint}")
    return STDPRun(state=state, epoch=epoch, position=position, samples=samples,
                   history=history)


def train_stdp(cfg, data, *, epochs: int, seed: int = 0, out_dir=None,
               train_samples: int | None = None, test_samples: int | None = None,
               readout_samples: int | None = None, resume: bool = False,
               checkpoint_every: int = 2000, max_samples: int | None = None,
               monitor: TrainMonitor | None = None) -> STDPRun:
    """Learn ``epochs`` passes over the training split with the golden model of the core.

    Parameters
    ----------
    cfg : NetworkConfig
        A TTFS config.
    data : Dataset
        Its inputs and pixel width must be the config's.
    readout_samples : int or None
        The linear readout trains on the first this many training samples (default all, at
        most 10,000).
    epochs, seed, out_dir, train_samples, test_samples, resume, checkpoint_every, max_samples
        As :func:`sw.train.train`.
    monitor : TrainMonitor or None
        ``monitor.sample(epoch, position, size, winners_so_far)`` (samples of the epoch in
        which some neuron fired); ``monitor.epoch_end`` gets the :class:`STDPEpoch`.

    Returns
    -------
    STDPRun
        ``complete`` is False when ``max_samples`` stopped it (a checkpoint holds its state).
    """
    plan = _plan(cfg, data, epochs=epochs, seed=seed, out_dir=out_dir,
                 train_samples=train_samples, test_samples=test_samples,
                 readout_samples=readout_samples, checkpoint_every=checkpoint_every)
    if resume and out_dir is None:
        raise TrainError("resume: needs an output folder holding the checkpoint")
    monitor = monitor or TrainMonitor()
    run = (load_checkpoint(plan.checkpoint, cfg, plan.ident) if resume
           else STDPRun(state=ttfs.initial_state(cfg, plan.seed)))
    if run.epoch > plan.epochs:
        raise TrainError(f"epochs: {plan.checkpoint} already holds {run.epoch} epochs, more "
                         f"than {plan.epochs}")

    n_train = plan.ident["train_samples"]
    done_before = run.epoch * n_train + run.position
    monitor.start(max(plan.epochs * n_train, done_before), done_before)
    trained, stopped = 0, False
    with _one_blas_thread():
        while run.epoch < plan.epochs:
            t0 = time.perf_counter()
            budget = None if max_samples is None else max_samples - trained
            learned, stopped = _learn_epoch(plan, run, budget, monitor)
            trained += learned
            if stopped:
                break
            _end_epoch(plan, run, data, monitor, t0)
    if stopped and plan.checkpoint is not None:
        _save(plan.checkpoint, plan.ident, run)
    run.complete = not stopped
    if plan.checkpoint is not None:
        run.files["checkpoint"] = plan.checkpoint
    if run.complete and plan.out_dir is not None:
        _write_outputs(plan.out_dir, cfg, data.name, plan.ident, run)
    return run


@dataclass(frozen=True)
class _Plan:
    """What a call of :func:`train_stdp` works on, checked: the config, the seed, the epochs
    to reach, the training pixels, the identity of the run (sample counts included) and
    where checkpoints go (``checkpoint``: ``None`` in memory)."""

    cfg: object
    seed: int
    epochs: int
    pixels: np.ndarray
    ident: dict
    out_dir: Path | None
    checkpoint: Path | None
    checkpoint_every: int


def _plan(cfg, data, *, epochs, seed, out_dir, train_samples, test_samples, readout_samples,
          checkpoint_every) -> _Plan:
    """Check :func:`train_stdp`'s arguments against ``cfg`` and ``data`` (errors name the
    argument and its legal range)."""
    if cfg.encoding != "ttfs":
        raise TrainError(f"config {cfg.name!r} is not a TTFS config")
    seed = _check_seed(seed)
    epochs = _check_count("epochs", epochs, 1)
    if data.n_inputs != cfg.n_in or data.pixel_bits != cfg.pixel_bits:
        raise TrainError(f"dataset {data.name!r} ({data.n_inputs} inputs, {data.pixel_bits}-bit "
                         f"pixels) does not fit config {cfg.name!r} ({cfg.n_in} inputs, "
                         f"{cfg.pixel_bits}-bit pixels)")
    n_tr_all, n_te_all = len(data.train_labels), len(data.test_labels)
    n_train = _check_count("train_samples", train_samples or n_tr_all, 1, n_tr_all)
    n_test = _check_count("test_samples", test_samples or n_te_all, 1, n_te_all)
    n_ro = _check_count("readout_samples", readout_samples or min(n_train, READOUT_SAMPLES),
                        1, n_train)
    checkpoint_every = _check_count("checkpoint_every", checkpoint_every, 0)
    out_dir = Path(out_dir) if out_dir is not None else None
    return _Plan(cfg=cfg, seed=seed, epochs=epochs, pixels=data.train_pixels[:n_train],
                 ident=_identity(cfg, data.name, seed, n_train, n_test, n_ro), out_dir=out_dir,
                 checkpoint=out_dir / CHECKPOINT_NAME if out_dir is not None else None,
                 checkpoint_every=checkpoint_every)


def _learn_epoch(plan: _Plan, run: STDPRun, budget: int | None,
                 monitor: TrainMonitor) -> tuple[int, bool]:
    """Learn the rest of epoch ``run.epoch`` in its seeded order (:func:`sw.ttfs.learn_step`
    per sample, its records appended), checkpointing every ``plan.checkpoint_every``
    samples; stop early after ``budget`` samples (``None``: no limit). Returns the samples
    learned and whether the budget stopped it."""
    n_train = plan.ident["train_samples"]
    order = epoch_order(plan.seed, run.epoch, n_train)
    done = run.samples_done
    with_winner = sum(1 for w in run.samples["winner"][done - run.position:] if w >= 0)
    learned = 0
    while run.position < n_train:
        if budget is not None and learned >= budget:
            return learned, True
        step = ttfs.learn_step(plan.cfg, run.state, plan.pixels[order[run.position]])
        run.state = step.state
        for key, value in (("connectivity", step.state.connectivity),
                           ("infer_cycles", step.infer_cycles),
                           ("learn_cycles", step.learn_cycles),
                           ("winner", step.winners[0] if len(step.winners) else -1)):
            run.samples[key].append(value)
        run.position += 1
        learned += 1
        with_winner += len(step.winners) > 0
        monitor.sample(run.epoch, run.position, n_train, with_winner)
        if (plan.checkpoint is not None and plan.checkpoint_every
                and run.position % plan.checkpoint_every == 0):
            _save(plan.checkpoint, plan.ident, run)
    return learned, False


def _end_epoch(plan: _Plan, run: STDPRun, data, monitor: TrainMonitor, t0: float) -> None:
    """After a learned epoch: the readout's train/test accuracy, the epoch's record
    (``seconds`` since ``t0``), the run moved on to the next epoch, a checkpoint."""
    ident = plan.ident
    n_train, n_test, n_ro = (ident["train_samples"], ident["test_samples"],
                             ident["readout_samples"])
    monitor.evaluating(run.epoch, n_test)
    acc_tr, acc_te = readout_accuracy(plan.cfg, run.state, plan.pixels[:n_ro],
                                      data.train_labels[:n_ro], data.test_pixels[:n_test],
                                      data.test_labels[:n_test])
    record = STDPEpoch(
        epoch=run.epoch + 1, readout_train=acc_tr, readout_test=acc_te,
        connectivity=run.state.connectivity,
        median_infer_cycles=float(np.median(run.samples["infer_cycles"][-n_train:])),
        median_learn_cycles=float(np.median(run.samples["learn_cycles"][-n_train:])),
        seconds=time.perf_counter() - t0)
    run.history.append(record)
    run.epoch, run.position = run.epoch + 1, 0
    if plan.checkpoint is not None:
        _save(plan.checkpoint, ident, run)
    monitor.epoch_end(record)


def _write_outputs(out_dir: Path, cfg, dataset: str, ident: dict, run: STDPRun) -> None:
    """``state.npz``, ``history.json`` and the plots of a complete run; their paths go to
    ``run.files``."""
    from spikeforge.sw.ttfs_plots import plot_run

    ttfs.save_state(out_dir / "state.npz", cfg, run.state)
    (out_dir / "history.json").write_text(json.dumps(
        {**ident, "epochs": [asdict(r) for r in run.history]}, indent=2) + "\n")
    run.files.update(state=out_dir / "state.npz", history=out_dir / "history.json",
                     **plot_run(out_dir, cfg, dataset, run))
