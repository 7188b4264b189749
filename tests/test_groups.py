"""Groups of runs in the analysis: one answer per setting, intervals across seeds, results a
notebook can load (socjax.load_run) and figures redrawn from them (socjax plot)."""

from __future__ import annotations

import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats as sps

import socjax
from socjax import analyze, report, rundir
from socjax.analysis import groups, increments, loghist, powerlaw, spectrum, synthetic

from test_analysis_run import write_minimal_run
from test_cli import main


def test_runs_are_grouped_by_setting_in_order_of_appearance():
    runs = [dict(seed=s, lr=lr, l2=l2) for s in (0, 1) for lr in (1e-3,) for l2 in (0.0, 5e-4)]
    got, swept = groups.group_runs(runs, 4)
    assert swept == ["l2"]
    assert [g.runs for g in got] == [(0, 2), (1, 3)]
    assert [g.seeds for g in got] == [(0, 1), (0, 1)]
    assert [g.label for g in got] == ["l2=0", "l2=0.0005"]
    assert got[1].settings == dict(lr=1e-3, l2=5e-4)
    two, swept = groups.group_runs([dict(seed=0, lr=1e-3, l2=0.0), dict(seed=0, lr=2e-3, l2=1e-4)], 2)
    assert swept == ["l2", "lr"] and two[1].label == "l2=0.0001, lr=0.002"
    one, swept = groups.group_runs([dict(seed=s, lr=1e-3, l2=5e-4) for s in range(3)], 3)
    assert swept == [] and len(one) == 1 and one[0].runs == (0, 1, 2) and one[0].label == "l2=0.0005, lr=0.001"
    none, swept = groups.group_runs(None, 2)  # a minimal directory: no settings recorded
    assert swept == [] and none[0].runs == (0, 1) and none[0].label == "all runs"


def test_across_seeds_is_the_t_interval_of_the_mean():
    v = [1.0, 2.0, None, 4.0, float("nan")]
    got = groups.across_seeds(v)
    good = np.array([1.0, 2.0, 4.0])
    half = sps.t.ppf(0.975, 2) * good.std(ddof=1) / np.sqrt(3)
    assert got["n"] == 3 and got["of"] == 5 and got["values"][2] is None
    np.testing.assert_allclose([got["mean"], got["sd"], *got["ci95"]],
                               [good.mean(), good.std(ddof=1), good.mean() - half, good.mean() + half])
    assert groups.across_seeds([3.0])["ci95"] is None and groups.across_seeds([None])["mean"] is None


def test_seed_exponents_mean_and_t_interval_cover_the_truth():
    """Each seed's |dw| follows a power law whose exponent scatters around mu across seeds (as
    seeds of one setting may): over 40 repetitions of 4 seeds, the mean of the fitted exponents is
    unbiased and the t interval across seeds covers mu in about 95% of them."""
    rng = np.random.default_rng(7)
    mu, spread, covered, means = 1.4, 0.05, 0, []
    for _ in range(40):
        fitted = []
        for _seed in range(4):
            x = synthetic.sample("power_law", rng, 4000, gamma=mu + spread * rng.standard_normal(), xmin=1e-3, xmax=10.0)
            h = loghist.from_samples(x)  # the exact bounded power-law MLE over the populated bins
            i, j = int(np.argmax(h.counts > 0)), int(np.flatnonzero(h.counts)[-1]) + 1
            fitted.append(float(powerlaw.fit_range(h, i, j)[0][0]))
        s = groups.across_seeds(fitted)
        covered += s["ci95"][0] <= mu <= s["ci95"][1]
        means.append(s["mean"])
    assert covered >= 34, covered  # nominal 38 of 40; P(<= 33 | 95%) < 0.3%
    assert abs(np.mean(means) - mu) < 3 * np.std(means) / np.sqrt(40)


def test_group_claims_need_the_pooled_verdict_and_most_seeds():
    """GROUP_RULE: the pooled verdict when more than half of the seeds reach it too, else not
    resolved (an analysis of two-valued `holds` only is read as yes / no / not tested)."""
    def claim(holds):
        return [dict(key="k", claim="c", rule="r", measured="m", holds=holds, needed=None if holds else "x")]

    def combined(pooled, seeds):
        return report.group_claims(claim(pooled), [claim(s) for s in seeds])[0]

    assert combined(True, [True, True, False])["verdict"] == "yes"
    c = combined(True, [True, False, False])
    assert c["verdict"] == "not resolved" and c["holds"] is None and c["holds_pooled"] is True
    assert c["seeds_holding"] == 1 and "1 of 3" in c["needed"]
    assert combined(True, [True, False])["verdict"] == "not resolved"  # half is not most
    assert combined(False, [True, True, True])["verdict"] == "not resolved"  # the seeds disagree with the pool
    assert combined(False, [False, True, False])["verdict"] == "no"
    assert combined(None, [True, True])["verdict"] == "not tested"
    assert combined(True, [False])["holds"] is True  # one seed: the pooled verdict is that seed's


# --- a run directory with two settings of known, different statistics -------------------------

GAMMA = {0: 1.5, 1: 1.0}  # per group: exponent of |dw|
STEPS = 24_000


def restoring(rng, gamma):
    """A stationary walk (each step pulls w towards 0): |dw| is exactly the power-law draws, and the
    spectrum is flat at low f (a = 0)."""
    x = synthetic.sample("power_law", rng, STEPS - 1, gamma=gamma, xmin=1e-3, xmax=1.0)
    return synthetic.trajectory(rng, x, 0.0, 1.0)[:STEPS]


def free_walk(rng, gamma):
    """A random walk with random signs: |dw| ~ |dw|^-gamma exp(-|dw|^2 / 2) from 0.05 (the paper's
    shape; float32 rounding is small against 0.05 while |w| stays below ~1000) and P(f) ~ 1/f^2
    (a = 2). (A hard upper bound would not do: pooling divides each series by its own median,
    which smears a bound over a few bins and biases a bounded fit by about 0.01.)"""
    x = synthetic.sample("paper", rng, STEPS - 1, gamma=gamma, xmin=0.05, tau=np.sqrt(2.0))
    return np.concatenate([[0.0], np.cumsum(x * rng.choice([-1.0, 1.0], x.size))]).astype(np.float32)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """4 runs: seeds 0, 1 x l2 in (0, 1e-4); group l2=0 holds stationary walks, group l2=1e-4 free
    random walks, with different |dw| exponents; 3 tracked weights each; a metrics.json."""
    rng = np.random.default_rng(3)
    runs = [dict(seed=s, lr=1e-3, l2=l2) for s in (0, 1) for l2 in (0.0, 1e-4)]
    traj = np.stack([np.stack([(restoring if r["l2"] == 0 else free_walk)(rng, GAMMA[r["l2"] > 0])
                               for _ in range(3)], axis=1) for r in runs])
    run = tmp_path_factory.mktemp("sweep") / "run"
    write_minimal_run(run, traj, runs=runs)
    metrics = dict(epoch=[1, 2], test_loss=[[0.5, 0.4, 0.6, 0.45], [0.3, 0.35, 0.32, 0.36]],
                   test_acc=[[0.8, 0.82, 0.79, 0.81], [0.9, 0.88, 0.91, 0.87]], timing={})
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = analyze.analyze(run, progress=False)
    return run, traj, runs, metrics, result


def test_each_group_gets_its_own_exponents_never_the_mixture(sweep):
    run, traj, runs, _, res = sweep
    assert [g["label"] for g in res["groups"]] == ["l2=0", "l2=0.0001"] and res["swept"] == ["l2"]
    for g in res["groups"]:
        truth, other = GAMMA[g["group"]], GAMMA[1 - g["group"]]
        lo, hi = g["increments"]["model"]["gamma_ci95"]
        assert lo <= truth <= hi and not lo <= other <= hi, (g["label"], lo, hi)
    stationary, walk = (g["spectrum"] for g in res["groups"])
    assert abs(stationary["a_low"]["value"]) < 0.3 and abs(walk["a_low"]["value"] - 2) < 0.15
    assert stationary["a_low"]["n_series"] == walk["a_low"]["n_series"] == 6
    # pooling the two settings (what the analysis did before groups) gives neither
    st = increments.stream(traj, [r["lr"] for r in runs], [r["l2"] for r in runs], stride=1)
    mixed, _ = increments.pooled_summary(st)
    assert all(abs(mixed["model"]["gamma"] - g) > 0.1 for g in GAMMA.values()), mixed["model"]["gamma"]
    for w in res["per_weight"]:
        assert (w["lr"], w["l2"], w["group"]) == (1e-3, runs[w["run"]]["l2"], int(runs[w["run"]]["l2"] > 0))
        assert w["seed"] == runs[w["run"]]["seed"]


def test_a_group_equals_the_analysis_of_its_runs_alone(sweep, tmp_path):
    """Per group, the numbers and the arrays the figures are drawn from equal those of a
    directory holding only that group's runs (a second, separate pass over other data)."""
    run, traj, runs, _, res = sweep
    loaded = socjax.load_run(run)
    for g in res["groups"]:
        alone = tmp_path / f"alone{g['group']}"
        write_minimal_run(alone, traj[g["runs"]], runs=[runs[r] for r in g["runs"]])
        one = analyze.analyze(alone, progress=False, figures=False)["groups"]
        assert len(one) == 1
        for key in ("gamma", "gamma_ci95", "beta", "xmin", "selected"):
            assert one[0]["increments"]["model"][key] == g["increments"]["model"][key], key
        for band in ("a_low", "a_high"):  # the FFTs run in batches of other sizes: equal to rounding
            mine, theirs = g["spectrum"][band], one[0]["spectrum"][band]
            assert [mine["value"], *mine["ci95"]] == pytest.approx([theirs["value"], *theirs["ci95"]], rel=1e-9)
        mine, theirs = loaded.histogram(g["group"]), socjax.load_run(alone).histogram(0)
        np.testing.assert_array_equal(mine.counts, theirs.counts)
        np.testing.assert_allclose(mine.offsets, theirs.offsets, rtol=1e-12)
        f, psd, _ = spectrum.welch(traj[g["runs"]], 1, res["spectrum_settings"]["segment"])
        got = loaded.spectrum(g["group"])
        np.testing.assert_allclose(got["geomean"][1:], 10 ** np.log10(psd[:, 1:]).mean(0), rtol=1e-10)
        np.testing.assert_allclose(got["p84"], np.percentile(psd, 84, axis=0), rtol=1e-10)


def test_seeds_of_a_group_are_summarised_and_judged(sweep):
    _, _, _, _, res = sweep
    for g in res["groups"]:
        members = [res["per_run"][r] for r in g["runs"]]
        assert [m["group"] for m in members] == [g["group"]] * 2
        gammas = [m["increments"]["model"]["gamma"] for m in members]
        s = g["across_seeds"]["gamma"]
        assert s["values"] == gammas and s["mean"] == pytest.approx(np.mean(gammas))
        assert s["ci95"][0] < s["mean"] < s["ci95"][1]
        for c in g["claims"]:
            seeds = [next(x["holds"] for x in m["claims"] if x["key"] == c["key"]) for m in members]
            assert c["seeds_holding"] == sum(v is True for v in seeds)
            if c["holds"]:
                assert c["holds_pooled"] and 2 * c["seeds_holding"] > 2
    # the overfitting check per group: the mean test loss of its runs (metrics.json)
    assert res["groups"][0]["test"]["loss_last"] == pytest.approx((0.3 + 0.32) / 2)
    assert res["per_run"][3]["test"]["accuracy_last"] == 0.87
    md = report.write(sweep[0], res).read_text()
    assert "## Sweep: the groups side by side" in md and md.count("## Group ") == 2
    assert "| claim | measured (pooled over the seeds) | seeds: yes / same verdict as pooled | verdict |" in md
    assert report.GROUP_RULE in md


def test_load_run_round_trips(sweep):
    run, traj, runs, metrics, res = sweep
    loaded = socjax.load_run(run)
    assert loaded.analysis == json.loads((run / "analysis.json").read_text())
    assert loaded.analysis["schema_version"] == 2 and loaded.analysis["socjax"] == socjax.__version__
    assert loaded.config is None and [t.row for t in loaded.tracked] == [0, 1, 2]
    assert [(r["seed"], r["l2"], r["group"]) for r in loaded.runs] == [(0, 0.0, 0), (0, 1e-4, 1), (1, 0.0, 0), (1, 1e-4, 1)]
    np.testing.assert_array_equal(loaded.trajectory[:, 0:STEPS, :], traj.astype(np.float32))
    m = loaded.metrics
    assert len({len(v) for v in m.values()}) == 1 and len(m["value"]) == 2 * 4 * 2  # epochs x runs x metrics
    for name in ("test_loss", "test_acc"):
        for e in (1, 2):
            for r in range(4):
                row = np.flatnonzero((m["metric"] == name) & (m["epoch"] == e) & (m["run"] == r))
                assert row.size == 1 and m["value"][row[0]] == metrics[name][e - 1][r]
                assert m["l2"][row[0]] == runs[r]["l2"] and m["seed"][row[0]] == runs[r]["seed"]
    with np.load(run / "analysis.npz") as z:
        assert set(z.files) == set(loaded.arrays)


def pixels(path):
    return plt.imread(path)


def test_plot_redraws_the_figures_analyze_wrote(sweep, tmp_path, capsys):
    run, *_ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    drawn = {p.name: pixels(p) for p in rundir.derived_figures(copy)}
    # sweep.png, and per group figs. 2-4 and the two paper-style figures (no Fig. 1: no parameters)
    assert "sweep.png" in drawn and "fig2_paper_l2=0.0001.png" in drawn and len(drawn) == 1 + 2 * 5
    (copy / "trajectory.npy").unlink()  # plot never reads it
    for p in rundir.derived_figures(copy):
        p.unlink()
    assert main(["plot", str(copy)]) == 0
    assert sorted(p.name for p in rundir.derived_figures(copy)) == sorted(drawn)
    for name, img in drawn.items():
        np.testing.assert_array_equal(pixels(copy / name), img, err_msg=name)
    assert "wrote" in capsys.readouterr().out


def test_a_run_analysed_by_an_earlier_socjax_is_named_so(tmp_path, capsys):
    """The previous layout: one pooled analysis.json without schema_version, no metrics.json. The
    run still analyses (one group); until then load_run says why it has no analysis."""
    rng = np.random.default_rng(0)
    run = tmp_path / "old"
    write_minimal_run(run, np.cumsum(rng.standard_t(3, size=(1, 4000, 2)) * 1e-4, axis=1) + 0.1,
                      runs=[dict(seed=0, lr=2e-3, l2=5e-4)])
    (run / "analysis.json").write_text(json.dumps(dict(increments={}, spectrum={}, per_weight=[])))
    old = socjax.load_run(run)
    assert old.analysis is None and "schema 1" in old.stale
    assert main(["plot", str(run)]) == 2
    assert "run `socjax analyze" in capsys.readouterr().err
    assert main(["analyze", str(run), "--no-progress"]) == 0
    new = socjax.load_run(run)
    assert len(new.groups) == 1 and new.groups[0]["runs"] == [0]
    assert any("metrics.json" in w for w in new.analysis["warnings"])
    assert "no usable metrics.json" in capsys.readouterr().err


def test_the_minimal_run_directory_of_the_readme_reports(tmp_path, capsys):
    """trajectory.npy, tracked.json and config.json with only `trajectory` and `config.runs` lr/l2:
    analysed and reported like any other (report.md once failed on the missing epochs)."""
    rng = np.random.default_rng(1)
    run = tmp_path / "minimal"
    write_minimal_run(run, np.cumsum(rng.standard_t(3, size=(2, 3000, 2)) * 1e-4, axis=1) + 0.1,
                      runs=[dict(lr=2e-3, l2=5e-4), dict(lr=2e-3, l2=1e-4)])
    assert main(["analyze", str(run), "--no-progress"]) == 0
    md = (run / "report.md").read_text()
    assert "2 run(s) (lr=0.002, l2=0.0005; lr=0.002, l2=0.0001)" in md and md.count("## Group ") == 2
    a = json.loads((run / "analysis.json").read_text())
    assert [g["label"] for g in a["groups"]] == ["l2=0.0005", "l2=0.0001"]
    assert a["per_run"][0]["seed"] is None
