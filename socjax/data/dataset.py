"""The two shapes MNIST takes in socjax, whatever its source, and the checks every source passes.

`RawMNIST` is what a source returns (undecoded uint8); `decode` turns it into the `Dataset` the
trainer takes: train_x (N, 784) float32 (pixels / pixel_scale, DEFAULT 255, so blank pixels stay
exactly 0), train_y (N,) int32, test_x (M, 784) float32, test_y (M,) int32. A `Dataset` is a pytree
and goes into jitted code as an argument, never closed over.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from socjax.config import INPUT_SIZE, NUM_CLASSES, ConfigError


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


def check_raw(raw: RawMNIST, where: str) -> RawMNIST:
    """Refuse data whose counts, image size or labels are not MNIST's; returns `raw`."""
    if raw.train_images.shape[0] != raw.train_labels.shape[0] or (
        raw.test_images.shape[0] != raw.test_labels.shape[0]
    ):
        raise DataError(f"{where}: image and label counts differ")
    if raw.train_images.shape[1] != INPUT_SIZE or raw.test_images.shape[1] != INPUT_SIZE:
        raise DataError(f"{where}: images are not 28x28")
    for labels in (raw.train_labels, raw.test_labels):
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(f"{where}: labels outside 0..{NUM_CLASSES - 1}")
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
