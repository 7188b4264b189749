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

import logging
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from socjax.data.dataset import DataError, RawMNIST
from socjax.data.idx import MNIST_FILES, read_idx_gz

FILE_FORMAT = "array_record"
REACH_SECONDS = 5.0  # how long the download host may take to accept a connection before we call it offline
OFFLINE_HINT = "offline, use --data-dir DIR with the four MNIST IDX .gz files (SHA-256 checked)"


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


def check_reachable(url: str, seconds: float | None = None) -> None:
    """DataError, within `seconds`, unless the host of `url` accepts a TCP connection: offline, tfds
    would spend minutes in its download retries before failing. The connection (name lookup
    included) runs in a daemon thread, so a hung lookup cannot hold the caller, nor a signal."""
    seconds = REACH_SECONDS if seconds is None else seconds
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list = []

    def connect():
        try:
            with socket.create_connection((host, port), timeout=seconds):
                outcome.append(None)
        except OSError as e:
            outcome.append(e)

    probe = threading.Thread(target=connect, daemon=True, name="socjax-reach")
    probe.start()
    probe.join(seconds)
    if outcome and outcome[0] is None:
        return
    why = f"{type(outcome[0]).__name__}: {outcome[0]}" if outcome else f"no answer within {seconds:g} s"
    raise DataError(f"tensorflow-datasets cannot reach {host} to download MNIST ({why}); {OFFLINE_HINT}")


def _remove_partial(builder) -> None:
    """What an unfinished download_and_prepare leaves: the dataset's *.incomplete* directories and the
    download manager's *.tmp.* files."""
    version_dir = Path(builder.data_dir)
    for path in [*version_dir.parent.glob("*incomplete*"), *(version_dir.parents[1] / "downloads").glob("*.tmp.*")]:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def load(tfds_dir: str | None = None, manual_dir: str | None = None) -> RawMNIST:
    """Prepare (once) and read MNIST: images (N, 784) uint8 and labels (N,) uint8 per split.

    Already prepared: read, no network. Else from `manual_dir`'s files, or downloaded: a download
    host that cannot be reached is a DataError within REACH_SECONDS naming --data-dir. Whatever
    stops the preparation (an error, SIGINT) leaves no partial download behind."""
    from socjax.interrupt import Interrupted

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "Variant folder ... has no dataset_info.json": an unprepared dataset, said below
    try:
        builder = SocjaxMnist(data_dir=tfds_dir)
        prepared = builder.is_prepared()
    finally:
        absl.setLevel(level)
    if not prepared:
        manual = manual_dir and all((Path(manual_dir) / fname).exists() for fname, _ in MNIST_FILES.values())
        if not manual:
            check_reachable(builder.URL)
        try:
            builder.download_and_prepare(
                file_format=FILE_FORMAT,
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
            )
        except (DataError, Interrupted, KeyboardInterrupt):
            _remove_partial(builder)
            raise
        except Exception as e:  # network, disk: tfds raises many types; say what failed, in one line
            _remove_partial(builder)
            raise DataError(f"tensorflow-datasets could not prepare MNIST: {type(e).__name__}: {e}".splitlines()[0]
                            + f"; {OFFLINE_HINT}") from e
    out = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        records = source.__getitems__(range(len(source)))
        records.sort(key=lambda r: int(r["index"]))
        out[f"{split}_images"] = np.stack([r["image"].reshape(-1) for r in records]).astype(np.uint8)
        out[f"{split}_labels"] = np.array([r["label"] for r in records], np.uint8)
    return RawMNIST(**out)


# --- any tensorflow-datasets image-classification set, by name --------------------------------------


def _builder(name: str, tfds_dir: str | None = None):
    """tfds's builder for `name` (no download); DataError, one line, for a name tfds does not know or
    a set that is not image classification (an "image" and a "label" feature)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "Variant folder ... has no dataset_info.json": not prepared yet, handled below
    try:
        builder = tfds.builder(name, data_dir=tfds_dir)
    except Exception as e:  # DatasetNotFoundError and friends: say which, in one line
        raise DataError(f"--dataset {name}: tensorflow-datasets has no such data set "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        absl.setLevel(level)
    features = builder.info.features
    if not {"image", "label"} <= set(getattr(features, "keys", lambda: ())()):
        raise DataError(f"--dataset {name}: not an image-classification set (its features are "
                        f"{', '.join(features.keys())}; socjax needs 'image' and 'label')")
    return builder


def shape_of(name: str) -> tuple[tuple[int, ...], int]:
    """(image shape (H, W, C), classes) from the builder's info, with nothing downloaded."""
    features = _builder(name).info.features
    shape = tuple(features["image"].shape)
    if len(shape) != 3 or any(d is None for d in shape):
        raise DataError(f"--dataset {name}: images of shape {shape}; socjax needs a fixed (H, W, C)")
    return shape, int(features["label"].num_classes)


def load_named(name: str, tfds_dir: str | None = None) -> RawMNIST:
    """Prepare (once) and read the set's "train" and "test" splits as flattened uint8 images and labels,
    in the prepared files' order (deterministic once prepared). tfds's own builder prepares it: for
    sets whose builder needs TensorFlow this fails, in one line, saying so."""
    from socjax.interrupt import Interrupted

    builder = _builder(name, tfds_dir)
    shape, classes = shape_of(name)
    if not builder.is_prepared():
        try:
            builder.download_and_prepare(file_format=FILE_FORMAT)
        except (Interrupted, KeyboardInterrupt):
            _remove_partial(builder)
            raise
        except Exception as e:
            _remove_partial(builder)
            raise DataError(f"tensorflow-datasets could not prepare {name}: {type(e).__name__}: {e}".splitlines()[0])
    out = {}
    for split in ("train", "test"):
        try:
            source = builder.as_data_source(split=split)
        except Exception as e:  # tfds: no such split, or files it cannot read
            raise DataError(f"--dataset {name}: cannot read its {split!r} split ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
        try:
            records = source.__getitems__(range(len(source)))  # one batched read
        except TypeError:  # a source without batched reads (tfds.testing.mock_data's)
            records = [source[i] for i in range(len(source))]
        out[f"{split}_images"] = np.stack([np.asarray(r["image"]).reshape(-1) for r in records]).astype(np.uint8)
        out[f"{split}_labels"] = np.array([r["label"] for r in records], np.int64)
    return RawMNIST(**out, image_shape=shape, num_classes=classes)
