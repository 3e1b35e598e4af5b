"""Dataset loading: shapes, ranges, fixed splits, and clear errors for bad or missing files."""

import dataclasses
import gzip

import numpy as np
import pytest

from spikeforge.sw import datasets
from spikeforge.sw.datasets import (
    DATASET_NAMES,
    FASHION_ENV,
    MNIST_ENV,
    Dataset,
    DatasetError,
    load_dataset,
    read_idx,
    read_idx_pair,
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """Serialise ``array`` as an IDX file (big-endian header and data)."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.asarray(array).astype(dtype).tobytes()


def write_idx(path, array, code=0x08, gz=None):
    data = idx_bytes(np.asarray(array), code)
    if gz if gz is not None else str(path).endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_split(directory, prefix, n, gz=True, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def check_dataset(ds, name, shape, n_train, n_test, pixel_bits=8):
    n_in = shape[0] * shape[1]
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.shape, ds.classes, ds.pixel_bits) == (name, shape, 10, pixel_bits)
    assert ds.n_inputs == n_in
    assert ds.train_pixels.shape == (n_train, n_in)
    assert ds.test_pixels.shape == (n_test, n_in)
    assert ds.train_labels.shape == (n_train,)
    assert ds.test_labels.shape == (n_test,)
    for a in (ds.train_pixels, ds.test_pixels, ds.train_labels, ds.test_labels):
        assert a.dtype == np.int64
        assert not a.flags.writeable
    for px in (ds.train_pixels, ds.test_pixels):
        assert px.min() >= 0 and px.max() <= (1 << pixel_bits) - 1
    for lb in (ds.train_labels, ds.test_labels):
        assert lb.min() >= 0 and lb.max() <= 9


# ---- names and arguments -------------------------------------------------------------------

def test_unknown_name_lists_legal_names():
    with pytest.raises(DatasetError, match=r"dataset 'cifar10': unknown; legal names are "
                                           r"\['digits', 'mnist-t10k', 'mnist', "
                                           r"'fashion-mnist'\]"):
        load_dataset("cifar10", 8)


def test_config_datasets_are_loadable_names():
    from spikeforge.config import DATASETS
    assert set(DATASETS) <= set(DATASET_NAMES)


@pytest.mark.parametrize("bits", [0, 17, -1, True, 8.0, "8"])
def test_bad_pixel_bits(bits):
    with pytest.raises(DatasetError, match=r"pixel_bits: .* legal range is \[1, 16\]"):
        load_dataset("digits", bits)


def test_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


# ---- digits --------------------------------------------------------------------------------

def test_digits_shapes_ranges_and_split():
    ds = load_dataset("digits", 8)
    check_dataset(ds, "digits", (8, 8), 1437, 360)
    assert ds.train_pixels.max() == 255 and ds.train_pixels.min() == 0
    # stratified: every class has 35..37 test samples
    counts = np.bincount(ds.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_split_is_fixed_and_complete():
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits", 8), load_dataset("digits", 8)
    np.testing.assert_array_equal(a.train_pixels, b.train_pixels)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    # nothing lost or duplicated: train + test is a permutation of the whole set
    digits = load_digits()
    expected = np.rint(digits.data * 255 / 16).astype(np.int64)
    got = np.concatenate([a.train_pixels, a.test_pixels])
    got_labels = np.concatenate([a.train_labels, a.test_labels])
    key = np.lexsort(np.column_stack([got, got_labels]).T)
    ref = np.lexsort(np.column_stack([expected, digits.target]).T)
    np.testing.assert_array_equal(got[key], expected[ref])
    np.testing.assert_array_equal(got_labels[key], digits.target[ref])


@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16])
def test_digits_scaling(bits):
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", bits)
    check_dataset(ds, "digits", (8, 8), 1437, 360, bits)
    pixel_max = (1 << bits) - 1
    assert ds.train_pixels.max() == pixel_max  # 16 maps to full scale
    values = set(np.unique(np.concatenate([ds.train_pixels, ds.test_pixels])).tolist())
    allowed = {round(x * pixel_max / 16) for x in range(17)}
    assert values <= allowed
    assert set(np.unique(load_digits().data).tolist()) == set(range(17))


def test_dataset_is_frozen():
    ds = load_dataset("digits", 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "x"
    with pytest.raises(ValueError):
        ds.train_pixels[0, 0] = 1


def test_dataset_validates_its_arrays():
    px = np.zeros((3, 4), dtype=np.int64)
    lb = np.zeros(3, dtype=np.int64)
    with pytest.raises(DatasetError, match=r"train_pixels has shape \(3, 4\), expected \(B, 6\)"):
        Dataset("x", (2, 3), 10, px, lb, px, lb)
    with pytest.raises(DatasetError, match=r"test_labels has shape \(2,\), expected \(3,\)"):
        Dataset("x", (2, 2), 10, px, lb, px, lb[:2])
    with pytest.raises(DatasetError, match=r"train_pixels in \[16, 16\] exceed the 4-bit range"):
        Dataset("x", (2, 2), 10, px + 16, lb, px, lb, pixel_bits=4)
    with pytest.raises(DatasetError, match=r"test_labels in \[0, 10\] exceed \[0, 9\]"):
        Dataset("x", (2, 2), 10, px, lb, px, lb + np.array([0, 0, 10]))


# ---- mnist-t10k (the shared folder) --------------------------------------------------------

@pytest.fixture
def shared_t10k(monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    if not (datasets.SHARED_MNIST_T10K / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST test set not present at {datasets.SHARED_MNIST_T10K}")
    return datasets.SHARED_MNIST_T10K


def test_mnist_t10k_loads(shared_t10k):
    ds = load_dataset("mnist-t10k", 8)
    check_dataset(ds, "mnist-t10k", (28, 28), 8000, 2000)
    assert ds.train_pixels.max() == 255
    assert set(np.unique(ds.test_labels).tolist()) == set(range(10))
    # the fixed split: first 8,000 train, last 2,000 test, in file order
    images = read_idx(shared_t10k / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_t10k / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    np.testing.assert_array_equal(ds.train_pixels, images[:8000].reshape(8000, -1))
    np.testing.assert_array_equal(ds.test_pixels, images[8000:].reshape(2000, -1))
    np.testing.assert_array_equal(ds.train_labels, labels[:8000])
    np.testing.assert_array_equal(ds.test_labels, labels[8000:])


def test_mnist_t10k_pixel_shifts(shared_t10k):
    base = load_dataset("mnist-t10k", 8).test_pixels
    four = load_dataset("mnist-t10k", 4)
    check_dataset(four, "mnist-t10k", (28, 28), 8000, 2000, 4)
    np.testing.assert_array_equal(four.test_pixels, base >> 4)
    assert four.test_pixels.max() == 15
    twelve = load_dataset("mnist-t10k", 12)
    np.testing.assert_array_equal(twelve.test_pixels, base << 4)
    assert twelve.test_pixels.max() == 255 << 4


def test_mnist_t10k_env_override(tmp_path, monkeypatch):
    images, labels = write_split(tmp_path, "t10k", 10000, gz=False)
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    ds = load_dataset("mnist-t10k", 8)
    check_dataset(ds, "mnist-t10k", (28, 28), 8000, 2000)
    np.testing.assert_array_equal(ds.test_pixels, images[8000:].reshape(2000, -1))
    np.testing.assert_array_equal(ds.train_labels, labels[:8000])


def test_mnist_t10k_wrong_count(tmp_path, monkeypatch):
    write_split(tmp_path, "t10k", 12)
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=r"expected 10000 test images .* got 12"):
        load_dataset("mnist-t10k", 8)


def test_mnist_t10k_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: IDX file not found; looked "
                                           r"for .*nowhere/t10k-images-idx3-ubyte\.gz .*"
                                           r"SPIKEFORGE_MNIST_DIR"):
        load_dataset("mnist-t10k", 8)


def test_mnist_t10k_missing_shared_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    monkeypatch.setattr(datasets, "SHARED_MNIST_T10K", tmp_path / "shared-missing")
    with pytest.raises(DatasetError, match=r"shared folder .*shared-missing.*override with "
                                           r"\$SPIKEFORGE_MNIST_DIR"):
        load_dataset("mnist-t10k", 8)


def test_mnist_t10k_wrong_image_size(tmp_path, monkeypatch):
    write_split(tmp_path, "t10k", 10, shape=(8, 8))
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=r"expected 28x28 images, got \(8, 8\)"):
        load_dataset("mnist-t10k", 8)


# ---- full MNIST and Fashion-MNIST from a directory -----------------------------------------

def test_mnist_needs_env(monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    with pytest.raises(DatasetError, match=r"SPIKEFORGE_MNIST_DIR is not set; download "
                                           r"train-images-idx3-ubyte\.gz.*MNIST distribution"):
        load_dataset("mnist", 8)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_env_dir(tmp_path, monkeypatch, gz):
    tr_img, tr_lab = write_split(tmp_path, "train", 30, gz=gz, seed=1)
    te_img, te_lab = write_split(tmp_path, "t10k", 20, gz=not gz, seed=2)
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    ds = load_dataset("mnist", 6)
    check_dataset(ds, "mnist", (28, 28), 30, 20, 6)
    np.testing.assert_array_equal(ds.train_pixels, tr_img.reshape(30, -1).astype(int) >> 2)
    np.testing.assert_array_equal(ds.test_pixels, te_img.reshape(20, -1).astype(int) >> 2)
    np.testing.assert_array_equal(ds.train_labels, tr_lab)
    np.testing.assert_array_equal(ds.test_labels, te_lab)


def test_mnist_missing_train_labels(tmp_path, monkeypatch):
    write_split(tmp_path, "train", 3)
    write_split(tmp_path, "t10k", 3)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: IDX file not found; "
                                           r"looked for .*train-labels-idx1-ubyte\.gz and "
                                           r".*train-labels-idx1-ubyte; .*MNIST distribution"):
        load_dataset("mnist", 8)


def test_mnist_count_mismatch(tmp_path, monkeypatch):
    write_split(tmp_path, "train", 5)
    write_split(tmp_path, "t10k", 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=r"image/label count mismatch: .*train-images-idx3-"
                                           r"ubyte\.gz holds 5 images but .* holds 4 labels"):
        load_dataset("mnist", 8)


def test_fashion_env_override(tmp_path, monkeypatch):
    write_split(tmp_path, "train", 12, seed=3)
    te_img, _ = write_split(tmp_path, "t10k", 7, seed=4)
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    ds = load_dataset("fashion-mnist", 8)
    check_dataset(ds, "fashion-mnist", (28, 28), 12, 7)
    np.testing.assert_array_equal(ds.test_pixels, te_img.reshape(7, -1))


def test_fashion_absent_explains_apt_get(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_ENV, raising=False)
    monkeypatch.setattr(datasets, "_fashion_candidates", lambda: [tmp_path / "none"])
    with pytest.raises(DatasetError, match=r"fashion-mnist: dataset not found; looked in "
                                           r"\[.*none'\]\. Install it with `apt-get install "
                                           r"dataset-fashion-mnist`.*SPIKEFORGE_FASHION_DIR"):
        load_dataset("fashion-mnist", 8)


def test_fashion_env_dir_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: IDX file not found.*"
                                           r"apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", 8)


@pytest.fixture
def fashion_dir(monkeypatch):
    monkeypatch.delenv(FASHION_ENV, raising=False)
    try:
        return datasets.fashion_mnist_dir()
    except DatasetError:
        pytest.skip("Debian package dataset-fashion-mnist not installed")


def test_fashion_installed_files(fashion_dir):
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        assert (fashion_dir / f"{prefix}-images-idx3-ubyte.gz").is_file()
        labels = read_idx(fashion_dir / f"{prefix}-labels-idx1-ubyte.gz")
        assert labels.shape == (n,) and np.bincount(labels).tolist() == [n // 10] * 10


@pytest.mark.slow
def test_fashion_installed_loads(fashion_dir):
    ds = load_dataset("fashion-mnist", 8)
    check_dataset(ds, "fashion-mnist", (28, 28), 60000, 10000)
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10


# ---- read_idx ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a-idx3-ubyte.gz", "a-idx3-ubyte", "gz-without-suffix"])
def test_read_idx_valid(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / name, array, gz=name != "a-idx3-ubyte")
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)


def test_read_idx_1d_and_wider_types(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l.gz", labels)), labels)
    ints = np.array([[-70000, 1], [2, 1 << 30]], dtype=np.int32)
    got = read_idx(write_idx(tmp_path / "i", ints, code=0x0C))
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, ints)
    floats = np.array([0.5, -2.25], dtype=np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f", floats, code=0x0D)), floats)


def test_read_idx_empty_dimension(tmp_path):
    got = read_idx(write_idx(tmp_path / "e", np.zeros((0, 28, 28), dtype=np.uint8)))
    assert got.shape == (0, 28, 28)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"absent-idx1-ubyte: IDX file not found; get it "
                                           r"from somewhere"):
        read_idx(tmp_path / "absent-idx1-ubyte", hint="get it from somewhere")
    with pytest.raises(DatasetError, match=r"absent: IDX file not found$"):
        read_idx(tmp_path / "absent")


@pytest.mark.parametrize("head, shown", [
    (b"\x01\x02\x08\x01", "0x01020801"),  # first two bytes not zero
    (b"\x00\x00\x07\x01", "0x00000701"),  # unknown dtype code
    (b"\x00\x00\x08\x00", "0x00000800"),  # zero dimensions
    (b"PK\x03\x04", "0x504b0304"),         # some other file format
])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_bad_magic(tmp_path, head, shown, gz):
    data = head + (5).to_bytes(4, "big") + bytes(5)
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match=rf"bad-idx1-ubyte: bad IDX magic number {shown}; "
                                           rf"expected 0x0000TTNN"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_data(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 5, 6), dtype=np.uint8))[:-7]
    path = tmp_path / "t-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match=r"t-idx3-ubyte: truncated: header dims \(4, 5, 6\) "
                                           r"need 120 data bytes, file has 113"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(DatasetError, match=r"x: size mismatch: header dims \(3,\) need 3 data "
                                           r"bytes, file has 5 \(2 trailing bytes\)"):
        read_idx(path)


def test_read_idx_truncated_int32(tmp_path):
    data = idx_bytes(np.zeros(4, dtype=np.int32), code=0x0C)[:-1]
    path = tmp_path / "w"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=r"truncated: header dims \(4,\) need 16 data bytes, "
                                           r"file has 15"):
        read_idx(path)


@pytest.mark.parametrize("data, message", [
    (b"", r"truncated IDX header: 0 bytes"),
    (b"\x00\x00", r"truncated IDX header: 2 bytes"),
    (b"\x00\x00\x08\x03" + bytes(6), r"truncated IDX header: 3 dimensions need 16 bytes, file "
                                     r"has 10"),
])
def test_read_idx_truncated_header(tmp_path, data, message):
    path = tmp_path / "h"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=message):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8).reshape(10, 10, 10) % 7))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz: unreadable or corrupt gzip stream"):
        read_idx(path)


def test_read_idx_pair_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "img.gz", np.zeros((5, 2, 2), dtype=np.uint8))
    labels = write_idx(tmp_path / "lab.gz", np.zeros(6, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"image/label count mismatch: .*img\.gz holds 5 "
                                           r"images but .*lab\.gz holds 6 labels"):
        read_idx_pair(images, labels)


def test_read_idx_pair_valid(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    images = write_idx(tmp_path / "img", img)
    labels = write_idx(tmp_path / "lab", np.array([9, 0, 4], dtype=np.uint8))
    got_img, got_lab = read_idx_pair(images, labels)
    np.testing.assert_array_equal(got_img, img)
    assert got_lab.dtype == np.int64 and got_lab.tolist() == [9, 0, 4]


def test_read_idx_pair_bad_label(tmp_path):
    images = write_idx(tmp_path / "img", np.zeros((2, 2, 2), dtype=np.uint8))
    labels = write_idx(tmp_path / "lab", np.array([1, 10], dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"lab: label 10 outside \[0, 9\]"):
        read_idx_pair(images, labels)


def test_read_idx_pair_wrong_kinds(tmp_path):
    flat = write_idx(tmp_path / "flat", np.zeros((2, 4), dtype=np.uint8))
    labels = write_idx(tmp_path / "lab", np.zeros(2, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"flat: expected a 3-d unsigned-byte image array"):
        read_idx_pair(flat, labels)
    images = write_idx(tmp_path / "img", np.zeros((2, 2, 2), dtype=np.uint8))
    wide = write_idx(tmp_path / "wide", np.zeros(2, dtype=np.int32), code=0x0C)
    with pytest.raises(DatasetError, match=r"wide: expected a 1-d unsigned-byte label array"):
        read_idx_pair(images, wide)
