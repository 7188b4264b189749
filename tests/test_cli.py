"""The `socjax` command line: a real smoke run and the run-directory format; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from socjax import cli, rundir, train
from socjax.config import RunConfig


def socjax(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "socjax", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    res = socjax("train", "--preset", "smoke", "--seeds", "2", "--save-order", "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def test_smoke_run_writes_the_documented_files(smoke_run):
    cfg_json = rundir.load_config(smoke_run)
    cfg = RunConfig.from_json(cfg_json["config"])
    layout = cfg_json["trajectory"]
    n, runs = layout["steps_per_epoch"], 2
    assert cfg.seeds == (0, 1) and cfg.preset == "smoke" and n == 2000
    assert cfg_json["environment"]["backend"] in ("cpu", "gpu", "tpu", "cuda", "rocm")
    assert layout == dict(first_step=n + 1, stride=1, steps=2 * n, steps_per_epoch=n, batch_size=1, zero_grad=cfg.step == "xla", num_train=n, num_test=2000, num_runs=runs,
                          row=0, rows=2 * n, windows=[])

    tracked = rundir.load_tracked(smoke_run)
    assert len(tracked) == 16
    for name in ("init", "final"):
        p = rundir.load_params(smoke_run, name)
        assert {k: v.shape for k, v in p.items()} == {
            "w1": (runs, 784, 700), "b1": (runs, 700), "w2": (runs, 700, 476),
            "b2": (runs, 476), "w3": (runs, 476, 10), "b3": (runs, 10)}
    traj = rundir.load_trajectory(smoke_run)
    assert isinstance(traj, np.memmap) and traj.dtype == np.float32 and traj.shape == (runs, 2 * n, 16)
    # the last recorded step is the last step: the trajectory ends at params_final's values
    final = rundir.load_params(smoke_run, "final")
    for k, t in enumerate(tracked):
        np.testing.assert_array_equal(traj[:, -1, k], final[f"w{t.layer}"][:, t.row, t.col])
    # ...and starts one SGD step away from the end of the equilibration epoch (|dw| ~ lr * |grad|)
    assert np.all(np.isfinite(traj)) and np.all(np.abs(np.diff(traj, axis=1)) < 0.05)

    order = rundir.load_order(smoke_run)
    assert order.shape == (runs, 3 * n) and order.dtype == np.int32
    for r in range(runs):
        for e in range(3):
            np.testing.assert_array_equal(np.sort(order[r, e * n : (e + 1) * n]), np.arange(n))
    assert not np.array_equal(order[0], order[1])

    m = rundir.load_metrics(smoke_run)
    assert m["epoch"] == [1, 2, 3]
    assert np.array(m["test_acc"]).shape == (3, runs)
    assert np.all(np.array(m["test_acc"])[-1] > 0.3)  # chance is 0.1; measured 0.73 after 2 epochs


def test_smoke_run_reproduces_the_library_call(smoke_run):
    """The CLI's first epoch equals the trainer called directly with the same config."""
    import jax

    from socjax import data

    cfg = RunConfig.from_json(rundir.load_config(smoke_run)["config"])
    ds = jax.device_put(data.decode(data.load_embedded(), 255.0, cfg.train_limit))
    spec = train.TrainSpec(cfg.model, rundir.load_tracked(smoke_run), 1, False, step=cfg.step)
    state = train.init_runs(cfg.seeds, cfg.model)
    init = rundir.load_params(smoke_run, "init")
    np.testing.assert_array_equal(init["w1"], state.params[0].w)
    hyper = train.Hyper(np.full(2, 2e-3, np.float32), np.full(2, 5e-4, np.float32))
    _, out = train.make_train_chunk(spec, 1)(state, hyper, ds)
    m = rundir.load_metrics(smoke_run)
    np.testing.assert_array_equal(np.asarray(out.metrics.test_loss)[:, 0], np.float32(m["test_loss"][0]))


def test_help_explains_every_flag():
    res = socjax("--help")
    assert res.returncode == 0 and "train" in res.stdout
    res = socjax("train", "--help")
    assert res.returncode == 0
    for flag in ("--preset", "--epochs", "--seeds", "--lr", "--l2", "--track", "--stride", "--data-dir",
                 "--dataset", "--save-order", "--out"):
        assert flag in res.stdout


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help.strip(), f"socjax {name} {action.option_strings[0]}"


def test_ci_keeps_its_environment_apart_from_a_users_venv():
    """.ci/run makes and deletes its own environment, ignored by git; a clone's .venv is the user's."""
    from conftest import REPO

    script = (REPO / ".ci" / "run").read_text()
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not any(".venv" in line for line in code)
    venv = next(line.split("=", 1)[1] for line in code if line.startswith("venv="))
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{venv}/bin/python"], cwd=REPO)
    assert venv.startswith(".ci/") and ignored.returncode == 0


def main(argv) -> int:
    """cli.main's exit status, whether it returns it or argparse exits with it."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


def refused(argv, message, capsys) -> None:
    """cli.main(argv) exits with status 2 and one line, `socjax: error: ...`, holding `message`."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("socjax: error: ") and err.count("\n") == 1, err


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if anything reaches the compiled trainer."""
    def refuse(*a, **k):
        raise AssertionError("compiled despite bad input")
    monkeypatch.setattr(train, "make_train_chunk", refuse)


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--seed", "-1"], "argument --seed: must be in 0..4294967295, got -1"),
    (["--seed", "4294967296"], "argument --seed: must be in 0..4294967295, got 4294967296"),
    (["--seed", "4294967295", "--seeds", "2"], "seed must be an integer in 0..4294967295, got 4294967296"),
    (["--track-seed", "-3"], "argument --track-seed: must be in 0..4294967295"),
    (["--track", "700000"], "--track 700000 draws 350000 weights from w2, which has 333200; at most 666400"),
    (["--track", "-1"], "track must be >= 0"),
    (["--record-windows", "1,a"], "argument --record-windows: expected comma-separated integers, got 'a'"),
    (["--record-windows", "1,-3"], "argument --record-windows: ages must be >= 0, got 1,-3"),
    (["--epochs", "40", "--record-epochs", "10", "--record-windows", "29"],
     "the window at age 29 (2 epochs) straddles the start of the final recording (epoch 30)"),
    (["--record-windows", "3,4"], "the windows at ages 3 and 4 overlap (2 epochs each)"),
    (["--track-weights", "1:3:4", "2:0:0", "1:3:4"], "tracked weight w1:3,4 is given twice"),
    (["--train-limit", "20000"], "train_limit 20000 exceeds the 10,000 training examples of mnist-mini"),
    (["--checkpoint-minutes", "nan"], "argument --checkpoint-minutes: must be a finite number > 0, got nan"),
    (["--checkpoint-minutes", "inf"], "argument --checkpoint-minutes: must be a finite number > 0, got inf"),
    (["--checkpoint-minutes", "0"], "must be a finite number > 0"),
    (["--lr", "2e-3", "inf"], "learning rate must be positive and finite, got inf"),
    (["--l2", "nan"], "l2 must be non-negative and finite, got nan"),
    (["--pixel-scale", "nan"], "argument --pixel-scale: must be a finite number > 0"),
    (["--epochs", "3000000000"], "at most 2,147,483,647 epochs (the epoch counter is int32), got 3,000,000,000"),
    (["--epochs", "1000000000", "--record-epochs", "1000000000"], "the trajectory and order files need 128.0 TB"),
    (["--out", ""], "--out is empty; name a directory"),
    (["--lr", "-0.1"], "learning rate must be positive"),
    (["--lr", "0"], "learning rate must be positive"),
    (["--l2", "-1"], "l2 must be non-negative"),
    (["--hidden", "0"], "must be >= 1"),
    (["--stride", "3"], "stride 3 must divide the number of steps per epoch (2000)"),
    (["--epochs", "2", "--record-epochs", "3"], "--record-epochs must be in 0..2"),
    (["--track-weights", "1:784:0"], "w1 has shape (784, 700)"),
    (["--data-dir", "/nonexistent/mnist"], "data directory not found"),
])
def test_bad_input_is_one_line_error_before_compiling(args, message, tmp_path, capsys, no_compile):
    out = tmp_path / "r"
    refused(["train", "--preset", "smoke", "--no-progress", "--out", str(out), *args], message, capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--alpha", "inf"], "alpha = inf: every parameter must be a finite number"),
    (["--g", "inf"], "g = inf: every parameter must be a finite number"),
    (["--xb", "nan", "--lq=-inf"], "lq = -inf, xb = nan: every parameter must be a finite number"),
    (["--seed", "4294967296"], "--seed must be an integer in 0..4294967295, got 4294967296"),
    (["--seed", "-1"], "--seed must be an integer in 0..4294967295, got -1"),
    (["--dt", "nan"], "dt = nan: must be positive and finite"),
    (["--sweep", "alpha=1.5,inf"], "alpha = inf: every parameter must be a finite number"),
    (["--out", ""], "--out is empty; name a directory"),
    (["--kx", "1e100"], "kx = 1e+100: outside the scales the simulation represents"),
    (["--kx", "1e300"], "kx = 1e+300: outside the scales the simulation represents"),
    (["--qb", "-1e300"], "qb = -1e+300: outside the scales the simulation represents"),
    (["--lx", "1e-30"], "lx = 1e-30: outside the scales the simulation represents"),
    *[([flag, value], f"{flag[2:]} = {float(value):g}: outside the scales the simulation represents")
      for flag, value in (("--lx", "1e300"), ("--alpha", "1e300"), ("--beta", "1e300"), ("--g", "1e-300"),
                          ("--lq", "1e-300"))],
    (["--lx", "-1e-3", "--kx", "1e-300"], "kx = 1e-300: outside the scales the simulation represents"),
    # each parameter within its range, a derived scale out of it: sqrt(lx / g) = 1e10
    (["--lx", "1e8", "--g", "1e-12"], "lower = 1e+10 (a scale of |q - qb| derived from the parameters): outside"),
    (["--chains", "99999999999999999999"], "--chains must be in 1..10,000,000, got 99,999,999,999,999,999,999"),
    (["--steps", "4294967296"], "--steps must be in 4..2,147,483,644, got 4,294,967,296"),
    (["--sweep", "alpha=1,2,3", "--chains", "5000000"], "--sweep: 3 values x 5,000,000 chains = 15,000,000 chains"),
])
def test_bad_toy_input_is_one_line_error_before_anything_is_written(args, message, tmp_path, capsys):
    refused(["toy", "--out", str(tmp_path / "toy"), "--chains", "8", "--steps", "8", *args], message, capsys)
    assert list(tmp_path.iterdir()) == []


def test_half_made_run_directory_says_how_to_recover(tmp_path, capsys, no_compile):
    """A set-up killed before its checkpoint: --out and --resume both say what to do."""
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.CONFIG).write_text("{}")
    assert main(["train", "--preset", "smoke", "--out", str(run)]) == 2
    assert (f"{run}: holds a run whose set-up never finished (no checkpoint.npz, so nothing to resume); "
            f"delete {run} or choose another --out") in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 2
    assert (f"{run}: no checkpoint.npz: the run's set-up never finished, so there is nothing to resume; "
            f"delete {run} and start the run again") in capsys.readouterr().err


def test_corrupt_data_dir_refused(mnist_dir, tmp_path, capsys, no_compile):
    import shutil

    bad = tmp_path / "mnist"
    shutil.copytree(mnist_dir, bad)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    code = main(["train", "--preset", "smoke", "--data-dir", str(bad), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "train-images-idx3-ubyte.gz" in err and err.count("\n") == 1


def test_existing_run_is_not_overwritten(smoke_run, capsys, no_compile):
    before = {p.name: p.read_bytes() for p in smoke_run.iterdir() if p.suffix == ".json"}
    code = main(["train", "--preset", "smoke", "--out", str(smoke_run)])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and err.count("\n") == 1
    assert before == {p.name: p.read_bytes() for p in smoke_run.iterdir() if p.suffix == ".json"}


def test_config_json_round_trips(smoke_run):
    d = json.loads((smoke_run / "config.json").read_text())["config"]
    assert json.loads(json.dumps(RunConfig.from_json(d).to_json())) == d


def test_metrics_record_compile_and_chunk_times(smoke_run):
    timing = rundir.load_metrics(smoke_run)["timing"]
    assert len(timing["compile_seconds"]) == 1 and timing["compile_seconds"][0] > 0
    assert timing["chunk_end_epoch"] == [1, 2, 3]  # one chunk per epoch (chunk_epochs 1)
    assert len(timing["chunk_seconds"]) == 3 and all(t > 0 for t in timing["chunk_seconds"])

