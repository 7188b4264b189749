"""The toy-model experiment: both simulations against the analytic equilibrium, sweeps, and
`socjax toy`'s driver (validation, toy.json / sweep.json, the figures via socjax.plots)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from socjax import interrupt
from socjax.config import ConfigError, ToyParams, check_seed
from socjax.toy.simulate import FORCE_TABLE, drift_check, langevin, sample_x, sgd
from socjax.toy.theory import (ToyError, _free_energy_grid, _is_quartic, cdf, check_scales, check_steps, crossovers,
                               density_grid, float64, free_energy, log_px_given_q, span, validate, x_cdf,
                               x_moments)


def fit_alpha(samples: np.ndarray, p: ToyParams) -> float:
    """Maximum-likelihood alpha of p(q) ~ exp(-alpha F(q)) (eq. 6 with alpha free) from samples."""
    from scipy import optimize

    q, f_grid = _free_energy_grid(p)
    with float64(p) as p64:
        f_samp = np.asarray(free_energy(jnp.asarray(samples, jnp.float64), p64))

    def nll(a):
        logz = np.log(np.trapezoid(np.exp(-a * (f_grid - f_grid.min())), q)) - a * f_grid.min()
        return a * f_samp.mean() + logz

    return float(optimize.minimize_scalar(nll, bounds=(1e-3, 100), method="bounded", options=dict(xatol=1e-8)).x)


MIN_FIT_SAMPLES = 50  # fewer samples in the range than this: no exponent (Clauset et al. 2009's rule of thumb)


def exponent_fit(samples: np.ndarray, lower: float, upper: float) -> dict:
    """The bounded power-law fit of the main experiment (socjax.analysis.powerlaw) on |q - qb| over
    [3 lower, upper / 2], inside the analytic power-law range; an error entry when fewer than
    MIN_FIT_SAMPLES samples fall in it."""
    from socjax.analysis import loghist, powerlaw

    h = loghist.from_samples(np.abs(samples))
    g = h.grid
    i = int(np.ceil((np.log10(3 * lower) - g.lo) * g.bins_per_decade))
    j = int(np.floor((np.log10(upper / 2) - g.lo) * g.bins_per_decade))
    if j - i < g.bins_per_decade // 2:
        return dict(error=f"the power-law range [{3 * lower:.3g}, {upper / 2:.3g}] is narrower than half a decade")
    a, se, n, ks = (float(v[0]) for v in powerlaw.fit_range(h, i, j))
    if n < MIN_FIT_SAMPLES:
        return dict(error=f"{int(n)} samples in the power-law range; the fit needs at least {MIN_FIT_SAMPLES}", n=int(n))
    e = g.edges()
    return dict(exponent=a, stderr=se, ci95=[a - 1.96 * se, a + 1.96 * se], xmin=float(e[i]), xmax=float(e[j]), n=int(n), ks=ks)


def x_probes(p: ToyParams, cross: dict) -> list[float]:
    """Three values of q at which p(x|q) is shown and checked: qb, the lower edge (where
    g (q-qb)^2 + lx = 0 if lx < 0: flat-topped, set by kx alone; the quartic scale if lx = 0), and
    the middle (geometric) of the power-law range."""
    inner = cross["power_law_from"]
    return [p.qb, p.qb + (cross["lower"] or inner), p.qb + float(np.sqrt(inner * cross["upper"]))]


def _exact_draws(key, p: ToyParams, n: int) -> np.ndarray:
    """n independent draws of eq. (6) by inverting its numerical CDF (float64)."""
    grid_q, _ = density_grid(p)
    u = np.asarray(jax.random.uniform(key, (n,), jnp.float32), np.float64)
    return np.interp(u, cdf(p)(grid_q), grid_q)


def _compare_with_eq6(records: np.ndarray, p: ToyParams, cross: dict, exact_key) -> dict:
    """Langevin records (R, C) against eq. (6): the KS test of the last record, and the power-law fit
    on the last two beside the same fit on 10^6 exact draws of eq. (6): what the estimator returns on
    ideal data over this finite range (p(q) is a pure power law only asymptotically), the yardstick."""
    from scipy import stats

    ks = stats.kstest(records[-1], cdf(p))
    lower, upper = cross["power_law_from"], cross["upper"]
    return dict(ks=float(ks.statistic), p_value=float(ks.pvalue),
                powerlaw=exponent_fit(records[-2:].ravel() - p.qb, lower, upper),
                powerlaw_exact_draws=exponent_fit(_exact_draws(exact_key, p, 1_000_000) - p.qb, lower, upper))


def run(p: ToyParams, chains: int = 4000, steps: int = 100_000, dt: float = 1e-5, eta: float = 1e-5,
        seed: int = 0, x_draws: int = 20_000) -> tuple[dict, dict]:
    """Both simulations, compared with the analytic equilibrium. Returns (toy.json dict, plot data).

    Samples for the distances are the chains' positions at the last two records (a quarter of
    `steps` apart, chains independent), so the KS p-value's independence assumption holds as far
    as the records are decorrelated. `x_draws` draws of the x sampler at each of x_probes(...)
    are checked against p(x|q) by a KS test as well.
    """
    from scipy import stats

    validate(p)
    if steps % 4:
        raise ToyError(f"steps must be a multiple of 4, got {steps}")
    kappa = check_steps(p, dt, eta)
    langevin_key, sgd_key, drift_key, start_key, x_key, exact_key = jax.random.split(jax.random.key(seed), 6)
    q0 = jnp.full((chains,), p.qb, jnp.float32)
    lang = np.asarray(langevin(langevin_key, q0, p, dt, steps=steps, record_every=steps // 4))
    interrupt.poll("toy")
    cross = crossovers(p)
    fit_lower = cross["power_law_from"]
    cdf_true = cdf(p)
    out: dict = dict(params=p._asdict(), chains=chains, steps=steps, seed=seed, analytic=cross, stiffness=kappa)
    wrong = stats.kstest(lang[-1], cdf(p._replace(alpha=1.2 * p.alpha)))
    out["langevin"] = dict(
        dt=dt, **_compare_with_eq6(lang, p, cross, exact_key),
        ks_alpha_plus_20pct=float(wrong.statistic), p_value_alpha_plus_20pct=float(wrong.pvalue),
        alpha_fit=fit_alpha(lang[-1], p),
        force="closed form" if p.kx == 0 else f"tabulated over |q-qb| (FORCE_TABLE = {FORCE_TABLE} nodes)",
    )
    # the learning picture, started from eq. (6) itself (q = qb is a fixed point of its dynamics)
    start = _exact_draws(start_key, p, chains).astype(np.float32)
    learn = np.asarray(sgd(sgd_key, jnp.asarray(start), p, eta, steps=steps, record_every=steps // 4))
    interrupt.poll("toy")
    ks_sgd = stats.kstest(learn[-1], cdf_true)
    probe_d = np.geomspace(fit_lower / 3, 2 * cross["upper"], 8)
    out["sgd"] = dict(
        eta=eta,
        drift=drift_check(drift_key, p, eta, p.qb + np.concatenate([-probe_d[::-1], probe_d])),
        ks_final_vs_eq6=float(ks_sgd.statistic), p_value_final_vs_eq6=float(ks_sgd.pvalue),
        median_abs_q_start=float(np.median(np.abs(start - p.qb))),
        median_abs_q_final=float(np.median(np.abs(learn[-1] - p.qb))),
        fraction_at_qb=float(np.mean(learn[-1] == p.qb)),
        note="the update noise is eta g d (x-xb)^2: multiplicative, zero at q = qb, with a q-dependent "
             "effective alpha = 2 / (eta g^2 d^2 Var((x-xb)^2)); the drift is -eta F'(q) but the "
             "stationary law is not eq. (6) with one alpha",
    )
    interrupt.poll("toy")
    probes = x_probes(p, cross)
    x_samples = np.asarray(jax.jit(sample_x, static_argnums=3)(
        x_key, jnp.repeat(jnp.asarray(probes, jnp.float32)[:, None], x_draws, 1), p, _is_quartic(p)))
    out["x_given_q"] = [dict(q=qv, ks=float(r.statistic), p_value=float(r.pvalue), draws=x_draws)
                        for qv, r in ((qv, stats.kstest(xs, x_cdf(qv, p))) for qv, xs in zip(probes, x_samples))]
    return out, dict(langevin=lang[-2:].ravel(), sgd=learn[-1], x=x_samples)


def curves(p: ToyParams, result: dict) -> dict:
    """What the figure draws of the theory: p(q) on its float64 grid (q, density; span: the grid's
    half-width) and, at each q of result["x_given_q"], (rms, p(x|q) * rms) on u = (x - xb) / rms."""
    q, dens = density_grid(p)
    u = np.linspace(-4, 4, 801)
    x_given_q = []
    for r in result["x_given_q"]:
        with float64(p) as p64:
            _, m2, _ = x_moments(jnp.float64(r["q"]), p64)
            rms = float(np.sqrt(m2))
            logp = log_px_given_q(jnp.asarray(p.xb + rms * u), jnp.float64(r["q"]), p64)
        x_given_q.append((rms, np.exp(np.asarray(logp)) * rms))
    return dict(q=q, density=dens, span=span(p), u=u, x_given_q=x_given_q)


def sweep_params(p: ToyParams, field: str, values, dt: float, eta: float | None = None) -> list[ToyParams]:
    """The parameter sets of a sweep of `field` over `values`, each validated with its step check."""
    values = [float(v) for v in values]
    if field not in ToyParams._fields or len(values) < 2:
        raise ToyError(f"sweep {field}={','.join(f'{v:g}' for v in values)}: expected FIELD=V1,V2,... with "
                       f"FIELD one of {', '.join(ToyParams._fields)} and at least two values")
    each = [p._replace(**{field: v}) for v in values]
    for pv in each:
        validate(pv)
        check_scales(pv)
        check_steps(pv, dt, dt if eta is None else eta)
    return each


def sweep(p: ToyParams, field: str, values, chains: int = 4000, steps: int = 100_000, dt: float = 1e-5,
          seed: int = 0) -> dict:
    """Langevin chains for several values of one parameter in one compiled, vmapped call (the same
    random numbers for every value), each compared with its own eq. (6): KS distance, and the
    power-law exponent fitted as in run() against alpha/beta and against the same fit on exact
    draws of eq. (6)."""
    if steps % 4:
        raise ToyError(f"steps must be a multiple of 4, got {steps}")
    each = sweep_params(p, field, values, dt)
    values = [getattr(pv, field) for pv in each]
    batched = p._replace(**{field: jnp.asarray(values, jnp.float32)})
    axes = ToyParams(*(0 if f == field else None for f in ToyParams._fields))
    chains_key, exact_key = jax.random.split(jax.random.key(seed))
    run_one = partial(langevin, steps=steps, record_every=steps // 4)
    qs = np.asarray(jax.vmap(run_one, in_axes=(None, None, axes, None))(
        chains_key, jnp.full((chains,), p.qb, jnp.float32), batched, dt))
    rows = []
    for v, pv, qv in zip(values, each, qs):
        interrupt.poll("toy")
        cross = crossovers(pv)
        rows.append(dict(value=v, analytic=cross, **_compare_with_eq6(qv, pv, cross, exact_key)))
    return dict(params=p._asdict(), field=field, chains=chains, steps=steps, dt=dt, seed=seed, rows=rows)


MAX_CHAINS = 10_000_000  # chains held at once: a few float32 arrays of this length (hundreds of MB)
MAX_STEPS = 2**31 - 4  # steps per chain: the scan's counters are int32


def _check(p: ToyParams, steps: int, dt: float, eta: float, seed: int, chains: int) -> None:
    """The checks every command makes before anything is computed or written."""
    check_seed("--seed", seed)
    if not 1 <= chains <= MAX_CHAINS:
        raise ToyError(f"--chains must be in 1..{MAX_CHAINS:,}, got {chains:,}")
    if not 4 <= steps <= MAX_STEPS:
        raise ToyError(f"--steps must be in 4..{MAX_STEPS:,}, got {steps:,}")
    validate(p)
    check_scales(p)
    check_steps(p, dt, eta)
    if steps % 4:
        raise ToyError(f"--steps must be a multiple of 4, got {steps}")


def _check_new(out: Path, name: str) -> None:
    if (out / name).exists():
        raise ConfigError(f"{out}: already holds {name}; choose another --out")


def write_run(out: Path, p: ToyParams, chains: int, steps: int, dt: float, eta: float, seed: int) -> list[str]:
    """`socjax toy`: run(), then out/toy.json and out/toy.png. Everything is checked before anything
    is computed or written. Returns the lines to print."""
    from socjax import plots, rundir

    _check(p, steps, dt, eta, seed, chains)
    _check_new(out, "toy.json")
    result, samples = run(p, chains, steps, dt, eta, seed)
    out.mkdir(parents=True, exist_ok=True)  # only now: an interrupted or failed run leaves nothing
    rundir.write_json(out / "toy.json", result)
    plots.toy_figure(out / "toy.png", result, samples, p, curves(p, result))
    lang = result["langevin"]
    return [f"wrote {out / 'toy.json'} and {out / 'toy.png'}: Langevin vs eq. (6) KS p = {lang['p_value']:.3g}; "
            f"{_exponent_text(lang['powerlaw'])} (the same fit on exact draws of eq. (6): "
            f"{_exponent_text(lang['powerlaw_exact_draws'])}; alpha/beta = {p.alpha / p.beta:g}); "
            f"SGD drift max |z| = {result['sgd']['drift']['max_abs_z']:.2f}"]


def _exponent_text(fit: dict) -> str:
    return f"exponent {fit['exponent']:.3f} +- {fit['stderr']:.3f}" if "exponent" in fit else f"no exponent ({fit['error']})"


def write_sweep(out: Path, p: ToyParams, text: str, chains: int, steps: int, dt: float, eta: float,
                seed: int) -> list[str]:
    """`socjax toy --sweep FIELD=V1,V2,...`: sweep(), then out/sweep.json and out/sweep.png. Returns
    the lines to print."""
    from socjax import plots, rundir

    _check(p, steps, dt, eta, seed, chains)
    field, _, values = text.partition("=")
    try:
        values = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ToyError(f"--sweep {text!r}: expected FIELD=V1,V2,... with numbers") from None
    sweep_params(p, field, values, dt, eta)
    if len(values) * chains > MAX_CHAINS:  # every value's chains are held at once (vmapped)
        raise ToyError(f"--sweep: {len(values)} values x {chains:,} chains = {len(values) * chains:,} chains held at "
                       f"once; at most {MAX_CHAINS:,}")
    _check_new(out, "sweep.json")
    result = sweep(p, field, values, chains, steps, dt, seed)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(out / "sweep.json", result)
    plots.toy_sweep_figure(out / "sweep.png", result)
    lines = [f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}"]
    for r in result["rows"]:
        lines.append(f"  {field} = {r['value']:g}: KS p = {r['p_value']:.3g}; {_exponent_text(r['powerlaw'])} "
                     f"(exact draws: {_exponent_text(r['powerlaw_exact_draws'])}; "
                     f"alpha/beta = {r['analytic']['exponent']:g})")
    return lines
