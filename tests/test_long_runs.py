"""Long runs: kill and resume bitwise, clean interrupts, refused resumes, divergence, disk errors,
and seeds sharded across (forced host) devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from socjax import checkpoint, rundir

from test_cli import main

BASE = ["train", "--preset", "smoke", "--epochs", "8", "--record-epochs", "3", "--seeds", "2",
        "--save-order", "--checkpoint-epochs", "1", "--no-progress"]


def start(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "socjax", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(args, env=None):
    p = start(args, env)
    out, err = p.communicate(timeout=600)
    return p.returncode, err


def same_run(a, b):
    """Every result file of two run directories is identical."""
    for which in ("init", "final"):
        pa, pb = rundir.load_params(a, which), rundir.load_params(b, which)
        for k in pa:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=f"params_{which}:{k}")
    np.testing.assert_array_equal(np.load(a / "trajectory.npy"), np.load(b / "trajectory.npy"))
    np.testing.assert_array_equal(np.load(a / "order.npy"), np.load(b / "order.npy"))
    untimed = lambda m: {k: v for k, v in m.items() if k != "timing"}  # wall times differ between runs
    assert untimed(rundir.load_metrics(a)) == untimed(rundir.load_metrics(b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    code, err = finish([*BASE, "--out", str(out)])
    assert code == 0, err
    return out


def interrupt_after_first_checkpoint(out, sig):
    p = start([*BASE, "--out", str(out)])
    deadline = time.time() + 300
    while not (out / rundir.CHECKPOINT).exists():
        assert p.poll() is None, p.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def test_sigkill_then_resume_is_bitwise_identical(reference, tmp_path):
    out = tmp_path / "run"
    code, _ = interrupt_after_first_checkpoint(out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert 1 <= checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] < 8
    assert not (out / "params_final.npz").exists()
    code, err = finish(["train", "--resume", str(out), "--no-progress"])
    assert code == 0, err
    same_run(out, reference)


def test_sigint_stops_cleanly_and_resumes(reference, tmp_path):
    out = tmp_path / "run"
    code, err = interrupt_after_first_checkpoint(out, signal.SIGINT)
    assert code == 130 and f"socjax train --resume {out}" in err and "SIGINT" in err
    code, err = finish(["train", "--resume", str(out), "--no-progress"])
    assert code == 0, err
    same_run(out, reference)


def test_resume_refuses_a_different_config(reference, capsys):
    assert main(["train", "--resume", str(reference), "--lr", "0.1", "--seeds", "3"]) == 2
    err = capsys.readouterr().err
    assert "remove --lr, --seeds" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(reference), "--epochs", "4"]) == 2
    assert "shorter than the run's 8" in capsys.readouterr().err


def test_resume_with_longer_epochs_equals_a_longer_run(reference, tmp_path):
    import shutil

    extended = tmp_path / "extended"
    shutil.copytree(reference, extended)
    code, err = finish(["train", "--resume", str(extended), "--epochs", "10", "--no-progress"])
    assert code == 0, err
    longer = tmp_path / "longer"
    code, err = finish([*BASE[:3], "--epochs", "10", "--record-epochs", "5", *BASE[7:], "--out", str(longer)])
    assert code == 0, err
    same_run(extended, longer)
    assert rundir.load_config(extended)["trajectory"]["steps"] == 5 * 2000


def test_divergence_stops_keeps_checkpoint_and_saves_the_others(tmp_path):
    out = tmp_path / "run"
    code, err = finish(["train", "--preset", "smoke", "--epochs", "3", "--lr", "2e-3", "30", "--checkpoint-epochs", "1",
                        "--no-progress", "--out", str(out)])
    assert code == 3
    assert "run(s) 1 (seed 0, lr 30" in err and "epochs 1-1" in err and err.count("\n") == 1
    final = rundir.load_params(out, "final")
    assert np.all(np.isfinite(final["w1"][0])) and not np.all(np.isfinite(final["w1"][1]))
    m = rundir.load_metrics(out)
    assert len(m["epoch"]) >= 1 and np.isfinite(m["test_loss"][0][0])


def test_disk_full_is_one_line_error(monkeypatch, tmp_path, capsys):
    import errno

    calls = {"n": 0}
    real = checkpoint.save

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    monkeypatch.setattr(checkpoint, "save", full)
    out = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--checkpoint-epochs", "1", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "last checkpoint (epoch 1) is intact" in err
    assert checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] == 1


def test_seeds_sharded_over_four_devices_equal_one_device(tmp_path):
    args = ["train", "--preset", "smoke", "--epochs", "2", "--record-epochs", "1", "--seeds", "4", "--no-progress",
            "--save-order"]
    code, err = finish([*args, "--out", str(tmp_path / "four")], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert code == 0, err
    code, err = finish([*args, "--out", str(tmp_path / "one")])
    assert code == 0, err
    assert rundir.load_config(tmp_path / "four")["environment"]["device_count"] == 4
    assert rundir.load_config(tmp_path / "one")["environment"]["device_count"] == 1
    a, b = rundir.load_params(tmp_path / "four"), rundir.load_params(tmp_path / "one")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-8, err_msg=k)
    np.testing.assert_allclose(np.load(tmp_path / "four" / "trajectory.npy"), np.load(tmp_path / "one" / "trajectory.npy"),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(np.load(tmp_path / "four" / "order.npy"), np.load(tmp_path / "one" / "order.npy"))
