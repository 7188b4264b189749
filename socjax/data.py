"""MNIST for socjax: from the four IDX .gz files, from tensorflow-datasets, or the embedded subset.

Every source gives the same `Dataset`: train_x (N, 784) float32 in [0, 1] (pixels / 255, DEFAULT),
train_y (N,) int32, test_x (M, 784) float32, test_y (M,) int32. A `Dataset` is a pytree and goes
into jitted code as an argument, never closed over.

Sources:
- `load_idx_dir(dir)`: the original files, parsed with NumPy, checked against their SHA-256 sums.
- `load_tfds()`: tensorflow-datasets, downloading and caching on first use (see socjax.tfds_mnist;
  no TensorFlow needed).
- `load_embedded()`: the first 10,000 training and 2,000 test images of real MNIST, shipped in the
  package (socjax/assets/mnist-mini.npz, built by experiments/build_mnist_mini.py), so the default
  job runs with no network.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from socjax.config import ConfigError

# SHA-256 of the original files (yann.lecun.com / the CVDF mirror).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
MINI_TRAIN, MINI_TEST = 10_000, 2_000
EMBEDDED_FILE = "mnist-mini.npz"


class DataError(ConfigError):
    """Missing, corrupt or unreadable data; the message names the file."""


class Dataset(NamedTuple):
    """train_x: (N, 784) float32, train_y: (N,) int32, test_x: (M, 784) float32, test_y: (M,) int32."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


class RawMNIST(NamedTuple):
    """Undecoded MNIST: images (N, 784) uint8, labels (N,) uint8, for train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode an uncompressed IDX file of unsigned bytes into an array of its stated shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{name}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape))
    if len(raw) != header + count:
        raise DataError(
            f"{name}: IDX header promises {shape} = {count} bytes, file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, np.uint8, count, header).reshape(shape)


def read_idx_gz(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read one .gz IDX file; with sha256, refuse a file whose compressed bytes do not match."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if sha256 is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != sha256:
            raise DataError(f"{path}: SHA-256 {got[:16]}... does not match MNIST's {sha256[:16]}...")
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    return parse_idx(raw, str(path))


def load_idx_dir(data_dir: str | Path, verify: bool = True) -> RawMNIST:
    """The four original MNIST files from `data_dir`, checked against MNIST's SHA-256 sums."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"{d}: data directory not found")
    arrays = {}
    for key, (fname, sha) in MNIST_FILES.items():
        a = read_idx_gz(d / fname, sha if verify else None)
        arrays[key] = a.reshape(a.shape[0], -1) if key.endswith("images") else a
    raw = RawMNIST(**arrays)
    _check_raw(raw, str(d))
    return raw


def _check_raw(raw: RawMNIST, where: str) -> None:
    if raw.train_images.shape[0] != raw.train_labels.shape[0] or (
        raw.test_images.shape[0] != raw.test_labels.shape[0]
    ):
        raise DataError(f"{where}: image and label counts differ")
    if raw.train_images.shape[1] != 784 or raw.test_images.shape[1] != 784:
        raise DataError(f"{where}: images are not 28x28")
    for labels in (raw.train_labels, raw.test_labels):
        if labels.size and labels.max() > 9:
            raise DataError(f"{where}: labels outside 0..9")


def load_embedded() -> RawMNIST:
    """The subset shipped in the package: first 10,000 train and first 2,000 test images of MNIST."""
    ref = resources.files("socjax") / "assets" / EMBEDDED_FILE
    with ref.open("rb") as f, np.load(f) as z:
        raw = RawMNIST(**{k: z[k] for k in RawMNIST._fields})
    _check_raw(raw, EMBEDDED_FILE)
    return raw


def load_tfds(tfds_dir: str | None = None, manual_dir: str | None = None) -> RawMNIST:
    """MNIST through tensorflow-datasets (downloaded and cached on first use; see tfds_mnist)."""
    from socjax import tfds_mnist  # lazy: importing tensorflow_datasets takes seconds

    raw = tfds_mnist.load(tfds_dir=tfds_dir, manual_dir=manual_dir)
    _check_raw(raw, "tensorflow-datasets")
    return raw


def decode(raw: RawMNIST, pixel_scale: float = 255.0, train_limit: int | None = None) -> Dataset:
    """uint8 -> float32 pixels / pixel_scale and int32 labels; optionally the first train_limit examples."""
    n = raw.train_images.shape[0] if train_limit is None else min(train_limit, raw.train_images.shape[0])
    scale = np.float32(pixel_scale)
    return Dataset(
        train_x=raw.train_images[:n].astype(np.float32) / scale,
        train_y=raw.train_labels[:n].astype(np.int32),
        test_x=raw.test_images.astype(np.float32) / scale,
        test_y=raw.test_labels.astype(np.int32),
    )


def load_raw(dataset: str, data_dir: str | None = None) -> tuple[RawMNIST, str]:
    """(raw data, a one-line description of its source) for a dataset name; data_dir wins if given."""
    if data_dir is not None:
        return load_idx_dir(data_dir), f"IDX files in {Path(data_dir).resolve()}"
    if dataset == "mnist-mini":
        return load_embedded(), f"embedded subset socjax/assets/{EMBEDDED_FILE}"
    if dataset == "mnist":
        return load_tfds(), "tensorflow-datasets mnist"
    raise DataError(f"unknown dataset {dataset!r}; choose mnist or mnist-mini")
