"""On-chip training with desire backpropagation, one sample at a time (host side of the chip).

The chip learns from one sample at a time: the host streams a sample and its label, the chip
runs inference, the desire pass and the weight update (:func:`sw.desire.train_step` is its
bit-exact model). This module is the host loop around it:

* initial *stored* weights (``weight_bits + F`` bits, :func:`initial_weights`): Kaiming
  normal, ``std = sqrt(2 / N_pre)`` in float units, times ``threshold * 2**F`` into stored
  integer units, rounded (half to even), plus half an inference LSB (``2**(F-1)``, so that
  ``W_store >> F`` rounds rather than floors the float weight) and clipped to the stored
  range, drawn from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(0,)))``;
* a new sample order every epoch, ``permutation`` of a generator seeded by
  ``SeedSequence(seed, spawn_key=(1, epoch))`` (:func:`epoch_order`), so any position of any
  epoch can be regenerated without carrying RNG state;
* the learning-rate shift of epoch ``e`` from ``cfg.learning.lr_shift_at(e)``;
* after every epoch, test accuracy of the inference weights ``W_store >> F`` (batched);
* history per epoch: train accuracy (the chip's own predictions while it learns, i.e. each
  sample's forward pass *before* its update), test accuracy, median cycles per training
  sample (inference + learning, :attr:`sw.desire.TrainStep.cycles`), wall seconds;
* atomic checkpoints (temporary file + ``os.replace``) every ``checkpoint_every`` samples and
  at every epoch end; resuming from one gives final weights bit-identical to an
  uninterrupted run. A checkpoint holds the stored weights and, for stochastic rounding, the
  ``P`` lane LFSR states (``lfsr``, :attr:`sw.desire.TrainStep.lfsr`) and, for dropout, the
  mask LFSR states (``mask_lfsr``, :attr:`sw.desire.TrainStep.mask_lfsr`): the run carries
  them from sample to sample as the chip does, starting from ``cfg.lfsr_seeds`` and
  ``cfg.dropout_seeds``.

Every sample is one call of :func:`sw.desire.train_step` (the bit-exact model of the chip's
learning step) and every test pass one batched :func:`sw.golden.run_network` on
:func:`sw.desire.inference_weights`; nothing here re-implements the arithmetic.

Output files (in ``out_dir``): ``checkpoint.npz``, ``weights.npz`` (``w0, w1, ...``: the
``weight_bits`` *inference* weights in :mod:`sw.weights` format, loadable by
:func:`sw.weights.load_weights`; ``stored_w0, ...``: the ``weight_bits + F``-bit stored
weights the learning memory holds; ``frac_bits``: ``F``), ``history.json`` and
``accuracy.png`` (train/test accuracy per epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import secrets
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.sw.desire import check_lfsr, check_mask_lfsr, inference_weights, train_step
from spikeforge.sw.golden import run_network
from spikeforge.sw.weights import to_stored

__all__ = [
    "CHECKPOINT_NAME",
    "DEFAULT_CHECKPOINT_EVERY",
    "CheckpointError",
    "EpochRecord",
    "TrainError",
    "TrainMonitor",
    "TrainResult",
    "config_hash",
    "epoch_order",
    "evaluate",
    "initial_weights",
    "init_label",
    "stored_from_inference",
    "load_checkpoint",
    "plot_history",
    "train",
]

DEFAULT_CHECKPOINT_EVERY = 2000
EVAL_BATCH = 500
CHECKPOINT_NAME = "checkpoint.npz"
WEIGHTS_NAME = "weights.npz"
HISTORY_NAME = "history.json"
PLOT_NAME = "accuracy.png"
CHECKPOINT_FORMAT = "spikeforge-train-checkpoint"
# 2: the lane LFSR states (``lfsr``; version 1 reads as ()); 3: dropout's mask LFSR states
# (``mask_lfsr``, one row of P per hidden layer; versions 1 and 2 read as ())
CHECKPOINT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: What reading a damaged or foreign checkpoint file can raise (numpy's .npz is a zip).
CHECKPOINT_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, EOFError,
                          zipfile.BadZipFile, zlib.error)
_HISTORY_FIELDS = ("epoch", "lr_shift", "train_accuracy", "test_accuracy", "median_cycles",
                   "seconds")


class TrainError(ValueError):
    """A training argument is out of range or does not fit the config/dataset."""


class CheckpointError(TrainError):
    """A checkpoint is missing, corrupt, or was written by a different run."""


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of the history. Accuracies are fractions in ``[0, 1]``; ``epoch`` is
    1-based (epoch ``e`` trained with ``lr_shift``); ``seconds`` is wall time of the epoch's
    training and test pass (summed over interrupted runs)."""

    epoch: int
    lr_shift: int
    train_accuracy: float
    test_accuracy: float
    median_cycles: float
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train` leaves: the stored weights, the history and where files went.

    ``complete`` is False when ``max_samples`` stopped the run early (a checkpoint holds its
    state); ``samples_done`` counts training samples over all epochs, resumed runs included;
    ``lfsr``: the lane LFSR states at the end (stochastic rounding; else ``()``);
    ``mask_lfsr``: dropout's mask LFSR states at the end (else ``()``).
    """

    cfg: object
    dataset: str
    seed: int
    epochs: int
    stored: list[np.ndarray]
    history: list[EpochRecord]
    complete: bool
    samples_done: int
    files: dict[str, Path] = field(default_factory=dict)
    lfsr: tuple[int, ...] = ()
    mask_lfsr: tuple[tuple[int, ...], ...] = ()

    @property
    def weights(self) -> list[np.ndarray]:
        """The ``weight_bits`` inference weights ``W_store >> F``."""
        return inference_weights(self.cfg, self.stored)

    @property
    def test_accuracy(self) -> float | None:
        return self.history[-1].test_accuracy if self.history else None


class TrainMonitor:
    """Hooks :func:`train` calls; the default does nothing. An exception raised in a hook
    propagates out of :func:`train` (the last checkpoint stays valid)."""

    def start(self, total: int, done: int) -> None:
        """``total`` training samples in the run (all epochs), ``done`` already trained."""

    def sample(self, epoch: int, position: int, size: int, correct: int) -> None:
        """After sample ``position`` (1-based) of ``size`` in ``epoch`` (0-based);
        ``correct`` counts correct predictions in this epoch so far."""

    def epoch_end(self, record: EpochRecord) -> None:
        """After an epoch's test pass."""

    def evaluating(self, epoch: int, samples: int) -> None:
        """Before an epoch's test pass over ``samples`` samples."""


# ---------------------------------------------------------------------------------------------
# Seeds, initial weights, config identity
# ---------------------------------------------------------------------------------------------

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrainError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def initial_weights(cfg, seed: int) -> list[np.ndarray]:
    """Kaiming-normal stored weights (``weight_bits + F`` bits) of every LIF layer.

    ``W_store = clip(round(w * threshold * 2**F) + 2**(F-1))`` with ``w ~ N(0, 2 / N_pre)``
    drawn in float units (``w_float = W_inf / threshold``), ``round`` half to even, ``clip``
    to the stored range. The half-LSB offset ``2**(F-1)`` (0 when ``F = 0``) makes the
    inference weight ``W_inf = W_store >> F`` the *rounded* ``w * threshold`` instead of its
    floor: without it every weight the LIF engines read starts half an inference LSB low, a
    bias of ``-0.5 / threshold`` per input spike and step that costs a lot of accuracy
    (digits-tiny: ~75% instead of ~45% after 12 epochs at the same learning rate).
    """
    _require_learning(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(_check_seed(seed), spawn_key=(0,)))
    scale = cfg.threshold * (1 << cfg.frac_bits)
    offset = (1 << cfg.frac_bits) >> 1
    weights = []
    for layer in range(cfg.n_layers):
        n_pre, n_post = cfg.weight_shape(layer)
        w = rng.normal(0.0, math.sqrt(2.0 / n_pre), size=(n_pre, n_post)) * scale
        weights.append(np.clip(np.rint(w).astype(np.int64) + offset, cfg.store_min,
                               cfg.store_max))
    return weights


def stored_from_inference(cfg, weights) -> list[np.ndarray]:
    """Stored weights that start from given inference weights (e.g. ``spikeforge qat``'s):
    ``W_store = (W << F) + 2**(F-1)``, so that ``W_store >> F == W`` exactly and each weight
    sits mid-LSB, as :func:`initial_weights` places the Kaiming draw."""
    _require_learning(cfg)
    offset = (1 << cfg.frac_bits) >> 1
    return [w + offset for w in to_stored(cfg, weights)]


def init_label(stored: list[np.ndarray] | None) -> str:
    """What a run started from, for its checkpoint: ``kaiming`` (the seed's draw) or a hash
    of the given start weights."""
    if stored is None:
        return "kaiming"
    digest = hashlib.sha1()
    for w in stored:
        digest.update(np.ascontiguousarray(w, dtype=np.int64).tobytes())
    return f"weights-{digest.hexdigest()[:12]}"


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) visits the ``n`` training samples."""
    seq = np.random.SeedSequence(_check_seed(seed), spawn_key=(1, int(epoch)))
    return np.random.default_rng(seq).permutation(n)


def config_hash(cfg) -> str:
    """A short hash of every config field that affects training (not its file path;
    ``lfsr_seed`` only with stochastic rounding, ``eligibility`` and ``near_fraction`` only
    with near eligibility, ``dropout_hidden`` and ``dropout_seed`` only with dropout,
    ``hidden_gate`` and ``tie_break`` only when not ``"none"``, ``input_threshold`` only
    when set, never ``decoder``, ``early_exit`` or ``spram_layers``, so configs without them
    keep their hash)."""
    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.compare}
    if data.get("tie_break") == "none":
        del data["tie_break"]
    data.pop("decoder", None)       # what decides after inference does not train,
    data.pop("early_exit", None)    # nor when an inference sample stops (same predictions)
    data.pop("spram_layers", None)  # where the weights live does not change them
    if data.get("input_threshold") is None:
        data.pop("input_threshold", None)   # the default encoder: hashes as before it existed
    if data.get("learning") is not None:
        data["learning"] = dataclasses.asdict(data["learning"])
        if data["learning"]["rounding"] != "stochastic":
            del data["learning"]["lfsr_seed"]
        if data["learning"]["eligibility"] == "spike":
            del data["learning"]["eligibility"], data["learning"]["near_fraction"]
        if not cfg.dropout_threshold:
            del data["learning"]["dropout_hidden"], data["learning"]["dropout_seed"]
        if data["learning"]["hidden_gate"] == "none":
            del data["learning"]["hidden_gate"]
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _require_learning(cfg) -> None:
    if cfg.learning is None:
        raise TrainError(f"config {cfg.name!r} has no [learning] section; on-chip training "
                         f"needs one (see configs/digits-tiny.toml)")


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def evaluate(cfg, stored: list[np.ndarray], pixels: np.ndarray, labels: np.ndarray, *,
             batch: int = EVAL_BATCH) -> float:
    """Test accuracy (fraction) of the inference weights ``W_store >> F``: batched
    :func:`sw.golden.run_network`; a sample counts as correct only for a unique argmax."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    # in the narrow type: the golden model then integrates in int32 (sw.golden.membrane_type)
    w_inf = [w.astype(cfg.store_dtype) for w in inference_weights(cfg, stored)]
    correct = 0
    for lo in range(0, len(labels), batch):
        pred = run_network(cfg, w_inf, pixels[lo:lo + batch]).predictions
        correct += int((pred == labels[lo:lo + batch]).sum())
    return correct / len(labels)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

@dataclass
class _State:
    """Everything a run needs to continue: weights, lane LFSRs and position."""

    stored: list[np.ndarray]
    lfsr: tuple[int, ...]      # the lane LFSR states (stochastic rounding), else ()
    mask_lfsr: tuple[tuple[int, ...], ...]    # dropout's mask LFSR states, else ()
    epoch: int                 # epoch being trained (0-based); == len(history) always
    position: int              # samples of that epoch already trained
    epoch_correct: int
    epoch_cycles: list[int]
    epoch_seconds: float
    history: list[EpochRecord]


def _identity(cfg, dataset: str, seed: int, n_train: int, n_test: int, init: str) -> dict:
    return {"config_name": cfg.name, "config_hash": config_hash(cfg), "dataset": dataset,
            "seed": seed, "train_samples": n_train, "test_samples": n_test, "init": init}


def _atomic_savez(path: Path, arrays: dict) -> None:
    """Write an .npz so that ``path`` is always either the old or the new complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (os.replace is atomic within a file system); plain
    # open() so the file gets the usual umask permissions, unlike mkstemp's 0600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_checkpoint(path: Path, ident: dict, state: _State) -> None:
    arrays = {
        "format": np.array(CHECKPOINT_FORMAT),
        "version": np.array(CHECKPOINT_VERSION),
        **{key: np.array(value) for key, value in ident.items()},
        "epoch": np.array(state.epoch),
        "position": np.array(state.position),
        "epoch_correct": np.array(state.epoch_correct),
        "epoch_cycles": np.array(state.epoch_cycles, dtype=np.int64),
        "epoch_seconds": np.array(state.epoch_seconds),
        "n_layers": np.array(len(state.stored)),
        **{f"stored_w{i}": w for i, w in enumerate(state.stored)},
        "lfsr": np.array(state.lfsr, dtype=np.int64),
        "mask_lfsr": np.array(state.mask_lfsr, dtype=np.int64),
        **{f"history_{name}": np.array([getattr(r, name) for r in state.history],
                                       dtype=np.float64)
           for name in _HISTORY_FIELDS},
    }
    _atomic_savez(path, arrays)


def load_checkpoint(path, cfg, *, dataset: str | None = None, seed: int | None = None,
                    train_samples: int | None = None, test_samples: int | None = None,
                    init: str | None = None):
    """Read and check a checkpoint written by :func:`train`.

    Parameters
    ----------
    path : path
        The checkpoint file.
    cfg : NetworkConfig
        The config the run trains (its name and hash must match the checkpoint's).
    dataset, seed, train_samples, test_samples, init : optional
        What the run asks for; each is checked against the checkpoint only when given
        (``init``: :func:`init_label` of the start weights).

    Returns
    -------
    (dict, _State)
        The checkpoint's identity (config name and hash, dataset, seed, sample counts) and
        the training state (stored weights as int64, lane LFSR states, position, history).

    Raises
    ------
    CheckpointError
        Naming the problem, if the file is missing, not a readable checkpoint, lacks a
        field, holds weights or LFSR states that do not fit ``cfg``, or was written for another
        config
        (name/hash), dataset, seed or sample count.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (run without --resume to "
                              f"start a new run)")
    ident, state, hist, n_layers = _read_checkpoint(path)
    _check_identity(path, cfg, ident, {"dataset": dataset, "seed": seed,
                                       "train_samples": train_samples,
                                       "test_samples": test_samples, "init": init})
    _check_state(path, cfg, ident["train_samples"], state, hist, n_layers)
    state.stored = [w.astype(np.int64) for w in state.stored]
    state.history = [EpochRecord(int(hist["epoch"][e]), int(hist["lr_shift"][e]),
                                 float(hist["train_accuracy"][e]),
                                 float(hist["test_accuracy"][e]),
                                 float(hist["median_cycles"][e]), float(hist["seconds"][e]))
                     for e in range(state.epoch)]
    return ident, state


_RESTART_HINT = "delete it, or start without --resume, to train from scratch"


def _read_checkpoint(path: Path) -> tuple[dict, _State, dict, int]:
    """The fields of checkpoint file ``path``: identity, state (weights as stored, empty
    history), history columns and the number of weight arrays. Checks only that it is a
    readable checkpoint of this format and version with every field."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: not a training checkpoint (not an .npz); "
                                      f"{_RESTART_HINT}")
            n_layers = _check_fields(path, data)
            ident = {"config_name": str(data["config_name"]),
                     "config_hash": str(data["config_hash"]),
                     "dataset": str(data["dataset"]), "seed": int(data["seed"]),
                     "train_samples": int(data["train_samples"]),
                     "test_samples": int(data["test_samples"]),
                     # checkpoints from before --init started from the seed's draw
                     "init": str(data["init"]) if "init" in data else "kaiming"}
            stored = [np.array(data[f"stored_w{i}"]) for i in range(n_layers)]
            lfsr = tuple(int(s) for s in data["lfsr"]) if "lfsr" in data else ()
            masks = (tuple(tuple(int(s) for s in row) for row in data["mask_lfsr"])
                     if "mask_lfsr" in data else ())
            hist = {n: np.array(data[f"history_{n}"]) for n in _HISTORY_FIELDS}
            state = _State(stored=stored, lfsr=lfsr, mask_lfsr=masks, epoch=int(data["epoch"]),
                           position=int(data["position"]),
                           epoch_correct=int(data["epoch_correct"]),
                           epoch_cycles=[int(c) for c in data["epoch_cycles"]],
                           epoch_seconds=float(data["epoch_seconds"]), history=[])
    except CheckpointError:
        raise
    except CHECKPOINT_READ_ERRORS as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({exc}); "
                              f"{_RESTART_HINT}") from exc
    return ident, state, hist, n_layers


def _check_fields(path: Path, data) -> int:
    """Check the format, version and presence of every field of an open checkpoint;
    returns its number of weight arrays."""
    if "format" not in data or str(data["format"]) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a spikeforge training checkpoint (no 'format' = "
                              f"{CHECKPOINT_FORMAT!r} entry); {_RESTART_HINT}")
    version = int(data["version"]) if "version" in data else None
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this spikeforge "
                              f"reads versions {READABLE_VERSIONS}; {_RESTART_HINT}")
    n_layers = int(data["n_layers"]) if "n_layers" in data else None
    needed = (["config_name", "config_hash", "dataset", "seed", "train_samples",
               "test_samples", "epoch", "position", "epoch_correct", "epoch_cycles",
               "epoch_seconds", "n_layers"]
              + [f"history_{n}" for n in _HISTORY_FIELDS]
              + [f"stored_w{i}" for i in range(n_layers or 0)]
              + (["lfsr"] if version >= 2 else [])
              + (["mask_lfsr"] if version >= 3 else []))
    missing = [key for key in needed if key not in data]
    if missing:
        raise CheckpointError(f"{path}: corrupt checkpoint, missing fields {missing}; "
                              f"{_RESTART_HINT}")
    return n_layers


def _check_identity(path: Path, cfg, ident: dict, expected: dict) -> None:
    """The checkpoint must come from ``cfg`` (name and hash) and match every ``expected``
    setting that is not ``None``."""
    if ident["config_hash"] != config_hash(cfg) or ident["config_name"] != cfg.name:
        raise CheckpointError(
            f"{path}: checkpoint was written for config {ident['config_name']!r} (hash "
            f"{ident['config_hash']}), not for config {cfg.name!r} (hash {config_hash(cfg)}); "
            f"resume with the same config, or use another --out directory")
    for key, value in expected.items():
        if value is not None and ident[key] != value:
            raise CheckpointError(
                f"{path}: checkpoint was written with {key} {ident[key]!r}, this run asks for "
                f"{value!r}; resume with the same settings, or use another --out directory")


def _check_state(path: Path, cfg, n_train: int, state: _State, hist: dict,
                 n_layers: int) -> None:
    """The state read from a checkpoint must be consistent: one history row per trained
    epoch, weights of ``cfg``'s shapes within the stored range, a position within the
    epoch's ``n_train`` samples."""
    lengths = {len(v) for v in hist.values()}
    if len(lengths) != 1 or lengths.pop() != state.epoch:
        raise CheckpointError(f"{path}: corrupt checkpoint: history length does not match "
                              f"epoch {state.epoch}; {_RESTART_HINT}")
    if n_layers != cfg.n_layers:
        raise CheckpointError(f"{path}: corrupt checkpoint: {n_layers} weight arrays, config "
                              f"{cfg.name!r} has {cfg.n_layers} layers; {_RESTART_HINT}")
    for i, w in enumerate(state.stored):
        if w.shape != cfg.weight_shape(i) or not np.issubdtype(w.dtype, np.integer):
            raise CheckpointError(f"{path}: corrupt checkpoint: stored_w{i} is {w.dtype} "
                                  f"{w.shape}, expected integers {cfg.weight_shape(i)}; "
                                  f"{_RESTART_HINT}")
        if w.size and (w.min() < cfg.store_min or w.max() > cfg.store_max):
            raise CheckpointError(f"{path}: corrupt checkpoint: stored_w{i} exceeds the "
                                  f"{cfg.store_bits}-bit stored range; {_RESTART_HINT}")
    try:
        check_lfsr(cfg, state.lfsr)
        check_mask_lfsr(cfg, state.mask_lfsr)
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint: {exc}; {_RESTART_HINT}") from None
    if not (0 <= state.position <= n_train and 0 <= state.epoch_correct <= state.position
            and len(state.epoch_cycles) == state.position):
        raise CheckpointError(f"{path}: corrupt checkpoint: position {state.position} of "
                              f"{n_train} samples is inconsistent; {_RESTART_HINT}")


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

def save_trained_weights(path, cfg, stored: list[np.ndarray]) -> None:
    """``w0, ...`` inference weights (:mod:`sw.weights` format), ``stored_w0, ...`` stored
    weights, ``frac_bits``, ``config``; written atomically."""
    w_inf = inference_weights(cfg, stored)
    _atomic_savez(Path(path), {
        "config": np.array(cfg.name), "frac_bits": np.array(cfg.frac_bits),
        **{f"w{i}": w for i, w in enumerate(w_inf)},
        **{f"stored_w{i}": np.asarray(w, dtype=np.int64) for i, w in enumerate(stored)},
    })


def plot_history(path, history: list[EpochRecord], title: str) -> None:
    """Train and test accuracy (%) per epoch as a PNG (Agg canvas, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [r.epoch for r in history]
    ax.plot(epochs, [100 * r.train_accuracy for r in history], "o-",
            label="train (on-chip predictions while learning)")
    ax.plot(epochs, [100 * r.test_accuracy for r in history], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    if epochs:
        ax.set_xticks(epochs if len(epochs) <= 20 else epochs[::max(1, len(epochs) // 10)])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def _write_outputs(out_dir: Path, cfg, dataset: str, state: _State, ident: dict) -> dict:
    files = {"weights": out_dir / WEIGHTS_NAME, "history": out_dir / HISTORY_NAME,
             "plot": out_dir / PLOT_NAME}
    save_trained_weights(files["weights"], cfg, state.stored)
    files["history"].write_text(json.dumps(
        {**ident, "epochs": [dataclasses.asdict(r) for r in state.history]}, indent=2) + "\n")
    plot_history(files["plot"], state.history,
                 f"{cfg.name} on {dataset}: desire backpropagation (integer golden model)")
    return files


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

def _check_count(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TrainError(f"{name}: expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        legal = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise TrainError(f"{name}: {value} is out of range, legal range is {legal}")
    return int(value)


def _one_blas_thread():
    """Limit BLAS to one thread: the per-sample matrix products are small, and on a shared,
    loaded 2-core machine OpenBLAS's threads made them several times slower."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def train(cfg, data, *, epochs: int, seed: int = 0, out_dir=None,
          train_samples: int | None = None, test_samples: int | None = None,
          resume: bool = False, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
          max_samples: int | None = None, init: list[np.ndarray] | None = None,
          monitor: TrainMonitor | None = None) -> TrainResult:
    """Train ``cfg`` on dataset ``data`` (:class:`sw.datasets.Dataset`) sample by sample.

    Parameters
    ----------
    epochs : int
        Epochs to have trained when done (a resumed run continues up to this number).
    seed : int
        Seeds the initial weights and every epoch's sample order.
    out_dir : path or None
        Checkpoint and output folder; ``None`` keeps everything in memory (no checkpoints,
        no resume).
    train_samples, test_samples : int or None
        Use only the first ``N`` samples of the train / test split (default: all).
    resume : bool
        Continue from ``out_dir/checkpoint.npz``; it must come from the same config (hash),
        dataset, seed and sample counts.
    checkpoint_every : int
        Also checkpoint after every this many samples within an epoch (0: only at epoch
        ends).
    max_samples : int or None
        Stop after training this many samples in this call (checkpoint written, result has
        ``complete=False``): for interrupting and resuming.
    init : list of numpy.ndarray or None
        Start from these inference weights (``weight_bits``, e.g. from ``spikeforge qat``;
        :func:`stored_from_inference`) instead of the seed's Kaiming draw; the seed still
        orders the samples. A resumed run must give the same ones.
    monitor : TrainMonitor or None
        Progress hooks.
    """
    start = stored_from_inference(cfg, init) if init is not None else None
    plan = _plan(cfg, data, epochs=epochs, seed=seed, out_dir=out_dir,
                 train_samples=train_samples, test_samples=test_samples,
                 checkpoint_every=checkpoint_every, init=init_label(start))
    if max_samples is not None:
        max_samples = _check_count("max_samples", max_samples, 0)
    if resume and out_dir is None:
        raise TrainError("resume: needs an output folder holding the checkpoint")
    monitor = monitor or TrainMonitor()
    state = _resumed_state(plan) if resume else _State(
        stored=start if start is not None else initial_weights(cfg, plan.seed),
        lfsr=cfg.lfsr_seeds, mask_lfsr=cfg.dropout_seeds, epoch=0, position=0,
        epoch_correct=0,
        epoch_cycles=[], epoch_seconds=0.0, history=[])

    done_before = state.epoch * plan.n_train + state.position
    monitor.start(max(plan.epochs * plan.n_train, done_before), done_before)
    trained_here, stopped = 0, False
    with _one_blas_thread():
        while state.epoch < plan.epochs:
            budget = None if max_samples is None else max_samples - trained_here
            trained, stopped = _train_epoch(plan, state, budget, monitor)
            trained_here += trained
            if stopped:
                break
            _end_epoch(plan, state, monitor)

    if stopped and plan.checkpoint is not None:
        _save_checkpoint(plan.checkpoint, plan.ident, state)
    files = {"checkpoint": plan.checkpoint} if plan.checkpoint is not None else {}
    if not stopped and plan.out_dir is not None:
        files.update(_write_outputs(plan.out_dir, cfg, data.name, state, plan.ident))
    return TrainResult(cfg=cfg, dataset=data.name, seed=plan.seed, epochs=plan.epochs,
                       stored=state.stored, history=list(state.history),
                       complete=not stopped, samples_done=done_before + trained_here,
                       files=files, lfsr=state.lfsr, mask_lfsr=state.mask_lfsr)


@dataclass(frozen=True)
class _Plan:
    """What a call of :func:`train` works on, checked: the config, the sample splits, the
    seed, the epochs to reach, where checkpoints go (``checkpoint``: ``None`` in memory)."""

    cfg: object
    seed: int
    epochs: int
    train_pixels: np.ndarray
    train_labels: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray
    ident: dict
    out_dir: Path | None
    checkpoint: Path | None
    checkpoint_every: int

    @property
    def n_train(self) -> int:
        return len(self.train_labels)


def _plan(cfg, data, *, epochs, seed, out_dir, train_samples, test_samples,
          checkpoint_every, init) -> _Plan:
    """Check :func:`train`'s arguments against ``cfg`` and ``data`` (errors name the
    argument and its legal range) and cut the splits to the sample counts asked for."""
    _require_learning(cfg)
    seed = _check_seed(seed)
    epochs = _check_count("epochs", epochs, 1)
    _check_dataset_fits(cfg, data)
    n_train_all, n_test_all = len(data.train_labels), len(data.test_labels)
    n_train = _check_count("train_samples", n_train_all if train_samples is None
                           else train_samples, 1, n_train_all)
    n_test = _check_count("test_samples", n_test_all if test_samples is None
                          else test_samples, 1, n_test_all)
    checkpoint_every = _check_count("checkpoint_every", checkpoint_every, 0)
    out_dir = Path(out_dir) if out_dir is not None else None
    return _Plan(cfg=cfg, seed=seed, epochs=epochs,
                 train_pixels=data.train_pixels[:n_train],
                 train_labels=data.train_labels[:n_train],
                 test_pixels=data.test_pixels[:n_test], test_labels=data.test_labels[:n_test],
                 ident=_identity(cfg, data.name, seed, n_train, n_test, init),
                 out_dir=out_dir,
                 checkpoint=out_dir / CHECKPOINT_NAME if out_dir is not None else None,
                 checkpoint_every=checkpoint_every)


def _check_dataset_fits(cfg, data) -> None:
    """The dataset's inputs, pixel width and classes must be the network's."""
    if data.n_inputs != cfg.layers[0]:
        raise TrainError(f"dataset {data.name!r} has {data.n_inputs} inputs per sample but "
                         f"config {cfg.name!r} has network.layers[0] = {cfg.layers[0]}")
    if data.pixel_bits != cfg.pixel_bits:
        raise TrainError(f"dataset {data.name!r} was loaded with {data.pixel_bits}-bit pixels, "
                         f"config {cfg.name!r} has encoding.pixel_bits = {cfg.pixel_bits}")
    if data.classes != cfg.layers[-1]:
        raise TrainError(f"dataset {data.name!r} has {data.classes} classes but config "
                         f"{cfg.name!r} has {cfg.layers[-1]} output neurons")


def _resumed_state(plan: _Plan) -> _State:
    """The state of the plan's checkpoint (same config, dataset, seed and sample counts),
    which must not hold more epochs than the plan asks for."""
    ident = plan.ident
    _, state = load_checkpoint(plan.checkpoint, plan.cfg, dataset=ident["dataset"],
                               init=ident["init"],
                               seed=plan.seed, train_samples=ident["train_samples"],
                               test_samples=ident["test_samples"])
    if state.epoch > plan.epochs:
        raise TrainError(f"epochs: {plan.checkpoint} already holds {state.epoch} trained "
                         f"epochs, more than the {plan.epochs} asked for; ask for at least "
                         f"{state.epoch}")
    return state


def _train_epoch(plan: _Plan, state: _State, budget: int | None,
                 monitor: TrainMonitor) -> tuple[int, bool]:
    """Train the rest of epoch ``state.epoch`` in its seeded order, checkpointing every
    ``plan.checkpoint_every`` samples; stop early after ``budget`` samples (``None``: no
    limit). Returns the samples trained and whether the budget stopped it."""
    cfg, n_train = plan.cfg, plan.n_train
    lr_shift = cfg.learning.lr_shift_at(state.epoch)
    order = epoch_order(plan.seed, state.epoch, n_train)
    # the narrowest type the stored format fits: the same values, faster to integrate
    state.stored = [np.asarray(w, dtype=cfg.store_dtype) for w in state.stored]
    trained, stopped = 0, False
    t0 = time.perf_counter()
    while state.position < n_train:
        if budget is not None and trained >= budget:
            stopped = True
            break
        idx = order[state.position]
        label = int(plan.train_labels[idx])
        step = train_step(cfg, state.stored, plan.train_pixels[idx], label, lr_shift,
                          state.lfsr, state.mask_lfsr)
        state.stored, state.lfsr, state.mask_lfsr = step.weights, step.lfsr, step.mask_lfsr
        state.position += 1
        state.epoch_correct += int(step.run.predictions[0] == label)
        state.epoch_cycles.append(step.cycles)
        trained += 1
        monitor.sample(state.epoch, state.position, n_train, state.epoch_correct)
        if (plan.checkpoint is not None and plan.checkpoint_every
                and state.position < n_train and state.position % plan.checkpoint_every == 0):
            state.epoch_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save_checkpoint(plan.checkpoint, plan.ident, state)
    state.epoch_seconds += time.perf_counter() - t0
    return trained, stopped


def _end_epoch(plan: _Plan, state: _State, monitor: TrainMonitor) -> EpochRecord:
    """The test pass after a trained epoch: its history record, the state moved on to the
    next epoch, a checkpoint."""
    epoch = state.epoch
    monitor.evaluating(epoch, len(plan.test_labels))
    t0 = time.perf_counter()
    test_acc = evaluate(plan.cfg, state.stored, plan.test_pixels, plan.test_labels)
    seconds = state.epoch_seconds + time.perf_counter() - t0
    record = EpochRecord(epoch=epoch + 1, lr_shift=plan.cfg.learning.lr_shift_at(epoch),
                         train_accuracy=state.epoch_correct / plan.n_train,
                         test_accuracy=test_acc,
                         median_cycles=float(np.median(state.epoch_cycles)),
                         seconds=seconds)
    state.history.append(record)
    state.epoch, state.position, state.epoch_correct = epoch + 1, 0, 0
    state.epoch_cycles, state.epoch_seconds = [], 0.0
    if plan.checkpoint is not None:
        _save_checkpoint(plan.checkpoint, plan.ident, state)
    monitor.epoch_end(record)
    return record
