"""Data for socjax: MNIST (the four IDX .gz files, tensorflow-datasets, or the embedded subset),
scikit-learn's digits, a synthetic teacher-student task, and any tensorflow-datasets image set.

Every source gives the same `RawImages`, which `decode` turns into a `Dataset` (see
socjax.data.dataset). The modules import only downward:

    dataset    Dataset, RawImages (RawMNIST), DataError, decode, the checks every source passes
    idx        load_idx_dir(dir): MNIST's original files, parsed with NumPy, SHA-256 checked
    embedded   load_embedded(): the MNIST subset shipped in the package (no network)
    digits     load_digits(): the 1,797 8x8 digits inside scikit-learn (no network)
    teacher    load_teacher(cfg): Gaussian inputs labelled by a random teacher MLP
    tfds       load() (MNIST) and load_named(name): tensorflow-datasets, downloading and caching on
               first use; imported lazily (importing tensorflow_datasets takes seconds)

`load_raw(name, data_dir, teacher)` picks the source for a run's configuration; `shape_of` says a
data set's image shape and classes without loading it.
"""

from __future__ import annotations

from pathlib import Path

from socjax.config import TeacherConfig
from socjax.data.dataset import DataError, Dataset, RawImages, RawMNIST, check_raw, decode
from socjax.data.embedded import EMBEDDED_FILE, MINI_TEST, MINI_TRAIN, load_embedded
from socjax.data.idx import MNIST_FILES, load_idx_dir, parse_idx, read_idx_gz


def load_tfds(tfds_dir: str | None = None, manual_dir: str | None = None) -> RawMNIST:
    """MNIST through tensorflow-datasets (downloaded and cached on first use; see socjax.data.tfds)."""
    from socjax.data import tfds  # lazy: importing tensorflow_datasets takes seconds

    return check_raw(tfds.load(tfds_dir=tfds_dir, manual_dir=manual_dir), "tensorflow-datasets")


def load_raw(dataset: str, data_dir: str | None = None,
             teacher: TeacherConfig | None = None) -> tuple[RawImages, str]:
    """(raw data, a one-line description of its source) for a dataset name; data_dir (MNIST's IDX
    files) wins if given."""
    if data_dir is not None:
        return load_idx_dir(data_dir), f"IDX files in {Path(data_dir).resolve()}"
    if dataset == "mnist-mini":
        return load_embedded(), f"embedded subset socjax/data/assets/{EMBEDDED_FILE}"
    if dataset == "mnist":
        return load_tfds(), "tensorflow-datasets mnist"
    if dataset == "digits":
        from socjax.data.digits import digits_file, load_digits

        return load_digits(), f"scikit-learn's digits, {digits_file()}"
    if dataset == "teacher":
        from socjax.data.teacher import load_teacher

        t = teacher or TeacherConfig()
        return load_teacher(t), f"teacher {t.dim}-{t.hidden}-{t.classes}, seed {t.seed}"
    from socjax.data import tfds  # lazy: importing tensorflow_datasets takes seconds

    return check_raw(tfds.load_named(dataset), f"tensorflow-datasets {dataset}"), f"tensorflow-datasets {dataset}"


SHAPES = {"mnist": ((28, 28, 1), 10), "mnist-mini": ((28, 28, 1), 10), "digits": ((8, 8, 1), 10)}


def shape_of(dataset: str, teacher: TeacherConfig | None = None) -> tuple[tuple[int, ...], int]:
    """(image shape (H, W, C), number of classes) of a data set, without loading it: known for
    socjax's own, from tfds's builder info (no download) for a tensorflow-datasets name."""
    if dataset in SHAPES:
        return SHAPES[dataset]
    if dataset == "teacher":
        t = teacher or TeacherConfig()
        return (t.dim, 1, 1), t.classes
    from socjax.data import tfds

    return tfds.shape_of(dataset)


__all__ = [
    "DataError", "Dataset", "RawImages", "shape_of", "EMBEDDED_FILE", "MINI_TEST", "MINI_TRAIN", "MNIST_FILES", "RawMNIST",
    "check_raw", "decode", "load_embedded", "load_idx_dir", "load_raw", "load_tfds", "parse_idx", "read_idx_gz",
]
