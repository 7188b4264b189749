"""A compiled minimiser for the analysis's small, smooth maximum-likelihood problems: projected,
damped Newton steps with JAX's exact gradient and a Hessian from its forward differences (or the
caller's own exact derivatives, `derivatives=`), inside box bounds, as one `lax.while_loop`, so a whole fit is one compiled call and `jax.vmap` fits many
series at once.

Each iteration: the gradient and Hessian at x; the variables at a bound whose gradient pushes
outward are held there; the Hessian of the others is shifted to be positive definite (its most
negative eigenvalue times 1.01, plus 1e-12 of its trace, as in `cutoff`'s Newton polish); the
step is tried from length 1, each next length the minimiser of the quadratic through f(x), f's
slope along the step and the last trial (kept within [0.1, 0.5] of the last: safeguarded
backtracking, Nocedal & Wright 3.5), clipped to the bounds, at most LADDER times, until one lowers f.
The loop ends when the step's predicted gain (half the Newton decrement, -g.d / 2) is below
`ftol` (absolute, on f: the full step alone is tried, not the shorter ones, which would gain
nothing but rounding), when an accepted step gains less than `ftol`, when no step length lowers
f, or after `max_iter` iterations; `Result.ended` is False only in the last case, so a caller can resume from
`Result.x` (the same path: the state is x alone).

`Result.converged` says the end was reached with the projected gradient at most `gtol` (absolute,
on f), so a fit that stopped for any other reason is named, never silently reported.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

LADDER = 24  # trials of the line search; the last is at most 2^-23 of the full step


class Result(NamedTuple):
    x: jax.Array  # (P,) the minimiser
    f: jax.Array  # f(x)
    grad_norm: jax.Array  # the largest |projected gradient| at x
    iterations: jax.Array
    converged: jax.Array  # bool: grad_norm <= gtol
    ended: jax.Array  # bool: the loop ended by its own tests, not by reaching max_iter


# a compiled fit's trace is kept on disk with its result type (`socjax.cache.persistent`)
jax.export.register_namedtuple_serialization(Result, serialized_name="socjax.analysis.newton.Result")


def minimize(f: Callable, x0, lower, upper, *args, free=None, max_iter: int = 100, ftol: float = 1e-12,
             gtol: float = 1e-6, fd_step: float = 1e-5, derivatives: Callable | None = None) -> Result:
    """Minimise f(x, *args) over lower <= x <= upper (P,) from x0 (clipped into the bounds),
    moving only the variables where `free` (P,) bool is True (default all). f must be
    differentiable by JAX; the Hessian is the forward difference of its exact gradient with step
    `fd_step` (P + 1 gradients, the one at x included: compiling a second derivative of the
    analysis's special functions costs minutes; an O(fd_step) error in the Hessian changes the
    path, not the optimum, where the exact gradient vanishes). Call under jit (and vmap for a
    batch). derivatives(x, *args) -> (f, gradient, Hessian), when given, replaces JAX's gradient
    and the forward differences (e.g. a closed form: one call instead of P + 1 gradients)."""
    x0 = jnp.clip(jnp.asarray(x0, jnp.float64), lower, upper)
    free = jnp.ones(x0.shape, bool) if free is None else jnp.asarray(free)
    eye = jnp.eye(x0.size, dtype=x0.dtype)
    # x and its P forward-difference neighbours in one vmapped call: f, the gradient and the
    # Hessian come from one copy of f's derivative in the compiled program
    offsets = jnp.concatenate([jnp.zeros((1, x0.size), x0.dtype), fd_step * eye])
    value_and_grad = jax.vmap(jax.value_and_grad(f), in_axes=(0,) + (None,) * len(args))

    def forward_differences(x):
        v, g = value_and_grad(x[None, :] + offsets, *args)
        h = (g[1:] - g[0][None, :]) / fd_step
        return v[0], g[0], 0.5 * (h + h.T)

    if derivatives is None:
        derivatives = forward_differences
    else:
        exact = derivatives
        derivatives = lambda x: exact(x, *args)

    def held_by(x, g):
        # a bound holds a variable when its gradient pushes it outward; fixed ones are always held
        return ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)) | ~free

    def body(state):
        x, fx, g, h, it, _ = state
        held = held_by(x, g)
        gp = jnp.where(held, 0.0, g)
        h = jnp.where(~held[:, None] & ~held[None, :], h, eye)
        lam = jnp.maximum(0.0, -jnp.linalg.eigvalsh(h)[0]) * 1.01 + 1e-12 * jnp.abs(jnp.trace(h))
        d = -jnp.linalg.solve(h + lam * eye, gp)
        d = jnp.where(jnp.isfinite(d), d, 0.0)
        slope = jnp.dot(gp, d)  # f's slope along d at x (< 0 for a descent direction)
        # the predicted gain: below ftol, the full step alone is tried, and the loop ends
        worth = -0.5 * slope >= ftol

        # backtracking until f falls, at most LADDER trials: from the full step, each next length
        # the minimiser of the quadratic through f(x), the slope and the last trial, kept within
        # [0.1, 0.5] of the last (a tenth when the last was not finite)
        def shorter(c):
            k, step, _, _ = c
            cand = jnp.clip(x + step * d, lower, upper)
            fc = f(cand, *args)
            curvature = fc - fx - slope * step
            guess = jnp.where(curvature > 0, -slope * step**2 / (2 * curvature), 0.5 * step)
            nxt = jnp.where(jnp.isfinite(fc), jnp.clip(guess, 0.1 * step, 0.5 * step), 0.1 * step)
            return k + 1, nxt, cand, fc

        def keep_going(c):
            k, _, _, fc = c
            return (worth | (k == 0)) & (k < LADDER) & ~(jnp.isfinite(fc) & (fc < fx))

        *_, cand, fc = jax.lax.while_loop(keep_going, shorter, (0, jnp.ones_like(fx), x, jnp.inf))
        found = jnp.isfinite(fc) & (fc < fx)
        xn = jnp.where(found, cand, x)
        fn, gn, hn = derivatives(xn)
        return xn, fn, gn, hn, it + 1, found & worth & (fx - fn > ftol)

    def cond(state):
        *_, it, go = state
        return go & (it < max_iter)

    f0, g0, h0 = derivatives(x0)
    x, fx, g, _, it, go = jax.lax.while_loop(cond, body, (x0, f0, g0, h0, jnp.asarray(0), jnp.asarray(True)))
    gnorm = jnp.max(jnp.abs(jnp.where(held_by(x, g), 0.0, g)))
    return Result(x, fx, gnorm, it, gnorm <= gtol, ~go)
