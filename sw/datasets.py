"""Datasets as integer pixel arrays for the golden model and the gateware.

:func:`load_dataset` returns a frozen :class:`Dataset` with a fixed train/test split. Pixels are
unsigned ``pixel_bits`` integers held in ``int64`` arrays of shape ``(B, H*W)`` (row-major
flattening of the ``H x W`` image), labels are ``int64`` class indices in ``[0, 10)``. Every
problem (missing file, corrupt or truncated IDX file, image/label count mismatch, bad labels)
raises a :class:`DatasetError` that names the file and the problem; nothing is silently dropped.

Datasets (``DATASET_NAMES``):

``"digits"``
    scikit-learn's 8x8 digits (1,797 images, bundled with scikit-learn, no download). Values
    ``0..16`` are scaled to ``[0, 2**pixel_bits - 1]`` by ``round(x * pixel_max / 16)``
    (Python/numpy rounding, half to even). Fixed held-out split:
    ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``: 1,437 train, 360 test.

``"mnist-t10k"``
    The real MNIST *test* set (10,000 28x28 images) from the shared folder
    ``../shared/datasets/mnist-t10k/`` next to the repository root, or from the directory in
    ``$SPIKEFORGE_MNIST_DIR``. Fixed split: the first 8,000 images train, the last 2,000 test.

``"mnist"``
    Full MNIST (60,000 train / 10,000 test) from the directory in ``$SPIKEFORGE_MNIST_DIR``,
    which must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``). With
    internet access, download these four ``.gz`` files of the MNIST distribution (its
    authors' site or any mirror of it) into one folder and ``export
    SPIKEFORGE_MNIST_DIR=<that folder>``; the loader checks every header and size.

``"fashion-mnist"``
    Zalando's Fashion-MNIST (60,000 train / 10,000 test, 28x28, same IDX file names as MNIST)
    from the Debian/Ubuntu package ``dataset-fashion-mnist`` (``apt-get install
    dataset-fashion-mnist``; it installs ``/usr/share/datasets/fashion-mnist/*.gz``), or from
    the directory in ``$SPIKEFORGE_FASHION_DIR``.

Pixel depth: MNIST-style images are 8-bit. They are rescaled to ``pixel_bits`` by a right
shift ``x >> (8 - pixel_bits)`` when ``pixel_bits <= 8`` (full scale 255 maps to full scale
``2**pixel_bits - 1``) and by a left shift ``x << (pixel_bits - 8)`` when ``pixel_bits > 8``
(full scale 255 maps to ``255 << (pixel_bits - 8)``, slightly below ``2**pixel_bits - 1``, so
a white pixel then does not spike at every rate-encoder step).

This module imports only numpy, gzip/zlib and (for ``digits``) scikit-learn.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeforge.config import CONFIG_DIR, DATASETS, PIXEL_BITS

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "fashion_mnist_dir",
    "load_dataset",
    "load_for_config",
    "mnist_t10k_dir",
    "random_pixels",
    "read_idx",
    "read_idx_pair",
    "select_samples",
    "split_samples",
]

#: The names :func:`load_dataset` knows (defined once, in :mod:`spikeforge.config`).
DATASET_NAMES = DATASETS
#: The parts of a dataset samples are drawn from: ``all`` is train, then test.
SPLITS = ("test", "train", "all")
N_CLASSES = 10

MNIST_ENV = "SPIKEFORGE_MNIST_DIR"
FASHION_ENV = "SPIKEFORGE_FASHION_DIR"
FASHION_PACKAGE = "dataset-fashion-mnist"
MNIST_SOURCE = "the MNIST distribution (its authors' site or a mirror)"

#: ``../shared/datasets/mnist-t10k`` beside the source checkout (``configs/`` sits in its
#: root); an installed package looks beside the working directory instead.
SHARED_MNIST_T10K = (CONFIG_DIR.parent if (CONFIG_DIR.parent / "pyproject.toml").exists()
                     else Path.cwd()).parent / "shared" / "datasets" / "mnist-t10k"
#: Where the ``dataset-fashion-mnist`` package puts its files.
FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

T10K_TRAIN = 8000  # mnist-t10k: first 8,000 train, last 2,000 test
T10K_TOTAL = 10000

# IDX element type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DatasetError(ValueError):
    """A dataset is unknown, missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class Dataset:
    """A dataset with a fixed train/test split; arrays are read-only.

    Attributes
    ----------
    name : str
        One of :data:`DATASET_NAMES`.
    shape : tuple of int
        Image ``(H, W)``; pixel arrays have ``H * W`` columns (row-major).
    classes : int
        Number of classes (10); labels lie in ``[0, classes)``.
    train_pixels, test_pixels : ndarray of int64, shape (B, H*W)
        Unsigned pixels in ``[0, 2**pixel_bits - 1]``.
    train_labels, test_labels : ndarray of int64, shape (B,)
    pixel_bits : int
        Pixel width the images were scaled to.
    """

    name: str
    shape: tuple[int, int]
    classes: int
    train_pixels: np.ndarray
    train_labels: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray
    pixel_bits: int = 8

    def __post_init__(self):
        n_in = self.shape[0] * self.shape[1]
        pixel_max = (1 << self.pixel_bits) - 1
        for split in ("train", "test"):
            px = np.asarray(getattr(self, f"{split}_pixels"), dtype=np.int64)
            lb = np.asarray(getattr(self, f"{split}_labels"), dtype=np.int64)
            if px.ndim != 2 or px.shape[1] != n_in:
                raise DatasetError(
                    f"{self.name}: {split}_pixels has shape {px.shape}, expected (B, {n_in})")
            if lb.shape != (px.shape[0],):
                raise DatasetError(
                    f"{self.name}: {split}_labels has shape {lb.shape}, expected "
                    f"({px.shape[0]},) to match {split}_pixels")
            if px.size and (px.min() < 0 or px.max() > pixel_max):
                raise DatasetError(
                    f"{self.name}: {split}_pixels in [{px.min()}, {px.max()}] exceed the "
                    f"{self.pixel_bits}-bit range [0, {pixel_max}]")
            if lb.size and (lb.min() < 0 or lb.max() >= self.classes):
                raise DatasetError(
                    f"{self.name}: {split}_labels in [{lb.min()}, {lb.max()}] exceed "
                    f"[0, {self.classes - 1}]")
            px.setflags(write=False)
            lb.setflags(write=False)
            object.__setattr__(self, f"{split}_pixels", px)
            object.__setattr__(self, f"{split}_labels", lb)

    @property
    def n_inputs(self) -> int:
        """``H * W``: the input-layer size a config needs for this dataset."""
        return self.shape[0] * self.shape[1]

    @property
    def pixel_max(self) -> int:
        return (1 << self.pixel_bits) - 1

    def summary(self) -> str:
        h, w = self.shape
        return (f"{self.name}: {h}x{w}, {self.classes} classes, {len(self.train_labels)} train / "
                f"{len(self.test_labels)} test, {self.pixel_bits}-bit pixels")


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------

def read_idx(path, *, hint: str = "") -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw, told apart by content, not by name).

    Layout: magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes,
    then the row-major big-endian data (``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B``
    int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64). Returns a native-endian array
    of the header's shape. ``hint`` (where the file was expected to come from and how to get
    it) is appended to the message when the file is missing.

    Raises :class:`DatasetError` naming the file for: a missing file, a corrupt gzip stream, a
    bad magic number, a truncated header, and data whose size does not match the header dims
    (too short: truncated; too long: trailing bytes).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: IDX file not found"
        raise DatasetError(f"{msg}; {hint}" if hint else msg)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: unreadable or corrupt gzip stream: {exc}") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated IDX header: {len(raw)} bytes, need at least 4")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x0000TTNN with dtype code "
            f"TT in {{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}} (0x08: unsigned byte) "
            f"and NN >= 1 dimensions; is this an IDX file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
            f"file has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=object))
    need, have = count * dtype.itemsize, len(raw) - header
    if have < need:
        raise DatasetError(
            f"{path}: truncated: header dims {dims} need {need} data bytes, file has {have}")
    if have > need:
        raise DatasetError(
            f"{path}: size mismatch: header dims {dims} need {need} data bytes, file has "
            f"{have} ({have - need} trailing bytes)")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx_pair(images_path, labels_path, *, hint: str = "",
                  classes: int = N_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Read an image IDX file ``(B, H, W)`` of unsigned bytes and its label IDX file ``(B,)``.

    Returns ``(images uint8 (B, H, W), labels int64 (B,))``. Raises :class:`DatasetError` when
    either file is missing or corrupt (see :func:`read_idx`), the images are not a 3-d unsigned
    byte array, the labels are not a 1-d unsigned byte array, their counts differ, or a label
    lies outside ``[0, classes)``.
    """
    images = read_idx(images_path, hint=hint)
    labels = read_idx(labels_path, hint=hint)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected a 3-d unsigned-byte image array (B, H, W), got "
            f"{images.ndim}-d {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{labels_path}: expected a 1-d unsigned-byte label array (B,), got "
            f"{labels.ndim}-d {labels.dtype} of shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"image/label count mismatch: {images_path} holds {images.shape[0]} images but "
            f"{labels_path} holds {labels.shape[0]} labels")
    if labels.size and labels.max() >= classes:
        raise DatasetError(
            f"{labels_path}: label {int(labels.max())} outside [0, {classes - 1}]")
    return images, labels.astype(np.int64)


def _find_idx(directory: Path, stem: str, hint: str) -> Path:
    """``directory/stem.gz`` or ``directory/stem``, else a DatasetError saying where it looked."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{stem}: IDX file not found; looked for {directory / stem}.gz and "
        f"{directory / stem}; {hint}")


def _load_idx_split(directory: Path, prefix: str, hint: str):
    images = _find_idx(directory, f"{prefix}-images-idx3-ubyte", hint)
    labels = _find_idx(directory, f"{prefix}-labels-idx1-ubyte", hint)
    return read_idx_pair(images, labels, hint=hint)


def _check_28x28(images: np.ndarray, where: str) -> None:
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{where}: expected 28x28 images, got {images.shape[1:]}")


def _rescale8(images: np.ndarray, pixel_bits: int) -> np.ndarray:
    """8-bit images ``(B, H, W)`` -> ``pixel_bits`` pixels ``(B, H*W)`` int64 (see module doc)."""
    px = images.reshape(images.shape[0], -1).astype(np.int64)
    if pixel_bits <= 8:
        return px >> (8 - pixel_bits)
    return px << (pixel_bits - 8)


# ---------------------------------------------------------------------------------------------
# Where the files are
# ---------------------------------------------------------------------------------------------

def mnist_t10k_dir() -> Path:
    """``$SPIKEFORGE_MNIST_DIR`` if set, else ``../shared/datasets/mnist-t10k``."""
    env = os.environ.get(MNIST_ENV)
    return Path(env).expanduser() if env else SHARED_MNIST_T10K


def _fashion_candidates() -> list[Path]:
    """Directories that may hold the Fashion-MNIST IDX files, most authoritative first."""
    found: list[Path] = []
    if shutil.which("dpkg"):
        try:
            out = subprocess.run(["dpkg", "-L", FASHION_PACKAGE], capture_output=True,
                                 text=True, timeout=30, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                found.append(Path(line).parent)
    found.append(FASHION_DEFAULT_DIR)
    share = Path("/usr/share")
    for pattern in ("fashion*", "*/fashion*", "*/*/fashion*"):
        found.extend(p for p in sorted(share.glob(pattern)) if p.is_dir())
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def fashion_mnist_dir() -> Path:
    """The Fashion-MNIST directory: ``$SPIKEFORGE_FASHION_DIR`` if set, else the one installed
    by the ``dataset-fashion-mnist`` package. Raises :class:`DatasetError` if neither exists."""
    env = os.environ.get(FASHION_ENV)
    if env:
        return Path(env).expanduser()
    candidates = _fashion_candidates()
    for d in candidates:
        if any((d / f"train-images-idx3-ubyte{ext}").is_file() for ext in (".gz", "")):
            return d
    raise DatasetError(
        f"fashion-mnist: dataset not found; looked in {[str(d) for d in candidates]}. Install "
        f"it with `apt-get install {FASHION_PACKAGE}` (puts the IDX files in "
        f"{FASHION_DEFAULT_DIR}), or set {FASHION_ENV} to a directory holding "
        f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        f"and t10k-labels-idx1-ubyte.gz")


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------

def _load_digits(pixel_bits: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    if x.shape[1:] != (64,) or x.min() < 0 or x.max() > 16:
        raise DatasetError(f"digits: unexpected data {x.shape} in [{x.min()}, {x.max()}]")
    pixel_max = (1 << pixel_bits) - 1
    px = np.rint(x * pixel_max / 16).astype(np.int64)  # exact in float64; half to even
    x_tr, x_te, y_tr, y_te = train_test_split(px, y, test_size=0.2, random_state=0, stratify=y)
    return Dataset("digits", (8, 8), N_CLASSES, x_tr, y_tr, x_te, y_te, pixel_bits)


def _load_mnist_t10k(pixel_bits: int) -> Dataset:
    directory = mnist_t10k_dir()
    source = f"${MNIST_ENV}" if os.environ.get(MNIST_ENV) else "the shared folder"
    hint = (f"mnist-t10k is read from {source} {directory} (override with ${MNIST_ENV}); it "
            f"needs t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz], the MNIST "
            f"test set from {MNIST_SOURCE}")
    images, labels = _load_idx_split(directory, "t10k", hint)
    _check_28x28(images, f"mnist-t10k ({directory})")
    if len(labels) != T10K_TOTAL:
        raise DatasetError(
            f"mnist-t10k ({directory}): expected {T10K_TOTAL} test images for the fixed "
            f"{T10K_TRAIN}/{T10K_TOTAL - T10K_TRAIN} split, got {len(labels)}")
    px = _rescale8(images, pixel_bits)
    return Dataset("mnist-t10k", (28, 28), N_CLASSES, px[:T10K_TRAIN], labels[:T10K_TRAIN],
                   px[T10K_TRAIN:], labels[T10K_TRAIN:], pixel_bits)


def _load_full(name: str, directory: Path, hint: str, pixel_bits: int) -> Dataset:
    tr_img, tr_lab = _load_idx_split(directory, "train", hint)
    te_img, te_lab = _load_idx_split(directory, "t10k", hint)
    _check_28x28(tr_img, f"{name} train ({directory})")
    _check_28x28(te_img, f"{name} test ({directory})")
    return Dataset(name, (28, 28), N_CLASSES, _rescale8(tr_img, pixel_bits), tr_lab,
                   _rescale8(te_img, pixel_bits), te_lab, pixel_bits)


def _load_mnist(pixel_bits: int) -> Dataset:
    env = os.environ.get(MNIST_ENV)
    how = (f"download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
           f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from {MNIST_SOURCE} into a "
           f"directory and set ${MNIST_ENV} to it (see sw/datasets.py); without the 60k "
           f"training set use the 'mnist-t10k' dataset")
    if not env:
        raise DatasetError(f"mnist: ${MNIST_ENV} is not set; {how}")
    directory = Path(env).expanduser()
    return _load_full("mnist", directory, f"read from ${MNIST_ENV}={directory}; {how}",
                      pixel_bits)


def _load_fashion(pixel_bits: int) -> Dataset:
    directory = fashion_mnist_dir()
    hint = (f"fashion-mnist is read from {directory}; install the files with `apt-get install "
            f"{FASHION_PACKAGE}` or set ${FASHION_ENV} to a directory holding them")
    return _load_full("fashion-mnist", directory, hint, pixel_bits)


_LOADERS = {
    "digits": _load_digits,
    "mnist-t10k": _load_mnist_t10k,
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
}


def load_dataset(name: str, pixel_bits: int = 8) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) with ``pixel_bits``-bit pixels.

    Raises :class:`DatasetError` for an unknown name, a ``pixel_bits`` outside
    ``[1, 16]``, or any missing, corrupt or inconsistent file (the message names the file,
    where it was looked for and how to get it).
    """
    if name not in _LOADERS:
        raise DatasetError(f"dataset {name!r}: unknown; legal names are {list(DATASET_NAMES)}")
    lo, hi = PIXEL_BITS
    if isinstance(pixel_bits, bool) or not isinstance(pixel_bits, (int, np.integer)) \
            or not lo <= pixel_bits <= hi:
        raise DatasetError(f"pixel_bits: {pixel_bits!r} is out of range, legal range is "
                           f"[{lo}, {hi}]")
    return _LOADERS[name](int(pixel_bits))


def load_for_config(cfg, name: str | None = None) -> Dataset:
    """Dataset ``name`` (default: the config's ``dataset``) at the config's ``pixel_bits``,
    checked to have as many inputs as the config's input layer (:class:`DatasetError` if
    not)."""
    data = load_dataset(name or cfg.dataset, cfg.pixel_bits)
    if data.n_inputs != cfg.layers[0]:
        raise DatasetError(f"dataset {data.name!r} has {data.n_inputs} inputs but the config's "
                           f"network.layers[0] is {cfg.layers[0]}")
    return data


# ---------------------------------------------------------------------------------------------
# Samples for a run
# ---------------------------------------------------------------------------------------------

def split_samples(data: Dataset, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Pixels and labels of one of :data:`SPLITS` of ``data`` (``all``: train, then test)."""
    parts = {"test": [(data.test_pixels, data.test_labels)],
             "train": [(data.train_pixels, data.train_labels)],
             "all": [(data.train_pixels, data.train_labels),
                     (data.test_pixels, data.test_labels)]}
    if split not in parts:
        raise DatasetError(f"split {split!r}: unknown; legal splits are {list(SPLITS)}")
    return (np.concatenate([p for p, _ in parts[split]]),
            np.concatenate([lab for _, lab in parts[split]]))


def select_samples(data: Dataset, split: str, count: int | None,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples of ``split`` drawn at random without replacement by ``rng`` (one
    ``rng.choice`` call), or the whole split in its order for ``count=None``; pixels and
    labels."""
    pixels, labels = split_samples(data, split)
    if count is None:
        return pixels, labels
    if not 1 <= count <= len(labels):
        raise DatasetError(f"samples: {count} is out of range, legal range is [1, "
                           f"{len(labels)}] (the {split} samples of {data.name}) or all")
    idx = rng.choice(len(labels), size=count, replace=False)
    return pixels[idx], labels[idx]


def random_pixels(rng: np.random.Generator, count: int, n_inputs: int,
                  pixel_max: int) -> np.ndarray:
    """``(count, n_inputs)`` random intensities in ``[0, pixel_max]`` instead of data, each
    sample with its own share (uniform in [0.05, 1]) of nonzero pixels, so that some samples
    are nearly silent and others saturate."""
    pixels = rng.integers(0, pixel_max + 1, size=(count, n_inputs))
    density = rng.uniform(0.05, 1.0, size=(count, 1))
    return np.where(rng.random(pixels.shape) < density, pixels, 0)
