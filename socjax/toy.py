"""The toy model of Section 2: one fast neuron state x, one slow weight q, a quartic coupling.

    H(x, q) = lx (x-xb)^2/2 + g (q-qb)^2 (x-xb)^2/2 + lq (q-qb)^2/2 [+ kx (x-xb)^4/4]       (eq. 2)
    F(beta, q) = log(g d^2 + lx) / (2 beta) + lq d^2/2 + log(beta) / (2 beta),  d = q - qb   (eq. 4)
    p(q) ~ exp(-alpha F) ~ (g d^2 + lx)^(-alpha/(2 beta)) exp(-alpha lq d^2 / 2)             (eq. 6)

so p ~ |d|^(-alpha/beta) for |lx|/g < d^2 < W(beta lq)/(beta lq) and Gaussian beyond (eq. 7; W is
the Lambert W function).

The quartic term kx (not in the paper; kx = 0 is the paper's model and uses the closed forms above)
is what makes the frustrated regime lx < 0 a defined model: where a(q) = g d^2 + lx <= 0 the
Gaussian p(x|q) of eq. (2) is not normalizable, and with kx > 0 it becomes the bounded double well
p(x|q) ~ exp(-beta (a u^2/2 + kx u^4/4)), u = x - xb, bimodal for a < 0 with maxima at
u = +-sqrt(-a/kx) and a barrier beta a^2/(4 kx). Then F is computed by quadrature over x,
F = -(1/beta) log(Z_x / sqrt(2 pi)) + lq d^2/2 with Z_x = int exp(-beta (a u^2/2 + kx u^4/4)) du,
which is eq. (4) exactly when kx = 0, and dF/dq = g d <u^2> + lq d in every case.

Simulations (jit-compiled scans, vmapped over chains; parameters are traced, so a vmap over a
sweep of them works too):
  (a) Langevin dynamics of q on F at temperature 1/alpha: dq = -F'(q) dt + sqrt(2 dt / alpha) N(0,1),
      whose stationary law is eq. (6);
  (b) the two-timescale learning picture: each step draws x ~ p(x|q) exactly (rejection sampling;
      a plain Gaussian draw when kx = 0) and takes an SGD step on H: q -= eta dH/dq =
      eta (g d (x-xb)^2 + lq d). Its mean drift is -eta F'(q) exactly, since dF/dq = <dH/dq>.
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from socjax.config import ToyParams  # noqa: F401  (plain data; lives in config so the CLI need not import JAX)

QUAD_POINTS = 1025  # trapezoid nodes per quadrature over x (error < 1e-10 relative; tests/test_toy.py)
FORCE_TABLE = 100_001  # nodes of the tabulated Langevin force over |q - qb| when kx > 0
PROPOSALS = 4  # rejection-sampling proposals per chain per round (each accepted with probability >= 0.45;
#                4 was fastest: 259 ns per chain-step of the frustrated SGD picture vs 290 (2), 341 (8), 360 (16))
MAX_STEP_STIFFNESS = 0.25  # largest dt * max F'' (and eta * (g max<u^2> + lq)) that run() accepts


class ToyError(ValueError):
    """Parameters for which the model is not defined; the message names the failed condition."""


def validate(p: ToyParams) -> None:
    if not p.g > 0:
        raise ToyError(f"g = {p.g}: the coupling must be positive (g > 0) for p(x|q) to be normalizable")
    if not p.kx >= 0:
        raise ToyError(f"kx = {p.kx}: a negative quartic term makes p(x|q) ~ exp(-beta H) unbounded in x; "
                       "need kx >= 0")
    if not p.lx > 0 and not p.kx > 0:
        raise ToyError(f"lx = {p.lx} with kx = 0: lx <= 0 makes g (q-qb)^2 + lx <= 0 near q = qb, where "
                       "p(x|q) ~ exp(-beta H) is not normalizable in x (x is unbounded); the frustrated "
                       "regime needs the quartic term kx > 0")
    if not p.lq > 0:
        raise ToyError(f"lq = {p.lq}: p(q) of eq. (6) is normalizable only for lq > 0")
    if not (p.beta > 0 and p.alpha > 0):
        raise ToyError(f"beta = {p.beta}, alpha = {p.alpha}: both must be positive")


def _is_quartic(p: ToyParams, quartic: bool | None = None) -> bool:
    """Whether kx may be nonzero; decided in Python so kx = 0 keeps the closed forms. A traced kx
    (a vmapped sweep over it) takes the quadrature path, which falls back to the closed forms
    wherever kx = 0. quartic: the caller's static answer, when it has one (inside jit)."""
    if quartic is not None:
        return quartic
    try:
        return float(p.kx) != 0.0
    except TypeError:  # a tracer (ConcretizationTypeError is a TypeError) or an array of several values
        return True


def _quartic_integrals(c):
    """For J(c) = int exp(-(c t^2/2 + t^4/4)) dt over the real line: (log J, <t^2>, <t^4>).

    Trapezoid rule over t >= 0 on a window around the integrand's mass, shifted by its maximum so
    deep double wells (c << 0) do not overflow. The integrand is even and negligible (< e^-45) at
    the window's other ends, so by Euler-Maclaurin the rule converges faster than any power of the
    node spacing."""
    c = jnp.asarray(c)[..., None]
    t0 = jnp.where(c < 0, jnp.sqrt(jnp.where(c < 0, -c, 1.0)), 0.0)  # the wells' position (NaN-free gradient)
    w = 1 / jnp.sqrt(1 + jnp.where(c < 0, -2 * c, c))  # their width (or the Gaussian's)
    lo = jnp.where(c < -16, t0 - 14 * w, 0.0)
    hi = t0 + 14 * w
    t = lo + (hi - lo) * jnp.linspace(0.0, 1.0, QUAD_POINTS, dtype=c.dtype).reshape((1,) * (c.ndim - 1) + (-1,))
    m = jnp.where(c < 0, c**2 / 4, 0.0)
    e = jnp.exp(-(c * t**2 / 2 + t**4 / 4) - m)
    h = (hi - lo)[..., 0] / (QUAD_POINTS - 1)

    def trapezoid(v):
        return h * (v.sum(-1) - 0.5 * (v[..., 0] + v[..., -1]))

    i0 = trapezoid(e)
    return m[..., 0] + jnp.log(2 * i0), trapezoid(e * t**2) / i0, trapezoid(e * t**4) / i0


def x_moments(q, p: ToyParams, quartic: bool | None = None):
    """(log Z_x, <u^2>, <u^4>) of p(x|q), u = x - xb: closed forms for kx = 0, quadrature otherwise.

    Quadrature is over the substitution u = t (beta kx)^(-1/4), under which the integrand depends
    on one number c = a sqrt(beta / kx), a = g d^2 + lx. Large inputs are mapped in batches of
    4,096 values of q to bound the memory (QUAD_POINTS nodes each). quartic: False forces the
    closed forms (kx = 0 known statically though traced); None decides from p."""
    d = jnp.asarray(q) - p.qb
    a = p.g * d**2 + p.lx
    if not _is_quartic(p, quartic):
        m2 = 1 / (p.beta * a)
        return 0.5 * jnp.log(2 * jnp.pi * m2), m2, 3 * m2**2
    kx = jnp.where(p.kx > 0, p.kx, 1.0)  # a traced kx = 0 (in a sweep) takes the closed forms below
    c = a * jnp.sqrt(p.beta / kx)
    if c.size > 4096:
        flat = jax.lax.map(_quartic_integrals, c.ravel(), batch_size=4096)
        log_j, t2, t4 = (v.reshape(c.shape) for v in flat)
    else:
        log_j, t2, t4 = _quartic_integrals(c)
    scale2 = 1 / jnp.sqrt(p.beta * kx)  # u^2 = scale2 t^2
    m2_gauss = 1 / (p.beta * a)
    return (jnp.where(p.kx > 0, log_j + 0.5 * jnp.log(scale2), 0.5 * jnp.log(2 * jnp.pi * m2_gauss)),
            jnp.where(p.kx > 0, scale2 * t2, m2_gauss), jnp.where(p.kx > 0, scale2**2 * t4, 3 * m2_gauss**2))


def free_energy(q, p: ToyParams, quartic: bool | None = None):
    """F(beta, q): eq. (4) for kx = 0; -(1/beta) log(Z_x / sqrt(2 pi)) + lq d^2/2 by quadrature otherwise."""
    d = q - p.qb
    if not _is_quartic(p, quartic):
        return jnp.log(p.g * d**2 + p.lx) / (2 * p.beta) + p.lq * d**2 / 2 + jnp.log(p.beta) / (2 * p.beta)
    log_z, _, _ = x_moments(q, p)
    return -(log_z - 0.5 * jnp.log(2 * jnp.pi)) / p.beta + p.lq * d**2 / 2


def dfree_energy(q, p: ToyParams, quartic: bool | None = None):
    """dF/dq = <dH/dq> = g d <u^2> + lq d (= g d / (beta (g d^2 + lx)) + lq d when kx = 0)."""
    d = q - p.qb
    if not _is_quartic(p, quartic):
        return p.g * d / (p.beta * (p.g * d**2 + p.lx)) + p.lq * d
    _, m2, _ = x_moments(q, p)
    return p.g * d * m2 + p.lq * d


def log_px_given_q(x, q, p: ToyParams):
    """log p(x|q), normalized: -beta (a u^2/2 + kx u^4/4) - log Z_x."""
    u = x - p.xb
    a = p.g * (q - p.qb) ** 2 + p.lx
    log_z, _, _ = x_moments(q, p)
    return -p.beta * (a * u**2 / 2 + p.kx * u**4 / 4) - log_z


def _float64(p: ToyParams) -> ToyParams:
    """The parameters as float64 scalars (inside jax.enable_x64), for the analytic computations."""
    return ToyParams(*(jnp.float64(v) for v in p))


def span(p: ToyParams) -> float:
    """|q - qb| beyond which p(q) is negligible (< e^-40 of its Gaussian factor): the grid's half-width.
    A float for float parameters, a traced scalar for traced ones."""
    return (80.0 / (p.alpha * p.lq)) ** 0.5


def _cached(f):
    """lru_cache for functions of plain-float ToyParams; traced or array parameters bypass it."""
    cached = functools.lru_cache(maxsize=16)(f)

    @functools.wraps(f)
    def wrapper(p, *args):
        try:
            hash(p)
        except TypeError:
            return f(p, *args)
        return cached(p, *args)

    return wrapper


@_cached
def _free_energy_grid(p: ToyParams, points: int = 400_001):
    """(q, F(q)) in float64 on a uniform grid over qb +- span, symmetric about qb (computed on one side)."""
    validate(p)
    half = (points + 1) // 2
    with jax.enable_x64(True):
        p64 = _float64(p)
        d = jnp.linspace(0.0, span(p), half)
        f = np.asarray(free_energy(p64.qb + d, p64))
    d = np.asarray(d)
    return np.concatenate([p.qb - d[:0:-1], p.qb + d]), np.concatenate([f[:0:-1], f])


def density_grid(p: ToyParams, points: int = 400_001):
    """(q, p(q)) on a uniform grid over qb +- span, normalized in float64 by the trapezoid rule."""
    q, f = _free_energy_grid(p, points)
    logp = -p.alpha * (f - f.min())
    dens = np.exp(logp)
    return q, dens / np.trapezoid(dens, q)


def _grid_cdf(x: np.ndarray, dens: np.ndarray):
    """The CDF of a density tabulated on the grid x, by the cumulative trapezoid rule, as a callable."""
    c = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
    c /= c[-1]
    return lambda v: np.interp(v, x, c)


def cdf(p: ToyParams):
    """The CDF of p(q) as a callable (numerical, from density_grid)."""
    return _grid_cdf(*density_grid(p))


def x_cdf(q: float, p: ToyParams, points: int = 40_001):
    """The CDF of p(x|q) as a callable, by the trapezoid rule in float64 over xb +- 14 rms."""
    with jax.enable_x64(True):
        p64 = _float64(p)
        _, m2, _ = x_moments(jnp.float64(q), p64)
        x = p.xb + 14 * float(np.sqrt(m2)) * np.linspace(-1, 1, points)
        dens = np.exp(np.asarray(log_px_given_q(jnp.asarray(x), jnp.float64(q), p64)))
    return _grid_cdf(x, dens)


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
    """Scales of eq. (7), as |q - qb|: power law between sqrt(|lx|/g) and sqrt(W(beta lq)/(beta lq)).

    With lx < 0 the lower edge bounds the frustrated core (p(x|q) bimodal inside it). With kx > 0,
    `quartic` is the |q - qb| below which the quartic term sets the size of x's fluctuations
    (g d^2 + lx ~ sqrt(kx/beta)); the power law of eq. (7) needs both edges below the upper one."""
    validate(p)
    with jax.enable_x64(True):
        w = float(lambert_w(jnp.float64(p.beta * p.lq)))
    out = dict(lower=float(np.sqrt(abs(p.lx) / p.g)), upper=float(np.sqrt(w / (p.beta * p.lq))),
               exponent=p.alpha / p.beta, frustrated=bool(p.lx < 0))
    if p.kx > 0:
        out["quartic"] = float(np.sqrt(np.sqrt(p.kx / p.beta) / p.g))
        out["barrier_at_qb"] = float(p.beta * p.lx**2 / (4 * p.kx)) if p.lx < 0 else 0.0
    out["power_law_from"] = max(out["lower"], out.get("quartic", 0.0))  # > 0: validate needs lx > 0 or kx > 0
    return out


def stiffness(p: ToyParams) -> float:
    """g <u^2>(qb) + lq: the largest F''(q), and the largest mean rate of the SGD picture's
    multiplicative update, both at q = qb. A step dt (or eta) must be small against its inverse."""
    with jax.enable_x64(True):
        p64 = _float64(p)
        _, m2, _ = x_moments(jnp.float64(p.qb), p64)
    return p.g * float(m2) + p.lq


def check_steps(p: ToyParams, dt: float, eta: float) -> float:
    """Refuse a Langevin step dt or SGD rate eta too large for the stiffness at q = qb; returns it."""
    kappa = stiffness(p)
    for name, step in (("dt", dt), ("eta", eta)):
        if not step > 0:
            raise ToyError(f"{name} = {step:g}: must be positive")
        if not step * kappa <= MAX_STEP_STIFFNESS:
            raise ToyError(f"{name} = {step:g}: {name} * (g <(x-xb)^2>(qb) + lq) = {step * kappa:.3g} > "
                           f"{MAX_STEP_STIFFNESS} (the steps resolve F'' = {kappa:.3g} at q = qb badly, and "
                           f"diverge beyond 2); use {name} <= {MAX_STEP_STIFFNESS / kappa:.3g}")
    return kappa


def _force(p: ToyParams, quartic: bool, dtype):
    """q -> F'(q) for the Langevin chains: the closed form for kx = 0; for kx > 0, g d <u^2> + lq d
    with <u^2> interpolated linearly from a table over |d| in [0, span] (FORCE_TABLE nodes, built
    once per call by quadrature)."""
    if not quartic:
        return lambda q: dfree_energy(q, p, quartic=False)
    h = jnp.asarray(span(p), dtype) / (FORCE_TABLE - 1)
    _, m2_table, _ = x_moments(p.qb + h * jnp.arange(FORCE_TABLE, dtype=dtype), p, quartic=True)

    def force(q):
        d = q - p.qb
        s = jnp.minimum(jnp.abs(d) / h, FORCE_TABLE - 1.0)
        i = jnp.minimum(jnp.floor(s).astype(jnp.int32), FORCE_TABLE - 2)
        frac = s - i
        m2 = m2_table[i] * (1 - frac) + m2_table[i + 1] * frac
        return p.g * d * m2 + p.lq * d

    return force


def langevin(key, q0, p: ToyParams, dt: float, *, steps: int, record_every: int):
    """Euler-Maruyama Langevin chains on F at temperature 1/alpha. q0: (C,) starting points.
    Returns (steps // record_every, C) recorded positions."""
    return _langevin(key, q0, p, dt, steps=steps, record_every=record_every, quartic=_is_quartic(p))


@partial(jax.jit, static_argnames=("steps", "record_every", "quartic"))
def _langevin(key, q0, p: ToyParams, dt, *, steps: int, record_every: int, quartic: bool):
    force = _force(p, quartic, q0.dtype)

    def block(q, k):
        def step(q, kk):
            noise = jax.random.normal(kk, q.shape, q.dtype)
            return q - force(q) * dt + jnp.sqrt(2 * dt / p.alpha) * noise, None

        q, _ = jax.lax.scan(step, q, jax.random.split(k, record_every))
        return q, q

    _, qs = jax.lax.scan(block, q0, jax.random.split(key, steps // record_every))
    return qs


def sgd(key, q0, p: ToyParams, eta: float, *, steps: int, record_every: int):
    """The learning picture (b) for chains q0: (C,): x ~ p(x|q), then q -= eta dH/dq.
    Returns recorded positions (steps // record_every, C)."""
    return _sgd(key, q0, p, eta, steps=steps, record_every=record_every, quartic=_is_quartic(p))


@partial(jax.jit, static_argnames=("steps", "record_every", "quartic"))
def _sgd(key, q0, p: ToyParams, eta, *, steps: int, record_every: int, quartic: bool):
    def block(q, k):
        def step(q, kk):
            return q + sgd_update(kk, q, p, eta, quartic=quartic), None

        q, _ = jax.lax.scan(step, q, jax.random.split(k, record_every))
        return q, q

    _, qs = jax.lax.scan(block, q0, jax.random.split(key, steps // record_every))
    return qs


def sample_x(key, q, p: ToyParams, quartic: bool | None = None):
    """One exact draw of x ~ p(x|q) ~ exp(-beta (a u^2/2 + kx u^4/4)) for each element of q.

    Rejection sampling from one of two envelopes, whichever has the larger acceptance:
    (A) a Gaussian N(0, 1/(beta (a + 2s))), from kx u^4/4 >= s u^2 - s^2/kx, with the s that
        maximizes the acceptance, s = (sqrt(a^2 + 4 kx/beta) - a)/4; exact and always accepted
        when kx = 0 (s = 0: the Gaussian of eq. (2));
    (B) for a < 0, the mixture of N(+-u0, 2/(beta |a|)) around the wells u0 = sqrt(-a/kx), from
        kx (u^2 - u0^2)^2/4 >= kx u0^2 (|u| - u0)^2/4.
    Each round draws PROPOSALS candidates per element and keeps the first accepted; rounds repeat
    (a while loop) until every element has one, so each draw is exactly the first acceptance of an
    i.i.d. sequence. quartic: False (kx = 0 known statically) skips straight to the Gaussian draw.
    """
    q = jnp.asarray(q)
    a = p.g * (q - p.qb) ** 2 + p.lx
    if not _is_quartic(p, quartic):
        return p.xb + jax.random.normal(key, q.shape, q.dtype) / jnp.sqrt(p.beta * a)
    return p.xb + _sample_u(key, a, p)


def _sample_u(key, a, p: ToyParams):
    b, k = p.beta, p.kx
    k_pos = jnp.where(k > 0, k, 1.0)
    r = jnp.sqrt(a**2 + 4 * k / b)
    # s and s^2/k in forms without cancellation (a >= 0) and without 0/0 (kx = 0, where a > 0)
    s = jnp.where(a >= 0, k / (b * (r + jnp.abs(a))), (r - a) / 4)
    s2_over_k = jnp.where(a >= 0, k / (b**2 * (r + jnp.abs(a)) ** 2), s**2 / k_pos)
    var_a = 1 / (b * (a + 2 * s))
    log_m_a = 0.5 * jnp.log(2 * jnp.pi * var_a) + b * s2_over_k
    u0 = jnp.sqrt(jnp.maximum(-a, 0.0) / k_pos)
    var_b = 2 / (b * jnp.maximum(-a, jnp.finfo(a.dtype).tiny))
    log_m_b = jnp.log(2.0) + 0.5 * jnp.log(2 * jnp.pi * var_b) + b * a**2 / (4 * k_pos)
    use_b = (a < 0) & (log_m_b < log_m_a)

    def propose(key):
        kz, ku = jax.random.split(key)
        shape = a.shape + (PROPOSALS,)
        z = jax.random.normal(kz, shape, a.dtype)
        # one uniform gives both the well (its first half or second) and, rescaled, the acceptance draw
        v = jax.random.uniform(ku, shape, a.dtype)
        sign = jnp.where(v < 0.5, 1.0, -1.0).astype(a.dtype)
        v = 2 * jnp.where(v < 0.5, v, v - 0.5)
        A, B = (v[..., None] for v in (var_a, var_b))
        U0, S, S2K = (v[..., None] for v in (u0, s, s2_over_k))
        u = jnp.where(use_b[..., None], sign * U0 + jnp.sqrt(B) * z, jnp.sqrt(A) * z)
        log_acc_a = jnp.minimum(-b * (k * u**4 / 4 - S * u**2 + S2K), 0.0)
        log_acc_b = (-b * k / 4 * (u**2 - U0**2) ** 2
                     - jnp.logaddexp(-(u - U0) ** 2 / (2 * B), -(u + U0) ** 2 / (2 * B)))
        log_acc = jnp.where(use_b[..., None], log_acc_b, log_acc_a)
        accept = jnp.log(v) < log_acc
        first = jnp.argmax(accept, axis=-1)
        return jnp.take_along_axis(u, first[..., None], -1)[..., 0], accept.any(-1)

    def body(state):
        key, u, done = state
        key, sub = jax.random.split(key)
        cand, ok = propose(sub)
        return key, jnp.where(done, u, cand), done | ok

    _, u, _ = jax.lax.while_loop(lambda s: ~jnp.all(s[2]), body,
                                 (key, jnp.zeros_like(a), jnp.zeros(a.shape, bool)))
    return u


def sgd_update(key, q, p: ToyParams, eta, quartic: bool | None = None):
    """One SGD update dq for each q: x ~ p(x|q), dq = -eta (g d (x-xb)^2 + lq d)."""
    d = q - p.qb
    x = sample_x(key, q, p, quartic)
    return -eta * (p.g * d * (x - p.xb) ** 2 + p.lq * d)


def drift_check(key, p: ToyParams, eta: float, q: np.ndarray, repeats: int = 20_000) -> dict:
    """Mean SGD update at each q (over `repeats` draws of x) against -eta F'(q): z-scores."""
    qq = jnp.repeat(jnp.asarray(q, jnp.float32)[None, :], repeats, axis=0)
    dq = np.asarray(jax.jit(sgd_update, static_argnums=4)(key, qq, p, eta, _is_quartic(p)), np.float64)
    mean, se = dq.mean(0), dq.std(0, ddof=1) / np.sqrt(repeats)
    qd = np.asarray(q, np.float64)
    with jax.enable_x64(True):
        p64 = _float64(p)
        expected = -eta * np.asarray(dfree_energy(jnp.asarray(qd), p64))
        _, m2, m4 = (np.asarray(v) for v in x_moments(jnp.asarray(qd), p64))
    z = (mean - expected) / se
    # effective alpha: a Langevin step with dt = eta has update variance 2 eta / alpha, and
    # Var(dq) = eta^2 g^2 d^2 Var(u^2)
    d = qd - p.qb
    with np.errstate(divide="ignore"):
        alpha_sim = 2 * eta / dq.var(0, ddof=1)
        alpha_theory = 2 / (eta * p.g**2 * d**2 * (m4 - m2**2))
    return dict(q=qd.tolist(), mean_dq=mean.tolist(), expected=expected.tolist(), stderr=se.tolist(),
                z=z.tolist(), max_abs_z=float(np.max(np.abs(z))), repeats=repeats,
                alpha_effective=[float(a) if np.isfinite(a) else None for a in alpha_sim],
                alpha_effective_theory=[float(a) if np.isfinite(a) else None for a in alpha_theory])


def fit_alpha(samples: np.ndarray, p: ToyParams) -> float:
    """Maximum-likelihood alpha of p(q) ~ exp(-alpha F(q)) (eq. 6 with alpha free) from samples."""
    from scipy import optimize

    q, f_grid = _free_energy_grid(p)
    with jax.enable_x64(True):
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
    cross = crossovers(p)
    fit_lower = cross["power_law_from"]
    cdf_true = cdf(p)
    out: dict = dict(params=p._asdict(), chains=chains, steps=steps, analytic=cross, stiffness=kappa)
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
    probes = x_probes(p, cross)
    x_samples = np.asarray(jax.jit(sample_x, static_argnums=3)(
        x_key, jnp.repeat(jnp.asarray(probes, jnp.float32)[:, None], x_draws, 1), p, _is_quartic(p)))
    out["x_given_q"] = [dict(q=qv, ks=float(r.statistic), p_value=float(r.pvalue), draws=x_draws)
                        for qv, r in ((qv, stats.kstest(xs, x_cdf(qv, p))) for qv, xs in zip(probes, x_samples))]
    return out, dict(langevin=lang[-2:].ravel(), sgd=learn[-1], x=x_samples)


def figure(path, result: dict, samples: dict, p: ToyParams) -> None:
    """Left: log-log density of |q - qb|: eq. (6), both simulations, the frustrated, power-law and
    Gaussian regions at the analytic crossovers. Right: p(x|q) at x_probes, analytic and sampled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from socjax.analysis import loghist

    q, dens = density_grid(p)
    d = np.abs(q - p.qb)
    pos = q >= p.qb
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100, gridspec_kw=dict(width_ratios=[3, 2]))
    ax.loglog(d[pos][1:], 2 * dens[pos][1:], "k", lw=2, label=f"eq. (6), alpha = {p.alpha:g}")
    h = loghist.from_samples(np.abs(samples["langevin"] - p.qb), loghist.Grid(bins_per_decade=20))
    x, dd = h.density()
    ok = dd > 0
    ax.loglog(x[ok], dd[ok], ".", color="C0", ms=4, label="Langevin on F at temperature 1/alpha")
    ax.text(0.98, 0.97, f"SGD learning picture (x ~ p(x|q)), started from eq. (6):\n"
            f"{result['sgd']['fraction_at_qb']:.0%} of chains end exactly at q = qb\n"
            "(multiplicative noise; drift = -eta F'(q), see toy.json)",
            transform=ax.transAxes, ha="right", va="top", fontsize=8, color="C3")
    c = result["analytic"]
    lo = c["power_law_from"] / 30
    if c["frustrated"]:
        ax.axvspan(lo, c["lower"], color="C3", alpha=0.10, label="frustrated: p(x|q) bimodal")
    ax.axvspan(c["power_law_from"], c["upper"], color="C2", alpha=0.12, label=f"power law |q-qb|^-{c['exponent']:.3g} (eq. 7)")
    ax.axvspan(c["upper"], d.max(), color="C1", alpha=0.08, label="Gaussian")
    ax.set_xlim(lo, span(p))
    ax.set_ylim(1e-4 * dens.max(), 5 * dens.max())
    ax.set_xlabel("|q - qb|")
    ax.set_ylabel("density of |q - qb|")
    kx = f", kx = {p.kx:g}" if p.kx else ""
    ax.set_title(f"Toy model (Section 2): learning equilibrium p(q); lx = {p.lx:g}{kx}", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    for i, (r, xs) in enumerate(zip(result["x_given_q"], samples["x"])):
        with jax.enable_x64(True):
            p64 = _float64(p)
            _, m2, _ = x_moments(jnp.float64(r["q"]), p64)
            rms = float(np.sqrt(m2))
            u = np.linspace(-4, 4, 801)
            curve = np.exp(np.asarray(log_px_given_q(jnp.asarray(p.xb + rms * u), jnp.float64(r["q"]), p64))) * rms
        bx.hist((xs - p.xb) / rms, bins=80, range=(-4, 4), density=True, color=f"C{i}", alpha=0.3)
        bx.plot(u, curve, color=f"C{i}", label=f"|q-qb| = {abs(r['q'] - p.qb):.3g}  (KS p = {r['p_value']:.2f})")
    bx.set_xlabel("(x - xb) / rms")
    bx.set_ylabel("p(x|q) x rms")
    bx.set_title("p(x|q): analytic (lines), exact sampler (histograms)", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sweep_params(p: ToyParams, field: str, values, dt: float, eta: float | None = None) -> list[ToyParams]:
    """The parameter sets of a sweep of `field` over `values`, each validated with its step check."""
    values = [float(v) for v in values]
    if field not in ToyParams._fields or len(values) < 2:
        raise ToyError(f"sweep {field}={','.join(f'{v:g}' for v in values)}: expected FIELD=V1,V2,... with "
                       f"FIELD one of {', '.join(ToyParams._fields)} and at least two values")
    each = [p._replace(**{field: v}) for v in values]
    for pv in each:
        validate(pv)
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
        cross = crossovers(pv)
        rows.append(dict(value=v, analytic=cross, **_compare_with_eq6(qv, pv, cross, exact_key)))
    return dict(params=p._asdict(), field=field, chains=chains, steps=steps, dt=dt, seed=seed, rows=rows)


def sweep_figure(path, result: dict) -> None:
    """Fitted exponent against the swept value: alpha/beta (eq. 7), the fit on the Langevin chains
    with its 95% interval, and the same fit on exact draws of eq. (6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "exponent" in r["powerlaw"]]
    v = np.array([r["value"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(v, [r["analytic"]["exponent"] for r in rows], "k-", lw=1.5, label="alpha / beta (eq. 7)")
    fit = np.array([r["powerlaw"]["exponent"] for r in rows])
    ci = np.array([r["powerlaw"]["ci95"] for r in rows]).reshape(-1, 2)
    ax.errorbar(v, fit, yerr=[fit - ci[:, 0], ci[:, 1] - fit], fmt="o", color="C0", capsize=3,
                label="fit on Langevin chains (95%)")
    ax.plot(v, [r["powerlaw_exact_draws"].get("exponent", np.nan) for r in rows], "x", color="C3", ms=8,
            label="same fit on 10^6 exact draws of eq. (6)")
    ax.set_xlabel(result["field"])
    ax.set_ylabel("power-law exponent of p(|q - qb|)")
    ax.set_title(f"Toy model: exponent across a sweep of {result['field']} "
                 f"({result['chains']} chains x {result['steps']} steps each)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
