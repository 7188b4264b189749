"""The batched fits against the sequential ones: `cutoff.optimize_batch` (compiled Newton steps over
all series at once) against `cutoff.optimize_sequential` (SciPy's L-BFGS-B per series, polished by
Newton steps), on every synthetic shape and on degenerate series; `newton.minimize` on problems
with known minima, and `newton.minimize_many` against it; the lognormal in natural parameters against its (mu, sigma) form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from socjax.analysis import cutoff, increments, newton, powerlaw, synthetic

N = 60_000


def _series(rng) -> dict:
    """One histogram (blocks, bins) per synthetic shape, and degenerate ones."""
    out = {shape: synthetic.hist_blocks(synthetic.sample(shape, rng, N)) for shape in synthetic.SHAPES}
    x = synthetic.sample("paper", rng, N)
    x[rng.integers(N)] = 1e6 * x.max()  # one increment a million times the largest of the rest
    out["huge outlier"] = synthetic.hist_blocks(x)
    out["few samples"] = synthetic.hist_blocks(synthetic.sample("paper", rng, 900))
    out["constant"] = synthetic.hist_blocks(np.full(N, 3e-4))  # a single bin: no range of a decade
    return out


@pytest.fixture(scope="module")
def fitted():
    """Every series fitted both ways: {name: (batched fit_distribution, its cutoff inputs, the
    sequential optimum)}."""
    hists = _series(np.random.default_rng(7))
    names = list(hists)
    batched = increments.fit_distributions([hists[k] for k in names])
    out = {}
    for name, fit in zip(names, batched):
        prepared, seq = None, None
        if fit.get("powerlaw") is not None:
            i = int(round((np.log10(fit["model"]["xmin"]) - hists[name].grid.lo) * hists[name].grid.bins_per_decade))
            prepared = cutoff.prepare(hists[name], i)
            seq = cutoff.optimize_sequential(prepared[0], fit["powerlaw"]["exponent"])
        out[name] = (fit, prepared, seq)
    return out


def test_degenerate_series_are_named_not_fitted(fitted):
    for name in ("few samples", "constant"):
        fit, _, _ = fitted[name]
        assert fit["powerlaw"] is None and fit["model"] is None and "no range" in fit["note"], name
    # a batch holding them fits the others as it fits them alone
    fit, prepared, seq = fitted["paper"]
    alone = increments.fit_distribution(_series(np.random.default_rng(7))["paper"])
    assert alone["model"]["verdicts"] == fit["model"]["verdicts"]
    np.testing.assert_allclose(alone["model"]["gamma"], fit["model"]["gamma"], rtol=1e-8)  # summation order


def test_padded_size_is_the_smallest_bucket_that_holds_the_bins():
    buckets = sorted({1 << k for k in range(14)} | {3 << k for k in range(12)})  # 2^k and 3 * 2^(k - 2)
    for least in (64, cutoff.LEAST_QUAD_BINS):
        for n in range(1, 5000):
            assert cutoff.padded_size(n, least) == next(b for b in buckets if b >= max(n, least)), (n, least)


def test_a_series_fits_the_same_in_any_padding(fitted):
    """`fit_many` pads a call to its widest series, narrow bins to at least LEAST_QUAD_BINS in a
    full call and SMALL_CALL_QUAD_BINS in a smaller one (`call_bins`): a series fitted in its own
    384 bins gets its fit in a small call's 512 to rounding, every verdict the same."""
    assert cutoff.call_bins([300, 384], True, full=True) == 384 and cutoff.call_bins([384], True, full=False) == 512
    assert cutoff.call_bins([64, 128], False, full=False) == 128 and cutoff.call_bins([1024], True, full=False) == 1024
    fit, (data, total), _ = fitted["paper"]
    gamma = fit["powerlaw"]["exponent"]
    assert data.counts.size == cutoff.LEAST_QUAD_BINS  # its own padding: 280 bins and the tail bin
    in_a_small_call = cutoff.fit_many([(data, total)], [gamma])[0]  # 512 bins
    pair = [data, data]  # the summaries' smallest bucket above one, as test_batched_summary's
    own = cutoff.fit_bins(data, total, gamma, 0.1, 1000,
                          optimized=cutoff._summaries(pair, cutoff.optimize_batch(pair, [gamma] * 2))[0])
    assert own["verdicts"] == in_a_small_call["verdicts"] and own["selected"] == in_a_small_call["selected"]
    for kind in cutoff.FAMILY:
        for key, value in in_a_small_call["models"][kind].items():
            if isinstance(value, float):
                np.testing.assert_allclose(own["models"][kind][key], value, rtol=1e-9, err_msg=(kind, key))
    np.testing.assert_allclose(own["gamma_ci95"], in_a_small_call["gamma_ci95"], rtol=1e-8)


@pytest.mark.parametrize("name", [*synthetic.SHAPES, "huge outlier"])
def test_batched_optimum_equals_sequential(fitted, name):
    """Every model's parameters within 1e-6 relative or a tenth of their standard error (or a
    higher likelihood), the same log-likelihood to 1e-6 per sample, the batched fit converged,
    the same verdicts and gamma's interval within a thousandth of its width."""
    fit, (data, total), (theta, nll, ok) = fitted[name]
    models = fit["model"]["models"]
    assert not fit["model"]["unconverged"], fit["model"]["unconverged"]
    sequential = cutoff.fit_bins(data, total, fit["powerlaw"]["exponent"], 0.1, 1000,
                                 optimized=cutoff._summaries([data], [(theta, nll, ok)])[0])
    for kind in cutoff.FAMILY:
        got = np.array([models[kind]["gamma"], np.log(models[kind].get("tau", 1.0)),
                        models[kind].get("beta", cutoff.FIXED_BETA.get(kind, 1.0))])
        free = list(cutoff.FREE[kind])
        # the standard errors of the free parameters at the sequential optimum (its Fisher information)
        with jax.enable_x64(True):
            iv, _ = cutoff._intervals(kind, theta[kind], data, 1000)
        se = np.array([iv["stderr"][("gamma", "ln_tau", "beta")[j]] for j in free])
        diff = np.abs(got[free] - theta[kind][free])
        tol = np.fmax(1e-6 * np.abs(theta[kind][free]), 0.1 * np.where(np.isfinite(se), se, 0.0))
        # where the likelihood is flat (beta at its bound), L-BFGS-B stops short of the optimum
        # the Newton steps reach: a difference beyond the tolerance must be a better optimum
        better = models[kind]["loglik"] > -nll[kind] + 1e-6
        assert np.all(diff <= tol) or better, (kind, got, theta[kind], se)
        assert abs(models[kind]["loglik"] + nll[kind]) <= 1e-6 * data.n, kind
    # the verdicts and the derived numbers that rest on the optimum
    assert sequential["verdicts"] == fit["model"]["verdicts"]
    assert sequential["selected"] == fit["model"]["selected"]
    ci = np.array(sequential["gamma_ci95"])
    np.testing.assert_allclose(fit["model"]["gamma_ci95"], ci, rtol=0, atol=1e-3 * (ci[1] - ci[0]))


@pytest.mark.parametrize("name", ["paper", "huge outlier"])
def test_batched_summary_equals_the_one_by_one_evaluation(fitted, name):
    """`_summaries` (one compiled call over series) against the per-series evaluation: the
    intervals from its exact Hessian and block gradients against `_Objective`'s (the Hessian by
    central differences of JAX's gradient) and block gradients, the bins'
    log probabilities against `log_probs`, the lognormal against `fit_lognormal`."""
    fit, (data, total), (theta, nll, ok) = fitted[name]
    opt = cutoff._summaries([data, data], [(theta, nll, ok)] * 2)[1]  # a batch of two: padding and stacking
    with jax.enable_x64(True):
        for kind in ("power_law", "stretched_cutoff"):
            one_by_one, _ = cutoff._intervals(kind, theta[kind], data, 1000)
            batched, _ = cutoff._intervals(kind, theta[kind], data, 1000, opt.curvature[kind])
            for key in ("stderr", "stderr_batch_means"):
                for p, v in one_by_one[key].items():
                    # the reference's central differences (step 1e-5) carry rounding over the step
                    # (1.5e-7 of the huge outlier's ln tau, when both Hessians were differences)
                    np.testing.assert_allclose(batched[key][p], v, rtol=1e-6, err_msg=(kind, key, p))
        for kind in cutoff.FAMILY:
            cut = kind != "power_law"
            ref = cutoff.log_probs(jnp.asarray(theta[kind]), *data.args(cut)[1:], cut, data.quad)
            np.testing.assert_allclose(opt.logp[kind][data.data], np.asarray(ref)[data.data], rtol=1e-12, atol=1e-12)
    logp, converged = powerlaw.fit_lognormal(data.counts[data.data], data.edges, data.edges[-1] * np.exp(cutoff.LN_FAR))
    # a flat optimum (the huge outlier's) moves by rounding: vmapped, the sums run in another order
    np.testing.assert_allclose(opt.lognormal[0], logp, rtol=1e-8, atol=1e-12)
    assert opt.lognormal[1] == converged


def test_newton_finds_known_minima_and_names_a_stopped_fit():
    """Rosenbrock's valley (minimum at (1, 1)), a bound that holds (x <= 0.5: minimum on it), and
    the batch of both at once; one iteration is not enough and says so."""
    def rosen(x, a):
        return (a - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    with jax.enable_x64(True):
        run = jax.jit(lambda x0, lo, hi, it: newton.minimize(rosen, x0, lo, hi, 1.0, max_iter=200, gtol=1e-8))
        free = run(jnp.array([-1.2, 1.0]), jnp.array([-5.0, -5.0]), jnp.array([5.0, 5.0]), 0)
        np.testing.assert_allclose(free.x, [1.0, 1.0], atol=1e-6)
        assert bool(free.converged)
        bounded = run(jnp.array([-1.2, 1.0]), jnp.array([-5.0, -5.0]), jnp.array([0.5, 5.0]), 0)
        # on x = 0.5 the valley's floor is y = 0.25
        np.testing.assert_allclose(bounded.x, [0.5, 0.25], atol=1e-6)
        assert bool(bounded.converged)
        ref = optimize.minimize(lambda x: rosen(x, 1.0), [-1.2, 1.0], bounds=[(-5, 0.5), (-5, 5)], method="L-BFGS-B",
                                options=dict(ftol=1e-15, gtol=1e-12))
        np.testing.assert_allclose(bounded.x, ref.x, atol=1e-5)
        batch = jax.vmap(lambda x0, hi: newton.minimize(rosen, x0, jnp.array([-5.0, -5.0]), hi, 1.0, max_iter=200,
                                                        gtol=1e-8))(
            jnp.array([[-1.2, 1.0], [-1.2, 1.0]]), jnp.array([[5.0, 5.0], [0.5, 5.0]]))
        np.testing.assert_allclose(batch.x, [free.x, bounded.x], atol=1e-9)
        short = newton.minimize(rosen, jnp.array([-1.2, 1.0]), jnp.array([-5.0, -5.0]), jnp.array([5.0, 5.0]), 1.0,
                                max_iter=1)
        assert not bool(short.converged) and int(short.iterations) == 1


@pytest.mark.parametrize("max_iter", [200, 5, 0])
def test_minimize_many_takes_each_start_the_path_minimize_takes_alone(max_iter):
    """`newton.minimize_many` (a pool of workers, each taking the next start when its own ends)
    against `newton.minimize` vmapped over the same starts: a bumpy Rosenbrock valley per start,
    some with a bound that holds; every field equal (the same trials, the same accepted points),
    for pools of 1, 4 and 64 workers, for iteration limits that stop some or all starts, and with
    padding left unfitted."""
    def bumpy(x, a):
        return (a - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2 + 0.1 * jnp.sin(3 * x[0]) ** 2

    rng = np.random.default_rng(0)
    r = 37
    x0 = rng.uniform(-3, 3, (r, 2))
    lo, hi = np.full((r, 2), -5.0), np.where(rng.uniform(size=(r, 2)) < 0.3, 0.5, 5.0)
    a = rng.uniform(0.5, 2, r)
    with jax.enable_x64(True):
        ref = jax.jit(jax.vmap(lambda x0, lo, hi, a: newton.minimize(bumpy, x0, lo, hi, a, max_iter=max_iter,
                                                                     gtol=1e-8)))(x0, lo, hi, a)
        assert 0 < int(ref.converged.sum()) < r or max_iter == 0  # some starts end short of the minimum
        for workers in (1, 4, 64):
            got = jax.jit(lambda x0, lo, hi, a: newton.minimize_many(bumpy, x0, lo, hi, (a,), workers=workers,
                                                                     max_iter=max_iter, gtol=1e-8))(x0, lo, hi, a)
            for field in newton.Result._fields:
                np.testing.assert_allclose(getattr(got, field), getattr(ref, field), rtol=1e-12, atol=1e-14,
                                           err_msg=(workers, field))
        part = jax.jit(lambda x0, lo, hi, a: newton.minimize_many(bumpy, x0, lo, hi, (a,), count=30, workers=8,
                                                                  max_iter=max_iter, gtol=1e-8))(x0, lo, hi, a)
        np.testing.assert_allclose(part.x[:30], ref.x[:30], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(part.iterations[:30], ref.iterations[:30])
        # the padding is left as it came: its start, no value, no iteration
        np.testing.assert_array_equal(part.x[30:], np.clip(x0[30:], lo[30:], hi[30:]))
        assert np.all(np.isinf(part.f[30:])) and not np.any(part.iterations[30:])


def _lognormal_mu_sigma(counts, e, tail_end=None):
    """The reference: the lognormal's binned likelihood in (mu, ln sigma) with SciPy's normal CDF,
    maximised by L-BFGS-B to tight tolerances. Returns the log-likelihood."""
    from scipy import stats

    le = np.log(e)
    if tail_end is not None:
        le, counts = np.append(le, np.log(tail_end)), np.append(counts, 0.0)

    def nll(p):
        z = (le - p[0]) / np.exp(p[1])
        logm = np.log(np.maximum(np.diff(stats.norm.cdf(z)), 1e-300))
        return -np.dot(counts, logm - np.logaddexp.reduce(logm))

    mid = 0.5 * (le[:-1] + le[1:])
    mu = np.dot(counts, mid) / counts.sum()
    p0 = [mu, np.log(np.sqrt(np.dot(counts, (mid - mu) ** 2) / counts.sum()))]
    res = optimize.minimize(nll, p0, method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-10, maxiter=4000))
    return -res.fun


@pytest.mark.parametrize("tail", [False, True], ids=["bounded", "to-infinity"])
def test_lognormal_natural_parameters_equal_mu_sigma_form(tail):
    """A lognormal sample (interior optimum): the same maximum likelihood as the (mu, sigma) form;
    a power-law sample (the optimum at the boundary c -> 0, where the (mu, sigma) form runs off to
    mu -> -inf): at least as high, and within 1e-6 per sample."""
    rng = np.random.default_rng(3)
    edges = np.geomspace(1e-2, 1e2, 401)
    for x, at_boundary in ((rng.lognormal(0.0, 1.0, 50_000), False),
                           (synthetic.sample("power_law", rng, 50_000, gamma=1.5, xmin=1e-2, xmax=1e2), True)):
        counts = np.histogram(x, edges)[0].astype(float)
        tail_end = edges[-1] * np.exp(50) if tail else None
        logp, converged = powerlaw.fit_lognormal(counts, edges, tail_end=tail_end)
        assert converged
        ours = float(np.dot(counts, logp))
        ref = _lognormal_mu_sigma(counts, edges, tail_end)
        assert ours >= ref - 1e-6 * counts.sum(), (ours, ref)
        if not at_boundary:
            assert abs(ours - ref) <= 1e-7 * counts.sum(), (ours, ref)


@pytest.mark.parametrize("tail", [False, True], ids=["bounded", "to-infinity"])
def test_lognormal_closed_form_derivatives_equal_jax_derivatives(tail):
    """The lognormal fit's value, gradient and Hessian in closed form (`_lognormal_derivatives`:
    an exponential family's moments over the quadrature nodes) against JAX's reverse and
    forward-over-reverse derivatives of `_lognormal_nll`, on linear bins (several quadrature parts
    per bin) and log bins, at the start, off it and near the boundary c -> 0."""
    rng = np.random.default_rng(5)
    ours = jax.jit(powerlaw._lognormal_derivatives, static_argnums=5)
    nll = powerlaw._lognormal_nll
    theirs = jax.jit(lambda p, *a: (nll(p, *a), jax.grad(nll)(p, *a), jax.hessian(nll)(p, *a)), static_argnums=5)
    with jax.enable_x64(True):
        for edges, x in ((np.linspace(0.05, 6.0, 61), rng.lognormal(0.0, 0.7, 30_000)),
                         (np.geomspace(1e-3, 1e2, 301), synthetic.sample("paper", rng, 30_000))):
            counts = np.histogram(x, edges)[0].astype(float)
            p0, c, v, support, t, sub = powerlaw._lognormal_inputs(counts, edges, edges[-1] * np.exp(50) if tail else None)
            args = tuple(None if a is None else jnp.asarray(a) for a in (c, v, support, t))
            for p in (p0, p0 * np.array([1.3, 0.6]), np.array([p0[0], 1e-6]), np.array([-2.0, 3.0])):
                p = jnp.asarray(p)
                (value, grad, hess), (v_ref, g, h) = ours(p, *args, sub), theirs(p, *args, sub)
                np.testing.assert_allclose(value, v_ref, rtol=1e-13)
                np.testing.assert_allclose(grad, g, rtol=1e-9, atol=1e-10 * float(jnp.max(jnp.abs(g))))
                np.testing.assert_allclose(hess, h, rtol=1e-9)
