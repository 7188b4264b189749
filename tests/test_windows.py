"""Recording windows: the right steps (against a run that records every step), resume inside and
between windows bitwise, a window's analysis equal to a run that recorded only it, and the age
table of a run whose measures are known per window."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats as sps

import socjax
from socjax import analyze, config, report, rundir, runner
from socjax.analysis import synthetic
from socjax.config import ConfigError
from socjax.interrupt import Interrupted, StopSignal

# a small network on 200 embedded images: 200 steps per epoch, stride 1; lr l2 = 1e-8 makes a pure
# decay step leave a float32 weight unchanged, as the synthetic trajectories below need
SMALL = dict(hidden=(8, 6), train_limit=200, track=6, seeds=3, l2=(5e-6,))
WINDOWS = (1, 4)  # 3 epochs each: [1, 4) and [4, 7); the final recording is [8, 10)
EPOCHS, RECORD, W = 10, 2, 3


def build(**kw):
    return config.build("smoke", **{**SMALL, **kw})


def windowed():
    return build(epochs=EPOCHS, record_epochs=RECORD, record_windows=WINDOWS, window_epochs=W)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The windowed run and one recording every step of the same training (the replay)."""
    base = tmp_path_factory.mktemp("windows")
    runner.run(windowed(), base / "windowed", progress=False)
    runner.run(build(epochs=EPOCHS, record_epochs=EPOCHS), base / "every_step", progress=False)
    return base / "windowed", base / "every_step"


def test_the_config_refuses_windows_that_overlap_straddle_or_outlast_the_run():
    for windows, w, message in (((4, 1), 3, "distinct and increasing"), ((1, 3), 3, "overlap"),
                                ((7,), 3, "straddles the start of the final recording"),
                                ((9,), 2, "ends at epoch 11, after the run's 10 epochs"), ((1,), 0, "window_epochs")):
        with pytest.raises(ConfigError, match=message):
            build(epochs=EPOCHS, record_epochs=RECORD, record_windows=windows, window_epochs=w)
    cfg = build(epochs=EPOCHS, record_epochs=RECORD, record_windows=(1, 8), window_epochs=1)
    assert cfg.recorded() == [(1, 2), (8, 10)]  # the window at 8 lies in the final recording: its rows
    assert [cfg.recorded_before(e) for e in range(11)] == [0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 3]


def test_windows_record_the_steps_their_layout_names(runs):
    """Every window's rows, and the final recording's, are the rows of the every-step run at
    first_step, first_step + stride, ...; its parameters are those after its last epoch."""
    run, every = runs
    layout = rundir.read_info(run).layout
    assert [w["age"] for w in layout["windows"]] == list(WINDOWS) and layout["rows"] == (2 * W + RECORD) * 200
    full, traj = np.load(every / rundir.TRAJECTORY), np.load(run / rundir.TRAJECTORY)
    assert traj.shape == (3, layout["rows"], 6)
    for rec in rundir.recordings(run, rundir.read_info(run)):
        step0 = (rec.first_step - 1) // layout["stride"]  # row of the every-step run
        assert rec.first_step == rec.age * 200 + 1 and rec.steps == rec.epochs * 200
        np.testing.assert_array_equal(traj[:, rec.row:rec.row + rec.steps], full[:, step0:step0 + rec.steps])
    for age in WINDOWS:  # a run stopped at the window's end has these parameters at its end
        short = run.parent / f"until{age + W}"
        runner.run(build(epochs=age + W, record_epochs=0), short, progress=False)
        got, want = rundir.load_params(run, rundir.window_params(age)), rundir.load_params(short)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"window {age}: {k}")


class StopAfter(StopSignal):
    """A StopSignal that asks to stop once `epoch` epochs are written (as SIGINT would then)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch


@pytest.mark.parametrize("stops", [(3, 6), (4, 7)], ids=["inside-windows", "between-windows"])
def test_resume_inside_or_between_windows_is_bitwise_identical(runs, stops, tmp_path, monkeypatch):
    """Stopped (and checkpointed) inside both windows, or at their edges, then resumed: every file
    equals the uninterrupted run's. (A stop asked for while epoch e is written takes effect after
    epoch e + 1, the chunk already in flight.)"""
    reference = runs[0]
    out = tmp_path / "run"
    append = rundir.RunWriter.append
    current = {}

    def append_then_stop(self, *a, **k):
        append(self, *a, **k)
        if self.epoch >= current["stop"].epoch:
            current["stop"].requested, current["stop"].name = True, "SIGINT"

    monkeypatch.setattr(rundir.RunWriter, "append", append_then_stop)
    for i, epoch in enumerate(stops):
        current["stop"] = StopAfter(epoch - 1)
        with pytest.raises(Interrupted, match=f"after epoch {epoch} of {EPOCHS}"):
            if i == 0:
                runner.run(windowed(), out, progress=False, checkpoint_epochs=1, stop=current["stop"])
            else:
                runner.run(runner.resume_config(out), out, progress=False, resume=True, checkpoint_epochs=1,
                           stop=current["stop"])
        assert rundir.read_progress(out)["checkpoint_epoch"] == epoch
    monkeypatch.setattr(rundir.RunWriter, "append", append)
    runner.run(runner.resume_config(out), out, progress=False, resume=True)
    names = sorted(p.name for p in reference.glob("params_*.npz"))
    assert names == sorted(p.name for p in out.glob("params_*.npz")) and len(names) == 4
    for name in names:
        a, b = rundir.load_params(out, name), rundir.load_params(reference, name)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")
    np.testing.assert_array_equal(np.load(out / rundir.TRAJECTORY), np.load(reference / rundir.TRAJECTORY))
    untimed = lambda m: {k: v for k, v in m.items() if k != "timing"}
    assert untimed(rundir.load_metrics(out)) == untimed(rundir.load_metrics(reference))


def comparable(result: dict) -> dict:
    """An analysis.json without what names the directory or the kind of recording."""
    return {k: v for k, v in result.items() if k not in ("run", "recording")}


def test_a_window_analyses_as_a_run_that_recorded_only_that_window(runs, tmp_path):
    run = tmp_path / "windowed"
    shutil.copytree(runs[0], run)
    result = analyze.analyze(run, progress=False, figures=False)
    age = WINDOWS[1]
    only = tmp_path / "only"
    runner.run(build(epochs=age + W, record_epochs=W), only, progress=False)
    alone = analyze.analyze(only, progress=False, figures=False)
    window = rundir.load_analysis(rundir.window_dir(run, age))
    assert window["recording"] == dict(age=age, epochs=W, end_epoch=age + W, final=False)
    assert comparable(window) == comparable(alone)
    assert (rundir.window_dir(run, age) / rundir.REPORT).read_text().count(f"Recording window at age {age}") == 1
    # the final recording is analysed as before, and the age table has one row per recording
    assert result["recording"]["final"] and result["trajectory"]["steps"] == RECORD * 200
    assert [r["age"] for r in result["ages"]["groups"][0]["rows"]] == [*WINDOWS, EPOCHS - RECORD]
    assert socjax.load_run(run, age).analysis == window


def known_decay(rng, share: float, rows: int) -> np.ndarray:
    """A float32 series of `rows` whose steps leave it unchanged (pure decay: lr l2 = 1e-8 is below
    float32 resolution) with probability `share`, else move it towards 0 by a |dw| of the paper's
    shape (>= 1e-3, far above float32 resolution)."""
    dw = synthetic.sample("paper", rng, rows - 1, gamma=1.5, xmin=1e-3, tau=0.05)
    moves = rng.random(rows - 1) >= share
    w = np.empty(rows)
    w[0] = 0.01
    for t in range(rows - 1):
        w[t + 1] = w[t] - np.copysign(dw[t], w[t]) if moves[t] else w[t]
    return w.astype(np.float32)


# pure-decay share per recording (windows at 1 and 4, then the final recording) and seed: it
# moves between the windows, and (a run to whose end the window at 4 is compared) settles or not
SHARES = {"settled": [(0.2, 0.3, 0.25), (0.5, 0.6, 0.55), (0.5, 0.6, 0.55)],
          "moving": [(0.2, 0.3, 0.25), (0.5, 0.6, 0.55), (0.8, 0.85, 0.82)]}


@pytest.mark.parametrize("case", list(SHARES))
def test_the_age_table_of_a_run_with_known_decay_per_window(runs, case, tmp_path):
    """The windowed run with its trajectory replaced, per recording and seed, by series of known
    pure-decay share: the table's per-seed numbers are the shares counted in the series, its means
    and intervals are across_seeds', and "moving" is scipy's paired t test of the last two rows."""
    run = tmp_path / "run"
    shutil.copytree(runs[0], run, ignore=shutil.ignore_patterns("checkpoint.npz"))
    info = rundir.read_info(run)
    traj = np.load(run / rundir.TRAJECTORY)
    rng = np.random.default_rng(7)
    counted = []  # per recording: the share of unchanged steps of each seed's series, pooled over weights
    for rec, shares in zip(rundir.recordings(run, info), SHARES[case]):
        seeds = []
        for r, share in enumerate(shares):
            series = np.stack([known_decay(rng, share, rec.steps) for _ in range(traj.shape[2])], axis=1)
            traj[r, rec.row:rec.row + rec.steps] = series
            seeds.append(float(np.mean(np.diff(series, axis=0) == 0)))
        counted.append(seeds)
    np.save(run / rundir.TRAJECTORY, traj)
    table = analyze.analyze(run, progress=False, figures=True)["ages"]
    assert table == json.loads((run / rundir.AGES).read_text()) and (run / rundir.AGES_FIGURE).exists()
    rows = table["groups"][0]["rows"]
    assert [r["age"] for r in rows] == [1, 4, 8] and [r["final"] for r in rows] == [False, False, True]
    for row, seeds in zip(rows, counted):
        np.testing.assert_allclose(row["per_seed"]["decay_fraction"], seeds, rtol=1e-12)
        x = row["numbers"]["decay_fraction"]
        half = sps.t.ppf(0.975, 2) * np.std(seeds, ddof=1) / np.sqrt(3)
        np.testing.assert_allclose([x["mean"], *x["ci95"]], [np.mean(seeds), np.mean(seeds) - half,
                                                             np.mean(seeds) + half], rtol=1e-10)
    decay = next(c for c in table["groups"][0]["claims"] if c["key"] == "decay")
    want = sps.ttest_rel(counted[2], counted[1])
    np.testing.assert_allclose([decay["change"], decay["p"]], [np.mean(np.subtract(counted[2], counted[1])),
                                                               want.pvalue], rtol=1e-9)
    assert decay["moving"] is (case == "moving") and decay["since_age"] == 4 and decay["last_age"] == 8
    assert decay["holds_last"] == "yes" and decay["comparable"] is False  # 3-epoch windows, 2-epoch final
    text = report.write(run, rundir.load_analysis(run) | {"ages": table}).read_text()
    assert "## Age: each claim's measure as the network trains" in text
    assert f"| {decay['claim']} | decay_fraction | yes (age 8) |" in text
