"""The two shapes a data set takes in socjax, whatever its source, and the checks every source passes.

`RawImages` (alias `RawMNIST`) is what a source returns: images flattened to (N, H*W*C), undecoded
(uint8, or float32 for a synthetic set), with their shape (H, W, C), number of classes and the
value of full intensity (255 for 8-bit images). `decode` turns it into the `Dataset` the trainer
takes: train_x (N, D) float32 (pixels / pixel_scale on the 0..255 scale, DEFAULT 255, so blank
pixels stay exactly 0; float inputs as they are), train_y (N,) int32, test_x (M, D), test_y (M,).
A `Dataset` is a pytree and goes into jitted code as an argument, never closed over; the model
reshapes each example to its image shape (socjax.flaxnet).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import math

from socjax.config import ConfigError


class DataError(ConfigError):
    """Missing, corrupt or unreadable data; the message names the file."""


class Dataset(NamedTuple):
    """train_x: (N, D) float32, train_y: (N,) int32, test_x: (M, D) float32, test_y: (M,) int32; D is
    784 for MNIST."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


class RawImages(NamedTuple):
    """Undecoded images (N, H*W*C) uint8 (or float32) and labels (N,) for train and test; their
    image_shape (H, W, C), num_classes, and max_value, the value of full intensity (255, or 16 for
    the 0..16 gray levels of scikit-learn's digits)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    max_value: int = 255


RawMNIST = RawImages  # MNIST is the paper's, and the first, data set


def check_raw(raw: RawImages, where: str) -> RawImages:
    """Refuse data whose counts, image size or labels do not agree with it; returns `raw`."""
    if raw.train_images.shape[0] != raw.train_labels.shape[0] or (
        raw.test_images.shape[0] != raw.test_labels.shape[0]
    ):
        raise DataError(f"{where}: image and label counts differ")
    size = math.prod(raw.image_shape)
    if raw.train_images.shape[1:] != (size,) or raw.test_images.shape[1:] != (size,):
        raise DataError(f"{where}: images are not {'x'.join(map(str, raw.image_shape))}")
    for labels in (raw.train_labels, raw.test_labels):
        if labels.size and (labels.max() >= raw.num_classes or labels.min() < 0):
            raise DataError(f"{where}: labels outside 0..{raw.num_classes - 1}")
    return raw


def decode(raw: RawImages, pixel_scale: float = 255.0, train_limit: int | None = None,
           random_labels: int | None = None) -> Dataset:
    """Pixels as float32, divided by pixel_scale on the 0..255 scale (by pixel_scale * max_value / 255:
    for 8-bit images exactly pixel_scale), float inputs as they are; int32 labels; optionally the
    first train_limit training examples. random_labels: a seed; the training labels (of the examples
    kept) are then a random permutation of themselves (`random_permutation`), the test labels true."""
    n = raw.train_images.shape[0] if train_limit is None else min(train_limit, raw.train_images.shape[0])
    scale = np.float32(1.0 if raw.train_images.dtype.kind == "f" else pixel_scale * raw.max_value / 255)
    train_y = raw.train_labels[:n].astype(np.int32)
    if random_labels is not None:
        train_y = train_y[random_permutation(n, random_labels)]
    return Dataset(
        train_x=raw.train_images[:n].astype(np.float32) / scale,
        train_y=train_y,
        test_x=raw.test_images.astype(np.float32) / scale,
        test_y=raw.test_labels.astype(np.int32),
    )


def random_permutation(n: int, seed: int) -> np.ndarray:
    """The permutation of n training labels of the random-labels control: NumPy's PCG64 from `seed`,
    so it is the same on every machine and backend. Permuting keeps each class's count."""
    return np.random.default_rng(seed).permutation(n)
