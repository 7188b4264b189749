"""The toy model of Section 2 in closed form and by quadrature: eqs. (2)-(7), in float64.

    H(x, q) = lx (x-xb)^2/2 + g (q-qb)^2 (x-xb)^2/2 + lq (q-qb)^2/2 [+ kx (x-xb)^4/4]       (eq. 2)
    F(beta, q) = log(g d^2 + lx) / (2 beta) + lq d^2/2 + log(beta) / (2 beta),  d = q - qb   (eq. 4)
    p(q) ~ exp(-alpha F) ~ (g d^2 + lx)^(-alpha/(2 beta)) exp(-alpha lq d^2 / 2)             (eq. 6)

so p ~ |d|^(-alpha/beta) for |lx|/g < d^2 < W(beta lq)/(beta lq) and Gaussian beyond (eq. 7; W is
the Lambert W function, scipy.special.lambertw: it is only evaluated on the host).

The quartic term kx (not in the paper; kx = 0 is the paper's model and uses the closed forms above)
is what makes the frustrated regime lx < 0 a defined model: where a(q) = g d^2 + lx <= 0 the
Gaussian p(x|q) of eq. (2) is not normalizable, and with kx > 0 it becomes the bounded double well
p(x|q) ~ exp(-beta (a u^2/2 + kx u^4/4)), u = x - xb, bimodal for a < 0 with maxima at
u = +-sqrt(-a/kx) and a barrier beta a^2/(4 kx). Then F is computed by quadrature over x,
F = -(1/beta) log(Z_x / sqrt(2 pi)) + lq d^2/2 with Z_x = int exp(-beta (a u^2/2 + kx u^4/4)) du,
which is eq. (4) exactly when kx = 0, and dF/dq = g d <u^2> + lq d in every case.

The functions take ToyParams of Python floats or of traced scalars (a vmapped sweep). The analytic
results on the host (grids, CDFs, crossovers, stiffness) are float64: `float64(p)` is the one
switch into it.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from socjax.config import ConfigError, ToyParams

QUAD_POINTS = 1025  # trapezoid nodes per quadrature over x (error < 1e-10 relative; tests/test_toy.py)
MAX_STEP_STIFFNESS = 0.25  # largest dt * max F'' (and eta * (g max<u^2> + lq)) that a simulation accepts


class ToyError(ConfigError):
    """Parameters for which the model is not defined; the message names the failed condition."""


# nonzero parameters' magnitudes: fourth powers of 1e8 are 1e32, below float32's 3.4e38; squares of
# 1e-12 (1e-24) are still normal float32 numbers
MIN_SCALE, MAX_SCALE = 1e-12, 1e8


def validate(p: ToyParams) -> None:
    bad = [f"{name} = {v}" for name, v in p._asdict().items() if not math.isfinite(v)]
    if bad:
        raise ToyError(f"{', '.join(bad)}: every parameter must be a finite number")
    bad = [f"{name} = {v:g}" for name, v in p._asdict().items() if v != 0 and not MIN_SCALE <= abs(v) <= MAX_SCALE]
    if bad:
        raise ToyError(f"{', '.join(bad)}: outside the scales the simulation represents; every nonzero parameter's "
                       f"magnitude must lie in [{MIN_SCALE:g}, {MAX_SCALE:g}] (its squares stay normal and its fourth "
                       "powers finite in float32)")
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


@contextlib.contextmanager
def float64(p: ToyParams):
    """Inside: JAX in float64, and the parameters as float64 scalars (the analytic computations)."""
    with jax.enable_x64(True):
        yield ToyParams(*(jnp.float64(v) for v in p))


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
    with float64(p) as p64:
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
    with float64(p) as p64:
        _, m2, _ = x_moments(jnp.float64(q), p64)
        x = p.xb + 14 * float(np.sqrt(m2)) * np.linspace(-1, 1, points)
        dens = np.exp(np.asarray(log_px_given_q(jnp.asarray(x), jnp.float64(q), p64)))
    return _grid_cdf(x, dens)


def crossovers(p: ToyParams) -> dict:
    """Scales of eq. (7), as |q - qb|: power law between sqrt(|lx|/g) and sqrt(W(beta lq)/(beta lq)).

    With lx < 0 the lower edge bounds the frustrated core (p(x|q) bimodal inside it). With kx > 0,
    `quartic` is the |q - qb| below which the quartic term sets the size of x's fluctuations
    (g d^2 + lx ~ sqrt(kx/beta)); the power law of eq. (7) needs both edges below the upper one."""
    validate(p)
    w = float(special.lambertw(p.beta * p.lq).real)
    out = dict(lower=float(np.sqrt(abs(p.lx) / p.g)), upper=float(np.sqrt(w / (p.beta * p.lq))),
               exponent=p.alpha / p.beta, frustrated=bool(p.lx < 0))
    if p.kx > 0:
        out["quartic"] = float(np.sqrt(np.sqrt(p.kx / p.beta) / p.g))
        out["barrier_at_qb"] = float(p.beta * p.lx**2 / (4 * p.kx)) if p.lx < 0 else 0.0
    out["power_law_from"] = max(out["lower"], out.get("quartic", 0.0))  # > 0: validate needs lx > 0 or kx > 0
    return out


def check_scales(p: ToyParams) -> dict:
    """Refuse parameters whose derived scales (eq. (7)'s crossovers, the quartic scale, the grid's
    half-width) leave what the float32 simulation represents, [MIN_SCALE, MAX_SCALE] like the
    parameters themselves, or are not finite: each parameter in range does not make them so (lx
    1e8 with g 1e-12 puts the power law's lower edge at 1e10). Returns the crossovers."""
    cross = crossovers(p)
    scales = dict(lower=cross["lower"], upper=cross["upper"], quartic=cross.get("quartic"), span=span(p))
    bad = [f"{k} = {v:.3g}" for k, v in scales.items()
           if v is not None and v != 0 and not (math.isfinite(v) and MIN_SCALE <= abs(v) <= MAX_SCALE)]
    if bad:
        raise ToyError(f"{', '.join(bad)} (a scale of |q - qb| derived from the parameters): outside "
                       f"[{MIN_SCALE:g}, {MAX_SCALE:g}], which the simulation represents; bring the parameters "
                       "closer to each other's scale")
    return cross


def stiffness(p: ToyParams) -> float:
    """g <u^2>(qb) + lq: the largest F''(q), and the largest mean rate of the SGD picture's
    multiplicative update, both at q = qb. A step dt (or eta) must be small against its inverse."""
    with float64(p) as p64:
        _, m2, _ = x_moments(jnp.float64(p.qb), p64)
    return p.g * float(m2) + p.lq


def check_steps(p: ToyParams, dt: float, eta: float) -> float:
    """Refuse a Langevin step dt or SGD rate eta too large for the stiffness at q = qb; returns it."""
    kappa = stiffness(p)
    if not (math.isfinite(kappa) and kappa > 0):
        raise ToyError(f"the stiffness g <(x-xb)^2>(qb) + lq = {kappa:g} at these parameters is not a positive "
                       "finite number, so no step size can be checked; bring the parameters closer to each other's "
                       "scale")
    for name, step in (("dt", dt), ("eta", eta)):
        if not (step > 0 and math.isfinite(step)):
            raise ToyError(f"{name} = {step:g}: must be positive and finite")
        if not step * kappa <= MAX_STEP_STIFFNESS:
            raise ToyError(f"{name} = {step:g}: {name} * (g <(x-xb)^2>(qb) + lq) = {step * kappa:.3g} > "
                           f"{MAX_STEP_STIFFNESS} (the steps resolve F'' = {kappa:.3g} at q = qb badly, and "
                           f"diverge beyond 2); use {name} <= {MAX_STEP_STIFFNESS / kappa:.3g}")
    return kappa
