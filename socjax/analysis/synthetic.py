"""Synthetic |dw| of known shape, to measure what the analysis can recognise (the tests, and
experiments/claim_power.py's table of how often each claim is called true).

Every shape is a density on x > 0; `sample` draws independent samples by inverse CDF or by
rejection from a bounded power law (acceptance exp(-(x/tau)^beta), exact):

    paper                x^-gamma exp(-(x/tau)^beta) on [xmin, inf), beta = 2 by default (eq. 21)
    exponential_cutoff   the same with beta = 1
    power_law            x^-gamma on [xmin, xmax]
    stretched            x^-gamma exp(-(x/tau)^beta) on x > 0 with gamma < 1 (a stretched exponential
                         at gamma = 0, the shape fitted to the paper-scale increments), by
                         x = tau y^(1/beta), y ~ Gamma((1 - gamma)/beta)
    lognormal            exp(N(mu, s^2))
    half_normal          |N(0, sigma^2)|

`trajectory` turns samples into a weight trajectory with pure weight-decay steps between them,
so the whole path (decay identification, streaming, pooling) can be exercised.
"""

from __future__ import annotations

import numpy as np

from socjax.analysis.loghist import Grid, LogHist, from_samples, stack


def bounded_powerlaw(rng, gamma: float, a: float, b: float, n: int) -> np.ndarray:
    """Inverse-CDF samples of p(x) ~ x^-gamma on [a, b]."""
    lam = 1.0 - gamma
    u = rng.random(n)
    if abs(lam) < 1e-12:
        return a * (b / a) ** u
    return (a**lam + u * (b**lam - a**lam)) ** (1.0 / lam)


def powerlaw_cutoff(rng, gamma: float, xmin: float, tau: float, beta: float, n: int) -> np.ndarray:
    """Samples of x^-gamma exp(-(x/tau)^beta) on [xmin, inf): a bounded power law up to where
    the cutoff is below e^-50, thinned with probability exp(-(x/tau)^beta)."""
    top = max(tau * 50.0 ** (1.0 / beta), 10 * xmin)
    out, got = [], 0
    while got < n:
        x = bounded_powerlaw(rng, gamma, xmin, top, max(2 * (n - got), 1024))
        x = x[rng.random(x.size) < np.exp(-((x / tau) ** beta))]
        out.append(x)
        got += x.size
    return np.concatenate(out)[:n]


def stretched(rng, gamma: float, tau: float, beta: float, n: int) -> np.ndarray:
    """Samples of x^-gamma exp(-(x/tau)^beta) on x > 0 (gamma < 1): y = (x/tau)^beta has the
    density y^((1 - gamma)/beta - 1) e^-y, a Gamma law."""
    if not gamma < 1:
        raise ValueError(f"gamma = {gamma}: the density is not integrable at 0 unless gamma < 1")
    return tau * rng.gamma((1.0 - gamma) / beta, size=n) ** (1.0 / beta)


SHAPES = {
    "paper": lambda rng, n, gamma=1.5, xmin=1e-3, tau=np.sqrt(2.0), beta=2.0: powerlaw_cutoff(rng, gamma, xmin, tau, beta, n),
    "exponential_cutoff": lambda rng, n, gamma=1.5, xmin=1e-3, tau=1.0: powerlaw_cutoff(rng, gamma, xmin, tau, 1.0, n),
    "power_law": lambda rng, n, gamma=1.5, xmin=1e-3, xmax=10.0: bounded_powerlaw(rng, gamma, xmin, xmax, n),
    "stretched": lambda rng, n, gamma=0.0, tau=1.0, beta=0.3: stretched(rng, gamma, tau, beta, n),
    "lognormal": lambda rng, n, mu=0.0, s=2.0: rng.lognormal(mu, s, n),
    "half_normal": lambda rng, n, sigma=1.0: np.abs(rng.normal(0.0, sigma, n)),
}


def sample(shape: str, rng, n: int, **params) -> np.ndarray:
    """n samples of |dw| of a shape of SHAPES (float64), with its parameters overridden."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return SHAPES[shape](rng, n, **params)


def hist_blocks(x: np.ndarray, blocks: int = 8, grid: Grid = Grid()) -> LogHist:
    """The LogHist (blocks, bins) of samples split into `blocks` consecutive stretches, as
    `increments.stream` splits a trajectory in time."""
    return stack([from_samples(p, grid) for p in np.array_split(np.asarray(x), blocks)])


def trajectory(rng, dw_abs: np.ndarray, decay_fraction: float, q: float) -> np.ndarray:
    """A float32 trajectory (T,) with exactly dw_abs.size fluctuating steps w -> w + dw, |dw|
    from dw_abs in order, and between them pure weight-decay steps w -> w q with probability
    decay_fraction each.

    Each dw has the sign that pulls w towards 0, as a restoring force does in training: |w|
    then stays below the largest |dw|, so float32 resolves every increment to about 1e-4 of
    itself or better. (A free random walk would wander to thousands of times the smallest |dw|,
    and its float32 lattice, a few tenths of a percent of it, would modulate the counts of
    bins 2.3% wide.) q must satisfy 1 - q < 2^-25, so that a decay step leaves w unchanged in
    float32, as it does in training when lr l2 is that small (ValueError otherwise)."""
    if not 0 <= 1 - q < 2.0**-25:
        raise ValueError(f"q = {q!r}: need 0 <= 1 - q < 2^-25, so that a decay step leaves w unchanged in float32")
    n = dw_abs.size
    fluct = rng.random(int(np.ceil(n / (1.0 - decay_fraction) * 1.05)) + 16) >= decay_fraction
    fluct[np.flatnonzero(fluct)[n:]] = False
    if fluct.sum() < n:
        raise ValueError("too few steps drawn; lower decay_fraction")
    w = float(rng.choice([-1.0, 1.0]) * dw_abs[0] / 2)
    levels = [w]
    for x in dw_abs.tolist():  # the value of w after each fluctuating step
        w = w - x if w > 0 else w + x
        levels.append(w)
    index = np.concatenate([[0], np.cumsum(fluct)])  # fluctuating steps taken before each row
    return np.asarray(levels, np.float32)[index]
