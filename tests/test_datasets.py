"""Data sets beyond MNIST: scikit-learn's digits against scikit-learn's own loader; the teacher task
recomputed from its recorded settings; any tensorflow-datasets set by name on tfds's mock data
(never the network); each end to end through train and analyze; bad names refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from socjax import config, data, rundir
from socjax.config import TeacherConfig

from test_cli import main, no_compile, refused  # noqa: F401 (a fixture)


def test_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    want = load_digits()
    raw = data.load_raw("digits")[0]
    np.testing.assert_array_equal(np.concatenate([raw.train_images, raw.test_images]), want.data.astype(np.uint8))
    np.testing.assert_array_equal(np.concatenate([raw.train_labels, raw.test_labels]), want.target)
    assert (raw.image_shape, raw.num_classes, len(raw.train_labels), len(raw.test_labels)) == ((8, 8, 1), 10, 1437, 360)
    # full intensity (16) is 1.0 after decoding, as 255 is for MNIST
    ds = data.decode(raw)
    np.testing.assert_array_equal(ds.train_x, raw.train_images / np.float32(16))


def test_the_teacher_labels_follow_its_recorded_settings():
    """Labels are the argmax of the teacher MLP rebuilt from the documented recipe; another seed is
    another task; every class occurs."""
    t = TeacherConfig(dim=20, hidden=30, classes=5, train=3000, test=500, seed=4)
    raw = data.load_raw("teacher", teacher=t)[0]
    rng = np.random.default_rng([4, 0x7EAC])
    w1, w2 = rng.normal(0, 1 / np.sqrt(20), (20, 30)), rng.normal(0, 1 / np.sqrt(30), (30, 5))
    x = np.concatenate([raw.train_images, raw.test_images]).astype(np.float64)
    np.testing.assert_array_equal(np.concatenate([raw.train_labels, raw.test_labels]),
                                  np.argmax(np.tanh(x @ w1) @ w2, axis=1))
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    assert set(raw.train_labels) == set(range(5))
    other = data.load_raw("teacher", teacher=TeacherConfig(dim=20, hidden=30, classes=5, train=3000, test=500))[0]
    assert not np.array_equal(other.train_images, raw.train_images)


def test_random_labels_permute_the_kept_training_labels_only():
    """The random-labels control: the training labels kept (after train_limit) are those same labels
    permuted by NumPy's PCG64 from the seed (recomputed here), so every class keeps its count; the
    images and the test labels are untouched; another seed is another permutation."""
    raw = data.load_raw("digits")[0]
    true, shuffled = data.decode(raw, train_limit=1000), data.decode(raw, train_limit=1000, random_labels=7)
    np.testing.assert_array_equal(shuffled.train_y, raw.train_labels[:1000][np.random.default_rng(7).permutation(1000)])
    np.testing.assert_array_equal(np.bincount(shuffled.train_y), np.bincount(true.train_y))
    assert np.mean(shuffled.train_y == true.train_y) < 0.2  # about 1 in 10 by chance
    np.testing.assert_array_equal(shuffled.train_x, true.train_x)
    np.testing.assert_array_equal(shuffled.test_y, true.test_y)
    assert not np.array_equal(data.decode(raw, random_labels=8).train_y[:1000], shuffled.train_y)


def test_a_random_labels_run_records_it_and_cannot_generalise(tmp_path):
    """Trained on digits with random labels the network fits some training labels but the test
    accuracy stays near chance (true labels: far above it, the test below); config and data source
    say so."""
    run = tmp_path / "r"
    assert main(["train", "--preset", "quick", "--dataset", "digits", "--random-labels", "3", "--hidden", "32", "16",
                 "--epochs", "12", "--record-epochs", "1", "--lr", "0.01", "--no-progress", "--out", str(run)]) == 0
    info = rundir.read_info(run)
    assert info.config.random_labels == 3 and "permuted at random (seed 3)" in info.data_source
    acc = json.loads((run / "metrics.json").read_text())["test_acc"][-1][0]
    assert acc < 0.25, acc


def test_digits_and_teacher_train_and_analyse_end_to_end(tmp_path):
    """Both learn (test accuracy far above chance), and the config records the data's shape."""
    for name, extra in (("digits", []), ("teacher", ["--teacher-dim", "32", "--teacher-seed", "3", "--train-limit",
                                                     "2000"])):
        run = tmp_path / name
        assert main(["train", "--preset", "quick", "--dataset", name, *extra, "--hidden", "32", "16", "--epochs", "12",
                     "--record-epochs", "4", "--lr", "0.01", "--no-progress", "--out", str(run)]) == 0
        assert main(["analyze", str(run), "--no-progress"]) == 0
        cfg = rundir.read_info(run).config
        acc = json.loads((run / "metrics.json").read_text())["test_acc"][-1][0]
        assert acc > 0.5, (name, acc)
        assert json.loads((run / "analysis.json").read_text())["per_weight"]
        if name == "teacher":
            assert cfg.teacher == TeacherConfig(dim=32, seed=3) and cfg.model.sizes == (32, 32, 16, 10)
        else:
            assert cfg.model.input_shape == (8, 8, 1) and cfg.model.sizes == (64, 32, 16, 10)


def test_a_tfds_set_by_name_trains_on_tfds_mock_data(tmp_path):
    """fashion_mnist with the MLP and cifar10 with the CNN, from tfds.testing.mock_data: the model
    takes the set's shape and classes from tfds's info, the run trains on exactly the mock
    records, and nothing is downloaded."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        records = tfds.builder("fashion_mnist").as_data_source(split="train")
        want = np.stack([np.asarray(records[i]["image"]).reshape(-1) for i in range(48)])
        raw, source = data.load_raw("fashion_mnist")
        np.testing.assert_array_equal(raw.train_images, want)
        assert source == "tensorflow-datasets fashion_mnist"
        assert main(["train", "--preset", "smoke", "--dataset", "fashion_mnist", "--train-limit", "48", "--hidden", "16",
                     "--epochs", "2", "--track", "4", "--no-progress", "--out", str(tmp_path / "f")]) == 0
        assert main(["train", "--preset", "smoke", "--dataset", "cifar10", "--model", "cnn", "--train-limit", "48",
                     "--hidden", "16", "--batch-size", "4", "--epochs", "2", "--track", "4", "--no-progress",
                     "--out", str(tmp_path / "c")]) == 0
    f, c = rundir.read_info(tmp_path / "f").config, rundir.read_info(tmp_path / "c").config
    assert f.model.sizes == (784, 16, 10) and f.dataset == "fashion_mnist"
    assert c.model.input_shape == (32, 32, 3) and c.model.sizes == (3072, 16, 10)
    assert rundir.load_params(tmp_path / "c", "final")["Conv_0/kernel"].shape == (1, 5, 5, 3, 8)


def test_the_default_configuration_is_mnists_shape():
    cfg = config.build("smoke")
    assert cfg.model.sizes == (784, 700, 476, 10) and cfg.model.input_shape == (28, 28, 1)
    assert cfg == config.PRESETS["smoke"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "no_such_set"], "--dataset no_such_set: tensorflow-datasets has no such data set"),
    (["--dataset", "Bad Name!"], "unknown dataset 'Bad Name!'"),
    (["--teacher-dim", "8"], "--teacher-dim applies to --dataset teacher"),
    (["--random-labels", "-1"], "--random-labels: must be in 0..4294967295, got -1"),
    (["--dataset", "digits"], "train_limit 2000 exceeds the 1,437 training examples of digits"),
    (["--dataset", "teacher", "--train-limit", "100", "--batch-size", "101"],
     "batch_size 101 exceeds the 100 training examples"),
])
def test_bad_data_is_one_line_error_with_nothing_written(args, message, tmp_path, capsys, no_compile):
    refused(["train", "--preset", "smoke", "--no-progress", "--out", str(tmp_path / "r"), *args], message, capsys)
    assert list(tmp_path.iterdir()) == []
