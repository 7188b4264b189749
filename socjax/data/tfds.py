"""MNIST through tensorflow-datasets, without TensorFlow.

tfds's stock `mnist` builder reads its files with tf.io.gfile, so preparing it needs TensorFlow.
`SocjaxMnist` subclasses it and reads the same four IDX .gz files with NumPy (socjax.data.idx,
SHA-256 checked); the prepared dataset is written as array_record and read back with
`as_data_source`, which needs no TensorFlow either. On a connected machine the files are downloaded
and cached on first use (in tfds's data_dir, by default ~/tensorflow_datasets); offline, point
`manual_dir` at a directory holding the four files.

Imported lazily: `import tensorflow_datasets` takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from socjax.data.dataset import DataError, RawMNIST
from socjax.data.idx import MNIST_FILES, read_idx_gz

FILE_FORMAT = "array_record"


class SocjaxMnist(tfds_mnist.MNIST):
    """MNIST (tfds's features and splits) prepared from the IDX files with NumPy."""

    name = "socjax_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place the four original MNIST IDX .gz files in manual_dir."

    def _info(self):
        info = super()._info()
        # tfds stores records in hashed-key order; the original index restores MNIST's order, so
        # this source and --data-dir give identical runs.
        features = dict(info.features)
        features["index"] = tfds.features.Scalar(dtype=np.int64)
        return tfds.core.DatasetInfo(
            builder=self,
            description=info.description,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            homepage=info.homepage,
            citation=info.citation,
        )

    def _split_generators(self, dl_manager):
        paths = _manual_paths(dl_manager)
        if paths is None:
            urls = {k: self.URL + fname for k, (fname, _) in MNIST_FILES.items()}
            paths = {k: Path(p) for k, p in dl_manager.download(urls).items()}
        return {
            "train": self._generate_examples(paths["train_images"], paths["train_labels"], "train"),
            "test": self._generate_examples(paths["test_images"], paths["test_labels"], "test"),
        }

    def _generate_examples(self, images_path, labels_path, split):
        images = read_idx_gz(Path(images_path), MNIST_FILES[f"{split}_images"][1])
        labels = read_idx_gz(Path(labels_path), MNIST_FILES[f"{split}_labels"][1])
        # A PIL image takes tfds's PIL encoder; a NumPy array would take tf.image.encode_png.
        from PIL import Image

        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": Image.fromarray(image), "label": int(label), "index": index}


def _manual_paths(dl_manager) -> dict[str, Path] | None:
    try:
        manual = Path(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # tfds's way of saying "no manual dir"
        return None
    paths = {k: manual / fname for k, (fname, _) in MNIST_FILES.items()}
    return paths if all(p.exists() for p in paths.values()) else None


def load(tfds_dir: str | None = None, manual_dir: str | None = None) -> RawMNIST:
    """Prepare (once) and read MNIST: images (N, 784) uint8 and labels (N,) uint8 per split."""
    builder = SocjaxMnist(data_dir=tfds_dir)
    try:
        builder.download_and_prepare(
            file_format=FILE_FORMAT,
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
        )
    except DataError:
        raise
    except Exception as e:  # network, disk: tfds raises many types; say what failed, in one line
        raise DataError(f"tensorflow-datasets could not prepare MNIST: {type(e).__name__}: {e}".splitlines()[0]) from e
    out = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        records = source.__getitems__(range(len(source)))
        records.sort(key=lambda r: int(r["index"]))
        out[f"{split}_images"] = np.stack([r["image"].reshape(-1) for r in records]).astype(np.uint8)
        out[f"{split}_labels"] = np.array([r["label"] for r in records], np.uint8)
    return RawMNIST(**out)
