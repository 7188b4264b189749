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
from socjax.native import build

from test_cli import main, no_compile, refused  # noqa: F401 (no_compile: a fixture)

# 4 tracked weights (not the default 16): the analyses of these runs then fit at most 16 starts a
# call and share the small Newton pool's compiled programs with the rest of the suite
BASE = ["train", "--preset", "smoke", "--epochs", "8", "--record-epochs", "3", "--seeds", "2", "--track", "4",
        "--save-order", "--checkpoint-epochs", "1", "--no-progress"]


def start(args, env=None, script=None):
    """socjax ARGS in a subprocess; with `script`, python -c SCRIPT ARGS (a wrapper around cli.main)."""
    cmd = [sys.executable, "-c", script] if script else [sys.executable, "-m", "socjax"]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def finish(args, env=None):
    p = start(args, env)
    out, err = p.communicate(timeout=600)
    return p.returncode, err


def wait_for(stream, text: str, p, timeout: float = 300) -> None:
    """Read a subprocess's pipe until `text` appears (progress bars end lines with \r, not \n)."""
    seen, deadline = "", time.time() + timeout
    while text not in seen:
        chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
        assert chunk, f"the process ended before {text!r}: {seen[-2000:]}"
        assert time.time() < deadline
        seen += chunk


def progress(out) -> dict:
    return json.loads((out / rundir.PROGRESS).read_text())


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
    assert progress(a) == progress(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    code, err = finish([*BASE, "--out", str(out)])
    assert code == 0, err
    return out


def test_sigkill_then_resume_is_bitwise_identical_and_sigterm_while_compiling_changes_nothing(reference, tmp_path):
    out = tmp_path / "run"
    p = start([*BASE, "--out", str(out)])
    deadline = time.time() + 300
    while not ((out / rundir.PROGRESS).exists() and progress(out)["checkpoint_epoch"] >= 1):
        assert p.poll() is None, p.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert 1 <= checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] < 8
    assert not (out / "params_final.npz").exists()

    # a resume stopped while it compiles: one line, and the directory is as it was
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.name != rundir.LOCK}
    p = start(["train", "--resume", str(out)])  # with the progress bar, which says "compiling"
    wait_for(p.stderr, "compiling", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert err.splitlines()[-1].startswith("socjax: stopped by SIGTERM during start-up; the run in")
    assert f"is unchanged; continue with: socjax train --resume {out}" in err
    assert before == {f.name: f.read_bytes() for f in out.iterdir() if f.name != rundir.LOCK}

    code, err = finish(["train", "--resume", str(out), "--no-progress"])
    assert code == 0, err
    same_run(out, reference)
    # on a CPU with a compiler, `--step auto` chose the native step for both, and resume kept it
    assert rundir.read_info(out).config.step == ("native" if build.unavailable() is None else "xla")


# cli.main with every chunk's write slowed down and announced, so a signal lands inside a write
SLOW_WRITES = """
import sys, time
from socjax import cli, rundir
append = rundir.RunWriter.append
def slow(self, *a, **k):
    append(self, *a, **k)
    print(f"wrote epoch {self.epoch}", flush=True)
    time.sleep(1.0)
rundir.RunWriter.append = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigint_during_a_write_checkpoints_the_chunk_in_flight_and_the_partial_run_analyses_as_its_prefix(
        reference, tmp_path):
    from socjax import analyze, report

    out = tmp_path / "run"
    p = start([*BASE, "--checkpoint-epochs", "100", "--out", str(out)], script=SLOW_WRITES)
    wait_for(p.stdout, "wrote epoch 6", p)  # epoch 6 (the first recorded) written, epoch 7 in flight
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert err.splitlines()[-1] == (f"socjax: stopped by SIGINT after epoch 7 of 8; checkpoint written at epoch 7; "
                                    f"continue with: socjax train --resume {out}")
    assert checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] == 7
    written = progress(out)
    assert written["epochs_done"] == written["checkpoint_epoch"] == 7
    assert (written["recorded_epochs"], written["trajectory_rows"], written["order_rows"]) == (2, 4000, 7 * 2000)

    # analyse it: the same as the written prefix alone, in a directory that holds only that
    result = analyze.analyze(out, progress=False, figures=False)
    report.write(out, result)
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    np.save(prefix / "trajectory.npy", np.load(out / "trajectory.npy")[:, :4000])
    (prefix / "tracked.json").write_text((out / "tracked.json").read_text())
    info = rundir.read_info(out)
    (prefix / "config.json").write_text(json.dumps(dict(trajectory=info.layout, config=dict(runs=info.runs))))
    alone = analyze.analyze(prefix, progress=False, figures=False)
    for part in ("increments", "spectrum"):
        assert result["groups"][0][part] == alone["groups"][0][part], part
    assert result["per_weight"] == alone["per_weight"]
    assert result["trajectory"]["steps"] == 4000 and alone["trajectory"]["partial"] is None
    assert result["trajectory"]["partial"] == dict(recorded_epochs=2, record_epochs=3, steps=4000, of_steps=6000)
    assert any(w.startswith("partial run: 2 of 3 recorded epochs") for w in result["warnings"])
    assert "**Partial run: 2 of 3 recorded epochs" in (out / "report.md").read_text()

    # resume: bitwise the uninterrupted run, and the analysis of the partial run is gone with it
    code, err = finish(["train", "--resume", str(out), "--no-progress"])
    assert code == 0, err
    same_run(out, reference)
    assert not (out / "analysis.json").exists() and not (out / "report.md").exists()


def test_sigint_at_any_moment_of_start_up_or_training_is_one_line_and_keeps_what_it_says(tmp_path):
    """Wherever the signal lands (loading, initialising, compiling, the first epochs): exit 130, one
    line, and either no directory or a checkpoint at the epoch the line names. A signal that
    raised inside a jitted call once made the process crash as it exited (status -11)."""
    for delay in (0.5, 2.0, 3.5, 5.0, 6.5, 8.0):
        out = tmp_path / f"run-{delay}"
        # 200 epochs: with the native step 20 (40,000 steps) could end before the last signal
        p = start(["train", "--preset", "smoke", "--epochs", "200", "--no-progress", "--out", str(out)])
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 130 and err.count("\n") == 1, (delay, p.returncode, err)
        if err == "socjax: stopped by SIGINT during start-up; nothing was written\n":
            assert not out.exists(), delay
        else:
            epoch = int(err.split("checkpoint written at epoch ")[1].split(";")[0])
            assert checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] == epoch
            assert progress(out)["epochs_done"] == progress(out)["checkpoint_epoch"] == epoch, delay


def test_sigint_while_compiling_a_new_run_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    p = start([*BASE[:-1], "--out", str(out)])
    wait_for(p.stderr, "compiling", p)
    assert (out / rundir.LOCK).exists()  # the directory is made (and locked) first...
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert err.splitlines()[-1] == "socjax: stopped by SIGINT during start-up; nothing was written"
    assert not out.exists()  # ...and removed again


def test_resume_refuses_a_different_config_and_a_complete_run(reference, capsys, no_compile):
    assert main(["train", "--resume", str(reference), "--lr", "0.1", "--seeds", "3"]) == 2
    err = capsys.readouterr().err
    assert "remove --lr, --seeds" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(reference), "--epochs", "4"]) == 2
    assert "shorter than the run's 8" in capsys.readouterr().err
    assert main(["train", "--resume", str(reference)]) == 2
    assert capsys.readouterr().err == (f"socjax: error: {reference}: the run is complete (8 of 8 epochs); to extend it, "
                                       "give a longer --epochs\n")


def test_chunk_plan_is_at_most_two_entries_per_stretch_and_equals_the_epoch_by_epoch_plan():
    from socjax import config, runner

    def by_epoch(cfg, start):  # one epoch at a time, grouped into chunks that never cross a window's edge
        spans = cfg.recorded()
        edges = sorted({0, cfg.epochs, *(e for span in spans for e in span),
                        *(e for a in cfg.record_windows for e in (a, a + cfg.window_epochs))})
        out, epoch = [], start
        while epoch < cfg.epochs:
            record = any(a <= epoch < b for a, b in spans)
            end = next(e for e in edges if e > epoch)
            e = min(cfg.chunk_epochs, end - epoch)
            out.append(runner.Chunk(record, e, record and cfg.weight_stats and epoch >= cfg.epochs_equilibrate))
            epoch += e
        return out

    for epochs, record, chunk, start, windows in ((8, 3, 1, 0, ()), (8, 3, 3, 2, ()), (10, 10, 4, 0, ()),
                                                  (10, 0, 3, 5, ()), (7, 2, 5, 7, ()), (20, 4, 3, 0, (0, 5, 16)),
                                                  (20, 4, 1, 6, (0, 5, 17)), (30, 4, 4, 2, (3, 10)),
                                                  (40, 20, 10, 0, (1, 20, 30))):
        cfg = config.build("smoke", epochs=epochs, record_epochs=record, chunk_epochs=chunk, record_windows=windows,
                           weight_stats=True)
        plan = runner.chunk_plan(cfg, start)
        assert list(runner.chunks(plan)) == by_epoch(cfg, start)
        ends = set(np.cumsum([start] + [c.epochs for c in runner.chunks(plan)]))
        assert {a + cfg.window_epochs for a in windows if a + cfg.window_epochs > start} <= ends  # params saved there
        assert len(plan) <= 2 * (2 * len(windows) + 2)
    huge = runner.chunk_plan(config.build("smoke", epochs=10**9, record_epochs=10**9 - 5, chunk_epochs=3), 0)
    assert len(huge) == 4 and sum(c.epochs * n for c, n in huge) == 10**9


def edit_json(name, change):
    def edit(run):
        d = json.loads((run / name).read_text())
        change(d)
        (run / name).write_text(json.dumps(d))
    return edit


def truncate(name):
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[: (run / name).stat().st_size // 2])


def foreign_npz(run):
    with open(run / rundir.CHECKPOINT, "wb") as f:
        np.savez(f, weights=np.zeros(3))


@pytest.mark.parametrize("damage, message", [
    (truncate(rundir.CHECKPOINT), "checkpoint.npz: not a readable checkpoint (BadZipFile"),
    (lambda run: (run / rundir.CHECKPOINT).write_bytes(os.urandom(4096)), "not a readable checkpoint"),
    (lambda run: (run / rundir.CHECKPOINT).write_bytes(b""), "not a readable checkpoint"),
    (foreign_npz, "has no __meta__: not a socjax checkpoint"),
    (lambda run: (run / rundir.CHECKPOINT).unlink(), "the run's set-up never finished, so there is nothing to resume; "
                                                     "delete"),
    (lambda run: (run / rundir.TRAJECTORY).unlink(), "trajectory.npy: missing, so the run cannot be resumed"),
    (truncate(rundir.TRAJECTORY), "trajectory.npy: unreadable (mmap length is greater than file size)"),
    (truncate(rundir.ORDER), "order.npy: unreadable"),
    (edit_json(rundir.CONFIG, lambda d: d["config"].update(lr=[0.003])),
     "config.json: differs from the configuration its checkpoint was written with (lr: [0.002] -> [0.003])"),
    (edit_json(rundir.CONFIG, lambda d: d["config"]["model"].update(loss="xent")), "(model.loss: 'mse' -> 'xent')"),
    (edit_json(rundir.CONFIG, lambda d: d["config"].update(epochs_record=2)), "(epochs_record: 3 -> 2)"),
    (edit_json(rundir.TRACKED, lambda d: d[3]["index"].__setitem__(1, d[3]["index"][1] + 1)),
     "tracked.json: differs from the weights its checkpoint was written with (entry 3:"),
    (edit_json(rundir.TRACKED, lambda d: d.pop()), "(4 weights -> 3)"),
])
def test_resume_refuses_a_damaged_or_edited_run_in_one_line(damage, message, reference, tmp_path, capsys, no_compile):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / rundir.PROGRESS).write_text(json.dumps(dict(progress(run), epochs_done=5)))  # as if interrupted
    damage(run)
    files = lambda: {f.name: f.read_bytes() for f in run.iterdir() if f.name != rundir.LOCK}
    before = files()
    refused(["train", "--resume", str(run), "--no-progress"], message, capsys)
    assert before == files()  # untouched


def test_a_second_writer_is_refused_naming_the_holder(reference, tmp_path, capsys, no_compile):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    holder = start([str(run)], script="import sys, time\nfrom pathlib import Path\nfrom socjax import rundir\n"
                   "lock = rundir.RunLock(Path(sys.argv[1]), create=False)\nprint('locked', flush=True)\ntime.sleep(300)")
    try:
        wait_for(holder.stdout, "locked", holder)
        assert main(["train", "--resume", str(run), "--epochs", "9", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == (f"socjax: error: {run}: another socjax process (pid {holder.pid}, socjax train) is writing "
                       "this run; "
                       "wait for it to end or stop it\n")
    finally:
        holder.kill()
        holder.communicate()
    assert rundir.read_info(run).config.epochs == 8  # not extended by the refused process


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


def test_divergence_stops_keeps_checkpoint_and_saves_the_others(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = finish(["train", "--preset", "smoke", "--epochs", "3", "--record-epochs", "3", "--lr", "2e-3", "30",
                        "--track", "4", "--checkpoint-epochs", "1", "--no-progress", "--out", str(out)])
    assert code == 3
    assert "run(s) 1 (seed 0, lr 30" in err and "epochs 1-1" in err and err.count("\n") == 1
    assert f"the last good checkpoint (epoch 0) is kept in {out}" in err
    assert checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] == 0
    final = rundir.load_params(out, "final")
    assert np.all(np.isfinite(final["w1"][0])) and not np.all(np.isfinite(final["w1"][1]))
    m = rundir.load_metrics(out)
    assert len(m["epoch"]) == 1 and np.isfinite(m["test_loss"][0][0])
    # the analysis reads the one written epoch, sets the diverged run aside and says so
    assert main(["analyze", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "partial run: 1 of 3 recorded epochs written (2,000 of 6,000" in err and "non-finite values" in err
    a = json.loads((out / "analysis.json").read_text())
    assert a["trajectory"]["steps"] == 2000 and [g["label"] for g in a["groups"]] == ["lr=0.002", "lr=30"]
    assert a["per_run"][0]["test"]["epochs"] == 1 and a["per_run"][1]["test"] is None and a["groups"][1]["test"] is None


def test_disk_full_is_one_line_error(monkeypatch, tmp_path, capsys):
    import errno

    calls = {"n": 0}
    real = checkpoint.save

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:  # the set-up's checkpoint (epoch 0) and epoch 1's are written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    monkeypatch.setattr(checkpoint, "save", full)
    out = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--checkpoint-epochs", "1", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "last checkpoint (epoch 1) is intact" in err
    assert checkpoint.read_meta(out / rundir.CHECKPOINT)["user"]["epochs_done"] == 1
    assert [f.name for f in out.iterdir() if f.name.endswith(".tmp")] == []  # no temporary file left on the disk


def test_disk_full_during_set_up_removes_what_it_wrote(monkeypatch, tmp_path, capsys):
    import errno

    from socjax import runner

    real = rundir.write_npz

    def full(path, arrays):
        real(path, arrays)  # the file is written, then the disk is full: set-up must take it away again
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir, "write_npz", full)
    monkeypatch.setattr(runner, "_compile", lambda *a: None)  # set-up fails before anything is run
    out = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"socjax: error: {out}: cannot write (No space left on device); the run was not set up\n"
    assert not out.exists()


def test_seeds_sharded_over_four_devices_equal_one_device(tmp_path):
    # a small network: what is tested is the seeds' placement, not the model (the full smoke size took 55 s)
    args = ["train", "--preset", "smoke", "--hidden", "16", "12", "--epochs", "2", "--record-epochs", "1", "--seeds", "4",
            "--no-progress", "--save-order"]
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
