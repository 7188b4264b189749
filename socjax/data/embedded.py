"""The MNIST subset shipped in the package, so the default job runs with no network: the first
10,000 training and 2,000 test images of real MNIST (socjax/data/assets/mnist-mini.npz, built by
experiments/build_mnist_mini.py from the original files; a test checks it against them)."""

from __future__ import annotations

from importlib import resources

import numpy as np

from socjax.data.dataset import RawMNIST, check_raw

MINI_TRAIN, MINI_TEST = 10_000, 2_000
EMBEDDED_FILE = "mnist-mini.npz"


def asset_path():
    """Where the subset lives in the installed package (an importlib.resources Traversable)."""
    return resources.files("socjax.data") / "assets" / EMBEDDED_FILE


def load_embedded() -> RawMNIST:
    """The subset shipped in the package: first 10,000 train and first 2,000 test images of MNIST."""
    with asset_path().open("rb") as f, np.load(f) as z:
        raw = RawMNIST(*(z[k] for k in RawMNIST._fields[:4]))
    return check_raw(raw, EMBEDDED_FILE)
