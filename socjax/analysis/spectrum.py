"""Power spectra of weight trajectories (the paper's Fig. 4), by Welch's method, streamed.

P(f) of each series w(t): segments of `segment` recorded steps overlapping by half, each with
its mean removed and a window applied (Hann by default), |rfft|^2 averaged over segments; one-
sided, normalised so that sum(P) * df equals the mean windowed power (Parseval, exact for the
boxcar window). Frequencies are in cycles per SGD step: f_k = k / (segment * stride).

The exponent a of P ~ 1/f^a is the least-squares slope of log10 P against log10 f on a band.
Time is discrete: the periodogram of a random walk is 1/(4 sin^2(pi f)), which is 1/f^2 within 1%
only below about f = 0.05 cycles/step, so every band stays below `f_top` = min(0.05, 0.8 x Nyquist):
  high band: [f_top / 10, f_top]
  low band:  [4 / (segment * stride), 40 / (segment * stride)] (the lowest bins, less the first
             four, which windowing and mean removal distort)
When the two would overlap, the usable range [4 / (segment * stride), f_top] is split at its
logarithmic midpoint instead (reported as `bands_split`); a usable range narrower than a factor
of 4 is refused. Default segment: the largest power of two <= steps / 4, at most 2**18. a is fitted per series and on the
mean of log10 P over series; the interval is mean +- t * sd / sqrt(n) over series (or the
least-squares interval when there is one series).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

WINDOWS = ("hann", "boxcar")


def default_segment(steps: int) -> int:
    """The largest power of two <= steps / 4 (at least 7 half-overlapping segments), capped at 2**18."""
    if steps < 512:
        raise ValueError(f"a trajectory of {steps} recorded steps is too short for a spectrum (need >= 512)")
    return int(min(2**18, 2 ** int(np.floor(np.log2(steps / 4)))))


def rows_covered(steps: int, segment: int | None = None) -> int:
    """How many of `steps` recorded rows `welch` reads with this segment (its default if None):
    the sum of what it reports to `progress`. 0 when welch would refuse the trajectory."""
    try:
        segment = segment or default_segment(steps)
    except ValueError:
        return 0
    if segment < 16 or segment % 2 or steps < segment:
        return 0
    hop = segment // 2
    return ((steps - segment) // hop) * hop + segment


def _window(name: str, n: int) -> np.ndarray:
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
    if name == "boxcar":
        return np.ones(n)
    raise ValueError(f"unknown window {name!r}; choose {WINDOWS}")


@partial(jax.jit, static_argnames=("segment",))
def _segments_power(x, window, *, segment: int):
    """Sum over segments of |rfft(window * (seg - mean))|^2. x: (n_seg * segment/2 + segment/2, S)
    rows covering n_seg half-overlapping segments; returns (segment/2 + 1, S)."""
    hop = segment // 2
    n_seg = (x.shape[0] - hop) // hop
    idx = jnp.arange(n_seg)[:, None] * hop + jnp.arange(segment)[None, :]
    seg = x[idx]  # (n_seg, segment, S)
    seg = seg - seg.mean(axis=1, keepdims=True)
    spec = jnp.fft.rfft(seg * window[None, :, None], axis=1)
    return jnp.sum(jnp.abs(spec) ** 2, axis=0)


ELEMENTS_PER_CALL = 1 << 23  # float64 values per compiled FFT call: ~64 MB, plus its spectrum


def welch(trajectory, stride: int = 1, segment: int | None = None, window: str = "hann",
          chunk_segments: int | None = None, progress=None):
    """Welch power spectra of every series of trajectory (R, T, K), streamed in chunks of segments.

    `progress(rows)`, if given, is called after each chunk with the rows newly covered; the calls sum
    to `rows_covered(steps, segment)`. Memory stays bounded whatever the length: each read covers `chunk_segments` segments
    (default: as many as fit ELEMENTS_PER_CALL values for all series, at least one), and the FFTs
    run on groups of series of at most ELEMENTS_PER_CALL values.
    Returns f: (segment/2 + 1,) cycles per SGD step, P: (R*K, segment/2 + 1), and the number of
    segments averaged.
    """
    num_runs, steps, k = trajectory.shape
    segment = segment or default_segment(steps)
    if segment < 16 or segment % 2:
        raise ValueError(f"segment length must be even and >= 16, got {segment}")
    if steps < segment:
        raise ValueError(f"a trajectory of {steps} recorded steps is shorter than the segment length {segment}")
    hop = segment // 2
    n_seg = (steps - segment) // hop + 1
    win = _window(window, segment)
    total = np.zeros((segment // 2 + 1, num_runs * k))
    series = num_runs * k
    chunk_segments = chunk_segments or max(1, ELEMENTS_PER_CALL // (segment * series))
    with jax.enable_x64(True):
        wj = jnp.asarray(win)
        for s0 in range(0, n_seg, chunk_segments):
            s1 = min(s0 + chunk_segments, n_seg)
            rows = np.asarray(trajectory[:, s0 * hop : (s1 - 1) * hop + segment, :], np.float32)
            rows = rows.transpose(1, 0, 2).reshape(rows.shape[1], series)
            group = max(1, ELEMENTS_PER_CALL // rows.shape[0])
            for g0 in range(0, series, group):
                block = jnp.asarray(rows[:, g0 : g0 + group], jnp.float64)
                total[:, g0 : g0 + group] += np.asarray(_segments_power(block, wj, segment=segment))
            if progress is not None:  # rows newly covered: segment s ends at row s * hop + segment
                progress((s1 - s0) * hop if s0 else (s1 - 1) * hop + segment)
    # one-sided density in (units of w)^2 per (cycle/step): sampling interval = stride steps
    fs = 1.0 / stride
    psd = total / (n_seg * fs * np.sum(win**2))
    psd[1:-1] *= 2.0
    f = np.fft.rfftfreq(segment, d=stride)
    return f, psd.T, n_seg


def bands(segment: int, stride: int) -> dict:
    """The documented fitting bands (see the module docstring)."""
    nyquist = 0.5 / stride
    f_top = min(0.05, 0.8 * nyquist)
    f_bottom = 4.0 / (segment * stride)
    if f_bottom * 4 > f_top:
        raise ValueError(f"segment {segment} at stride {stride} leaves less than a factor 4 in frequency "
                         f"below f = {f_top:g}: record more steps or use a longer --segment")
    low = [f_bottom, 10 * f_bottom]
    high = [f_top / 10, f_top]
    split = low[1] > high[0]
    if split:
        mid = np.sqrt(f_bottom * f_top)
        low, high = [f_bottom, mid], [mid, f_top]
    return dict(low=low, high=high, bands_split=bool(split), f_top=f_top)


def slope_fit(f, p, band):
    """Least squares of log10 p (..., F) on log10 f over f in band: (a, stderr, n) with p ~ f^-a."""
    sel = (f >= band[0]) & (f <= band[1]) & (f > 0)
    x = np.log10(f[sel])
    y = np.log10(p[..., sel])
    xm = x - x.mean()
    slope = (y * xm).sum(-1) / (xm**2).sum()
    resid = y - y.mean(-1, keepdims=True) - slope[..., None] * xm
    dof = max(sel.sum() - 2, 1)
    stderr = np.sqrt((resid**2).sum(-1) / dof / (xm**2).sum())
    return -slope, stderr, int(sel.sum())


def fit_bands(f, psd, segment: int, stride: int) -> dict:
    """a_low and a_high: pooled (on the mean of log10 P over series) and per series."""
    b = bands(segment, stride)
    positive = np.all(psd[:, 1:] > 0, axis=1)
    out = dict(bands_split=b["bands_split"], f_top=b["f_top"], per_series={})
    logmean = 10 ** np.mean(np.log10(np.where(psd > 0, psd, np.nan)[positive]), axis=0)
    for name in ("low", "high"):
        band = b[name]
        a, se, n = slope_fit(f, logmean, band)
        a_s, se_s, _ = slope_fit(f, np.where(psd > 0, psd, np.nan), band)
        good = np.isfinite(a_s)
        if good.sum() >= 2:
            sd = np.std(a_s[good], ddof=1)
            half = sps.t.ppf(0.975, good.sum() - 1) * sd / np.sqrt(good.sum())
            method = "t interval over series"
        else:
            half = sps.t.ppf(0.975, max(n - 2, 1)) * se
            method = "least-squares interval"
        out[f"a_{name}"] = dict(value=float(a), ci95=[float(a - half), float(a + half)], band=[float(v) for v in band],
                               n_frequencies=n, n_series=int(good.sum()), interval=method,
                               series_mean=float(np.nanmean(a_s)), series_sd=float(np.nanstd(a_s)))
        out["per_series"][f"a_{name}"] = [None if not np.isfinite(v) else float(v) for v in a_s]
    return out
