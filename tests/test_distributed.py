"""One sweep over several processes (socjax.distributed, socjax launch): the runs laid over the
processes' devices, a sharded sweep equal to the same sweep in one process bit for bit on both
steps and read by rundir as one, a lost process stopping the others (process 0's too under
socjax launch; under another launcher JAX ends them) with a rerun resuming every shard bitwise,
SIGINT forwarded by the launcher, independent run directories merged into one analysis, and
refusals in one line that write nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from socjax import distributed, results, rundir
from socjax.config import ConfigError
from socjax.native import build

from test_long_runs import finish, start

SMALL = ["--preset", "smoke", "--hidden", "16", "12", "--train-limit", "200", "--seeds", "2", "--lr", "2e-3", "1e-3",
         "--track", "4", "--no-progress"]  # 4 runs: 2 seeds x 2 learning rates


def launch(processes, args, env=None):
    return finish(["launch", "--processes", str(processes), "--", "train", *args], env)


def shard_files(run, name, load):
    """A file of every shard of a sharded run, concatenated along the runs (by hand: the reference
    for rundir's own reading of a sharded run)."""
    n = len(rundir.read_shards(run))
    return [load(rundir.shard_dir(run, i) / name) for i in range(n)]


def epochs_done(run, shard: int) -> int:
    path = rundir.shard_dir(run, shard) / rundir.PROGRESS
    return json.loads(path.read_text())["epochs_done"] if path.exists() else -1


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def cmdline(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_text() + "\x00"


def tree_of_files(run) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != rundir.LOCK}


def test_runs_are_laid_over_the_processes_devices_in_order():
    for runs, devices in [(4, [1, 1]), (5, [1, 1]), (7, [2, 1, 3]), (3, [1, 1, 1]), (64, [8] * 8), (10, [4, 4])]:
        bounds = distributed.shards(runs, devices)
        # the second way: each run's device (the last whose first run is at or before it), then that device's process
        total = sum(devices)
        owner = np.repeat(np.arange(len(devices)), devices)
        firsts = [k * runs // total for k in range(total)]
        process = [owner[max(k for k in range(total) if firsts[k] <= r and (k + 1) * runs // total > r)]
                   for r in range(runs)]
        for p, (a, b) in enumerate(bounds):
            assert [r for r in range(runs) if process[r] == p] == list(range(a, b)), (runs, devices)
        assert bounds[0][0] == 0 and bounds[-1][1] == runs
    with pytest.raises(ConfigError, match="3 processes .* for 2 run"):
        distributed.shards(2, [1, 1, 1])


def test_the_flags_and_the_launchers_environment():
    assert not distributed.check_flags(None, None, None)
    assert distributed.check_flags("h:1234", 2, 1)
    for args, message in [(("h:1234", 2, None), "go together"), (("h", 2, 0), "HOST:PORT"),
                          (("h:99999", 2, 0), "HOST:PORT"), (("h:1234", 2, 2), r"0\.\.1"), (("h:1", 0, 0), ">= 1")]:
        with pytest.raises(ConfigError, match=message):
            distributed.check_flags(*args)
    assert distributed.launched_processes({}) == 1
    assert distributed.launched_processes({"SLURM_STEP_NUM_TASKS": "1"}) == 1
    assert distributed.launched_processes({"SLURM_STEP_NUM_TASKS": "8"}) == 8
    assert distributed.launched_processes({"OMPI_COMM_WORLD_SIZE": "4"}) == 4


def test_reproduce_under_a_cluster_launcher_is_refused(tmp_path):
    code, err = finish(["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r")], env={"SLURM_STEP_NUM_TASKS": "2"})
    assert code == 2 and err == ("socjax: error: reproduce runs in one process; under a cluster launcher, train (its "
                                 "processes share the sweep), then socjax analyze DIR\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("step", ["xla", "native"])
def test_two_processes_of_two_runs_equal_four_runs_in_one_bitwise(tmp_path, step):
    if step == "native" and build.unavailable() is not None:
        pytest.skip(f"native step: {build.unavailable()}")
    args = [*SMALL, "--epochs", "3", "--record-epochs", "2", "--weight-stats", "--save-order", "--step", step]
    code, err = launch(2, [*args, "--out", str(tmp_path / "two")])
    assert code == 0, err
    code, err = finish(["train", *args, "--out", str(tmp_path / "one")])
    assert code == 0, err
    one, two = tmp_path / "one", tmp_path / "two"
    top = rundir.load_config(two)
    assert top["processes"] == {"count": 2, "shards": [[0, 2], [2, 4]]}
    assert top["config"]["runs"] == rundir.load_config(one)["config"]["runs"] and top["config"]["step"] == step
    for i, (a, b) in enumerate(top["processes"]["shards"]):
        assert rundir.read_info(rundir.shard_dir(two, i)).config.shard == (a, b)
    npy = lambda p: np.load(p)
    arrays = ["trajectory.npy", "order.npy"] + (["zero_grad.npy"] if step == "xla" else [])
    for name in arrays:
        np.testing.assert_array_equal(np.concatenate(shard_files(two, name, npy)), np.load(one / name), err_msg=name)
    for name in ("params_init.npz", "params_final.npz", "weight_stats.npz"):
        parts, whole = shard_files(two, name, np.load), np.load(one / name)
        for k in whole.files:
            if whole[k].shape[:1] == (4,):  # per run
                np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k], err_msg=f"{name}:{k}")
            else:  # shared (the histograms' edges)
                for part in parts:
                    np.testing.assert_array_equal(part[k], whole[k], err_msg=f"{name}:{k}")
    metrics, whole = shard_files(two, "metrics.json", lambda p: json.loads(p.read_text())), rundir.load_metrics(one)
    for k in whole:
        if k == "epoch":
            assert all(m[k] == whole[k] for m in metrics)
        elif k != "timing":
            np.testing.assert_array_equal(np.concatenate([np.array(m[k]) for m in metrics], axis=1), np.array(whole[k]),
                                          err_msg=k)
    leaves = shard_files(two, rundir.CHECKPOINT, np.load)
    reference = np.load(one / rundir.CHECKPOINT)
    compared = 0
    for k in reference.files:
        v = reference[k]
        if v.ndim and v.shape[0] == 4:  # the run axis (the state's leaves), not the metadata
            np.testing.assert_array_equal(np.concatenate([leaf[k] for leaf in leaves]), v, err_msg=k)
            compared += 1
    assert compared >= 6  # the parameters at least
    # rundir reads the sharded run as one: every reader equals the one-process run's
    for which in ("init", "final"):
        for k, v in rundir.load_params(one, which).items():
            np.testing.assert_array_equal(rundir.load_params(two, which)[k], v, err_msg=k)
    for k, v in rundir.load_weight_stats(one, rundir.read_info(one).config).items():
        np.testing.assert_array_equal(rundir.load_weight_stats(two, rundir.read_info(two).config)[k], v, err_msg=k)
    np.testing.assert_array_equal(rundir.load_order(two), rundir.load_order(one))
    np.testing.assert_array_equal(rundir.load_trajectory(two), rundir.load_trajectory(one))
    assert rundir.read_progress(two) == rundir.read_progress(one)
    merged, whole = rundir.load_metrics(two), rundir.load_metrics(one)
    assert {k: v for k, v in merged.items() if k != "timing"} == {k: v for k, v in whole.items() if k != "timing"}
    assert len(merged["timing"]["processes"]) == 2
    rows = rundir.read_progress(one)["trajectory_rows"]
    np.testing.assert_array_equal(rundir.open_trajectory(two, rows - 7, 5)[:, 3:90, :],
                                  rundir.open_trajectory(one, rows - 7, 5)[:, 3:90, :])
    if step == "xla":
        np.testing.assert_array_equal(rundir.open_zero_grad(two, 4)[:, 0:50, :], rundir.open_zero_grad(one, 4)[:, 0:50, :])
    else:
        assert rundir.open_zero_grad(two, 4) is None and rundir.open_zero_grad(one, 4) is None
    assert results.load_run(two).runs == results.load_run(one).runs
    # the analysis of a sharded directory: the merged test below (a merge is one)


def test_a_lost_process_stops_the_others_and_the_rerun_resumes_every_shard_bitwise(tmp_path):
    run, reference = tmp_path / "run", tmp_path / "reference"
    args = [*SMALL, "--epochs", "300", "--record-epochs", "2", "--checkpoint-epochs", "1"]
    # the two processes by hand, as a cluster launcher starts them (socjax launch is the test below)
    def job(port, i, *more):
        return start(["train", *more, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                      str(i), "--heartbeat-seconds", "2"])

    def both_training(procs, since=(0, 0), where=run):
        deadline = time.time() + 300
        while any(epochs_done(where, i) < since[i] + 2 for i in range(2)):
            assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)

    port = distributed.free_port()
    procs = [job(port, i, *args, "--out", str(run)) for i in range(2)]
    both_training(procs)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    out, err = procs[0].communicate(timeout=120)
    waited = time.time() - killed
    procs[1].communicate()
    assert procs[0].returncode == 130, err
    assert "stopped by the loss of process 1 (no heartbeat for 2 s)" in err and "--resume" in err, err
    # bounded: the heartbeat (2 s), the runtime's own check and one chunk (an epoch of 200 steps)
    assert waited < 30, waited
    done = [json.loads((rundir.shard_dir(run, i) / rundir.PROGRESS).read_text()) for i in range(2)]
    assert all(d["checkpoint_epoch"] >= 1 for d in done) and done[0]["epochs_done"] < 300
    # the rerun, through socjax launch; SIGINT to the launcher reaches both processes, which keep their checkpoints
    p = start(["launch", "--processes", "2", "--", "train", "--resume", str(run), "--no-progress"])
    first = [d["epochs_done"] for d in done]
    while any(epochs_done(run, i) == first[i] for i in range(2)):  # both training again
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.count("stopped by SIGINT") == 2, err
    # process 0 hosts JAX's coordination service: when it dies, JAX ends the others at once (SIGABRT)
    port, since = distributed.free_port(), [epochs_done(run, i) for i in range(2)]
    procs = [job(port, i, "--resume", str(run), "--no-progress") for i in range(2)]
    both_training(procs, since)
    procs[0].send_signal(signal.SIGKILL)
    killed = time.time()
    out, err = procs[1].communicate(timeout=120)
    assert time.time() - killed < 30 and procs[1].returncode == -signal.SIGABRT, err
    assert "the JAX distributed service detected fatal errors" in err, err
    procs[0].communicate()
    code, err = launch(2, ["--resume", str(run), "--no-progress"])
    assert code == 0, err
    code, err = finish(["train", *args, "--out", str(reference)])
    assert code == 0, err
    np.testing.assert_array_equal(np.concatenate(shard_files(run, "trajectory.npy", np.load)),
                                  np.load(reference / "trajectory.npy"))
    final = shard_files(run, "params_final.npz", np.load)
    for k, v in np.load(reference / "params_final.npz").items():
        np.testing.assert_array_equal(np.concatenate([f[k] for f in final]), v, err_msg=k)
    metrics = shard_files(run, "metrics.json", lambda p: json.loads(p.read_text()))
    np.testing.assert_array_equal(np.concatenate([np.array(m["test_loss"]) for m in metrics], axis=1),
                                  np.array(rundir.load_metrics(reference)["test_loss"]))
    # under socjax launch the service is the launcher's: process 0's death stops the others cleanly
    # (a run far longer than the test, so that process 1 is still training when it hears)
    long = tmp_path / "long"
    p = start(["launch", "--processes", "2", "--", "train", *SMALL, "--epochs", "100000", "--record-epochs", "1",
               "--heartbeat-seconds", "2", "--out", str(long)])
    both_training([p], where=long)
    process_0 = next(pid for pid in children(p.pid) if "--process-id\x000\x00" in cmdline(pid))
    os.kill(process_0, signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGKILL, err
    assert "socjax: stopped by the loss of process 0 (no heartbeat for 2 s) after epoch" in err, err
    assert "socjax launch: process 0 was ended by SIGKILL" in err, err
    assert json.loads((rundir.shard_dir(long, 1) / rundir.PROGRESS).read_text())["checkpoint_epoch"] > 0


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    run = tmp_path / "run"
    code, err = launch(2, [*SMALL, "--epochs", "1", "--record-epochs", "1", "--out", str(run)])
    assert code == 0, err
    before = tree_of_files(run)
    for job, message in [
        (["launch", "--processes", "3", "--", "train", "--resume", str(run), "--epochs", "2"],
         f"{run}: trained by 2 processes; resume it with as many (this job has 3)"),
        (["train", "--resume", str(run), "--epochs", "2"],
         f"{run}: trained by 2 processes (shards/); resume it with as many: socjax launch --processes 2 -- train"),
        (["launch", "--processes", "2", "--", "train", *SMALL, "--out", str(run)], f"{run}: already holds a run"),
        (["launch", "--processes", "5", "--", "train", *SMALL, "--out", str(tmp_path / "new")],
         "5 processes (5 devices) for 4 run(s)"),
        (["launch", "--processes", "2", "--", "analyze", str(run)], "socjax launch runs train"),
    ]:
        code, err = finish(job)
        lines = [line for line in err.splitlines() if not line.startswith("W1")]  # JAX's runtime's own warning
        assert code == 2 and len(lines) == 1 and message in lines[0], (job, err)
    assert tree_of_files(run) == before
    assert not (tmp_path / "new").exists()
    # nothing reads a sharded run while one of its processes writes its shard
    with rundir.RunLock(rundir.shard_dir(run, 1), create=False, command="train"):
        code, err = finish(["analyze", str(run), "--no-progress"])
    assert code == 2 and err.strip() == (f"socjax: error: {rundir.shard_dir(run, 1)}: another socjax process (pid "
                                         f"{os.getpid()}, socjax train) is writing this run; wait for it to end or stop it")
    assert tree_of_files(run) == before
    # a published copy leaves out every shard's bulk, as a run's
    published = rundir.published_files(run)
    assert {rundir.CONFIG, rundir.TRACKED, f"shards/1/{rundir.METRICS}"} <= {str(p) for p in published}
    assert not [p for p in published if rundir.is_bulk(p.name)]


def test_a_merged_analysis_of_four_single_seed_runs_equals_the_four_seeds_trained_together(tmp_path):
    args = ["--preset", "smoke", "--hidden", "16", "12", "--train-limit", "200", "--epochs", "3", "--record-epochs", "2",
            "--track", "4", "--no-progress", "--step", "xla"]
    parts = [tmp_path / f"seed{s}" for s in range(4)]
    for s, d in enumerate(parts):  # a job array's directories
        code, err = finish(["train", *args, "--seed", str(s), "--out", str(d)])
        assert code == 0, err
    code, err = finish(["train", *args, "--seeds", "4", "--out", str(tmp_path / "together")])
    assert code == 0, err
    code, err = finish(["analyze", "--merge", *map(str, parts), "--out", str(tmp_path / "merged"), "--no-progress"])
    assert code == 0, err
    merged = tmp_path / "merged"
    assert rundir.read_info(merged).config.seeds == (0, 1, 2, 3)
    code, err = finish(["analyze", str(tmp_path / "together"), "--no-progress"])
    assert code == 0, err
    a = json.loads((merged / rundir.ANALYSIS).read_text())
    b = json.loads((tmp_path / "together" / rundir.ANALYSIS).read_text())
    assert a.pop("run") == str(merged) and b.pop("run") == str(tmp_path / "together")
    assert a == b
    arrays = rundir.load_arrays(tmp_path / "together")
    for k, v in rundir.load_arrays(merged).items():
        np.testing.assert_array_equal(v, arrays[k], err_msg=k)
    # a merge is a sharded run read as one: and in the order the directories are given
    other_order = rundir.merge([parts[2], parts[0]], tmp_path / "m20")
    assert rundir.read_info(other_order).config.seeds == (2, 0)
    np.testing.assert_array_equal(rundir.load_trajectory(other_order), rundir.load_trajectory(tmp_path / "together")[[2, 0]])
    # refusals: one line each, nothing written
    other = tmp_path / "other"  # another protocol: a copy of seed 3's run, its config.json recording every epoch
    shutil.copytree(parts[3], other)
    edited = rundir.load_config(other)
    edited["config"].update(epochs_equilibrate=0, epochs_record=3, seeds=[7])
    (other / rundir.CONFIG).write_text(json.dumps(edited))
    before = tree_of_files(merged)
    m2 = str(tmp_path / "m2")
    for job, message in [
        (["--merge", str(parts[0]), str(tmp_path / "together"), "--out", m2],
         f"{tmp_path / 'together'}: seed 0 is also in {parts[0]}; merged runs need distinct seeds"),
        (["--merge", str(parts[0]), str(tmp_path / "other"), "--out", m2],
         f"{tmp_path / 'other'}: its protocol differs from {parts[0]}'s (epochs_equilibrate: 1 -> 0); only the seeds"),
        (["--merge", str(parts[0]), "--out", str(parts[1])], f"{parts[1]}: exists and is not an earlier merge"),
        (["--merge", str(parts[0]), str(merged), "--out", m2], f"{merged}: a sharded run directory"),
        ([str(parts[0]), "--merge", str(parts[1]), "--out", m2], "give either a run directory"),
        (["--merge", str(parts[0])], "--merge needs --out OUT"),
    ]:
        code, err = finish(["analyze", *job, "--no-progress"])
        assert code == 2 and err.count("\n") == 1 and message in err, (job, err)
        assert not (tmp_path / "m2").exists()
    assert tree_of_files(merged) == before
