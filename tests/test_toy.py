"""The toy model of Section 2 against SciPy, float64 NumPy formulas, and its own analytic laws."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from socjax import toy

from test_cli import main

P = toy.ToyParams()


def test_lambert_w_matches_scipy_over_many_decades():
    branch = -1 / np.e + np.logspace(-14, -8, 20)
    rest = np.concatenate([-1 / np.e + np.logspace(-8, -0.5, 50), np.linspace(-0.3, 3, 200), np.logspace(0.5, 300, 300)])
    with jax.enable_x64(True):
        np.testing.assert_allclose(toy.lambert_w(jnp.asarray(rest)), special.lambertw(rest).real, rtol=1e-12)
        # near the branch point W has a square-root singularity: 1 ulp in x moves W by ~1e-8
        np.testing.assert_allclose(toy.lambert_w(jnp.asarray(branch)), special.lambertw(branch).real, rtol=1e-6)
        assert float(toy.lambert_w(jnp.float64(-1 / np.e))) == -1.0


def test_free_energy_and_density_match_float64_formulas():
    q = np.linspace(-3, 3, 13)
    d = q - P.qb
    f_ref = np.log(P.g * d**2 + P.lx) / (2 * P.beta) + P.lq * d**2 / 2 + np.log(P.beta) / (2 * P.beta)
    with jax.enable_x64(True):
        np.testing.assert_allclose(toy.free_energy(jnp.asarray(q), P), f_ref, rtol=1e-13)
        dq = np.asarray(jax.vmap(jax.grad(lambda x: toy.free_energy(x, P)))(jnp.asarray(q)))
        np.testing.assert_allclose(toy.dfree_energy(jnp.asarray(q), P), dq, rtol=1e-12)
    unnorm = lambda x: (P.g * (x - P.qb) ** 2 + P.lx) ** (-P.alpha / (2 * P.beta)) * np.exp(-P.alpha * P.lq * (x - P.qb) ** 2 / 2)
    z = 2 * (integrate.quad(unnorm, 0, 1, points=[0.01, 0.1], limit=200)[0] + integrate.quad(unnorm, 1, np.inf)[0])
    grid, dens = toy.density_grid(P)
    np.testing.assert_allclose(np.interp(q, grid, dens), unnorm(q) / z, rtol=1e-5)
    np.testing.assert_allclose(toy.cdf(P)(np.array([0.0, 0.05, 1.0])),
                               [0.5, 0.5 + integrate.quad(unnorm, 0, 0.05)[0] / z, 0.5 + integrate.quad(unnorm, 0, 1.0)[0] / z],
                               rtol=1e-5)


def test_crossovers_are_eq7():
    c = toy.crossovers(P)
    assert c["lower"] == pytest.approx(np.sqrt(P.lx / P.g))
    w = special.lambertw(P.beta * P.lq).real
    assert c["upper"] == pytest.approx(np.sqrt(w / (P.beta * P.lq)), rel=1e-12)
    assert c["exponent"] == P.alpha / P.beta


@pytest.fixture(scope="module")
def chains():
    """Independent Langevin chains at two well-separated times."""
    return np.asarray(toy.langevin(jax.random.key(1), jnp.zeros(3000), P, 1e-5, steps=40_000, record_every=20_000))


def test_langevin_reaches_eq6_and_a_wrong_alpha_is_rejected(chains):
    assert stats.kstest(chains[-1], toy.cdf(P)).pvalue > 0.01
    assert stats.kstest(chains[-1], toy.cdf(P._replace(alpha=1.2 * P.alpha))).pvalue < 1e-4
    assert toy.fit_alpha(chains[-1], P) == pytest.approx(P.alpha, rel=0.05)


def test_power_law_exponent_is_alpha_over_beta(chains):
    c = toy.crossovers(P)
    fit = toy.exponent_fit(chains.ravel(), c["lower"], c["upper"])
    assert fit["ci95"][0] - 0.05 <= P.alpha / P.beta <= fit["ci95"][1] + 0.05


def test_fit_alpha_on_exact_samples():
    grid, _ = toy.density_grid(P)
    u = np.random.default_rng(0).random(20_000)
    samples = np.interp(u, toy.cdf(P)(grid), grid)
    assert toy.fit_alpha(samples, P) == pytest.approx(P.alpha, rel=0.03)


def test_sgd_drift_is_minus_eta_dF_and_its_noise_sets_alpha_effective():
    q = P.qb + np.concatenate([-np.geomspace(1.5, 0.03, 6), np.geomspace(0.03, 1.5, 6)])
    res = toy.drift_check(jax.random.key(2), P, 1e-5, q, repeats=50_000)
    assert res["max_abs_z"] < 4.0  # 12 z-scores of a correct mean
    np.testing.assert_allclose(res["alpha_effective"], res["alpha_effective_theory"], rtol=0.1)


@pytest.mark.parametrize("field, value, message", [
    ("lx", 0.0, "lx <= 0"), ("lx", -1e-3, "x is unbounded"), ("lq", 0.0, "lq > 0"),
    ("g", -1.0, "g > 0"), ("alpha", 0.0, "must be positive"),
])
def test_bad_parameters_name_the_failed_condition(field, value, message):
    with pytest.raises(toy.ToyError, match=message.replace("(", r"\(")):
        toy.validate(P._replace(**{field: value}))


def test_toy_command_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out), "--chains", "500", "--steps", "8000"]) == 0
    r = json.loads((out / "toy.json").read_text())
    assert r["analytic"]["exponent"] == 1.5 and "p_value" in r["langevin"] and "drift" in r["sgd"]
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["toy", "--out", str(out)]) == 2
    assert "already holds toy.json" in capsys.readouterr().err
    assert main(["toy", "--out", str(tmp_path / "x"), "--lq", "-1"]) == 2
    assert "lq > 0" in capsys.readouterr().err


def test_langevin_vmaps_over_a_parameter_sweep():
    """Parameters are traced: a sweep over alpha in one vmapped call equals separate runs."""
    from functools import partial

    alphas = jnp.array([1.2, 1.5, 2.0])
    sweep = P._replace(alpha=alphas)
    run = partial(toy.langevin, steps=2000, record_every=1000)
    axes = toy.ToyParams(*(0 if f == "alpha" else None for f in toy.ToyParams._fields))
    together = jax.vmap(run, in_axes=(None, None, axes, None))(jax.random.key(3), jnp.zeros(64), sweep, 1e-5)
    for i, a in enumerate([1.2, 1.5, 2.0]):
        alone = run(jax.random.key(3), jnp.zeros(64), P._replace(alpha=jnp.float32(a)), 1e-5)
        # not bitwise: the batched program rounds differently (seen: 1 of 128 values off by 1.5e-7,
        # a few float32 ulps after 2,000 steps)
        np.testing.assert_allclose(together[i], alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0], together[2])
