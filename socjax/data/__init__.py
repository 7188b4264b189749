"""MNIST for socjax: from the four IDX .gz files, from tensorflow-datasets, or the embedded subset.

Every source gives the same `RawMNIST`, which `decode` turns into a `Dataset` (see
socjax.data.dataset). The modules import only downward:

    dataset    Dataset, RawMNIST, DataError, decode, the checks every source passes
    idx        load_idx_dir(dir): the original files, parsed with NumPy, SHA-256 checked
    embedded   load_embedded(): the subset shipped in the package (no network)
    tfds       load(): tensorflow-datasets, downloading and caching on first use, no TensorFlow
               needed; imported lazily (importing tensorflow_datasets takes seconds)

`load_raw(name, data_dir)` picks the source for a run's configuration.
"""

from __future__ import annotations

from pathlib import Path

from socjax.data.dataset import DataError, Dataset, RawMNIST, check_raw, decode
from socjax.data.embedded import EMBEDDED_FILE, MINI_TEST, MINI_TRAIN, load_embedded
from socjax.data.idx import MNIST_FILES, load_idx_dir, parse_idx, read_idx_gz


def load_tfds(tfds_dir: str | None = None, manual_dir: str | None = None) -> RawMNIST:
    """MNIST through tensorflow-datasets (downloaded and cached on first use; see socjax.data.tfds)."""
    from socjax.data import tfds  # lazy: importing tensorflow_datasets takes seconds

    return check_raw(tfds.load(tfds_dir=tfds_dir, manual_dir=manual_dir), "tensorflow-datasets")


def load_raw(dataset: str, data_dir: str | None = None) -> tuple[RawMNIST, str]:
    """(raw data, a one-line description of its source) for a dataset name; data_dir wins if given."""
    if data_dir is not None:
        return load_idx_dir(data_dir), f"IDX files in {Path(data_dir).resolve()}"
    if dataset == "mnist-mini":
        return load_embedded(), f"embedded subset socjax/data/assets/{EMBEDDED_FILE}"
    if dataset == "mnist":
        return load_tfds(), "tensorflow-datasets mnist"
    raise DataError(f"unknown dataset {dataset!r}; choose mnist or mnist-mini")


__all__ = [
    "DataError", "Dataset", "EMBEDDED_FILE", "MINI_TEST", "MINI_TRAIN", "MNIST_FILES", "RawMNIST",
    "check_raw", "decode", "load_embedded", "load_idx_dir", "load_raw", "load_tfds", "parse_idx", "read_idx_gz",
]
