"""The analysis pipeline on real trainer output and on run directories, good and bad."""

from __future__ import annotations

import json
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import analyze, model, rundir, train
from socjax.analysis import increments, loghist, peers, verdicts
from socjax.config import ModelConfig, TrackedWeight
from socjax.step import xla_step

from test_cli import main, socjax

LR, L2 = 2e-3, 5e-4


@pytest.fixture(scope="module")
def recorded(mini):
    """A small network trained step by step in Python: the tracked weights after every step and
    the exact gradient of each at every step (the ground truth for pure weight decay)."""
    cfg = ModelConfig(sizes=(784, 32, 16, 10))
    tracked = tuple(TrackedWeight.mlp(1, r, c) for r, c in ((150, 3), (400, 7), (10, 0), (600, 31))) + (
        TrackedWeight.mlp(2, 5, 5), TrackedWeight.mlp(2, 20, 9))
    state = train.init_state(jax.random.key(0), cfg)
    hyper = train.Hyper(jnp.float32(LR), jnp.float32(L2))
    step = jax.jit(lambda p, o, x, y: xla_step(p, o, x, y, hyper, cfg)[:4])
    grad = jax.jit(jax.grad(lambda p, x, y: train.model.data_loss(train.model.apply(p, x), y, "mse")))
    params, opt = state.params, state.opt_state
    values = [np.asarray(model.tracked_values(params, tracked))]
    grads = []
    for i in range(1500):
        x, y = mini.train_x[i], mini.train_y[i]
        g = grad(params, x, y)
        grads.append([float(g[t.layer - 1].w[t.row, t.col]) for t in tracked])
        params, opt, _, _ = step(params, opt, x, y)
        values.append(np.asarray(model.tracked_values(params, tracked)))
    return np.array(values, np.float32)[None], np.array(grads)


def test_pure_decay_steps_are_exactly_the_zero_gradient_steps(recorded):
    traj, grads = recorded
    st = increments.stream(traj, [LR], [L2], stride=1, blocks=1)
    w = traj[0].astype(np.float64)
    resid = np.abs(w[1:] - w[:-1] * (1 - LR * L2))
    classified = resid <= 2 * np.spacing(np.abs(traj[0, :-1])).astype(np.float64)
    truth = grads == 0
    assert truth.mean() > 0.3  # blank pixels and inactive neurons: decay is common
    np.testing.assert_array_equal(classified, truth)
    np.testing.assert_array_equal(st.n_decay, truth.sum(0))


def test_a_pool_in_median_units_leaves_out_a_series_without_a_unit():
    """A series whose every increment is decay (its zero-gradient flags all set) has no median
    non-decay |dw|: pooling the decay increments with the others' in median units leaves it out,
    so the pool equals the pool of the other series alone (it once entered with the grid's first
    edge as its unit: its increments past the grid's top, the pool's window widened to 1e39)."""
    rng = np.random.default_rng(0)
    steps = 3000
    traj = np.cumsum(rng.standard_normal((1, steps, 3)) * [1e-3, 1e-4, 1e-2], axis=1).astype(np.float32)
    flags = np.zeros(traj.shape, bool)
    flags[0, 1:, 2] = True  # series 2: pure decay
    flags[0, 1::7, :2] = True  # some decay in the others too
    st = increments.stream(traj, [LR], [L2], stride=1, zero_grad=flags)
    assert st.hist.take(2).counts.sum() == 0 and st.hist_decay.take(2).counts.sum() == steps - 1
    both = st.hist + st.hist_decay
    pool = increments.pooled(st, hist=both)
    alone = increments.pooled(st, series=[0, 1], hist=both)
    for field in ("counts", "offsets", "under", "over"):
        np.testing.assert_array_equal(getattr(pool.full(), field), getattr(alone.full(), field), err_msg=field)
    assert (pool.origin, pool.stop) == (alone.origin, alone.stop)
    assert pool.counts.sum() == both.take(0).counts.sum() + both.take(1).counts.sum()
    assert pool.grid.edges()[pool.stop] < 1e3  # in median units: a few decades around 1


def test_streamed_histogram_equals_numpy_and_is_chunk_independent(recorded):
    traj, _ = recorded
    whole = increments.stream(traj, [LR], [L2], stride=1, blocks=3)
    chunked = increments.stream(traj, [LR], [L2], stride=1, blocks=3, chunk_rows=37)
    np.testing.assert_array_equal(whole.hist.origin, chunked.hist.origin)
    for a, b in zip((whole.hist.counts, whole.n_decay, whole.moments), (chunked.hist.counts, chunked.n_decay, chunked.moments)):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    dw = np.diff(traj[0].astype(np.float32), axis=0)
    w = traj[0, :-1].astype(np.float64)
    keep = ~(np.abs(traj[0, 1:] - w * (1 - LR * L2)) <= 2 * np.spacing(np.abs(traj[0, :-1]))) & (dw != 0)
    for k in range(traj.shape[2]):
        ref = loghist.from_samples(np.abs(dw[keep[:, k], k]))
        mine = whole.hist.take(k).sum(0)
        assert mine.counts.size < ref.counts.size  # a window of the grid, not all of it
        np.testing.assert_array_equal(mine.full().counts, ref.counts)
        np.testing.assert_allclose(mine.full().offsets, ref.offsets, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(whole.moments[k, 1], (dw[keep[:, k], k].astype(np.float64) ** 2).sum(), rtol=1e-6)


@pytest.mark.parametrize("l2", [0.0, L2])
def test_padded_chunks_count_only_their_own_increments(l2):
    """A chunk is padded to a bucket of rows by repeating its last row (one compiled program per
    bucket): its padded increments are 0, which with l2 = 0 (decay factor 1) is what pure decay
    looks like, and must count nowhere. Decay, zero and non-finite counts, histogram totals and
    moments equal NumPy's on the trajectory, in chunks of any length."""
    rng = np.random.default_rng(1)
    traj = (np.cumsum(rng.standard_normal((2, 1000, 3)), axis=1) * 1e-3).astype(np.float32)
    traj[0, 100:140, 0] = traj[0, 99, 0]  # a stretch without motion: 40 increments of exactly 0
    traj[1, 500, 2] = np.nan  # two non-finite increments
    w = traj.astype(np.float64)
    dw = np.diff(traj, axis=1)
    finite = np.isfinite(dw)
    with np.errstate(invalid="ignore"):
        decay = finite & (np.abs(w[:, 1:] - w[:, :-1] * (1 - LR * l2)) <= 2 * np.spacing(np.abs(traj[:, :-1])))
    counted = finite & ~decay & (dw != 0)
    per_series = lambda x: x.sum(1).reshape(-1)  # series s = run * 3 + weight
    moment2 = per_series(np.where(counted, dw.astype(np.float64), 0.0) ** 2)
    for chunk_rows in (None, 37, 100):
        st = increments.stream(traj, [LR] * 2, [l2] * 2, stride=1, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(st.n_decay, per_series(decay))
        np.testing.assert_array_equal(st.n_zero, per_series(finite & ~decay & (dw == 0)))
        np.testing.assert_array_equal(st.n_nonfinite, per_series(~finite))
        np.testing.assert_array_equal([st.hist.take(k).counts.sum() for k in range(6)], per_series(counted))
        np.testing.assert_allclose(st.moments[:, 1], moment2, rtol=1e-9)
    assert per_series(decay)[0] >= (40 if l2 == 0 else 0) and per_series(~finite)[5] == 2


def write_minimal_run(path, traj, stride=1, runs=None):
    path.mkdir()
    np.save(path / "trajectory.npy", traj.astype(np.float32))
    (path / "tracked.json").write_text(json.dumps([dict(layer=1, row=k, col=0) for k in range(traj.shape[2])]))
    cfg = {"trajectory": {"stride": stride, "first_step": 1}}
    if runs is not None:
        cfg["config"] = {"runs": runs}
    (path / "config.json").write_text(json.dumps(cfg))


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_minimal_run_directory(tmp_path):
    """Only trajectory.npy, tracked.json and a minimal config.json: increments and spectrum, no Fig. 1."""
    rng = np.random.default_rng(0)
    steps = rng.standard_t(3, size=(2, 20_000, 3)) * 1e-4
    run = tmp_path / "run"
    write_minimal_run(run, np.cumsum(steps, axis=1) + 0.1)
    res = analyze.analyze(run, progress=False)
    (group,) = res["groups"]  # no settings recorded: the two runs are one group
    assert group["runs"] == [0, 1] and group["label"] == "all runs"
    assert group["neurons"]["skipped"] == "no params_final.npz"
    assert any("weight-decay" in w for w in res["warnings"])
    assert len(res["per_weight"]) == 6 and group["increments"]["decay_fraction"] == 0
    assert 1.8 < group["spectrum"]["a_high"]["value"] < 2.2  # a random walk
    for name in analyze.FIGURES[1:4]:
        assert png_size(run / name) == (1200, 450)
    # the paper's way: two weights of the one tracked parameter in a row; 3a above 3b for each
    assert png_size(run / "fig2_paper.png") == (1100, 400) and png_size(run / "fig3_paper.png") == (840, 750)
    assert group["paper_weights"] and all(0 <= s < 3 for s in group["paper_weights"])
    assert not (run / "fig1_neurons.png").exists()
    json.loads((run / "analysis.json").read_text())  # strict JSON: no NaN
    # the peers' estimators on the increments taken a second way: np.diff of the whole trajectory
    # (no lr/l2 recorded, so no increment is decay; steps that round to 0 in float32 are left out,
    # as from every fit), series s = r * 3 + k
    traj = np.load(run / "trajectory.npy")
    diffs = [np.diff(traj[r, :, k]).astype(np.float64) for r in range(2) for k in range(3)]
    samples = [d[d != 0] for d in diffs]
    peers_entry = group["peers"]
    assert peers_entry["last_steps"] == 19_999 and peers_entry["increments"] == sum(map(len, samples)) > 6 * 19_990
    assert peers_entry["tail_index"]["pooled"] == json.loads(json.dumps(peers.tail_index_pooled(samples)))
    per = [{k: v for k, v in e.items() if k != "values"} for e in peers.tail_index_per_series(samples)]
    assert peers_entry["tail_index"]["per_weight"] == json.loads(json.dumps(per))
    assert res["per_weight"][4]["peers"]["alpha"]["100"] == pytest.approx(peers.mohammadi(samples[4] - samples[4].mean(), 100))
    units = np.concatenate([np.abs(x) / np.median(np.abs(x)) for x in samples])
    assert peers_entry["csn"]["alpha"] == pytest.approx(peers.csn_fit(units)["alpha"], rel=1e-12)
    null = group["spectrum"]["null"]
    assert null["a_low"]["series"] == 6 and null["verdict_low_below_null"] in verdicts.VERDICTS


def test_bad_run_directories(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "run directory not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert main(["analyze", str(bad), "--no-progress"]) == 2
    assert "malformed JSON" in capsys.readouterr().err
    short = tmp_path / "short"
    write_minimal_run(short, np.zeros((1, 1, 2)))
    assert main(["analyze", str(short), "--no-progress"]) == 2
    assert "no increments" in capsys.readouterr().err
    untracked = tmp_path / "untracked"  # trained with --track 0
    write_minimal_run(untracked, np.zeros((1, 100, 0)))
    assert main(["analyze", str(untracked), "--no-progress"]) == 2
    assert "tracked.json: lists no weights (the run was trained with --track 0)" in capsys.readouterr().err


def test_short_constant_and_nan_trajectories_are_flagged(tmp_path):
    rng = np.random.default_rng(1)
    traj = np.cumsum(rng.normal(size=(1, 300, 3)) * 1e-4, axis=1) + 0.1
    traj[0, :, 1] = 0.25  # constant
    traj[0, 100:110, 2] = np.nan
    run = tmp_path / "run"
    write_minimal_run(run, traj, runs=[dict(seed=0, lr=LR, l2=L2)])
    res = analyze.analyze(run, progress=False)
    text = " ".join(res["warnings"])
    assert "too short for a spectrum" in text
    assert "constant or pure decay" in text and "non-finite values" in text
    assert res["groups"][0]["spectrum"].get("error")
    assert res["per_weight"][1]["powerlaw"] is None


def test_a_constant_trajectory_tests_no_claim(tmp_path):
    """All-zero weights are all 'pure decay' (0 = 0 (1 - lr l2)): a number, but no evidence."""
    from socjax import report

    run = tmp_path / "run"
    write_minimal_run(run, np.zeros((1, 3000, 2)), runs=[dict(seed=0, lr=LR, l2=L2)])
    res = analyze.analyze(run, progress=False, figures=False)
    group = res["groups"][0]
    assert group["increments"]["decay_fraction"] == 1.0 and group["increments"]["fluctuating"] == 0
    assert any(w.startswith("every series is constant or pure decay") for w in res["warnings"])
    claims = {c["key"]: c for c in report.claims(group, res["trajectory"]["steps"])}
    assert {c["key"]: c["holds"] for c in group["claims"]} == {k: c["holds"] for k, c in claims.items()}
    assert claims["decay"]["measured"].startswith("not testable")
    assert all(c["holds"] is None for c in claims.values()), claims  # nothing is "yes", nothing "no"


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "r"
    res = socjax("reproduce", "--preset", "smoke", "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def test_reproduce_smoke_writes_every_file(reproduced):
    out = reproduced
    for name in ("analysis.json", "report.md", *analyze.FIGURES):
        assert (out / name).stat().st_size > 0, name
    for name in analyze.FIGURES[:4]:
        assert png_size(out / name) == (1200, 450)
    # the paper's way: 2 weights of w1 and 2 of w2 in a 2 x 2 grid; 3a above 3b for each of the 4
    assert png_size(out / "fig2_paper.png") == (1100, 800) and png_size(out / "fig3_paper.png") == (1680, 750)
    a = json.loads((out / "analysis.json").read_text())
    assert len(a["groups"]) == 1 and sorted(p.name for p in rundir.derived_figures(out)) == sorted(analyze.FIGURES)
    pl = a["groups"][0]["increments"]["powerlaw"]
    for key in ("exponent", "stderr", "xmin", "xmax", "n", "ks", "loglik_ratio_vs_exponential",
                "loglik_ratio_vs_lognormal", "p_vs_exponential", "p_vs_lognormal"):
        assert key in pl
    model = a["groups"][0]["increments"]["model"]
    for key in ("gamma", "gamma_ci95", "xmin", "xend", "models", "tests", "selected", "scale_invariant", "is_power_law",
                "is_gaussian"):
        assert key in model
    assert set(model["models"]) == {"power_law", "exponential_cutoff", "gaussian_cutoff", "stretched_cutoff", "lognormal"}
    assert a["groups"][0]["increments"]["outside_grid"] == 0
    for band in ("a_low", "a_high"):
        assert len(a["groups"][0]["spectrum"][band]["ci95"]) == 2 and len(a["groups"][0]["spectrum"][band]["band"]) == 2
    assert len(a["per_weight"]) == 16
    report = (out / "report.md").read_text()
    assert "| claim | measured | verdict |" in report and "fig4_spectrum.png" in report


def markdown_cells(row: str) -> list[str]:
    """A Markdown table row's cells, as GitHub-flavoured Markdown splits them: on | not escaped as \\|."""
    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def test_report_claims_table_has_the_headers_cells_in_every_row(reproduced):
    lines = (reproduced / "report.md").read_text().splitlines()
    start = lines.index("| claim | measured | verdict |")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(markdown_cells(line))
    assert len(rows) >= 2 + 6  # header, rule, and the claims
    assert all(len(r) == 3 for r in rows), [r for r in rows if len(r) != 3]
    # the |dw| claims keep their measured values and verdicts in their own cells
    power = next(r for r in rows if "power law" in r[0])
    assert "gamma" in power[1] and power[2].strip() in ("yes", "**no**", "not resolved", "not tested")


def test_trajectory_reader_equals_np_load(tmp_path):
    from socjax import rundir

    arr = np.random.default_rng(2).normal(size=(3, 1000, 5)).astype(np.float32)
    np.save(tmp_path / "trajectory.npy", arr)
    reader = rundir.open_trajectory(tmp_path)
    assert reader.shape == arr.shape and reader.dtype == np.float32
    for t0, t1 in ((0, 1000), (17, 400), (990, 1200), (500, 500)):
        np.testing.assert_array_equal(reader[:, t0:t1, :], arr[:, t0:t1, :])
    with pytest.raises(TypeError):
        reader[0, :, :]
    # the written prefix of a partial run: rows beyond it are never read
    prefix = rundir.open_trajectory(tmp_path, rows=600)
    assert prefix.shape == (3, 600, 5)
    for t0, t1 in ((0, 600), (17, 400), (590, 1200)):
        np.testing.assert_array_equal(prefix[:, t0:t1, :], arr[:, :600][:, t0:t1, :])
