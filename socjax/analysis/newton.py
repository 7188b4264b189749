"""A compiled minimiser for the analysis's small, smooth maximum-likelihood problems: projected,
damped Newton steps with JAX's exact gradient and a Hessian from its forward differences (or the
caller's own exact derivatives, `derivatives=`), inside box bounds, as one `lax.while_loop`, so a
whole fit is one compiled call: `minimize` for one problem, `minimize_many` for a batch.

Each iteration: the gradient and Hessian at x; the variables at a bound whose gradient pushes
outward are held there; the Hessian of the others is shifted to be positive definite (its most
negative eigenvalue times SHIFT, plus 1e-12 of its trace); the
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

A batch: `jax.vmap(minimize)` runs its members in lock-step, so every iteration costs the
slowest member's line search and the members that have ended are computed until all have
(measured on 128 series of the cutoff fits: 5-12 trials per iteration for the slowest against a
median of 1.1). `minimize_many` takes each start along the same path but keeps a pool of workers
busy: one evaluation of (f, gradient, Hessian) per worker per loop iteration, at its start or at
its line search's next trial, and a worker whose start has ended takes the next one. (Pools a
quarter the size for the last starts' tail were tried: no faster on 128 series, 512 starts, and
each pool is another copy of the loop's body to compile.)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

LADDER = 24  # trials of the line search; the last is at most 2^-23 of the full step
# an indefinite Hessian is shifted by SHIFT times its most negative eigenvalue, so the step's
# smallest curvature is that eigenvalue's size. With 1.01 (a hundredth of it), the cutoff fits'
# steps overshot where the NLL is far from quadratic: on 256 series, 2,746 of 6,842 iterations of
# the stretched cutoff failed their first trial and all four models took 1.60 s; with 2, 2,463 of
# 6,642 and 1.20 s (4 and 10: no fewer loop iterations), the same optima (theta within 9e-7)
SHIFT = 2.0
# a call of at most SMALL_POOL_STARTS starts (a pooled fit, a few series) runs them SMALL_POOL at a
# time (`pool`): every loop iteration evaluates each worker, busy or not, so 2 starts of the
# cutoff fits took 58 ms a call in 32 workers and 12 ms in 4; 12 starts 110 ms against 52 ms
SMALL_POOL, SMALL_POOL_STARTS = 4, 16


class Result(NamedTuple):
    x: jax.Array  # (P,) the minimiser
    f: jax.Array  # f(x)
    grad_norm: jax.Array  # the largest |projected gradient| at x
    iterations: jax.Array
    converged: jax.Array  # bool: grad_norm <= gtol
    ended: jax.Array  # bool: the loop ended by its own tests, not by reaching max_iter


# a compiled fit's trace is kept on disk with its result type (`socjax.cache.persistent`)
jax.export.register_namedtuple_serialization(Result, serialized_name="socjax.analysis.newton.Result")


def _held(x, g, lower, upper, free):
    """The variables a bound holds (its gradient pushes them outward) and the fixed ones."""
    return ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)) | ~free


def _direction(x, g, h, lower, upper, free, ftol):
    """The damped Newton step d at x (the held variables stay), f's slope g.d along it and
    whether its predicted gain -g.d / 2 reaches ftol."""
    eye = jnp.eye(x.size, dtype=x.dtype)
    held = _held(x, g, lower, upper, free)
    gp = jnp.where(held, 0.0, g)
    h = jnp.where(~held[:, None] & ~held[None, :], h, eye)
    lam = jnp.maximum(0.0, -jnp.linalg.eigvalsh(h)[0]) * SHIFT + 1e-12 * jnp.abs(jnp.trace(h))
    d = -jnp.linalg.solve(h + lam * eye, gp)
    d = jnp.where(jnp.isfinite(d), d, 0.0)
    slope = jnp.dot(gp, d)  # < 0 for a descent direction
    return d, slope, -0.5 * slope >= ftol


def _shorter(fc, fx, slope, step):
    """The next trial length after `step` failed with f = fc: the minimiser of the quadratic
    through f(x) = fx, the slope and the trial, kept within [0.1, 0.5] of step (a tenth when fc is
    not finite)."""
    curvature = fc - fx - slope * step
    guess = jnp.where(curvature > 0, -slope * step**2 / (2 * curvature), 0.5 * step)
    return jnp.where(jnp.isfinite(fc), jnp.clip(guess, 0.1 * step, 0.5 * step), 0.1 * step)


def _grad_norm(x, g, lower, upper, free):
    return jnp.max(jnp.abs(jnp.where(_held(x, g, lower, upper, free), 0.0, g)))


def _with_derivatives(f: Callable, derivatives: Callable | None, fd_step: float) -> Callable:
    """(x, *args) -> (f, gradient, Hessian): the caller's `derivatives`, or JAX's gradient and
    its forward differences (x and its P neighbours in one vmapped call, so the compiled program
    holds one copy of f's derivative)."""
    if derivatives is not None:
        return derivatives

    def forward_differences(x, *args):
        offsets = jnp.concatenate([jnp.zeros((1, x.size), x.dtype), fd_step * jnp.eye(x.size, dtype=x.dtype)])
        v, g = jax.vmap(jax.value_and_grad(f), in_axes=(0,) + (None,) * len(args))(x[None, :] + offsets, *args)
        h = (g[1:] - g[0][None, :]) / fd_step
        return v[0], g[0], 0.5 * (h + h.T)

    return forward_differences


def minimize(f: Callable, x0, lower, upper, *args, free=None, max_iter: int = 100, ftol: float = 1e-12,
             gtol: float = 1e-6, fd_step: float = 1e-5, derivatives: Callable | None = None) -> Result:
    """Minimise f(x, *args) over lower <= x <= upper (P,) from x0 (clipped into the bounds),
    moving only the variables where `free` (P,) bool is True (default all). f must be
    differentiable by JAX; the Hessian is the forward difference of its exact gradient with step
    `fd_step` (P + 1 gradients, the one at x included: compiling a second derivative of the
    analysis's special functions costs minutes; an O(fd_step) error in the Hessian changes the
    path, not the optimum, where the exact gradient vanishes). Call under jit (and vmap for a
    batch). derivatives(x, *args) -> (f, gradient, Hessian), when given, replaces JAX's gradient
    and the forward differences (e.g. a closed form: one call instead of P + 1 gradients).
    The reference for `minimize_many`, which takes the same path."""
    x0 = jnp.clip(jnp.asarray(x0, jnp.float64), lower, upper)
    free = jnp.ones(x0.shape, bool) if free is None else jnp.asarray(free)
    full = _with_derivatives(f, derivatives, fd_step)

    def body(state):
        x, fx, g, h, it, _ = state
        d, slope, worth = _direction(x, g, h, lower, upper, free, ftol)

        # backtracking until f falls, at most LADDER trials (below ftol, the full step alone)
        def shorter(c):
            k, step, _, _ = c
            cand = jnp.clip(x + step * d, lower, upper)
            fc = f(cand, *args)
            return k + 1, _shorter(fc, fx, slope, step), cand, fc

        def keep_going(c):
            k, _, _, fc = c
            return (worth | (k == 0)) & (k < LADDER) & ~(jnp.isfinite(fc) & (fc < fx))

        *_, cand, fc = jax.lax.while_loop(keep_going, shorter, (0, jnp.ones_like(fx), x, jnp.inf))
        found = jnp.isfinite(fc) & (fc < fx)
        xn = jnp.where(found, cand, x)
        fn, gn, hn = full(xn, *args)
        return xn, fn, gn, hn, it + 1, found & worth & (fx - fn > ftol)

    def cond(state):
        *_, it, go = state
        return go & (it < max_iter)

    f0, g0, h0 = full(x0, *args)
    x, fx, g, _, it, go = jax.lax.while_loop(cond, body, (x0, f0, g0, h0, jnp.asarray(0), jnp.asarray(True)))
    gnorm = _grad_norm(x, g, lower, upper, free)
    return Result(x, fx, gnorm, it, gnorm <= gtol, ~go)


class _Slots(NamedTuple):
    """`minimize_many`'s workers, each on one start (a leading axis W on every field)."""

    task: jax.Array  # the start it works on; -1: none left
    fresh: jax.Array  # its next evaluation is the start itself
    x: jax.Array  # (W, P) the current point, with f, gradient and Hessian there
    fx: jax.Array
    g: jax.Array
    h: jax.Array
    d: jax.Array  # (W, P) the Newton step from x, its slope and whether it is worth trying
    slope: jax.Array
    worth: jax.Array
    step: jax.Array  # the trial length along d
    k: jax.Array  # trials of this line search so far
    it: jax.Array  # iterations of this start so far


def pool(count: int, large: int) -> int:
    """The workers of `minimize_many` for `count` starts: SMALL_POOL for a small call, else
    `large` (the caller's, measured on its many-start calls). A static argument: each size its
    own compilation, so two sizes, not one per count."""
    return SMALL_POOL if count <= SMALL_POOL_STARTS else large


def minimize_many(f: Callable | None, x0, lower, upper, data=(), *, count=None, free=None, workers: int = 64,
                  max_iter: int = 100, ftol: float = 1e-12, gtol: float = 1e-6, fd_step: float = 1e-5,
                  derivatives: Callable | None = None) -> Result:
    """`minimize` of R problems, start r being x0[r] (R, P) within lower[r], upper[r] on its own
    arguments (each leaf of the tuple `data` has a leading axis R: f(x, *data_r)); `free` (P,) as
    in `minimize`, shared. The same path as `minimize` of each alone (the same trials, the same
    accepted points: `Result` with a leading axis R), scheduled for a batch: `workers` starts at
    a time, each worker taking the next start as soon as its own ends, and every loop iteration
    evaluating (f, gradient, Hessian) once at each worker's next point (a start, or a trial step:
    a line search's f comes with the derivatives it needs when the trial is accepted). A
    vmapped `minimize` instead pays, every iteration, its slowest member's line search, and
    keeps computing the members that have ended until all have. With `derivatives=`, a trial's
    f is the value they return (`minimize` evaluates f alone): equal to rounding, so a near tie
    may take another path. count (<= R, may be traced):
    only the first `count` starts are fitted (the rest are padding; their Result is x0, f inf).
    Call under jit."""
    x0 = jnp.asarray(x0, jnp.float64)
    R, P = x0.shape
    W = min(workers, R)
    count = jnp.asarray(R if count is None else count)
    free = jnp.ones(P, bool) if free is None else jnp.asarray(free)
    full = jax.vmap(_with_derivatives(f, derivatives, fd_step))
    direction = jax.vmap(_direction, in_axes=(0, 0, 0, 0, 0, None, None))

    def assign(task, nxt, idle):
        # idle workers take the next starts in order: (tasks, which workers start afresh, next start)
        new = nxt + jnp.cumsum(idle) - 1
        take = idle & (new < count)
        return jnp.where(idle, jnp.where(take, new, -1), task), take, jnp.minimum(nxt + idle.sum(), count)

    def body(c):
        s, out, nxt = c
        t = jnp.maximum(s.task, 0)
        lo, hi = lower[t], upper[t]
        cand = jnp.clip(jnp.where(s.fresh[:, None], x0[t], s.x + s.step[:, None] * s.d), lo, hi)
        fc, gc, hc = full(cand, *jax.tree.map(lambda a: a[t], data))
        # the line search's trial (fresh workers: their start, always taken)
        k = s.k + 1
        found = jnp.isfinite(fc) & (fc < s.fx)
        searching = ~s.fresh & ~found & s.worth & (k < LADDER)
        done = ~s.fresh & ~searching  # the iteration ends: a step taken, or none lowered f
        it = jnp.where(done, s.it + 1, jnp.where(s.fresh, 0, s.it))
        go = found & s.worth & (s.fx - fc > ftol)
        take = s.fresh | (done & found)
        x, fx = jnp.where(take[:, None], cand, s.x), jnp.where(take, fc, s.fx)
        g, h = jnp.where(take[:, None], gc, s.g), jnp.where(take[:, None, None], hc, s.h)
        active = s.task >= 0
        end = active & jnp.where(s.fresh, max_iter <= 0, done & (~go | (it >= max_iter)))
        # the ended starts' results
        at = jnp.where(end, s.task, R)  # R: dropped
        gnorm = jax.vmap(_grad_norm)(x, g, lo, hi, jnp.broadcast_to(free, x.shape))
        ended = jnp.where(s.fresh, False, ~go)
        out = Result(out.x.at[at].set(x, mode="drop"), out.f.at[at].set(fx, mode="drop"),
                     out.grad_norm.at[at].set(gnorm, mode="drop"), out.iterations.at[at].set(it, mode="drop"),
                     out.converged.at[at].set(gnorm <= gtol, mode="drop"), out.ended.at[at].set(ended, mode="drop"))
        # the next Newton step where one was taken and the start goes on
        d, slope, worth = direction(x, g, h, lo, hi, free, ftol)
        again = take & ~end
        step = jnp.where(again, 1.0, jnp.where(searching, _shorter(fc, s.fx, s.slope, s.step), s.step))
        task, fresh, nxt = assign(s.task, nxt, end | ~active)
        s = _Slots(task, fresh, x, fx, g, h, jnp.where(again[:, None], d, s.d), jnp.where(again, slope, s.slope),
                   jnp.where(again, worth, s.worth), step, jnp.where(again, 0, k), it)
        return s, out, nxt

    first = jnp.arange(W)
    task = jnp.where(first < count, first, -1)
    x = jnp.clip(x0[:W], lower[:W], upper[:W])
    zero = jnp.zeros(W, x0.dtype)
    s = _Slots(task, task >= 0, x, zero + jnp.inf, jnp.zeros_like(x), jnp.zeros((W, P, P), x0.dtype), jnp.zeros_like(x),
               zero, jnp.zeros(W, bool), zero + 1.0, jnp.zeros(W, jnp.int32), jnp.zeros(W, jnp.int32))
    out = Result(jnp.clip(x0, lower, upper), jnp.full(R, jnp.inf, x0.dtype), jnp.full(R, jnp.inf, x0.dtype),
                 jnp.zeros(R, jnp.int32), jnp.zeros(R, bool), jnp.zeros(R, bool))
    _, out, _ = jax.lax.while_loop(lambda c: jnp.any(c[0].task >= 0), body, (s, out, jnp.minimum(W, count)))
    return out
