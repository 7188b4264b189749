"""Nothing silently wrong: every output of prune, analyze, plot and toy describes the state it
claims to, or is absent, or is named stale, under resume, interruption, concurrency and bad values.
Each test is one way a result could have been wrong without a word, checked by a second way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats as sps

from socjax import data, model, prune, rundir
from socjax.config import ModelConfig

from test_cli import main, refused
from test_prune import numpy_forward

SMALL = ["--preset", "smoke", "--hidden", "16", "12", "--train-limit", "400", "--track", "4", "--no-progress"]
PRUNE = ["--sparsities", "0,0.5", "--draws", "1", "--finetune-epochs", "0", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small finished run with --weight-stats, analysed and pruned."""
    run = tmp_path_factory.mktemp("integrity") / "run"
    assert main(["train", *SMALL, "--out", str(run), "--epochs", "3", "--record-epochs", "2", "--weight-stats"]) == 0
    assert main(["analyze", str(run), "--no-progress"]) == 0
    assert main(["prune", str(run), *PRUNE]) == 0
    return run


def copy(run, tmp_path, name="run"):
    return shutil.copytree(run, tmp_path / name)


def snapshot(path) -> dict:
    """{relative path: bytes} of every file under `path` but the lock."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != rundir.LOCK}


def progress(run) -> dict:
    return json.loads((run / rundir.PROGRESS).read_text())


# python -m socjax with Python's own SIGINT handler (KeyboardInterrupt) at start, as from a terminal:
# a background job of a script inherits SIGINT ignored, which would test nothing (set in the child,
# not by preexec_fn: forking the multithreaded test process is unsafe)
AS_FROM_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                      "sys.argv[0] = 'socjax'; runpy.run_module('socjax', run_name='__main__')")


def start(args):
    return subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


# 1. a prune of an earlier state of the run is never reported as current


def test_resume_removes_the_prune_outputs_and_a_stale_one_is_named(trained, tmp_path, capsys):
    run = copy(trained, tmp_path)
    assert main(["prune", str(run), *PRUNE, "--out", str(run / "prune_global"), "--scope", "global"]) == 0
    old = shutil.copytree(run / "prune", tmp_path / "old_prune")
    assert "## The Discussion's claims (socjax prune)" in (run / "report.md").read_text()
    assert main(["train", "--resume", str(run), "--epochs", "4", "--no-progress"]) == 0
    assert not (run / "prune").exists() and not (run / "prune_global").exists()
    assert main(["analyze", str(run), "--no-progress"]) == 0
    assert "Discussion" not in (run / "report.md").read_text()
    # the earlier prune copied back in: its state is not the run's (the second way), and the report says stale
    state = json.loads((old / "prune.json").read_text())["state"]
    assert state["params_final_sha256"] != rundir.digest(run / rundir.PARAMS_FINAL)
    assert state["epochs_done"] == 3 and progress(run)["epochs_done"] == 4
    shutil.copytree(old, run / "prune")
    assert main(["analyze", str(run), "--no-progress"]) == 0
    text = (run / "report.md").read_text()
    assert "**Stale:**" in text and "| the amplitude criterion beats random" not in text
    assert main(["prune", str(run), *PRUNE]) == 0  # a fresh prune: current, and shown
    text = (run / "report.md").read_text()
    assert "**Stale:**" not in text and "| the amplitude criterion beats random" in text
    capsys.readouterr()


# 2. an interrupted extension keeps no final outputs of the earlier end


def test_an_interrupted_extension_leaves_no_final_outputs_of_the_earlier_end(trained, tmp_path, capsys):
    run = copy(trained, tmp_path)
    p = start(["train", "--resume", str(run), "--epochs", "400", "--checkpoint-epochs", "1", "--no-progress"])
    deadline = time.time() + 300
    while not ((run / rundir.PROGRESS).exists() and progress(run)["epochs_done"] >= 5):
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    done = progress(run)["epochs_done"]
    assert 5 <= done < 400
    assert not (run / rundir.PARAMS_FINAL).exists() and not (run / rundir.WEIGHT_STATS).exists()
    refused(["prune", str(run)], f"the run has not finished (epoch {done} of 400); finish it with", capsys)
    assert main(["analyze", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    a = rundir.load_analysis(run)
    assert a["trajectory"]["partial"]["recorded_epochs"] == done - 1  # one epoch to equilibrate
    assert all(e["neurons"] == {"skipped": "no params_final.npz"} for e in a["per_run"])
    metrics = rundir.load_metrics(run)  # the test numbers are those of the same epoch
    assert len(metrics["epoch"]) == done
    assert a["per_run"][0]["test"]["loss_last"] == metrics["test_loss"][-1][0]


# 3. hidden layers by role: a one-hidden-layer net keeps its output layer


def test_prune_removes_hidden_layers_by_role_never_the_output_layer(tmp_path, capsys):
    assert prune.hidden_layers(ModelConfig(sizes=(784, 700, 476, 10))) == (1, 2)
    run = tmp_path / "one"
    assert main(["train", *SMALL, "--hidden", "16", "--out", str(run), "--epochs", "3", "--record-epochs", "2",
                 "--weight-stats"]) == 0
    assert main(["prune", str(run), *PRUNE]) == 0
    assert "pruned: w1 (12,544 weights per run" in (run / "prune" / "report.md").read_text()
    capsys.readouterr()
    result = rundir.load_prune(run / "prune")
    assert result["pruned_layers"] == ["w1"] and result["output_layer"] == "w2"
    assert result["weights_ranked"] == 784 * 16
    # the second way: magnitude pruning at 50% of w1 alone, by a NumPy forward pass
    named = rundir.load_params(run)
    cfg = rundir.read_info(run).config
    one = model.from_named({k: v[0] for k, v in named.items()}, cfg.model.num_layers)
    order = np.argsort(np.abs(named["w1"][0]).ravel(), kind="stable")
    keep = np.ones(named["w1"][0].size, np.float32)
    keep[order[:round(0.5 * keep.size)]] = 0
    masks = prune.full_mask(cfg.model, {1: keep.reshape(named["w1"][0].shape)})
    assert np.all(np.asarray(masks[1].w) == 1)  # the output layer is whole
    ds = data.decode(data.load_embedded(), cfg.pixel_scale)
    want = numpy_forward(one, masks, ds.test_x, ds.test_y)
    got = result["groups"][0]["curves"]["magnitude"]["none"]
    np.testing.assert_allclose(got["test_loss"][0][0][1], want[0], rtol=1e-5)


# 4. a sweep is pruned per group of settings


def test_a_sweep_is_pruned_per_group_of_settings(tmp_path, capsys):
    run = tmp_path / "sweep"
    assert main(["train", *SMALL, "--out", str(run), "--epochs", "3", "--record-epochs", "2", "--seeds", "2",
                 "--l2", "0", "5e-4", "--weight-stats"]) == 0
    assert main(["prune", str(run), *PRUNE]) == 0
    printed = capsys.readouterr().out
    assert " l2=0 (seeds 0, 1):" in printed and " l2=0.0005 (seeds 0, 1):" in printed
    result = rundir.load_prune(run / "prune")
    settings = [(r["seed"], r["l2"]) for r in result["runs"]]
    assert [g["label"] for g in result["groups"]] == ["l2=0", "l2=0.0005"]
    for g in result["groups"]:
        assert [settings[r] for r in g["run_indices"]] == [(0, g["settings"]["l2"]), (1, g["settings"]["l2"])]
        # the second way: the paired difference and its t interval over this group's two seeds, by hand
        acc = {c: np.asarray(g["curves"][c]["none"]["test_acc"]).mean(axis=(1, 2)) for c in ("amplitude", "random")}
        diff = acc["amplitude"] - acc["random"]
        half = sps.t.ppf(0.975, 1) * diff.std(ddof=1) / np.sqrt(2)
        claim = next(c for c in g["claims"] if c["key"] == "beats_random" and c["mode"] == "none")
        assert claim["difference"]["n"] == 2
        np.testing.assert_allclose(claim["difference"]["ci95"], [diff.mean() - half, diff.mean() + half], rtol=1e-9)
    report = (run / "prune" / "report.md").read_text()
    assert "2 groups of settings" in report and "seeds: 0, 0, 1, 1" not in report
    figures = sorted(p.name for p in (run / "prune").glob("*.png"))
    assert figures == ["prune_l2=0.0005.png", "prune_l2=0.png"]
    for f in figures:
        (run / "prune" / f).unlink()
    assert main(["plot", str(run)]) == 1  # no analysis; but both prune figures are redrawn
    assert sorted(p.name for p in (run / "prune").glob("*.png")) == figures
    capsys.readouterr()


# 5. nothing reads a run while another process uses it


def test_analyze_prune_and_plot_refuse_a_run_another_process_uses(trained, tmp_path, capsys):
    run = copy(trained, tmp_path)
    before = snapshot(run)
    with rundir.RunLock(run, create=False):  # as `socjax train` holds it
        for argv in (["analyze", str(run), "--no-progress"], ["prune", str(run), *PRUNE], ["plot", str(run)]):
            refused(argv, f"{run}: another socjax process (pid {os.getpid()}, socjax train) is writing this run", capsys)
    with rundir.RunLock(run, create=False, command="analyze"):
        refused(["analyze", str(run), "--no-progress"],
                f"another socjax process (pid {os.getpid()}, socjax analyze) is using this run", capsys)
    assert snapshot(run) == before


# 6. prune writes into a directory of its own


def test_prune_out_must_be_a_directory_of_its_own(trained, tmp_path, capsys, monkeypatch):
    run = copy(trained, tmp_path)
    before = snapshot(run)
    refused(["prune", str(run), *PRUNE, "--out", str(run)], f"--out {run}: is the run directory {run}", capsys)
    refused(["prune", str(run), *PRUNE, "--out", str(tmp_path)], "(or holds it)", capsys)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    refused(["prune", str(run), *PRUNE, "--out", ""], "--out is empty; name a directory", capsys)
    assert list(cwd.iterdir()) == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused(["prune", str(run), *PRUNE, "--out", str(other)], "not empty and not an earlier prune output", capsys)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert snapshot(run) == before
    assert main(["prune", str(run), *PRUNE, "--out", str(other / "prune")]) == 0  # new: accepted
    assert main(["prune", str(run), *PRUNE, "--out", str(other / "prune")]) == 0  # an earlier prune's: replaced
    capsys.readouterr()


# 7. a prune output is replaced as a unit


def test_a_prune_that_fails_while_writing_leaves_the_previous_output(trained, tmp_path, capsys, monkeypatch):
    from socjax import plots

    run = copy(trained, tmp_path)
    before = snapshot(run)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")  # after prune.json was written into the new directory

    monkeypatch.setattr(plots, "prune_figure", fail)
    with pytest.raises(OSError):
        prune.prune_run(run, sparsities=(0.0, 0.9), draws=1, finetune_epochs=0, progress=False)
    assert snapshot(run) == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [rundir.LOCK]
    capsys.readouterr()


# 8. plot draws only the arrays written with analysis.json


def test_plot_refuses_the_arrays_of_another_analysis(trained, tmp_path, capsys):
    run = copy(trained, tmp_path)
    assert rundir.load_analysis(run)["arrays_sha256"] == rundir.digest(run / rundir.ARRAYS)
    # another analysis's arrays: the same keys and shapes, other counts (as another run's would be)
    arrays = rundir.load_arrays(run)
    arrays["g0/hist_counts"] = arrays["g0/hist_counts"] + 1
    rundir.write_npz(run / rundir.ARRAYS, arrays)
    figures = {p.name: p.read_bytes() for p in run.glob("*.png")}
    refused(["plot", str(run)], f"{run / rundir.ARRAYS}: not the arrays written with {run / rundir.ANALYSIS}", capsys)
    assert {p.name: p.read_bytes() for p in run.glob("*.png")} == figures


# 9. the age table of a partly written final recording


def test_the_age_table_says_how_much_of_a_partial_final_recording_was_analysed(tmp_path, capsys):
    run = tmp_path / "windows"
    assert main(["train", *SMALL, "--out", str(run), "--epochs", "6", "--record-epochs", "2", "--record-windows", "1",
                 "--window-epochs", "2"]) == 0
    # as while training: epoch 5 of 6 written, the final recording (epochs 5-6) half of it, no final parameters
    info = rundir.read_info(run)
    rundir.write_json(run / rundir.PROGRESS, dict(progress(run), epochs_done=5, checkpoint_epoch=5,
                                                  **rundir.written_rows(info.config, info.layout, 5)))
    (run / rundir.PARAMS_FINAL).unlink()
    assert main(["analyze", str(run), "--no-progress"]) == 0
    rows = rundir.load_ages(run)["groups"][0]["rows"]
    final = rundir.load_analysis(run)["trajectory"]
    assert [(r["age"], r["epochs"], r["partial"]) for r in rows] == [(1, 2, False), (4, 1, True)]
    assert rows[1]["steps"] == final["steps"] == final["partial"]["steps"] == info.layout["steps"] // 2
    assert all(c["comparable"] is False for c in rundir.load_ages(run)["groups"][0]["claims"])
    assert "| 4 (final) | 1 (partly written) |" in (run / "report.md").read_text()
    capsys.readouterr()


# 11, 12. prune says why, in words that fit the case


def test_prune_names_an_analysis_of_another_schema_and_an_unfinished_run(trained, tmp_path, capsys):
    run = copy(trained, tmp_path)
    a = rundir.load_analysis(run)
    rundir.write_json(run / rundir.ANALYSIS, dict(a, schema_version=1))
    assert main(["prune", str(run), *PRUNE]) == 0
    printed = capsys.readouterr().out
    assert "range width falls as the fluctuation amplitude rises: not tested" in printed
    note = rundir.load_prune(run / "prune")["groups"][0]["correlation"]["note"]
    assert "written by another socjax (schema 1, this one reads 2)" in note and note in printed
    rundir.write_json(run / rundir.PROGRESS, dict(progress(run), epochs_done=2))  # as while it trains
    refused(["prune", str(run)], f"{run}: the run has not finished (epoch 2 of 3)", capsys)


# signals outside train: exit 130, one line, the directory unchanged or complete


def complete_analysis(run, before) -> bool:
    """A new analysis, whole: no marker, its arrays bound to it, and every file the earlier one had."""
    a = rundir.load_analysis(run)
    return (not (run / rundir.INCOMPLETE).exists() and a is not None
            and a["arrays_sha256"] == rundir.digest(run / rundir.ARRAYS) and snapshot(run).keys() == before.keys())


def complete_prune(run, before) -> bool:
    result = rundir.load_prune(run / "prune")
    return result is not None and rundir.prune_is_current(run, result) and snapshot(run).keys() == before.keys()


SIGNALLED = [
    ("analyze", (0.6, 1.5, 3.0, 6.0)),
    ("prune", (0.6, 3.0)),
    ("plot", (0.6, 2.0)),
    ("toy", (0.6, 2.5)),
]


@pytest.mark.parametrize("command, delays", SIGNALLED, ids=[c for c, _ in SIGNALLED])
def test_a_signal_stops_the_command_with_the_directory_unchanged_or_complete(command, delays, trained, tmp_path):
    for i, delay in enumerate(delays):
        run = copy(trained, tmp_path, f"run{i}")
        args = {"analyze": ["analyze", str(run), "--no-progress"], "prune": ["prune", str(run), *PRUNE],
                "plot": ["plot", str(run)],
                "toy": ["toy", "--out", str(run / "toy"), "--chains", "200", "--steps", "4000"]}[command]
        before = snapshot(run)
        p = start(args)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:  # 0: it had finished before the signal
            # one line says it stopped, last; before it only what the command says when it finishes (the
            # analysis' warnings, the figures this small run cannot have: it is too short for a spectrum)
            lines = err.strip().splitlines()
            said = [line for line in lines if not (line.startswith("warning: ") or line.endswith(
                "record more steps or use a longer --segment)"))]
            assert p.returncode == 130 and said == lines[-1:] and said[0].startswith("socjax: stopped by SIGINT"), \
                (delay, p.returncode, err)
        unchanged = snapshot(run) == before
        done = {"analyze": complete_analysis, "prune": complete_prune,
                "plot": lambda r, b: snapshot(r).keys() == b.keys(),
                "toy": lambda r, b: snapshot(r).keys() == b.keys() | {"toy/toy.json", "toy/toy.png"}}[command]
        assert unchanged or done(run, before), (delay, err)
