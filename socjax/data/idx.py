"""MNIST from the four original IDX .gz files, parsed with NumPy and checked against MNIST's
published SHA-256 sums; a missing, corrupt or truncated file is refused by name."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from socjax.data.dataset import DataError, RawMNIST, check_raw

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
    return check_raw(RawMNIST(**arrays), str(d))
