"""The model of the whole |dw| distribution (socjax.analysis.cutoff, incgamma) against numerical
integration, SciPy's maximisation on raw samples, and synthetic increments of known shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize

from socjax import analyze
from socjax.analysis import cutoff, incgamma, increments, loghist, synthetic
from socjax.analysis.increments import fit_distribution

from test_analysis_run import write_minimal_run

GRID = loghist.Grid()


def log_quad(log_f, a, b, pieces=4):
    """log of int_a^b exp(log_f(x)) dx by adaptive quadrature in u = ln x, scaled to avoid under/overflow."""
    us = np.linspace(np.log(a), np.log(b), pieces + 1)
    g = lambda u: log_f(np.exp(u)) + u
    c = max(g(u) for u in np.linspace(us[0], us[-1], 33))
    total = sum(integrate.quad(lambda u: np.exp(g(u) - c), us[k], us[k + 1], epsabs=0, epsrel=1e-13, limit=200)[0]
                for k in range(pieces))
    return np.log(total) + c


@pytest.mark.parametrize("s", [-12.5, -2.0, -1.0, -0.25, 0.0, 1e-9, 0.5, 1.0, 3.0, 9.0])
def test_incomplete_gamma_bins_equal_quadrature(s):
    """Narrow and wide bins from y = e^-40 to e^5, on both sides of the split at max(1, s + 1)."""
    ly = np.concatenate([np.linspace(-40, -1, 7)[:-1], np.arange(-1, 0.85, 0.13), np.linspace(0.9, 5, 9)])
    with jax.enable_x64(True):
        got = np.asarray(incgamma.log_bins(s, jnp.asarray(ly)))
    want = [log_quad(lambda t: (s - 1) * np.log(t) - t, np.exp(a), np.exp(b)) for a, b in zip(ly[:-1], ly[1:])]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("s", [-0.5, 0.5, 3.0])
def test_incomplete_gamma_derivatives_equal_differences_with_an_edge_at_the_split(s):
    """The gradient of every bin in ly, from JAX, against central differences of the value, with
    one edge exactly at the split point ln max(1, s + 1) (x = tau when s <= 0: a bin edge at
    the cutoff), where a minimum or maximum would give the edge half its derivative."""
    split = np.log(max(1.0, s + 1.0))
    ly = np.concatenate([np.linspace(split - 3, split, 7), np.linspace(split, split + 3, 7)[1:]])
    assert np.any(ly == split)
    with jax.enable_x64(True):
        total = lambda ly: jnp.sum(jnp.arange(1.0, ly.size) * incgamma.log_bins(s, ly))  # every bin weighted apart
        grad = np.asarray(jax.grad(total)(jnp.asarray(ly)))
        h = 1e-6
        diff = [(float(total(jnp.asarray(ly + h * e))) - float(total(jnp.asarray(ly - h * e)))) / (2 * h)
                for e in np.eye(ly.size)]
    np.testing.assert_allclose(grad, diff, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("quad", [False, True], ids=["exact", "gauss-legendre"])
@pytest.mark.parametrize("gamma, tau, beta", [(1.5, 1e-4, 2.0), (1.2, 3e-5, 1.0), (2.0, 1e-3, 0.5), (0.5, 2e-6, 3.0),
                                              (1.0, 1e-5, 2.0)])
def test_binned_likelihood_equals_integrated_density(gamma, tau, beta, quad):
    """Bin probabilities on the 100-per-decade grid from 1e-7 to where (x/tau)^beta reaches 600
    (or 1e-2), each the integral of x^-gamma exp(-(x/tau)^beta) over its bin (quadrature) over
    the integral on the support: by the incomplete gamma functions and by the fits' own
    Gauss-Legendre rule."""
    top = min(-2.0, np.floor(np.log10(tau * 600 ** (1 / beta)) * 100) / 100)
    i, j = (int(round((v - GRID.lo) * GRID.bins_per_decade)) for v in (-7, top))
    lx = np.log(GRID.edges()[i : j + 1])
    with jax.enable_x64(True):
        got = np.asarray(cutoff.log_probs(jnp.array([gamma, np.log(tau), beta]), jnp.asarray(lx),
                                          jnp.ones(j - i, bool), jnp.zeros(j - i, bool), True, quad))
    log_f = lambda x: -gamma * np.log(x) - (x / tau) ** beta
    logm = np.array([log_quad(log_f, np.exp(a), np.exp(b), pieces=1) for a, b in zip(lx[:-1], lx[1:])])
    # the Gauss-Legendre rule is exact to 3e-11 where (x/tau)^beta < 50 (beyond, a bin holds < e^-50 of the mass)
    near = np.exp(beta * (lx[1:] - np.log(tau))) < 50 if quad else np.ones(j - i, bool)
    assert near.sum() > 100
    np.testing.assert_allclose(got[near], (logm - np.logaddexp.reduce(logm))[near], rtol=0, atol=1e-8)


@pytest.mark.parametrize("bins", ["log", "linear"])
def test_closed_form_derivatives_equal_jax_second_derivatives(bins):
    """`_nll_derivatives` (the Newton fits' value, gradient and Hessian in closed form, the tail
    bin's through L(s, a, b)) against `_nll`, JAX's gradient of it and that gradient's central
    differences, on log bins
    (quadrature per bin) and linear ones (`wide_nodes`), at parameters with the cutoff below, in
    and beyond the data, s = (1 - gamma)/beta from -40 to 15 (both sides of the split at
    max(1, s + 1)); the padding bins beyond the tail, where ly passes 600 and is compressed, must
    leak nothing into either."""
    if bins == "log":
        data = cutoff._Binned(np.arange(1.0, 301.0)[None, ::-1] * 10, np.log(GRID.edges()[400:701]))
    else:
        data = cutoff._Binned(np.arange(1.0, 61.0)[None, ::-1] * 10, np.log(1e-3 * np.arange(1, 62)))
    lo, hi = data.lx[0], data.lx[int(np.argmax(data.tail))]
    thetas = [(1.5, lo + 1.0, 2.0), (2.5, hi + 3.0, 0.5), (0.5, hi - 0.5, 3.0), (-2.0, hi - 1.0, 0.2),
              (7.0, hi + 20.0, 0.2), (1.0, lo + 0.3, 1.0), (3.0, lo - 1.0, 8.0), (1.2, (lo + hi) / 2, 1.3)]
    with jax.enable_x64(True):
        args = data.args(True)
        nodes = None if data.nodes is None else tuple(jnp.asarray(a) for a in data.nodes)
        nll = lambda t: cutoff._nll(t, *args, True, data.quad, nodes)
        closed = jax.jit(lambda t: cutoff._nll_derivatives(t, *args, data.quad, nodes))
        grad = jax.jit(jax.grad(nll))
        for theta in map(jnp.asarray, thetas):
            v, g, h = closed(theta)
            np.testing.assert_allclose(float(v), float(nll(theta)), rtol=1e-13)
            g0 = np.asarray(grad(theta))
            np.testing.assert_allclose(np.asarray(g), g0, rtol=1e-9, atol=1e-9 * np.abs(g0).max())
            # the Hessian against central differences of JAX's gradient (JAX's own second
            # derivatives take minutes to compile, and overflow where the tail bin of a cutoff far
            # below the data holds e^-e^60 of the mass)
            step = 1e-6 * np.maximum(1.0, np.abs(np.asarray(theta)))
            diff = np.stack([(np.asarray(grad(theta + e)) - np.asarray(grad(theta - e))) / (2 * e.sum())
                             for e in map(jnp.asarray, np.diag(step))])
            np.testing.assert_allclose(np.asarray(h), diff, rtol=1e-5, atol=1e-7 * np.abs(diff).max())


@pytest.mark.parametrize("gamma, tau, beta", [(1.5, 0.02, 2.0), (1.2, 3e-3, 1.0), (2.0, 0.01, 0.5), (0.5, 0.04, 3.0),
                                              (3.0, 0.2, 2.0)])
def test_wide_bins_by_quadrature_on_parts_equal_the_exact_integrals(gamma, tau, beta):
    """Linear bins [k w, (k + 1) w), k = 1 ... 60, the first ln 2 wide, and the tail bin: the
    bin probabilities and their gradient in theta by `node_log_bin_mass` (`wide_nodes`), as the
    fits compute them, against the incomplete gamma functions."""
    data = cutoff._Binned(np.ones((1, 60)), np.log(1e-3 * np.arange(1, 62)))
    assert not data.quad and data.nodes is not None
    with jax.enable_x64(True):
        theta = jnp.array([gamma, np.log(tau), beta])
        args = data.args(True)
        exact = cutoff._nll_grad(theta, *args, True, False)
        nodes = cutoff._nll_grad(theta, *args, True, False, tuple(jnp.asarray(a) for a in data.nodes))
        p_exact = np.asarray(cutoff.log_probs(theta, *args[1:], True, False))
        p_nodes = np.asarray(cutoff.log_probs(theta, *args[1:], True, False, tuple(jnp.asarray(a) for a in data.nodes)))
    near = data.mask(True) & (np.exp(beta * (data.lx[1:] - np.log(tau))) < 50)
    assert near[data.data].sum() > 20
    np.testing.assert_allclose(p_nodes[near], p_exact[near], rtol=0, atol=1e-9)
    np.testing.assert_allclose(float(nodes[0]), float(exact[0]), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(nodes[1]), np.asarray(exact[1]), rtol=1e-7, atol=1e-7 * abs(float(exact[0])))


def test_binned_mle_equals_scipy_on_the_binned_and_the_raw_likelihood():
    rng = np.random.default_rng(0)
    x = synthetic.sample("paper", rng, 100_000, gamma=1.5, xmin=1e-7, tau=np.sqrt(2) * 1e-4)
    hb = synthetic.hist_blocks(x)
    i = int(round((-7 - GRID.lo) * GRID.bins_per_decade))
    fit = cutoff.fit(hb, i, start_gamma=1.5)
    m = fit["models"]["stretched_cutoff"]
    ours = np.array([m["gamma"], np.log(m["tau"]), m["beta"]])
    xmin, xend = fit["xmin"], fit["xend"]
    edges = GRID.edges()
    e = edges[(edges >= xmin * (1 - 1e-12)) & (edges <= xend * (1 + 1e-12))]
    counts = np.histogram(x, e)[0]

    def log_f(th):
        return lambda t: -th[0] * np.log(t) - (t / np.exp(th[1])) ** th[2]

    def log_norm(th):  # the cutoff models are normalised on [xmin, inf)
        top = np.exp(th[1]) * 800 ** (1 / th[2])  # (x/tau)^beta = 800: nothing beyond in float64
        return log_quad(log_f(th), xmin, top, pieces=16)

    # 1. the same binned likelihood, its bins integrated by quadrature, maximised by Nelder-Mead
    def nll_binned(th):
        logm = np.array([log_quad(log_f(th), a, b, pieces=1) for a, b in zip(e[:-1], e[1:])])
        return -np.dot(counts, logm - log_norm(th))

    ref = optimize.minimize(nll_binned, ours + [0.01, 0.02, 0.05], method="Nelder-Mead",
                            options=dict(xatol=1e-7, fatol=1e-7, maxiter=2000)).x
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    # 2. the unbinned likelihood of the raw samples above xmin: binning 100 per decade costs a
    # small fraction of a standard error
    xs = x[x >= xmin]

    def nll_raw(th):
        return -(np.sum(log_f(th)(xs)) - xs.size * log_norm(th))

    raw = optimize.minimize(nll_raw, ours, method="Nelder-Mead", options=dict(xatol=1e-7, fatol=1e-6, maxiter=2000)).x
    se = np.array([m["stderr"]["gamma"], m["stderr"]["ln_tau"], m["stderr"]["beta"]])
    assert np.all(np.abs(ours - raw) < 0.2 * se), (ours, raw, se)


def trajectory_stats(rng, shape, n, weights=4, **params):
    """IncrementStats of `weights` synthetic trajectories: 80% pure-decay steps, then |dw| of the shape."""
    ws = [synthetic.trajectory(rng, synthetic.sample(shape, rng, n, **params), 0.8, 1 - 1e-8) for _ in range(weights)]
    steps = min(map(len, ws))
    traj = np.stack([w[:steps] for w in ws], axis=1)[None]
    return increments.stream(traj, [2e-3], [5e-6], stride=1)


@pytest.mark.parametrize("gamma", [1.2, 1.5, 2.0])
def test_paper_shape_is_recognised_pooled_and_per_series(gamma):
    """x^-gamma exp(-x^2 / (2 sigma^2)) from 1e-7, sigma = 1e-4 (three decades of power law),
    200,000 increments per weight between 80% pure-decay steps: gamma is in its interval, beta = 2
    is accepted, and the crossover is where the model's slope leaves -gamma by 0.1: x = sigma sqrt(0.1)."""
    sigma = 1e-4
    st = trajectory_stats(np.random.default_rng(int(gamma * 10)), "paper", 200_000, gamma=gamma, xmin=1e-7,
                          tau=np.sqrt(2) * sigma)
    inc, _ = increments.pooled_summary(st)
    per_series = increments.per_series(st, [dict(run=0, k=k) for k in range(4)])
    assert abs(inc["decay_fraction"] - 0.8) < 0.01 and inc["outside_grid"] == 0
    pooled = inc["model"]
    assert pooled["gamma_ci95"][0] <= gamma <= pooled["gamma_ci95"][1], pooled["gamma_ci95"]
    assert pooled["is_power_law"] and pooled["is_gaussian"], pooled
    assert pooled["scale_invariant"]["decades"] >= 1.5
    # pooled units: |dw| over each series' median (the same for all four, up to the grid)
    median = np.mean([e["median_abs_dw"] for e in per_series])
    np.testing.assert_allclose(pooled["crossover"] * median, sigma * np.sqrt(0.1), rtol=0.3)
    models = [e["model"] for e in per_series]
    # per series: a 95% interval misses the truth one time in 20, so ask for 3 of 4
    assert sum(m["gamma_ci95"][0] <= gamma <= m["gamma_ci95"][1] for m in models) >= 3
    assert sum(m["is_power_law"] and m["is_gaussian"] for m in models) >= 3


def fitted(shape, n=400_000, seed=0, **params):
    hb = synthetic.hist_blocks(synthetic.sample(shape, np.random.default_rng(seed), n, **params))
    return fit_distribution(hb)["model"]


def test_exponential_cutoff_is_not_gaussian():
    m = fitted("exponential_cutoff", gamma=1.5, xmin=1e-4, tau=1.0)
    assert m["tests"]["cutoff"]["p"] < 1e-6
    assert m["models"]["exponential_cutoff"]["loglik"] > m["models"]["gaussian_cutoff"]["loglik"]
    assert m["beta_ci95"][0] <= 1.0 <= m["beta_ci95"][1] and not m["is_gaussian"]
    assert m["is_power_law"]  # it is a power law below its cutoff


def test_pure_power_law_has_no_cutoff():
    m = fitted("power_law", gamma=1.5, xmin=1e-3, xmax=10.0)
    assert m["selected"] == "power_law" and m["crossover"] is None
    assert m["is_power_law"] and not m["is_gaussian"]
    assert m["gamma_ci95"][0] <= 1.5 <= m["gamma_ci95"][1]


@pytest.mark.parametrize("shape", ["lognormal", "half_normal"])
def test_lognormal_and_half_normal_are_not_power_laws(shape):
    m = fitted(shape)
    assert not m["is_power_law"], m
    assert not m["is_gaussian"] or shape == "half_normal"  # a half-normal is a Gaussian cutoff with gamma = 0


def zigzag(dw):
    """A trajectory (1, 2N + 1, 1) 0, dw_1, 0, dw_2, ...: its increments are exactly +-dw (float32)."""
    traj = np.zeros(2 * len(dw) + 1, np.float32)
    traj[1::2] = dw
    return traj[None, :, None]


def test_every_increment_is_on_the_grid_or_reported(tmp_path):
    """Increments 14 decades apart stay on the grid (the old grid ended at 100x the median); a
    series whose median is 1e-30 pushes its largest increments off the pooled grid, and that
    is counted and warned about."""
    rng = np.random.default_rng(5)
    # (fewer than the 1,000 increments a fit needs: only the counting is under test)
    st = increments.stream(zigzag(10.0 ** rng.uniform(-12, 2, 400)), None, None, stride=1)
    inc, pool = increments.pooled_summary(st)
    assert inc["outside_grid"] == 0 and pool.counts.sum() == inc["fluctuating"] == 800
    # |dw| of 1e-33 and 1e12 (float32): the median is 1e-33, so 1e12 / median = 1e45 > 1e39
    run = tmp_path / "run"
    write_minimal_run(run, zigzag(np.concatenate([np.full(400, 1e-33), np.full(40, 1e12)])))
    res = analyze.analyze(run, progress=False, figures=False)
    assert res["per_weight"][0]["outside_grid"] == 0 and res["groups"][0]["increments"]["outside_grid"] == 80
    assert any("80 of 880 fluctuating increments (0.091) lie outside the pooled histogram's grid" in w
               for w in res["warnings"]), res["warnings"]
