"""The toy model of Section 2: one fast neuron state x, one slow weight q, a quartic coupling.

    H(x, q) = lx (x-xb)^2/2 + g (q-qb)^2 (x-xb)^2/2 + lq (q-qb)^2/2            (eq. 2)
    F(beta, q) = log(g d^2 + lx) / (2 beta) + lq d^2/2 + log(beta) / (2 beta),  d = q - qb   (eq. 4)
    p(q) ~ (g d^2 + lx)^(-alpha/(2 beta)) exp(-alpha lq d^2 / 2)               (eq. 6)

so p ~ |d|^(-alpha/beta) for lx/g < d^2 < W(beta lq)/(beta lq) and Gaussian beyond (eq. 7; W is
the Lambert W function). Here lx > 0: below d^2 = lx/g the density is flat. (With lx < 0 the
state x is frustrated and p(x|q) is not Gaussian for d^2 < -lx/g; this module refuses lx <= 0.)

Simulations (jit-compiled scans, vmapped over chains):
  (a) Langevin dynamics of q on F at temperature 1/alpha: dq = -F'(q) dt + sqrt(2 dt / alpha) N(0,1),
      whose stationary law is eq. (6);
  (b) the two-timescale learning picture: each step draws x ~ p(x|q) = N(xb, 1/(beta (g d^2 + lx)))
      and takes an SGD step on H: q -= eta dH/dq = eta (g d (x-xb)^2 + lq d). Its mean drift is
      -eta F'(q) exactly, since <(x-xb)^2> = 1/(beta (g d^2 + lx)).
"""

from __future__ import annotations

from functools import partial
import jax
import jax.numpy as jnp
import numpy as np

from socjax.config import ToyParams  # noqa: F401  (plain data; lives in config so the CLI need not import JAX)


class ToyError(ValueError):
    """Parameters for which the model is not defined; the message names the failed condition."""




def validate(p: ToyParams) -> None:
    if not p.g > 0:
        raise ToyError(f"g = {p.g}: the coupling must be positive (g > 0) for p(x|q) to be normalizable")
    if not p.lx > 0:
        raise ToyError(f"lx = {p.lx}: lx <= 0 makes g (q-qb)^2 + lx <= 0 near q = qb, where p(x|q) ~ "
                       "exp(-beta H) is not normalizable in x (x is unbounded); this module needs lx > 0")
    if not p.lq > 0:
        raise ToyError(f"lq = {p.lq}: p(q) of eq. (6) is normalizable only for lq > 0")
    if not (p.beta > 0 and p.alpha > 0):
        raise ToyError(f"beta = {p.beta}, alpha = {p.alpha}: both must be positive")


def free_energy(q, p: ToyParams):
    """F(beta, q), eq. (4)."""
    d = q - p.qb
    return jnp.log(p.g * d**2 + p.lx) / (2 * p.beta) + p.lq * d**2 / 2 + jnp.log(p.beta) / (2 * p.beta)


def dfree_energy(q, p: ToyParams):
    """dF/dq = g d / (beta (g d^2 + lx)) + lq d."""
    d = q - p.qb
    return p.g * d / (p.beta * (p.g * d**2 + p.lx)) + p.lq * d


def log_density_unnormalized(q, p: ToyParams):
    """log of eq. (6) without its normalization: -alpha F + const."""
    d = q - p.qb
    return -p.alpha / (2 * p.beta) * jnp.log(p.g * d**2 + p.lx) - p.alpha * p.lq * d**2 / 2


def span(p: ToyParams) -> float:
    """|q - qb| beyond which p(q) is negligible (< e^-40 of its Gaussian factor): the grid's half-width."""
    return float(np.sqrt(80.0 / (p.alpha * p.lq)))


def density_grid(p: ToyParams, points: int = 400_001):
    """(q, p(q)) on a uniform grid over qb +- span, normalized in float64 by the trapezoid rule."""
    validate(p)
    with jax.enable_x64(True):
        q = jnp.linspace(p.qb - span(p), p.qb + span(p), points)
        logp = log_density_unnormalized(q, ToyParams(*(jnp.float64(v) for v in p)))
        dens = jnp.exp(logp - logp.max())
        dens = dens / jnp.trapezoid(dens, q)
        return np.asarray(q), np.asarray(dens)


def cdf(p: ToyParams):
    """The CDF of p(q) as a callable (numerical, from density_grid)."""
    q, dens = density_grid(p)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(q))])
    c /= c[-1]
    return lambda x: np.interp(x, q, c)


@jax.jit
def lambert_w(x):
    """Principal branch W0(x) for x >= -1/e (float64 under jax.enable_x64), by Halley's iteration:
    w <- w - (w e^w - x) / (e^w (w + 1) - (w + 2)(w e^w - x) / (2w + 2))."""
    x = jnp.asarray(x)
    # starting points: the branch-point series below -0.25, log(1+x) up to 3, log x - log log x beyond
    p = jnp.sqrt(jnp.maximum(2 * (jnp.e * x + 1), 0.0))
    near_branch = -1 + p - p**2 / 3 + 11 * p**3 / 72
    big = jnp.log(jnp.maximum(x, 3.0)) - jnp.log(jnp.log(jnp.maximum(x, 3.0)))
    w = jnp.where(x < -0.25, near_branch, jnp.where(x > 3, big, jnp.log1p(jnp.maximum(x, -0.25))))

    def body(_, w):
        ew = jnp.exp(w)
        f = w * ew - x
        denom = ew * (w + 1) - (w + 2) * f / (2 * w + 2)
        step = jnp.where(jnp.abs(w + 1) < 1e-12, 0.0, f / denom)
        return w - step

    w = jax.lax.fori_loop(0, 30, body, w)
    return jnp.where(x == -1 / jnp.e, -1.0, w)


def crossovers(p: ToyParams) -> dict:
    """Scales of eq. (7), as |q - qb|: power law between sqrt(lx/g) and sqrt(W(beta lq)/(beta lq))."""
    validate(p)
    with jax.enable_x64(True):
        w = float(lambert_w(jnp.float64(p.beta * p.lq)))
    return dict(lower=float(np.sqrt(p.lx / p.g)), upper=float(np.sqrt(w / (p.beta * p.lq))),
                exponent=p.alpha / p.beta)


@partial(jax.jit, static_argnames=("steps", "record_every"))
def langevin(key, q0, p: ToyParams, dt: float, *, steps: int, record_every: int):
    """Euler-Maruyama Langevin chains on F at temperature 1/alpha. q0: (C,) starting points.
    Returns (steps // record_every, C) recorded positions."""

    def block(q, k):
        def step(q, kk):
            noise = jax.random.normal(kk, q.shape, q.dtype)
            return q - dfree_energy(q, p) * dt + jnp.sqrt(2 * dt / p.alpha) * noise, None

        q, _ = jax.lax.scan(step, q, jax.random.split(k, record_every))
        return q, q

    _, qs = jax.lax.scan(block, q0, jax.random.split(key, steps // record_every))
    return qs


@partial(jax.jit, static_argnames=("steps", "record_every"))
def sgd(key, q0, p: ToyParams, eta: float, *, steps: int, record_every: int):
    """The learning picture (b) for chains q0: (C,): x ~ p(x|q), then q -= eta dH/dq.
    Returns recorded positions (steps // record_every, C)."""

    def block(q, k):
        def step(q, kk):
            return q + sgd_update(kk, q, p, eta), None

        q, _ = jax.lax.scan(step, q, jax.random.split(k, record_every))
        return q, q

    _, qs = jax.lax.scan(block, q0, jax.random.split(key, steps // record_every))
    return qs


def sgd_update(key, q, p: ToyParams, eta):
    """One SGD update dq for each q: x ~ N(xb, 1/(beta (g d^2 + lx))), dq = -eta (g d (x-xb)^2 + lq d)."""
    d = q - p.qb
    sd = 1.0 / jnp.sqrt(p.beta * (p.g * d**2 + p.lx))
    x = p.xb + sd * jax.random.normal(key, q.shape, q.dtype)
    return -eta * (p.g * d * (x - p.xb) ** 2 + p.lq * d)


def drift_check(key, p: ToyParams, eta: float, q: np.ndarray, repeats: int = 20_000) -> dict:
    """Mean SGD update at each q (over `repeats` draws of x) against -eta F'(q): z-scores."""
    qq = jnp.repeat(jnp.asarray(q, jnp.float32)[None, :], repeats, axis=0)
    dq = np.asarray(jax.jit(sgd_update)(key, qq, p, eta), np.float64)
    mean, se = dq.mean(0), dq.std(0, ddof=1) / np.sqrt(repeats)
    qd = np.asarray(q, np.float64)
    expected = -eta * np.asarray(dfree_energy(qd, p))
    z = (mean - expected) / se
    # effective alpha: a Langevin step with dt = eta has update variance 2 eta / alpha
    d = qd - p.qb
    with np.errstate(divide="ignore"):
        alpha_sim = 2 * eta / dq.var(0, ddof=1)
        alpha_theory = p.beta**2 * (p.g * d**2 + p.lx) ** 2 / (eta * p.g**2 * d**2)
    return dict(q=qd.tolist(), mean_dq=mean.tolist(), expected=expected.tolist(), stderr=se.tolist(),
                z=z.tolist(), max_abs_z=float(np.max(np.abs(z))), repeats=repeats,
                alpha_effective=[float(a) if np.isfinite(a) else None for a in alpha_sim],
                alpha_effective_theory=[float(a) if np.isfinite(a) else None for a in alpha_theory])


def fit_alpha(samples: np.ndarray, p: ToyParams) -> float:
    """Maximum-likelihood alpha of p(q) ~ exp(-alpha F(q)) (eq. 6 with alpha free) from samples."""
    from scipy import optimize

    q, _ = density_grid(p)
    with jax.enable_x64(True):
        f_grid = np.asarray(free_energy(jnp.asarray(q), p))
        f_samp = np.asarray(free_energy(jnp.asarray(samples, jnp.float64), p))

    def nll(a):
        logz = np.log(np.trapezoid(np.exp(-a * (f_grid - f_grid.min())), q)) - a * f_grid.min()
        return a * f_samp.mean() + logz

    return float(optimize.minimize_scalar(nll, bounds=(1e-3, 100), method="bounded", options=dict(xatol=1e-8)).x)


def exponent_fit(samples: np.ndarray, lower: float, upper: float) -> dict:
    """The bounded power-law fit of the main experiment (socjax.analysis.powerlaw) on |q - qb| over
    [3 lower, upper / 2], inside the analytic power-law range."""
    from socjax.analysis import loghist, powerlaw

    h = loghist.from_samples(np.abs(samples))
    g = h.grid
    i = int(np.ceil((np.log10(3 * lower) - g.lo) * g.bins_per_decade))
    j = int(np.floor((np.log10(upper / 2) - g.lo) * g.bins_per_decade))
    if j - i < g.bins_per_decade // 2:
        return dict(error=f"the power-law range [{3 * lower:.3g}, {upper / 2:.3g}] is narrower than half a decade")
    a, se, n, ks = (float(v[0]) for v in powerlaw.fit_range(h, i, j))
    e = g.edges()
    return dict(exponent=a, stderr=se, ci95=[a - 1.96 * se, a + 1.96 * se], xmin=float(e[i]), xmax=float(e[j]), n=int(n), ks=ks)


def run(p: ToyParams, chains: int = 4000, steps: int = 100_000, dt: float = 1e-5, eta: float = 1e-5,
        seed: int = 0) -> tuple[dict, dict]:
    """Both simulations, compared with the analytic equilibrium. Returns (toy.json dict, plot data).

    Samples for the distances are the chains' positions at the last two records (a quarter of
    `steps` apart, chains independent), so the KS p-value's independence assumption holds as far
    as the records are decorrelated.
    """
    from scipy import stats

    validate(p)
    if steps % 4:
        raise ToyError(f"steps must be a multiple of 4, got {steps}")
    langevin_key, sgd_key, drift_key, start_key = jax.random.split(jax.random.key(seed), 4)
    q0 = jnp.full((chains,), p.qb, jnp.float32)
    lang = np.asarray(langevin(langevin_key, q0, p, dt, steps=steps, record_every=steps // 4))
    cross = crossovers(p)
    cdf_true = cdf(p)
    out: dict = dict(params=p._asdict(), chains=chains, steps=steps, analytic=cross)
    lang_last = lang[-1]
    ks = stats.kstest(lang_last, cdf_true)
    wrong = stats.kstest(lang_last, cdf(p._replace(alpha=1.2 * p.alpha)))
    out["langevin"] = dict(
        dt=dt, ks=float(ks.statistic), p_value=float(ks.pvalue),
        ks_alpha_plus_20pct=float(wrong.statistic), p_value_alpha_plus_20pct=float(wrong.pvalue),
        alpha_fit=fit_alpha(lang_last, p),
        powerlaw=exponent_fit(lang[-2:].ravel() - p.qb, cross["lower"], cross["upper"]),
    )
    # the learning picture, started from eq. (6) itself (q = qb is a fixed point of its dynamics)
    grid_q, _ = density_grid(p)
    u = np.asarray(jax.random.uniform(start_key, (chains,), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    start = np.interp(u, cdf_true(grid_q), grid_q).astype(np.float32)
    learn = np.asarray(sgd(sgd_key, jnp.asarray(start), p, eta, steps=steps, record_every=steps // 4))
    ks_sgd = stats.kstest(learn[-1], cdf_true)
    span_q = p.qb + np.concatenate([-np.geomspace(2 * cross["upper"], 3 * cross["lower"], 8),
                                    np.geomspace(3 * cross["lower"], 2 * cross["upper"], 8)])
    out["sgd"] = dict(
        eta=eta,
        drift=drift_check(drift_key, p, eta, span_q),
        ks_final_vs_eq6=float(ks_sgd.statistic), p_value_final_vs_eq6=float(ks_sgd.pvalue),
        median_abs_q_start=float(np.median(np.abs(start - p.qb))),
        median_abs_q_final=float(np.median(np.abs(learn[-1] - p.qb))),
        note="the update noise is eta g d (x-xb)^2: multiplicative, zero at q = qb, with a q-dependent "
             "effective alpha = beta^2 (g d^2 + lx)^2 / (eta g^2 d^2); the drift is -eta F'(q) but the "
             "stationary law is not eq. (6) with one alpha",
    )
    return out, dict(langevin=lang[-2:].ravel(), sgd=learn[-1])


def figure(path, result: dict, samples: dict, p: ToyParams) -> None:
    """Log-log density of |q - qb|: eq. (6), both simulations, the power-law and Gaussian regions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from socjax.analysis import loghist

    q, dens = density_grid(p)
    d = np.abs(q - p.qb)
    pos = q >= p.qb
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.loglog(d[pos][1:], 2 * dens[pos][1:], "k", lw=2, label=f"eq. (6), alpha = {p.alpha:g}")
    h = loghist.from_samples(np.abs(samples["langevin"] - p.qb), loghist.Grid(bins_per_decade=20))
    x, dd = h.density()
    ok = dd > 0
    ax.loglog(x[ok], dd[ok], ".", color="C0", ms=4, label="Langevin on F at temperature 1/alpha")
    collapsed = float(np.mean(samples["sgd"] == p.qb))
    ax.text(0.98, 0.97, f"SGD learning picture (x ~ p(x|q)), started from eq. (6):\n{collapsed:.0%} of chains end "
            "exactly at q = qb\n(multiplicative noise; drift = -eta F'(q), see toy.json)",
            transform=ax.transAxes, ha="right", va="top", fontsize=8, color="C3")
    c = result["analytic"]
    ax.axvspan(c["lower"], c["upper"], color="C2", alpha=0.12, label=f"power law |q-qb|^-{c['exponent']:.3g} (eq. 7)")
    ax.axvspan(c["upper"], d.max(), color="C1", alpha=0.08, label="Gaussian")
    ax.set_xlim(c["lower"] / 30, span(p))
    ax.set_ylim(1e-4 * dens.max(), 5 * dens.max())
    ax.set_xlabel("|q - qb|")
    ax.set_ylabel("density of |q - qb|")
    ax.set_title("Toy model (Section 2): learning equilibrium p(q)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
