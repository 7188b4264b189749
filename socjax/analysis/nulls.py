"""Null models: what a system with no criticality shows through the same estimators.

Spectrum: with L2 (and any restoring curvature) a weight is pulled back to a centre like an
Ornstein-Uhlenbeck process; sampled every `stride` steps that is the AR(1) process

    x(t + 1) = phi x(t) + e(t),   e ~ N(0, s^2),

whose spectrum is 1/f^2 above its corner frequency and flat below, so over a low-frequency band
it too has a < 2 (../shared/PEERS.md, "Spectra and diffusion"). `ou_spectra` measures each
weight's own phi (lag-1 regression of its mean-removed trajectory) and innovation variance s^2 on
the rows Welch's method reads (`ar1_streamed`: sums over chunks of rows, bounded memory), simulates that AR(1) process with those rows' length, and passes
it through the very same Welch estimate and band fits (`socjax.analysis.spectrum`). The claim
"a < 2 at low f" then means something only where the data's a is below its own null's: `versus`
gives the per-weight difference a - a_null with its interval over the weights.

Pooled tail index: `gaussian_scale_mixture` draws, for every weight, Gaussian increments with that
weight's own count and standard deviation. Every draw is Gaussian (alpha = 2), so whatever alpha
below 2 the pooled estimator (`socjax.analysis.peers`) finds on them is the pooling's, not the data's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from socjax.analysis import spectrum
from socjax.analysis.groups import across_seeds

PHI_MAX = 1.0 - 1e-12  # a measured phi at or above 1 (a walk with no restoring force) is simulated just below it
VALUES_PER_GROUP = 1 << 24  # simulated float64 values held at once (128 MB)


def ar1_parameters(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi, s) of each column of x (T, S): the least-squares AR(1) fit of the mean-removed series,
    x(t + 1) = phi x(t) + e(t), and the standard deviation of its residuals e. NaN for a column
    that is constant or not finite."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    prev, nxt = x[:-1], x[1:]
    ss = np.sum(prev * prev, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.sum(prev * nxt, axis=0) / ss
        s = np.std(nxt - phi * prev, axis=0)
    bad = ~(np.isfinite(phi) & np.isfinite(s) & (ss > 0))
    phi[bad], s[bad] = np.nan, np.nan
    return phi, s


def ar1_streamed(traj, rows: int, chunk_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`ar1_parameters` of the first `rows` rows of every series of traj (R, T, K) (series
    s = r * K + k), from sums accumulated over chunks of rows, so memory stays bounded whatever the
    length. Each series is shifted by its first value before summing (float64), which changes
    neither phi nor s and keeps the sums' cancellation small."""
    num_runs, _, k = traj.shape
    n = num_runs * k
    chunk_rows = chunk_rows or max(2, VALUES_PER_GROUP // n)
    first = np.asarray(traj[:, :1, :], np.float64).reshape(n)
    sums = np.zeros((6, n))  # x_t (t < T-1), x_t (t >= 1), x_t^2 (t < T-1), x_t^2 (t >= 1), x_t x_t+1, x (all)
    for t0 in range(0, rows - 1, chunk_rows):
        t1 = min(rows - 1, t0 + chunk_rows)  # increments t0 .. t1-1 read rows t0 .. t1
        x = np.asarray(traj[:, t0 : t1 + 1, :], np.float64).transpose(1, 0, 2).reshape(t1 + 1 - t0, n) - first
        prev, nxt = x[:-1], x[1:]
        sums += np.stack([prev.sum(0), nxt.sum(0), (prev * prev).sum(0), (nxt * nxt).sum(0), (prev * nxt).sum(0),
                          np.zeros(n)])
    last = np.asarray(traj[:, rows - 1 : rows, :], np.float64).reshape(n) - first
    m = rows - 1
    mu = (sums[0] + last) / rows  # the mean over all rows, as ar1_parameters removes it
    spp = sums[2] - 2 * mu * sums[0] + m * mu**2  # sum (x_t - mu)^2, t < T-1
    snn = sums[3] - 2 * mu * sums[1] + m * mu**2  # sum (x_t+1 - mu)^2
    spn = sums[4] - mu * (sums[0] + sums[1]) + m * mu**2
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = spn / spp
        se = (sums[1] - m * mu) - phi * (sums[0] - m * mu)  # sum of the residuals
        s = np.sqrt(np.maximum((snn - 2 * phi * spn + phi**2 * spp) / m - (se / m) ** 2, 0.0))
    bad = ~(np.isfinite(phi) & np.isfinite(s) & (spp > 0))
    phi[bad], s[bad] = np.nan, np.nan
    return phi, s


def simulate_ar1(phi: np.ndarray, s: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, S) AR(1) paths, one per (phi, s), each started from its stationary law (from 0
    where phi is at PHI_MAX, a walk). A column with NaN parameters is NaN."""
    out = np.full((steps, phi.size), np.nan)
    for j, (p, sd) in enumerate(zip(phi, s)):
        if not (math.isfinite(p) and math.isfinite(sd)):
            continue
        p = float(np.clip(p, -PHI_MAX, PHI_MAX))
        e = rng.normal(0.0, sd, steps)
        x0 = rng.normal(0.0, sd / math.sqrt(1 - p * p)) if abs(p) < PHI_MAX else 0.0
        out[:, j], _ = signal.lfilter([1.0], [1.0, -p], e, zi=[p * x0])
    return out


def ou_spectra(traj, stride: int, segment: int, window: str, seed: int = 0) -> dict:
    """Each series' AR(1) null, measured, simulated and put through Welch and the band fits as the
    data are. traj: (R, T, K) (an array or a reader); series s = r * K + k. Returns phi, s (per
    recorded interval of `stride` steps), the corner frequency f_c = -ln(phi) / (2 pi stride) in
    cycles per step, and the null's a_low and a_high per series (None where not fitted)."""
    num_runs, steps, k = traj.shape
    rows = spectrum.rows_covered(steps, segment)
    if rows == 0:
        raise ValueError(f"a trajectory of {steps} recorded steps is too short for segment {segment}")
    rng = np.random.default_rng(seed)
    n = num_runs * k
    phi, s = ar1_streamed(traj, rows)
    a = {"a_low": [None] * n, "a_high": [None] * n}
    group = max(1, VALUES_PER_GROUP // rows)
    for g0 in range(0, n, group):
        idx = np.arange(g0, min(n, g0 + group))
        sim = simulate_ar1(phi[idx], s[idx], rows, rng)
        ok = np.all(np.isfinite(sim), axis=0)
        if not ok.any():
            continue
        f, psd, _ = spectrum.welch(sim[None, :, ok], stride, segment, window)
        fits = spectrum.fit_bands(f, psd, segment, stride)["per_series"]
        for name in a:
            for pos, i in enumerate(idx[ok]):
                a[name][int(i)] = fits[name][pos]
    with np.errstate(invalid="ignore", divide="ignore"):
        corner = -np.log(np.clip(phi, 1e-300, PHI_MAX)) / (2 * math.pi * stride)
    return dict(phi=[_num(v) for v in phi], s=[_num(v) for v in s], corner=[_num(v) for v in corner], **a)


def versus(observed: list, null: list, series) -> dict:
    """The data's exponent against its null's over `series`: per series d = a - a_null; the mean
    and a t interval of d over the series with both, and the same of a_null alone."""
    pairs = [(observed[i], null[i]) for i in series if observed[i] is not None and null[i] is not None]
    if len(pairs) < 2:
        return dict(series=len(pairs), error="fewer than 2 weights with both the data's and the null's exponent")
    obs, nul = np.array(pairs).T
    d = obs - nul
    return dict(series=len(pairs), null=_mean_ci(nul), difference=_mean_ci(d),
                below_null=float(np.mean(d < 0)))


def _mean_ci(v: np.ndarray) -> dict:
    x = across_seeds(v)
    return dict(value=x["mean"], ci95=x["ci95"], median=float(np.median(v)))


def gaussian_scale_mixture(samples: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """For every series, Gaussian draws with its count and its standard deviation (about its mean):
    the pooled tail index's null, alpha = 2 in every series."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, float(np.std(x)), len(x)) for x in samples if len(x) >= 2]


def _num(v) -> float | None:
    return float(v) if math.isfinite(v) else None


__all__ = ["ar1_parameters", "ar1_streamed", "gaussian_scale_mixture", "ou_spectra", "simulate_ar1", "versus"]
