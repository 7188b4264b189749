"""The 1,797 handwritten digits (8x8 pixels, gray levels 0..16) that scikit-learn ships inside its
package (UCI's optical recognition of handwritten digits, test part): a real second data set read
with no download. Read from the package's data file directly, without importing scikit-learn.

Split (DEFAULT; the file has none): the first 1,437 examples (80%) train, the last 360 test, in the
file's order. Install it with the optional extra: pip install "socjax[digits]".
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from socjax.data.dataset import DataError, RawImages, check_raw

DIGITS_TRAIN, DIGITS_TEST = 1_437, 360
SHAPE, LEVELS = (8, 8, 1), 16


def digits_file() -> Path:
    """scikit-learn's digits.csv.gz; DataError naming the extra when scikit-learn is not installed."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.exists():
        raise DataError('--dataset digits reads the copy of the digits inside scikit-learn, which is not installed: '
                        'pip install "socjax[digits]"')
    return path


def load_digits() -> RawImages:
    """The digits as RawImages: images (N, 64) uint8 in 0..16 (max_value 16), labels 0..9."""
    path = digits_file()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (DIGITS_TRAIN + DIGITS_TEST, 65) or table[:, :-1].max() > LEVELS:
        raise DataError(f"{path}: not the 1,797 8x8 digits (shape {table.shape})")
    images, labels = table[:, :-1].astype(np.uint8), table[:, -1].astype(np.uint8)
    raw = RawImages(images[:DIGITS_TRAIN], labels[:DIGITS_TRAIN], images[DIGITS_TRAIN:], labels[DIGITS_TRAIN:],
                    SHAPE, 10, LEVELS)
    return check_raw(raw, str(path))
