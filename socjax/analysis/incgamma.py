"""log of integrals of t^(s-1) e^-t over [y_a, y_b], for any real s: the bin integrals of a power
law times a stretched-exponential cutoff.

With y = (x/tau)^beta,

    int_a^b x^-gamma exp(-(x/tau)^beta) dx = tau^(1-gamma) / beta * int_{y_a}^{y_b} t^(s-1) e^-t dt,
    s = (1 - gamma) / beta,

a difference of upper incomplete gamma functions Gamma(s, y). For the paper's power laws
(gamma > 1) s is negative, where SciPy's `gammaincc` is undefined and the textbook recurrence
from s + 1 cancels catastrophically near s = 0. `log_bins` therefore integrates each bin
by one of three expansions, each used only where it is accurate, and never forms Gamma(s) itself:

- y_b <= 1, or y_b <= 2 when s <= 1: the series of e^-t, term by term in closed form,
  sum_n (-1)^n / n! * (y_b^(s+n) - y_a^(s+n)) / (s+n), with (y_b^c - y_a^c)/c written through
  expm1, so s + n = 0 (gamma = 1 + n beta) is no special case. |terms| <= y_b^n / n!, so
  the alternating sum loses at most a factor e^(2 y_b).
- s > 1 and 1 < y_b <= s + 1: lower incomplete gamma functions gamma(s, y) by their series of
  positive terms (Numerical Recipes' gser), differenced in log space.
- y >= max(1, s + 1): Gamma(s, y) by its continued fraction (modified Lentz, NR's gcf), which
  converges in this region for every real s.

A bin that crosses m = max(1, s + 1) is split there. Everything is float64,
jit- and differentiable, with every branch evaluated on inputs kept inside its own region, so no NaN leaks
into the derivatives of the branch that is selected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SERIES_TERMS = 36  # y <= 2: 2^36/36! < 1e-30
LOWER_TERMS = 80  # y <= s + 1 with s <= S_MAX
S_MAX = 16.0  # the lower series is accurate to 1e-13 for s up to here (callers bound s below it)
CF_TERMS = 128  # the value converges to 1e-16 within 106 terms for y >= max(1, s + 1), -80 <= s <= 16
TINY = 1e-300
SLIVER = 1e-9  # in ln y; each formula holds a little beyond its side of m


def log1mexp(d):
    """log(1 - exp(d)) for d < 0, accurate for all d (Maechler's rule); each branch is evaluated
    only on its own inputs, so neither leaks an infinite derivative into the other."""
    near = d > -0.6931471805599453
    return jnp.where(near, jnp.log(-jnp.expm1(jnp.where(near, d, -1.0))),
                     jnp.log1p(-jnp.exp(jnp.where(near, -1.0, d))))


def log_expm1_over(c, delta):
    """log((exp(c delta) - 1) / c) for delta > 0 and any real c (= log delta at c = 0)."""
    z = c * delta
    small = jnp.abs(z) < 1e-6
    cs = jnp.where(small, 1.0, c)
    # exp(z) - 1 and c have the same sign, so the ratio is positive; for large z, expm1
    # overflows: log(expm1(z)) = z + log1p(-exp(-z)). Each branch sees only its own inputs.
    zm = jnp.where(small, 1.0, jnp.minimum(z, 50.0))
    moderate = jnp.log(jnp.expm1(zm) / cs)
    zb = jnp.maximum(z, 50.0)
    large = zb + jnp.log1p(-jnp.exp(-zb)) - jnp.log(jnp.abs(cs))
    return jnp.where(small, jnp.log(delta) + z / 2 + z**2 / 24, jnp.where(z > 50.0, large, moderate))


def _series_segment(s, lya, lyb):
    """log int_{y_a}^{y_b} t^(s-1) e^-t dt for y_b <= 2; s scalar, lya, lyb (B,) ln y."""
    delta = lyb - lya
    n = jnp.arange(SERIES_TERMS, dtype=lya.dtype)
    log_fact = jax.lax.lgamma(n + 1.0)
    # term n: (-1)^n / n! * y_a^n * (exp((s+n) delta) - 1)/(s+n), relative to y_a^s
    log_mag = n[None, :] * lya[:, None] - log_fact[None, :] + log_expm1_over((s + n)[None, :], delta[:, None])
    ref = log_mag[:, 0]
    sign = jnp.where(n % 2 == 0, 1.0, -1.0)
    total = jnp.sum(sign[None, :] * jnp.exp(log_mag - ref[:, None]), axis=1)
    return s * lya + ref + jnp.log(total)


def _log_lower(s, ly):
    """log gamma(s, y) = log int_0^y t^(s-1) e^-t dt for s > 0 scalar, ly (B,), y <= s + 1 (NR's gser)."""
    y = jnp.exp(ly)
    n = jnp.arange(LOWER_TERMS, dtype=ly.dtype)
    # term n: y^n / (s (s+1) ... (s+n)), all positive
    log_terms = n[None, :] * ly[:, None] - jnp.cumsum(jnp.log(s + n))[None, :]
    return s * ly - y + jax.scipy.special.logsumexp(log_terms, axis=1)


def _log_upper(s, ly):
    """log Gamma(s, y) for y >= max(1, s + 1), any real s, by the continued fraction. A fixed
    number of terms, not a convergence test: the test would stop on the value while its
    derivatives still move (at s = 1 the fraction is exact after one term, its s-derivative not)."""
    y = jnp.exp(ly)
    b = y + 1.0 - s
    d = 1.0 / b

    def body(i, state):
        b, c, d, h = state
        an = -i * (i - s)
        b = b + 2.0
        d = an * d + b
        d = jnp.where(jnp.abs(d) < TINY, TINY, d)
        c = b + an / c
        c = jnp.where(jnp.abs(c) < TINY, TINY, c)
        d = 1.0 / d
        return b, c, d, h * (d * c)

    *_, h = jax.lax.fori_loop(1, CF_TERMS + 1, body, (b, jnp.full_like(y, 1.0 / TINY), d, d))
    return s * ly - y + jnp.log(h)


def log_bins(s, ly):
    """log int_{y_k}^{y_k+1} t^(s-1) e^-t dt for the bins between consecutive edges.

    s: scalar (below S_MAX); ly: (B + 1,) increasing ln y of the edges. Returns (B,), float64.
    Gamma(s, y) and gamma(s, y) are evaluated once per edge, shared by the two bins it bounds."""
    s = jnp.asarray(s, jnp.float64)
    ly = jnp.asarray(ly, jnp.float64)
    lya, lyb = ly[:-1], ly[1:]
    lm = jnp.log(jnp.maximum(1.0, s + 1.0))  # the split point m, as ln m >= 0
    # a sliver narrower than SLIVER on one side of m joins the other side's formula: its own
    # difference would round to 0 (log 0, and infinite derivatives)
    has_left, has_right = lya < lm - SLIVER, lyb > lm + SLIVER
    left_hi = jnp.where(has_right, lm, lyb)  # where, not minimum: exact derivatives at ties
    # left part [y_a, min(y_b, m)]: the e^-t series, or for s > 1 above y = 1 the lower gamma series
    use_series = (left_hi <= 0.0) | (s <= 1.0)  # s <= 1: m <= 2, where the series loses < e^4
    lo_s = jnp.where(has_left & use_series, lya, -1.0)
    hi_s = jnp.where(has_left & use_series, left_hi, 0.0)
    series = _series_segment(s, lo_s, hi_s)
    s_l = jnp.where(s > 1.0, s, 2.0)  # the lower series only ever serves s > 1, away from 1/s at 0
    lm_l = jnp.log(s_l + 1.0)
    # where, not minimum / maximum: at an edge exactly at the split the derivative is the edge's own
    # (minimum and maximum split it half and half with the split point's)
    lower_edges = _log_lower(s_l, jnp.where(ly <= lm_l, ly, lm_l))
    lower_m = _log_lower(s_l, lm_l[None])[0]
    lower_hi = jnp.where(has_right, lower_m, lower_edges[1:])
    use_lower = has_left & ~use_series
    # differences of clamped, unused edges are 0: replace them before log1mexp, whose derivatives
    # at 0 are infinite (and 0 * inf is NaN in the derivative of the branch not taken)
    lower = lower_hi + log1mexp(jnp.where(use_lower, lower_edges[:-1] - lower_hi, -1.0))
    left = jnp.where(use_series, series, lower)
    # right part [max(y_a, m), y_b]: continued fractions at the edges above m, and at m itself
    upper_edges = _log_upper(s, jnp.where(ly >= lm, ly, lm))
    upper_lo = jnp.where(has_left, _log_upper(s, lm[None])[0], upper_edges[:-1])
    right = upper_lo + log1mexp(jnp.where(has_right, upper_edges[1:] - upper_lo, -1.0))
    return jnp.where(has_left & has_right, jnp.logaddexp(left, right), jnp.where(has_left, left, right))
