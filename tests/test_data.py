"""MNIST sources: the IDX parser, checksums and errors, the embedded subset, tensorflow-datasets."""

from __future__ import annotations

import gzip
import os
import shutil
import struct

import numpy as np
import pytest

from socjax import data


def labels_by_struct(path):
    """Second reader of an IDX label file: struct for the header, bytes.count for the classes."""
    raw = gzip.open(path).read()
    magic, n = struct.unpack(">II", raw[:8])
    assert magic == 0x801
    return n, [raw[8:].count(bytes([k])) for k in range(10)]


@pytest.fixture(scope="module")
def real(mnist_dir):
    return data.load_idx_dir(mnist_dir)


def test_real_mnist_parses(real, mnist_dir):
    assert real.train_images.shape == (60000, 784) and real.test_images.shape == (10000, 784)
    assert real.train_images.dtype == np.uint8
    for labels, fname in ((real.train_labels, "train-labels-idx1-ubyte.gz"), (real.test_labels, "t10k-labels-idx1-ubyte.gz")):
        n, counts = labels_by_struct(mnist_dir / fname)
        assert labels.shape == (n,)
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)
    # the first training image, read straight from its byte offset, is the well-known 5
    raw = gzip.open(mnist_dir / "train-images-idx3-ubyte.gz").read()
    first = np.frombuffer(raw[16 : 16 + 784], np.uint8)
    np.testing.assert_array_equal(real.train_images[0], first)
    assert real.train_labels[0] == 5


def test_decode_scales_pixels_and_limits(real):
    ds = data.decode(real, 255.0, train_limit=100)
    assert ds.train_x.shape == (100, 784) and ds.train_x.dtype == np.float32
    assert ds.test_x.shape == (10000, 784) and ds.train_y.dtype == np.int32
    np.testing.assert_array_equal(ds.train_x * 255, real.train_images[:100].astype(np.float32))
    assert ds.train_x.max() == 1.0 and np.all((ds.train_x == 0) == (real.train_images[:100] == 0))


@pytest.fixture
def copy_of(mnist_dir, tmp_path):
    d = tmp_path / "mnist"
    shutil.copytree(mnist_dir, d)
    return d


def test_corrupt_file_refused_naming_it(copy_of):
    path = copy_of / "train-labels-idx1-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.gz: SHA-256"):
        data.load_idx_dir(copy_of)


def test_truncated_file_refused_without_checksums(copy_of):
    path = copy_of / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-784]))  # one image short of its header's promise
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: IDX header promises"):
        data.load_idx_dir(copy_of, verify=False)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: not a valid gzip"):
        data.load_idx_dir(copy_of, verify=False)


def test_missing_file_and_directory(copy_of, tmp_path):
    (copy_of / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        data.load_idx_dir(copy_of)
    with pytest.raises(data.DataError, match="data directory not found"):
        data.load_idx_dir(tmp_path / "nowhere")


def test_parse_idx_rejects_bad_magic():
    with pytest.raises(data.DataError, match="bad magic"):
        data.parse_idx(b"\x00\x00\x09\x01" + bytes(8), "x")


def test_embedded_subset_is_the_head_of_real_mnist(real):
    mini = data.load_embedded()
    assert mini.train_images.shape == (data.MINI_TRAIN, 784) and mini.test_images.shape == (data.MINI_TEST, 784)
    np.testing.assert_array_equal(mini.train_images, real.train_images[: data.MINI_TRAIN])
    np.testing.assert_array_equal(mini.train_labels, real.train_labels[: data.MINI_TRAIN])
    np.testing.assert_array_equal(mini.test_images, real.test_images[: data.MINI_TEST])
    np.testing.assert_array_equal(mini.test_labels, real.test_labels[: data.MINI_TEST])


def test_tfds_offline_equals_idx(real, mnist_dir, tmp_path):
    """tensorflow-datasets, prepared offline from manual_dir (no TensorFlow), in MNIST's order."""
    from socjax.data import tfds as tfds_mnist

    got = tfds_mnist.load(tfds_dir=str(tmp_path / "tfds"), manual_dir=str(mnist_dir))
    for a, b in zip(got, real):
        np.testing.assert_array_equal(a, b)


def test_tfds_without_network_fails_fast_naming_data_dir_and_leaves_nothing(tmp_path, monkeypatch):
    """Offline (the host refuses, or never answers): a DataError in seconds that names --data-dir, no
    download attempted and nothing written; a prepared dataset is read without the network."""
    import socket
    import threading
    import time

    from socjax.data import tfds as tfds_mnist

    def refuse(*a, **k):
        raise OSError("Network is unreachable")

    released = threading.Event()

    def hang(*a, **k):  # no answer until the test ends; then refused, as a real time-out would be
        released.wait(30)
        raise OSError("timed out")

    try:
        for connect, why in ((refuse, "OSError: Network is unreachable"), (hang, "no answer within 0.5 s")):
            monkeypatch.setattr(socket, "create_connection", connect)
            monkeypatch.setattr(tfds_mnist, "REACH_SECONDS", 0.5)
            t = time.perf_counter()
            with pytest.raises(data.DataError) as e:
                tfds_mnist.load(tfds_dir=str(tmp_path / "tfds"))
            assert time.perf_counter() - t < 5
            assert str(e.value) == (f"tensorflow-datasets cannot reach storage.googleapis.com to download MNIST "
                                    f"({why}); offline, use --data-dir DIR with the four MNIST IDX .gz files "
                                    "(SHA-256 checked)")
            assert not (tmp_path / "tfds").exists()
    finally:
        released.set()
        for probe in [t for t in threading.enumerate() if t.name == "socjax-reach"]:
            probe.join(5)


def test_sigint_while_reaching_for_tfds_exits_130_at_once(tmp_path):
    """Ctrl-C while tfds's download host does not answer: exit 130 within seconds, nothing written."""
    import signal
    import subprocess
    import sys
    import time

    child = (
        "import socket, sys, time\n"
        "from socjax.data import tfds\n"
        "tfds.REACH_SECONDS = 120\n"
        "def hang(*a, **k):\n"
        "    print('connecting', file=sys.stderr, flush=True); time.sleep(120)\n"
        "socket.create_connection = hang\n"
        "from socjax import cli\n"
        f"sys.exit(cli.main(['train', '--preset', 'smoke', '--dataset', 'mnist', '--no-progress', '--out', "
        f"{str(tmp_path / 'run')!r}]))\n"
    )
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    with subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE, text=True, env=env) as p:
        assert p.stderr.readline().strip() == "connecting"
        t = time.perf_counter()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130
        assert time.perf_counter() - t < 10
        assert "stopped by SIGINT during start-up; nothing was written" in p.stderr.read()
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
