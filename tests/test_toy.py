"""The toy model of Section 2 against SciPy, float64 NumPy formulas, and its own analytic laws."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from socjax.config import ToyParams
from socjax.toy import experiment, simulate, theory

from test_cli import main

P = ToyParams()


def test_free_energy_and_density_match_float64_formulas():
    q = np.linspace(-3, 3, 13)
    d = q - P.qb
    f_ref = np.log(P.g * d**2 + P.lx) / (2 * P.beta) + P.lq * d**2 / 2 + np.log(P.beta) / (2 * P.beta)
    with jax.enable_x64(True):
        np.testing.assert_allclose(theory.free_energy(jnp.asarray(q), P), f_ref, rtol=1e-13)
        dq = np.asarray(jax.vmap(jax.grad(lambda x: theory.free_energy(x, P)))(jnp.asarray(q)))
        np.testing.assert_allclose(theory.dfree_energy(jnp.asarray(q), P), dq, rtol=1e-12)
    unnorm = lambda x: (P.g * (x - P.qb) ** 2 + P.lx) ** (-P.alpha / (2 * P.beta)) * np.exp(-P.alpha * P.lq * (x - P.qb) ** 2 / 2)
    z = 2 * (integrate.quad(unnorm, 0, 1, points=[0.01, 0.1], limit=200)[0] + integrate.quad(unnorm, 1, np.inf)[0])
    grid, dens = theory.density_grid(P)
    np.testing.assert_allclose(np.interp(q, grid, dens), unnorm(q) / z, rtol=1e-5)
    np.testing.assert_allclose(theory.cdf(P)(np.array([0.0, 0.05, 1.0])),
                               [0.5, 0.5 + integrate.quad(unnorm, 0, 0.05)[0] / z, 0.5 + integrate.quad(unnorm, 0, 1.0)[0] / z],
                               rtol=1e-5)


def test_crossovers_are_eq7():
    c = theory.crossovers(P)
    assert c["lower"] == pytest.approx(np.sqrt(P.lx / P.g))
    w = special.lambertw(P.beta * P.lq).real
    assert c["upper"] == pytest.approx(np.sqrt(w / (P.beta * P.lq)), rel=1e-12)
    assert c["exponent"] == P.alpha / P.beta


@pytest.fixture(scope="module")
def chains():
    """Independent Langevin chains at two well-separated times."""
    return np.asarray(simulate.langevin(jax.random.key(1), jnp.zeros(3000), P, 1e-5, steps=40_000, record_every=20_000))


def test_langevin_reaches_eq6_and_a_wrong_alpha_is_rejected(chains):
    assert stats.kstest(chains[-1], theory.cdf(P)).pvalue > 0.01
    assert stats.kstest(chains[-1], theory.cdf(P._replace(alpha=1.2 * P.alpha))).pvalue < 1e-4
    assert experiment.fit_alpha(chains[-1], P) == pytest.approx(P.alpha, rel=0.05)


def test_power_law_exponent_is_alpha_over_beta(chains):
    c = theory.crossovers(P)
    fit = experiment.exponent_fit(chains.ravel(), c["lower"], c["upper"])
    assert fit["ci95"][0] - 0.05 <= P.alpha / P.beta <= fit["ci95"][1] + 0.05


def test_exponent_fit_needs_enough_samples_in_its_range(chains):
    c = theory.crossovers(P)
    full = experiment.exponent_fit(chains.ravel(), c["lower"], c["upper"])
    x = np.abs(chains.ravel() - P.qb)
    inside = x[(x >= full["xmin"]) & (x < full["xmax"])]  # the samples the fit counts
    few = experiment.exponent_fit(inside[: experiment.MIN_FIT_SAMPLES - 1], c["lower"], c["upper"])
    assert "exponent" not in few and few["n"] == experiment.MIN_FIT_SAMPLES - 1 and "needs at least 50" in few["error"]
    enough = experiment.exponent_fit(inside[: 4 * experiment.MIN_FIT_SAMPLES], c["lower"], c["upper"])
    assert enough["n"] == 4 * experiment.MIN_FIT_SAMPLES and np.isfinite(enough["exponent"])


def test_fit_alpha_on_exact_samples():
    grid, _ = theory.density_grid(P)
    u = np.random.default_rng(0).random(20_000)
    samples = np.interp(u, theory.cdf(P)(grid), grid)
    assert experiment.fit_alpha(samples, P) == pytest.approx(P.alpha, rel=0.03)


def test_sgd_drift_is_minus_eta_dF_and_its_noise_sets_alpha_effective():
    q = P.qb + np.concatenate([-np.geomspace(1.5, 0.03, 6), np.geomspace(0.03, 1.5, 6)])
    res = simulate.drift_check(jax.random.key(2), P, 1e-5, q, repeats=50_000)
    assert res["max_abs_z"] < 4.0  # 12 z-scores of a correct mean
    np.testing.assert_allclose(res["alpha_effective"], res["alpha_effective_theory"], rtol=0.1)


@pytest.mark.parametrize("field, value, message", [
    ("lx", 0.0, "lx <= 0"), ("lx", -1e-3, "x is unbounded"), ("lx", -1e-3, "needs the quartic term kx > 0"),
    ("kx", -1e-9, "need kx >= 0"), ("lq", 0.0, "lq > 0"),
    ("g", -1.0, "g > 0"), ("alpha", 0.0, "must be positive"),
])
def test_bad_parameters_name_the_failed_condition(field, value, message):
    with pytest.raises(theory.ToyError, match=message.replace("(", r"\(")):
        theory.validate(P._replace(**{field: value}))


def test_toy_command_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out), "--chains", "500", "--steps", "8000"]) == 0
    r = json.loads((out / "toy.json").read_text())
    assert r["analytic"]["exponent"] == 1.5 and "p_value" in r["langevin"] and "drift" in r["sgd"]
    assert r["seed"] == 0
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["toy", "--out", str(out)]) == 2
    assert "already holds toy.json" in capsys.readouterr().err
    assert main(["toy", "--out", str(tmp_path / "x"), "--lq", "-1"]) == 2
    assert "lq > 0" in capsys.readouterr().err
    # the frustrated regime; "--lx -1e-3" parses as a number
    frustrated = ["toy", "--lx", "-1e-3", "--kx", "8.333e-8", "--chains", "200", "--steps", "4000"]
    assert main([*frustrated, "--out", str(tmp_path / "f"), "--dt", "1e-4"]) == 2
    assert "use dt <=" in capsys.readouterr().err and not (tmp_path / "f").exists()
    assert main([*frustrated, "--out", str(tmp_path / "f")]) == 0
    r = json.loads((tmp_path / "f" / "toy.json").read_text())
    assert r["params"]["lx"] == -1e-3 and r["analytic"]["frustrated"] and len(r["x_given_q"]) == 3
    assert r["langevin"]["powerlaw_exact_draws"]["n"] > 0


def test_langevin_vmaps_over_a_parameter_sweep():
    """Parameters are traced: a sweep over alpha in one vmapped call equals separate runs."""
    from functools import partial

    alphas = jnp.array([1.2, 1.5, 2.0])
    sweep = P._replace(alpha=alphas)
    run = partial(simulate.langevin, steps=2000, record_every=1000)
    axes = ToyParams(*(0 if f == "alpha" else None for f in ToyParams._fields))
    together = jax.vmap(run, in_axes=(None, None, axes, None))(jax.random.key(3), jnp.zeros(64), sweep, 1e-5)
    for i, a in enumerate([1.2, 1.5, 2.0]):
        alone = run(jax.random.key(3), jnp.zeros(64), P._replace(alpha=jnp.float32(a)), 1e-5)
        # not bitwise: the batched program rounds differently (seen: 1 of 128 values off by 1.5e-7,
        # a few float32 ulps after 2,000 steps)
        np.testing.assert_allclose(together[i], alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0], together[2])



# ---- the quartic term kx and the frustrated regime lx < 0 ----

FRUSTRATED = ToyParams(lx=-1e-3, kx=1e-6 / 12)  # barrier beta lx^2 / (4 kx) = 3 at q = qb


def _quad_moments(c: float) -> tuple[float, float, float]:
    """log J(c), <t^2>, <t^4> for J(c) = int exp(-(c t^2/2 + t^4/4)) dt by SciPy's adaptive quadrature."""
    m = c**2 / 4 if c < 0 else 0.0
    pieces = ((0, np.sqrt(-c)), (np.sqrt(-c), np.inf)) if c < 0 else ((0, np.inf),)
    i0, i2, i4 = (sum(integrate.quad(lambda t: t**n * np.exp(-(c * t**2 / 2 + t**4 / 4) - m), lo, hi, epsabs=0, limit=400)[0]
                      for lo, hi in pieces) for n in (0, 2, 4))
    return m + np.log(2 * i0), i2 / i0, i4 / i0


def test_quartic_integrals_match_bessel_closed_forms_and_scipy_quad():
    """With A = c/2, B = 1/4, z = A^2/(8B) = c^2/8: J = (1/2) sqrt(A/B) e^z K_1/4(z) for c > 0 and
    (pi/2) sqrt(|A|/(2B)) e^z (I_-1/4(z) + I_1/4(z)) for c < 0; moments against SciPy's quad."""
    c = np.concatenate([-np.logspace(4, -3, 40), np.logspace(-3, 4, 40)])
    with jax.enable_x64(True):
        log_j, t2, t4 = (np.asarray(v) for v in theory._quartic_integrals(jnp.asarray(c)))
    z = c**2 / 8
    ref = np.where(c > 0, np.log(np.sqrt(2 * np.abs(c)) / 2 * special.kve(0.25, z)),
                   np.log(np.pi / 2 * np.sqrt(np.abs(c)) * (special.ive(-0.25, z) + special.ive(0.25, z))) + 2 * z)
    np.testing.assert_allclose(log_j, ref, rtol=1e-12, atol=1e-11)
    for ci in (-200.0, -12.0, -1.0, 0.0, 0.7, 40.0):
        with jax.enable_x64(True):
            ours = [float(v) for v in theory._quartic_integrals(jnp.float64(ci))]
        np.testing.assert_allclose(ours, _quad_moments(ci), rtol=1e-9)


def test_quartic_free_energy_and_moments_against_quadrature_in_x():
    """F, dF/dq and <u^2> of the frustrated model against SciPy quadrature over x directly, and
    dF/dq against autodiff of F; as kx -> 0 with lx > 0 the quadrature path tends to eq. (4)."""
    p = FRUSTRATED
    q = np.array([0.0, 0.01, 0.0316, 0.05, 0.3, 2.0])
    ref_f, ref_m2 = [], []
    for qi in q:
        a = p.g * (qi - p.qb) ** 2 + p.lx
        top = p.beta * a**2 / (4 * p.kx) if a < 0 else 0.0  # the log-integrand's maximum
        e = lambda u, n: u**n * np.exp(-p.beta * (a * u**2 / 2 + p.kx * u**4 / 4) - top)
        wells = np.sqrt(max(-a, 0) / p.kx)
        pieces = ((0, wells), (wells, np.inf)) if wells > 0 else ((0, np.inf),)
        z0, z2 = (2 * sum(integrate.quad(e, lo, hi, args=(n,), epsabs=0, limit=400)[0] for lo, hi in pieces)
                  for n in (0, 2))
        ref_f.append(-(np.log(z0) + top - 0.5 * np.log(2 * np.pi)) / p.beta + p.lq * (qi - p.qb) ** 2 / 2)
        ref_m2.append(z2 / z0)
    with jax.enable_x64(True):
        p64 = ToyParams(*(jnp.float64(v) for v in p))
        np.testing.assert_allclose(theory.free_energy(jnp.asarray(q), p64), ref_f, rtol=1e-9)
        np.testing.assert_allclose(theory.x_moments(jnp.asarray(q), p64)[1], ref_m2, rtol=1e-9)
        autodiff = jax.vmap(jax.grad(lambda x: theory.free_energy(x, p64)))(jnp.asarray(q))
        np.testing.assert_allclose(theory.dfree_energy(jnp.asarray(q), p64), autodiff, rtol=1e-8, atol=1e-10)
        tiny = P._replace(kx=1e-14)
        np.testing.assert_allclose(theory.free_energy(jnp.asarray(q), tiny), theory.free_energy(jnp.asarray(q), P), rtol=1e-6)
        # a traced kx (a sweep over it) that is 0 falls back to the closed forms
        traced = jax.jit(lambda kx: theory.free_energy(jnp.asarray(q), P._replace(kx=kx)))(0.0)
        np.testing.assert_allclose(traced, theory.free_energy(jnp.asarray(q), P), rtol=1e-13)


@pytest.mark.parametrize("q", [0.0, 0.02, 0.0316, 0.05, 1.0])
def test_x_sampler_draws_p_x_given_q(q):
    """Exact rejection sampling of p(x|q) (bimodal, flat-topped, and Gaussian) against its CDF by
    SciPy quadrature (on 2,001 nodes, interpolated); draws for a 30% larger kx are rejected where
    the quartic term matters."""
    p = FRUSTRATED
    q = float(np.float32(q))
    draw = lambda params: np.asarray(jax.jit(simulate.sample_x)(jax.random.key(4), jnp.full((200_000,), q, jnp.float32), params), np.float64)
    a = p.g * q**2 + p.lx
    dens = lambda u: np.exp(-p.beta * (a * u**2 / 2 + p.kx * u**4 / 4) - (p.beta * a**2 / (4 * p.kx) if a < 0 else 0))
    rms = np.sqrt(max(-a, 0) / p.kx + 1 / (p.beta * abs(a) + np.sqrt(p.beta * p.kx)))  # roughly
    nodes = np.linspace(0, 14 * rms, 1001)
    mass = np.cumsum([0.0] + [integrate.quad(dens, lo, hi, epsabs=0)[0] for lo, hi in zip(nodes[:-1], nodes[1:])])
    u = np.concatenate([-nodes[:0:-1], nodes])
    cdf = np.concatenate([mass[-1] - mass[:0:-1], mass[-1] + mass]) / (2 * mass[-1])
    assert stats.kstest(draw(p), lambda v: np.interp(v, u, cdf)).pvalue > 1e-3
    if q < 0.04:  # inside the frustrated core and at its edge
        assert stats.kstest(draw(p._replace(kx=1.3 * p.kx)), lambda v: np.interp(v, u, cdf)).pvalue < 1e-6


def test_x_sampler_with_kx_zero_is_the_gaussian_of_eq2():
    """kx traced (as in a sweep over it) takes the rejection sampler, whose envelope (A) is then the
    Gaussian of eq. (2) itself, always accepted; with kx = 0 known statically the draw is direct."""
    q = jnp.array([0.0, 0.1, 1.0])
    x = np.asarray(jax.jit(simulate.sample_x)(jax.random.key(5), jnp.repeat(q[:, None], 20_000, 1), P))
    sd = 1 / np.sqrt(P.beta * (P.g * np.asarray(q) ** 2 + P.lx))
    direct = np.asarray(jax.jit(simulate.sample_x, static_argnums=3)(jax.random.key(5), jnp.repeat(q[:, None], 20_000, 1), P, False))
    for row, s in [*zip(x, sd), *zip(direct, sd)]:
        assert stats.kstest(row / s, "norm").pvalue > 1e-3


def test_frustrated_langevin_reaches_p_q_and_sgd_drift_is_minus_eta_dF():
    p = FRUSTRATED
    chains = np.asarray(simulate.langevin(jax.random.key(6), jnp.zeros(3000), p, 1e-5, steps=40_000, record_every=20_000))
    assert stats.kstest(chains[-1], theory.cdf(p)).pvalue > 0.01
    assert stats.kstest(chains[-1], theory.cdf(p._replace(alpha=1.2 * p.alpha))).pvalue < 1e-3
    q = p.qb + np.concatenate([-np.geomspace(1.5, 0.003, 6), np.geomspace(0.003, 1.5, 6)])
    res = simulate.drift_check(jax.random.key(7), p, 1e-5, q, repeats=50_000)
    assert res["max_abs_z"] < 4.0
    np.testing.assert_allclose(res["alpha_effective"], res["alpha_effective_theory"], rtol=0.1)


def test_frustrated_crossovers_and_a_too_large_step_is_refused():
    c = theory.crossovers(FRUSTRATED)
    assert c["frustrated"] and c["lower"] == pytest.approx(np.sqrt(1e-3)) and c["barrier_at_qb"] == pytest.approx(3.0)
    p = FRUSTRATED  # beta = 1: u^2 = t^2 / sqrt(kx) and c = lx / sqrt(kx) at q = qb
    assert theory.stiffness(p) == pytest.approx(p.g * _quad_moments(p.lx / np.sqrt(p.kx))[1] / np.sqrt(p.kx) + p.lq, rel=1e-9)
    with pytest.raises(theory.ToyError, match="use dt <="):
        experiment.run(FRUSTRATED, chains=8, steps=8, dt=1e-4)
    # lx = 0: no frustrated core; the power law starts where the quartic term stops mattering
    flat = theory.crossovers(P._replace(lx=0.0, kx=1e-8))
    assert flat["lower"] == 0 and flat["power_law_from"] == pytest.approx(1e-2)
    assert len(set(experiment.x_probes(P._replace(lx=0.0, kx=1e-8), flat))) == 3


def test_sweep_over_kx_traces_the_quartic_path_and_each_value_reaches_its_eq6():
    """A vmapped sweep over kx (traced, so the Langevin force is tabulated by quadrature, with the
    closed forms where kx = 0) lands on each value's own p(q)."""
    res = experiment.sweep(P, "kx", [0.0, 1e-9], chains=2000, steps=40_000)
    assert [r["value"] for r in res["rows"]] == [0.0, 1e-9]
    for r in res["rows"]:
        assert r["p_value"] > 0.01 and r["analytic"]["exponent"] == 1.5


def test_toy_sweep_command(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["toy", "--out", str(out), "--sweep", "alpha=1.5,2.5", "--chains", "300", "--steps", "4000"]) == 0
    r = json.loads((out / "sweep.json").read_text())
    assert r["field"] == "alpha" and [row["analytic"]["exponent"] for row in r["rows"]] == [1.5, 2.5]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad, message in (("foo=1,2", "FIELD one of"), ("alpha=2", "at least two values"),
                         ("lq=0.5,-1", "lq > 0"), ("alpha=1,x", "with numbers")):
        assert main(["toy", "--out", str(tmp_path / "bad"), "--sweep", bad]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "bad").exists()
