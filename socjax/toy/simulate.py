"""Simulations of the toy model: jit-compiled scans, vmapped over chains. Parameters are traced,
so a vmap over a sweep of them works too.

  (a) Langevin dynamics of q on F at temperature 1/alpha: dq = -F'(q) dt + sqrt(2 dt / alpha) N(0,1),
      whose stationary law is eq. (6);
  (b) the two-timescale learning picture: each step draws x ~ p(x|q) exactly (rejection sampling;
      a plain Gaussian draw when kx = 0) and takes an SGD step on H: q -= eta dH/dq =
      eta (g d (x-xb)^2 + lq d). Its mean drift is -eta F'(q) exactly, since dF/dq = <dH/dq>.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from socjax.config import ToyParams
from socjax.toy.theory import _is_quartic, dfree_energy, float64, span, x_moments

FORCE_TABLE = 100_001  # nodes of the tabulated Langevin force over |q - qb| when kx > 0
PROPOSALS = 4  # rejection-sampling proposals per chain per round (each accepted with probability >= 0.45;
#                4 was fastest: 259 ns per chain-step of the frustrated SGD picture vs 290 (2), 341 (8), 360 (16))


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
    with float64(p) as p64:
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
