"""The peers' estimators (../shared/PEERS.md), run on the same increments as socjax's own model.

Tail index of a symmetric alpha-stable law (Simsekli, Sagun & Gurbuzbalaban, ICML 2019, who use
Mohammadi, Mohammadpour & Ogata 2015, Corollary 2.4): for iid X_1..X_K and the sums Y_i of K/m
disjoint blocks of m of them, a stable law's Y is m^(1/alpha) X in law, so

    1/alpha = (mean log|Y| - mean log|X|) / log m.

Gaussian data give alpha = 2; a finite-variance law gives 2 only as m grows (its block sums
become Gaussian), so an alpha that moves with m is itself evidence against a stable law. It is
computed two ways, for m in BLOCK_SIZES:
  pooled      every increment of every weight in one sample, in a random order (Simsekli et
              al. pool all coordinates of the noise vector), each weight's increments less their
              mean; the interval is a t interval over its blocks, which the random order makes
              independent;
  per weight  each weight's own increments in time order (a block sum is that weight's
              displacement over m of its steps), summarised over the weights.
Its documented ways to mislead: pooling weights of different scales is a Gaussian scale mixture,
whose pooled alpha is below 2 although every weight is Gaussian (`socjax.analysis.nulls` gives the
data's own version of that null); correlated steps in time move the per-weight alpha with m.

The continuous power law of Clauset, Shalizi & Newman (SIAM Review 2009; the `powerlaw` package):
p(x) ~ x^-alpha for x >= xmin with no upper bound, alpha by maximum likelihood, xmin the candidate
minimising the Kolmogorov-Smirnov distance between the tail and the fit. On data bounded above,
or bending down (a cutoff, a stretched exponential), it still returns an exponent: set beside
socjax's range-bounded fit it shows how much of a reported exponent is the estimator's.

Zhang & Tang's linear-bin histograms are the "nondecay_linear" row of the representation table
(`socjax.analysis.sensitivity`); no new code is needed for them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from socjax.analysis.groups import across_seeds

BLOCK_SIZES = (10, 100, 1000)
MIN_BLOCKS = 10  # fewest block sums an estimate rests on
CSN_MAX_SAMPLE = 1 << 18  # the pooled |dw| fitted by the Clauset-Shalizi-Newman method: a random subset of at most this
CSN_MIN_TAIL = 100  # fewest values above a candidate xmin
CSN_CANDIDATES = 100  # candidate xmins: these quantiles of the sample, geometric in 1 - q


def block_terms(x: np.ndarray, m: int) -> np.ndarray | None:
    """d_i = log|Y_i| - mean of log|X_j| over block i, for the floor(n / m) blocks of m consecutive
    values of x: 1/alpha is their mean over log m (the module docstring), so its standard error is
    theirs. None when fewer than MIN_BLOCKS blocks (those summing to exactly zero, possible for
    discrete data, are left out and not counted), or a zero in x."""
    x = np.asarray(x, np.float64)
    k2 = x.size // m
    if m < 2 or k2 < MIN_BLOCKS or np.any(x[: k2 * m] == 0):
        return None
    blocks = x[: k2 * m].reshape(k2, m)
    y = np.abs(blocks.sum(axis=1))
    keep = y > 0
    if keep.sum() < MIN_BLOCKS:
        return None
    return np.log(y[keep]) - np.log(np.abs(blocks[keep])).mean(axis=1)


def mohammadi(x: np.ndarray, m: int) -> float:
    """The tail index alpha of the 1-D sample x from its block sums of size m (the module
    docstring); the first floor(n / m) * m values are used. NaN where `block_terms` is None."""
    d = block_terms(x, m)
    if d is None:
        return math.nan
    inv = d.mean() / math.log(m)
    return 1.0 / inv if inv != 0 else math.inf


def mohammadi_ci(x: np.ndarray, m: int) -> tuple[float, list[float] | None]:
    """(alpha, its 95% interval): a t interval of 1/alpha from the spread of the block terms
    (independent for iid x), inverted; an interval reaching 1/alpha <= 0 has no upper end (inf)."""
    d = block_terms(x, m)
    if d is None:
        return math.nan, None
    inv = d.mean() / math.log(m)
    half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size) / math.log(m)
    lo_inv, hi_inv = inv - half, inv + half
    alpha = 1.0 / inv if inv != 0 else math.inf
    return alpha, [1.0 / hi_inv if hi_inv > 0 else math.inf, 1.0 / lo_inv if lo_inv > 0 else math.inf]


def centered(samples: list[np.ndarray]) -> list[np.ndarray]:
    """Each series' increments less their own mean (a drift is not noise; the estimator assumes a
    symmetric law about 0). Exact zeros that centering would create are impossible for a series
    of distinct float values, and a series of one value is dropped (it has no fluctuation)."""
    out = []
    for x in samples:
        x = np.asarray(x, np.float64)
        if x.size >= 2:
            c = x - x.mean()
            out.append(c[c != 0])
    return out


def tail_index_pooled(samples: list[np.ndarray], sizes=BLOCK_SIZES, seed: int = 0) -> list[dict]:
    """Simsekli et al.'s pooled alpha per block size m: every series' centred increments in one
    sample, randomly ordered (fixed seed), so its blocks are independent; value and 95% interval
    by `mohammadi_ci` (None where fewer than MIN_BLOCKS blocks)."""
    pool = np.concatenate([np.zeros(0), *centered(samples)])
    pool = np.random.default_rng(seed).permutation(pool)
    out = []
    for m in sizes:
        value, ci = mohammadi_ci(pool, m)
        out.append(dict(m=m, value=_num(value), ci95=None if ci is None else [_num(v) for v in ci], n=int(pool.size),
                        blocks=int(pool.size // m)))
    return out


def tail_index_per_series(samples: list[np.ndarray], sizes=BLOCK_SIZES) -> list[dict]:
    """alpha of each series from its own centred increments in time order, per block size m:
    the per-series values (None where too short) and their `series_summary`."""
    xs = [np.asarray(x, np.float64) for x in samples]
    out = []
    for m in sizes:
        vals = [_num(mohammadi(x - x.mean(), m)) if x.size >= 2 else None for x in xs]
        out.append(dict(series_summary(m, vals), values=vals))
    return out


def series_summary(m: int, values: list) -> dict:
    """The per-series alphas `values` at block size m (None where not estimated) summarised: their
    count, median, quartiles, mean with a t interval over the series, and the share below 2."""
    good = np.array([v for v in values if v is not None], np.float64)
    summary = dict(m=m, series=int(good.size), of=len(values))
    if good.size:
        q25, med, q75 = np.percentile(good, [25, 50, 75])
        summary.update(median=float(med), q25=float(q25), q75=float(q75), mean=float(good.mean()),
                       ci95=across_seeds(good)["ci95"], below_2=float(np.mean(good < 2)))
    return summary


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def csn_fit(x: np.ndarray, seed: int = 0, max_sample: int = CSN_MAX_SAMPLE, min_tail: int = CSN_MIN_TAIL,
            candidates: int = CSN_CANDIDATES) -> dict | None:
    """Clauset, Shalizi & Newman's continuous power law with no upper bound: for each candidate
    xmin (quantiles of the sample) alpha = 1 + n / sum log(x / xmin) over the n values >= xmin,
    and the candidate with the least KS distance D between those values and the fitted
    P(X <= x) = 1 - (x / xmin)^(1 - alpha) is chosen. x: positive values (more than max_sample:
    a random subset of that size, fixed seed). Returns alpha, its standard error (alpha - 1) /
    sqrt(n), xmin, D, the tail's size and share; None with fewer than min_tail positive values."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    n_all = x.size
    if n_all > max_sample:
        x = np.random.default_rng(seed).choice(x, max_sample, replace=False)
    x = np.sort(x)
    n = x.size
    if n < min_tail:
        return None
    logx = np.log(x)
    suffix = np.cumsum(logx[::-1])[::-1]  # sum of log x[i:]
    # candidate start indices: quantiles 1 - (1 - q) geometric from q = 0 to the last min_tail values
    top = n - min_tail
    frac = np.geomspace(1.0, min_tail / n, candidates)
    starts = np.unique(np.clip(np.round(n * (1 - frac)).astype(int), 0, top))
    best = None
    for i in starts:
        i = int(np.searchsorted(x, x[i], side="left"))  # ties: the first copy of xmin
        nt = n - i
        denom = suffix[i] - nt * logx[i]
        if nt < min_tail or denom <= 0:
            continue
        alpha = 1.0 + nt / denom
        model = 1.0 - np.exp((1.0 - alpha) * (logx[i:] - logx[i]))
        rank = np.arange(nt)
        d = max(np.max(np.abs((rank + 1) / nt - model)), np.max(np.abs(rank / nt - model)))
        if best is None or d < best[0]:
            best = (d, alpha, i, nt)
    if best is None:
        return None
    d, alpha, i, nt = best
    return dict(alpha=float(alpha), stderr=float((alpha - 1) / math.sqrt(nt)), xmin=float(x[i]), ks=float(d),
                n_tail=int(nt), tail_fraction=float(nt / n), n=int(n_all), sampled=int(n))


__all__ = ["BLOCK_SIZES", "block_terms", "centered", "csn_fit", "mohammadi", "mohammadi_ci", "series_summary", "tail_index_per_series", "tail_index_pooled"]
