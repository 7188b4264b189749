"""The sensitivity table (socjax.analysis.sensitivity) on increments of known shape, its linear
bins against NumPy's histogram and its linear-bin fit against SciPy's maximisation of the same
binned likelihood, the eye's guides (socjax.analysis.guides) against np.polyfit over every
window, and what pooling weights of different cutoffs does to beta."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from socjax.analysis import cutoff, guides, increments, loghist, sensitivity, synthetic, verdicts

from test_cutoff import log_quad

Y, N, U = verdicts.YES, verdicts.NO, verdicts.UNRESOLVED


def test_linear_bin_fit_equals_scipy_on_the_same_binned_counts():
    """60 linear bins of x^-1.5 exp(-x^2 / 2) from 1e-3, fitted from the first edge: the model's
    parameters equal a Nelder-Mead maximisation of the same binned likelihood whose bins are
    integrated by quadrature."""
    rng = np.random.default_rng(1)
    x = synthetic.sample("paper", rng, 60_000, gamma=1.5, xmin=1e-3, tau=np.sqrt(2.0))
    width = x.max() / 60
    edges = width * np.arange(61)
    block_counts = np.stack([np.histogram(b, edges)[0] for b in np.array_split(x, 8)]).astype(float)
    fit = cutoff.fit_edges(block_counts, edges, 1, 1.5)
    m = fit["models"]["stretched_cutoff"]
    ours = np.array([m["gamma"], np.log(m["tau"]), m["beta"]])
    counts = block_counts.sum(0)[1:]
    last = np.flatnonzero(counts)[-1] + 1
    counts, e = counts[:last], edges[1 : last + 2]
    assert fit["xmin"] == pytest.approx(width) and fit["n"] == counts.sum()

    def nll(th):
        log_f = lambda t: -th[0] * np.log(t) - (t / np.exp(th[1])) ** th[2]
        logm = np.array([log_quad(log_f, a, b, pieces=1) for a, b in zip(e[:-1], e[1:])])
        top = np.exp(th[1]) * 800 ** (1 / th[2])
        return -np.dot(counts, logm - log_quad(log_f, e[0], top, pieces=16))

    ref = optimize.minimize(nll, ours + [0.02, 0.02, 0.05], method="Nelder-Mead",
                            options=dict(xatol=1e-7, fatol=1e-7, maxiter=3000)).x
    se = np.array([m["stderr"]["gamma"], m["stderr"]["ln_tau"], m["stderr"]["beta"]])
    assert np.all(np.abs(ours - ref) < 0.01 * se), (ours, ref, se)


def _windows_by_brute_force(u, v, ends_ok):
    best = None
    for i in range(len(u)):
        for j in range(i + 5, len(u) + 1):
            if not ends_ok(u[i], u[j - 1]) or (j - 1 > i and ends_ok(u[i], u[j - 2]) and j - 1 - i >= 5):
                continue  # not spanning, or not the shortest spanning window from i
            coef = np.polyfit(u[i:j], v[i:j], 1)
            rms = np.sqrt(np.mean((v[i:j] - np.polyval(coef, u[i:j])) ** 2))
            if best is None or rms < best[0]:
                best = (rms, i, j, coef)
    return best


def test_guides_are_the_straightest_windows_by_polyfit():
    rng = np.random.default_rng(0)
    u = np.sort(rng.uniform(-8, -3, 70))
    v = np.where(u < -5.5, -0.3 * u, -2.0 * u - 9.35) + 0.05 * np.sin(7 * u) ** 2 + rng.normal(0, 0.01, u.size)
    got = guides.straightest(u, v, 1.0)
    rms, i, j, coef = _windows_by_brute_force(u, v, lambda a, b: b - a >= 1.0 - 1e-12)
    assert (got["start"], got["stop"]) == (i, j)
    np.testing.assert_allclose([got["slope"], got["intercept"], got["rms"]], [coef[0], coef[1], rms], rtol=1e-9)
    local = [np.polyfit(u[k : k + 5], v[k : k + 5], 1)[0] for k in range(i, j - 4)]
    np.testing.assert_allclose([got["local_min"], got["local_max"]], [min(local), max(local)], rtol=1e-9)
    x2 = np.sort(rng.uniform(1, 400, 60))  # the Fig. 3b axes: a third of the dw^2 axis
    lnp = -x2 / 50 + 0.3 * np.sin(x2 / 30) + rng.normal(0, 0.02, x2.size)
    span = (x2.max() - x2.min()) / 3
    got = guides.straightest(x2, lnp, span)
    rms, i, j, coef = _windows_by_brute_force(x2, lnp, lambda a, b: b - a >= span - 1e-12)
    assert (got["start"], got["stop"]) == (i, j)
    np.testing.assert_allclose(got["slope"], coef[0], rtol=1e-9)


def test_decay_and_sign_histograms_equal_numpy():
    """A weight decaying by q each step (every increment pure decay, dw != 0) and a zigzag
    (alternating signs): the decay histogram and the dw < 0 histogram count exactly what NumPy
    finds, and the linear pass bins the non-decay |dw| as np.histogram does."""
    q = 1.0 - 1e-3

    def decaying(w0):  # w(t+1) = w(t) q in float32, step by step as training computes it
        w = [np.float32(w0)]
        for _ in range(800):
            w.append(np.float32(w[-1] * np.float32(q)))
        return np.array(w, np.float32)

    rng = np.random.default_rng(2)
    traj = np.zeros((2, 801, 2), np.float32)
    for r, w0 in enumerate((0.5, 1.5)):
        traj[r, :, 0] = decaying(w0)
        traj[r, 1::2, 1] = rng.uniform(1e-3, 1e-1, 400).astype(np.float32) * (r + 1)
    lr, l2 = [1.0, 1.0], [1e-3, 1e-3]
    st = increments.stream(traj, lr, l2, stride=1, blocks=4)
    grid = st.hist.grid
    whole = lambda h, s: h.take(s).full().counts.sum(0)  # series s on the whole grid, over the blocks
    for s in range(4):
        r, k = divmod(s, 2)
        dw = np.diff(traj[r, :, k].astype(np.float32))
        if k == 0:  # all pure decay
            assert st.n_decay[s] == 800 and st.hist.totals()[s] == 0
            np.testing.assert_array_equal(whole(st.hist_decay, s), loghist.from_samples(np.abs(dw), grid).counts)
        else:
            nz = dw[dw != 0]
            np.testing.assert_array_equal(whole(st.hist_negative, s), loghist.from_samples(-nz[nz < 0], grid).counts)
            np.testing.assert_array_equal(whole(st.positive(), s), loghist.from_samples(nz[nz > 0], grid).counts)
    widths = sensitivity.linear_widths(st, [[0, 1], [2, 3]])
    lin = increments.linear_stream(traj, lr, l2, 1, widths, blocks=4)
    for s in (1, 3):
        r = s // 2
        dw = np.abs(np.diff(traj[r, :, 1].astype(np.float32)).astype(np.float64))
        dw = dw[dw != 0]
        for w in range(2):
            want = np.histogram(np.minimum(dw, 59.5 * widths[w, s]), widths[w, s] * np.arange(61))[0]
            np.testing.assert_array_equal(lin[w, s].sum(0), want)
    # the pooled width in median units is the group's largest range over median, / 60
    med = grid.edges()[increments.scales(st)]
    top = sensitivity.tops(st)
    assert widths[1, 3] / med[3] == pytest.approx(top[3] / med[3] / 60)
    # and the pool's width in median units is its series with a unit's, whichever comes first (a
    # pure-decay first series once gave its width of 1 over the grid's first edge)
    for group, s in (([0, 1], 1), ([2, 3], 3), ([3, 2], 3)):
        assert sensitivity._median_units_width(st, widths, group) == pytest.approx(top[s] / med[s] / 60)
    assert sensitivity._median_units_width(st, widths, [0, 2]) == 0.0


@pytest.fixture(scope="module")
def known_run():
    """4 weights of the paper's shape (gamma 1.5, Gaussian cutoff 3 decades above xmin, 150,000
    increments each between 80% pure-decay steps): stream, linear pass, per-weight fits."""
    rng = np.random.default_rng(5)
    ws = [synthetic.trajectory(rng, synthetic.sample("paper", rng, 150_000, gamma=1.5, xmin=1e-7,
                                                     tau=np.sqrt(2) * 1e-4), 0.8, 1 - 1e-8) for _ in range(4)]
    steps = min(map(len, ws))
    traj = np.stack([w[:steps] for w in ws], axis=1)[None]
    st = increments.stream(traj, [2e-3], [5e-6], stride=1)
    widths = sensitivity.linear_widths(st, [[0, 1, 2, 3]])
    lin = increments.linear_stream(traj, [2e-3], [5e-6], 1, widths)
    per_weight = increments.per_series(st, [dict(weight=k) for k in range(4)])
    inc, _ = increments.pooled_summary(st)
    return st, lin, widths, per_weight, inc


def test_sensitivity_rows_on_a_run_of_known_answer(known_run):
    st, lin, widths, per_weight, inc = known_run
    rows = {r["key"]: r for r in sensitivity.table(st, lin, widths, range(4), per_weight, inc["model"])}
    assert list(rows) == list(sensitivity.REPRESENTATIONS)
    # log bins, either sign alone or both: the paper's shape, pooled and in every weight
    for key in ("nondecay_log", "positive_log", "negative_log"):
        r = rows[key]
        assert r["pooled"]["verdicts"] == dict(power_law=Y, gaussian=Y), (key, r["pooled"])
        assert r["pooled"]["gamma_ci95"][0] <= 1.5 <= r["pooled"]["gamma_ci95"][1], (key, r["pooled"])
        assert r["verdicts"]["gaussian"] == Y and r["weights"]["fitted"] == 4
    # the pure-decay steps of these weights leave w unchanged in float32: dw = 0, nothing to add
    assert st.hist_decay.counts.sum() == 0 and rows["all_log"]["pooled"]["n"] == rows["nondecay_log"]["pooled"]["n"]
    # linear bins put the three decades of power law into the first bin: no decade of it is left
    lin_row = rows["nondecay_linear"]
    assert lin_row["pooled"]["verdicts"]["power_law"] != Y and lin_row["verdicts"]["power_law"] != Y
    assert lin_row["pooled"]["decades"] < 1.0 and lin_row["pooled"]["verdicts"]["gaussian"] == Y


def test_pooling_weights_of_different_cutoffs_biases_beta():
    """Every weight exactly Gaussian-cut (beta = 2), the cutoff at 10 to 1000 times xmin across 8
    weights: each weight alone says Gaussian, the pool in median units is a stretched exponential
    far from 2; with all cutoffs alike the pool says Gaussian too (experiments/pooling_heterogeneity.py)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "pooling_heterogeneity", Path(__file__).resolve().parents[1] / "experiments" / "pooling_heterogeneity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mixed = mod.one(np.random.default_rng(0), 8, 60_000, 2.0)
    assert mixed["pooled"]["beta_ci95"][1] < 2.0 and mixed["pooled"]["verdicts"]["gaussian"] == N
    assert mixed["per_weight"]["beta_ci_holds_2"] >= 7 and mixed["per_weight"]["majority"]["gaussian"] == Y
    alike = mod.one(np.random.default_rng(1), 8, 60_000, 0.0)
    assert alike["pooled"]["beta_ci95"][0] <= 2.0 <= alike["pooled"]["beta_ci95"][1]
    assert alike["pooled"]["verdicts"]["gaussian"] == Y
