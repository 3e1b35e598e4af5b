"""Integer weight sets: validation, files, random draws and packing into memory words.

A weight set is a list with one ``(N_pre, N_post)`` integer array per LIF layer, each entry a
signed ``weight_bits`` integer. Files are ``.npz`` with arrays ``w0, w1, ...`` and the
config's ``name`` stored beside them.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

#: Share of the signed range random weights span unless told otherwise (1.0: all of it).
DEFAULT_SCALE = 0.5


class WeightError(ValueError):
    """A weight set does not fit its config (shape, range or file contents)."""


def check_weights(cfg, weights) -> list[np.ndarray]:
    """Return the weights as int64 arrays, or raise :class:`WeightError` naming the problem."""
    if len(weights) != cfg.n_layers:
        raise WeightError(f"weights: expected {cfg.n_layers} layer arrays, got {len(weights)}")
    checked = []
    for layer, w in enumerate(weights):
        w = np.asarray(w)
        if w.shape != cfg.weight_shape(layer):
            raise WeightError(
                f"w{layer}: shape {w.shape} does not match the config's "
                f"{cfg.weight_shape(layer)} (N_pre, N_post)")
        if not np.issubdtype(w.dtype, np.integer):
            raise WeightError(f"w{layer}: dtype {w.dtype} is not an integer type")
        if w.size and (w.min() < cfg.w_min or w.max() > cfg.w_max):
            raise WeightError(
                f"w{layer}: values in [{w.min()}, {w.max()}] exceed the {cfg.weight_bits}-bit "
                f"signed range [{cfg.w_min}, {cfg.w_max}]")
        checked.append(w.astype(np.int64))
    return checked


def save_weights(path, cfg, weights, decoder=None) -> None:
    """Write ``weights`` (and the decoder on the chip's ``decoder_w``/``decoder_b``, a
    :class:`sw.exit_decoder.DecoderWeights`) to an ``.npz`` file."""
    weights = check_weights(cfg, weights)
    extra = {} if decoder is None else {"decoder_w": decoder.w, "decoder_b": decoder.b}
    np.savez(path, config=cfg.name, **{f"w{i}": w for i, w in enumerate(weights)}, **extra)


def _read_arrays(path, names: list[str], *, optional: bool = False,
                 why: str = "") -> list | None:
    """The arrays ``names`` of the ``.npz`` file ``path``; ``None`` if some are missing and
    ``optional``, else :class:`WeightError` (``why`` appended to its message)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise WeightError(f"{path}: not an .npz weight file (a single .npy array?); "
                              f"expected arrays {names}")
        with data:
            missing = [name for name in names if name not in data]
            if missing and optional:
                return None
            if missing:
                raise WeightError(f"{path}: missing arrays {missing}{why}")
            return [data[name] for name in names]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, WeightError):
            raise
        raise WeightError(f"{path}: not a readable .npz weight file: {exc}") from exc


def load_weights(path, cfg) -> list[np.ndarray]:
    names = [f"w{i}" for i in range(cfg.n_layers)]
    return check_weights(cfg, _read_arrays(path, names, why=f" for config {cfg.name!r}"))


def load_decoder(path, cfg):
    """The decoder on the chip stored in weight file ``path`` (``spikeforge decode
    --export-decoder``), checked against ``cfg``: a :class:`sw.exit_decoder.DecoderWeights`,
    or ``None`` when the file has none."""
    from spikeforge.sw.exit_decoder import check_decoder

    arrays = _read_arrays(path, ["decoder_w", "decoder_b"], optional=True)
    if arrays is None:
        return None
    try:
        return check_decoder(cfg, *arrays)
    except WeightError as exc:
        raise WeightError(f"{path}: {exc}") from None


def random_weights(cfg, rng: np.random.Generator, *,
                   scale: float = DEFAULT_SCALE) -> list[np.ndarray]:
    """Uniform random weights spanning ``scale`` of the signed range (1.0 = full range)."""
    return _uniform(cfg, rng, scale, cfg.w_min, cfg.w_max)


def random_stored_weights(cfg, rng: np.random.Generator, *,
                          scale: float = DEFAULT_SCALE) -> list[np.ndarray]:
    """Uniform random *stored* weights (``store_bits`` wide, see :func:`to_stored`) spanning
    ``scale`` of the signed stored range: a learning run's start without the Kaiming init."""
    return _uniform(cfg, rng, scale, cfg.store_min, cfg.store_max)


def _uniform(cfg, rng, scale: float, lo_limit: int, hi_limit: int) -> list[np.ndarray]:
    """One ``rng.integers`` draw per layer, uniform in ``[max(lo_limit, -hi), hi]`` with
    ``hi = max(1, round(hi_limit * scale))``."""
    hi = max(1, int(round(hi_limit * scale)))
    lo = max(lo_limit, -hi)
    return [rng.integers(lo, hi + 1, size=cfg.weight_shape(i)) for i in range(cfg.n_layers)]


def to_stored(cfg, weights) -> list[np.ndarray]:
    """Inference weights as stored weights: ``W << F`` (exact; ``F = 0`` without learning)."""
    return [np.asarray(w, dtype=np.int64) << cfg.frac_bits for w in check_weights(cfg, weights)]


def pack_words(cfg, layer: int, w: np.ndarray) -> list[int]:
    """Weight memory image of LIF layer ``layer`` from its *stored* weights (``store_bits =
    weight_bits + F``; equal to the inference weights without learning): word ``j*G + g``
    holds the weights from presynaptic ``j`` to postsynaptic ``g*P .. g*P+P-1``, lane ``p``
    in bits ``[p*store_bits, (p+1)*store_bits)`` (two's complement); missing lanes are
    zero."""
    w = np.asarray(w)
    if w.shape != cfg.weight_shape(layer):
        raise WeightError(f"w{layer}: shape {w.shape} does not match the config's "
                          f"{cfg.weight_shape(layer)} (N_pre, N_post)")
    if w.size and (w.min() < cfg.store_min or w.max() > cfg.store_max):
        raise WeightError(f"w{layer}: values in [{w.min()}, {w.max()}] exceed the "
                          f"{cfg.store_bits}-bit signed range [{cfg.store_min}, "
                          f"{cfg.store_max}]")
    n_pre, n_post = w.shape
    groups, lanes, bits = cfg.groups(layer), cfg.lanes, cfg.store_bits
    padded = np.zeros((n_pre, groups * lanes), dtype=np.int64)
    padded[:, :n_post] = w
    fields = (padded & ((1 << bits) - 1)).reshape(n_pre * groups, lanes)
    shifts = np.arange(lanes, dtype=object) * bits
    return [int(sum(int(f) << int(s) for f, s in zip(row, shifts, strict=True)))
            for row in fields]


def unpack_words(cfg, layer: int, words) -> np.ndarray:
    """Inverse of :func:`pack_words`."""
    n_pre, n_post = cfg.weight_shape(layer)
    bits, lanes = cfg.store_bits, cfg.lanes
    words = list(words)
    if len(words) != n_pre * cfg.groups(layer):
        raise WeightError(f"w{layer}: expected {n_pre} x {cfg.groups(layer)} = "
                          f"{n_pre * cfg.groups(layer)} words, got {len(words)}")
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    flat = [((word >> (p * bits)) & mask) for word in words for p in range(lanes)]
    arr = np.array([(f ^ sign) - sign for f in flat], dtype=np.int64)
    return arr.reshape(n_pre, -1)[:, :n_post]
