"""Log-binned histograms that carry the sufficient statistics of positive samples.

A `LogHist` bins x > 0 on a fixed grid of `bins_per_decade` bins per decade starting at 10**lo:
bin i covers [10**(lo + i/bpd), 10**(lo + (i+1)/bpd)). Besides the count it keeps, per bin, the
sum of each sample's position inside its bin, `offset = (log10 x - lo) * bpd - i` in [0, 1).
So for any range whose ends are bin edges, the number of samples and the exact sum of log x
are known, which is all the bounded power-law maximum-likelihood estimate needs: fits on a
LogHist are exact, not approximations on bin centres.

Histograms are accumulated chunk by chunk (`accumulate`, jitted) and added on the host in
float64, so a trajectory of any length streams through in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

LN10 = np.log(10.0)


@dataclass(frozen=True)
class Grid:
    """The binning: bins_per_decade bins per decade from 10**lo to 10**hi. The default covers
    every positive finite float32 (1.4e-45 to 3.4e38), so no increment of a float32 trajectory
    falls outside it, whatever its units, and pooling (an exact shift by whole bins, which
    moves each series' median to 1) loses nothing unless a median is itself extreme."""

    lo: float = -46.0
    hi: float = 39.0
    bins_per_decade: int = 100

    @property
    def num_bins(self) -> int:
        return int(round((self.hi - self.lo) * self.bins_per_decade))

    def edges(self) -> np.ndarray:
        """(num_bins + 1,) bin edges in x."""
        return 10.0 ** (self.lo + np.arange(self.num_bins + 1) / self.bins_per_decade)

    def centers(self) -> np.ndarray:
        """(num_bins,) geometric centres of the bins."""
        return 10.0 ** (self.lo + (np.arange(self.num_bins) + 0.5) / self.bins_per_decade)


@dataclass
class LogHist:
    """counts: (..., num_bins) float64; offsets: (..., num_bins) float64 sum of in-bin positions;
    under/over: (...,) samples below 10**lo or at/above 10**hi (kept out of the bins)."""

    grid: Grid
    counts: np.ndarray
    offsets: np.ndarray
    under: np.ndarray
    over: np.ndarray

    def __add__(self, other: "LogHist") -> "LogHist":
        assert self.grid == other.grid
        return LogHist(self.grid, self.counts + other.counts, self.offsets + other.offsets,
                       self.under + other.under, self.over + other.over)

    def take(self, index) -> "LogHist":
        """The histogram(s) at `index` of the leading axis (a series, or a time block)."""
        return LogHist(self.grid, self.counts[index], self.offsets[index], self.under[index], self.over[index])

    def sum(self, axis) -> "LogHist":
        return LogHist(self.grid, self.counts.sum(axis), self.offsets.sum(axis),
                       self.under.sum(axis), self.over.sum(axis))

    def shifted(self, bins: int) -> "LogHist":
        """The histogram of x * 10**(-bins/bpd): an exact shift of whole bins (offsets unchanged).
        Samples shifted off the grid go to under/over."""
        nb = self.grid.num_bins
        counts, offsets = np.zeros_like(self.counts), np.zeros_like(self.offsets)
        under, over = self.under.copy(), self.over.copy()
        if bins >= 0:  # towards smaller x
            counts[..., : nb - bins] = self.counts[..., bins:]
            offsets[..., : nb - bins] = self.offsets[..., bins:]
            under = under + self.counts[..., :bins].sum(-1)
        else:
            counts[..., -bins:] = self.counts[..., : nb + bins]
            offsets[..., -bins:] = self.offsets[..., : nb + bins]
            over = over + self.counts[..., nb + bins:].sum(-1)
        return LogHist(self.grid, counts, offsets, under, over)

    def density(self) -> tuple[np.ndarray, np.ndarray]:
        """(centres, p): probability density of x per bin, normalised by all samples (bins,
        under and over); zero where a bin is empty."""
        edges = self.grid.edges()
        total = self.counts.sum(-1) + self.under + self.over
        return self.grid.centers(), self.counts / (np.diff(edges) * np.maximum(total, 1)[..., None])

    def rebinned(self, factor: int) -> "LogHist":
        """Merge `factor` adjacent bins (offsets rescaled to the new bin width)."""
        nb = self.grid.num_bins
        if nb % factor:
            raise ValueError(f"{factor} does not divide {nb} bins")
        g = Grid(self.grid.lo, self.grid.hi, self.grid.bins_per_decade // factor)
        shape = self.counts.shape[:-1] + (nb // factor, factor)
        c = self.counts.reshape(shape)
        pos = np.arange(factor)
        off = (self.offsets.reshape(shape) + c * pos) / factor
        return LogHist(g, c.sum(-1), off.sum(-1), self.under, self.over)

    def quantile(self, q: float) -> np.ndarray:
        """The bin edge index at which the cumulative count (from under) first reaches q of all."""
        total = self.counts.sum(-1) + self.under + self.over
        cum = self.under[..., None] + np.cumsum(self.counts, -1)
        return np.argmax(cum >= q * total[..., None], axis=-1)


@partial(jax.jit, static_argnames=("grid", "num_series"))
def accumulate(x: jax.Array, series: jax.Array, valid: jax.Array, *, grid: Grid, num_series: int):
    """Per-series histogram of a chunk of samples.

    x: (N,) positive samples (float32); series: (N,) int32 series index of each sample;
    valid: (N,) bool, samples to count. Returns counts, offsets: (num_series, num_bins) float32
    and under, over: (num_series,) float32 for this chunk; add chunks on the host in float64.
    """
    nb = grid.num_bins
    pos = (jnp.log10(jnp.where(valid, x, 1.0)) - grid.lo) * grid.bins_per_decade
    idx = jnp.floor(pos)
    offset = pos - idx
    inside = valid & (idx >= 0) & (idx < nb)
    seg = jnp.where(inside, series * nb + idx.astype(jnp.int32), num_series * nb)
    n = num_series * nb + 1  # one spare segment collects everything not counted
    counts = jax.ops.segment_sum(jnp.ones_like(x), seg, n)[:-1].reshape(num_series, nb)
    offsets = jax.ops.segment_sum(jnp.where(inside, offset, 0.0), seg, n)[:-1].reshape(num_series, nb)
    under = jax.ops.segment_sum((valid & (idx < 0)).astype(x.dtype), series, num_series)
    over = jax.ops.segment_sum((valid & (idx >= nb)).astype(x.dtype), series, num_series)
    return counts, offsets, under, over


def from_samples(x: np.ndarray, grid: Grid = Grid()) -> LogHist:
    """The LogHist of one set of positive samples (for tests and small data)."""
    x = np.asarray(x, np.float64).ravel()
    pos = (np.log10(x) - grid.lo) * grid.bins_per_decade
    idx = np.floor(pos).astype(np.int64)
    inside = (idx >= 0) & (idx < grid.num_bins)
    counts = np.bincount(idx[inside], minlength=grid.num_bins).astype(np.float64)
    offsets = np.bincount(idx[inside], weights=(pos - idx)[inside], minlength=grid.num_bins)
    return LogHist(grid, counts, offsets, np.array(float((idx < 0).sum())), np.array(float((idx >= grid.num_bins).sum())))
