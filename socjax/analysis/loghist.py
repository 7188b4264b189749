"""Log-binned histograms that carry the sufficient statistics of positive samples.

A `LogHist` bins x > 0 on a fixed grid of `bins_per_decade` bins per decade starting at 10**lo:
bin i covers [10**(lo + i/bpd), 10**(lo + (i+1)/bpd)). Besides the count it keeps, per bin, the
sum of each sample's position inside its bin, `offset = (log10 x - lo) * bpd - i` in [0, 1).
So for any range whose ends are bin edges, the number of samples and the exact sum of log x
are known, which is all the bounded power-law maximum-likelihood estimate needs: fits on a
LogHist are exact, not approximations on bin centres.

Histograms are accumulated chunk by chunk (`accumulate`, inside a jitted pass) and added on the
host in float64, so a trajectory of any length streams through in bounded memory. Many series
are kept as `SeriesHists`: each on the window of the grid its samples populate (found by a
first pass, `spans`), so memory grows with the populated decades, not with the grid's 85.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """counts: (..., W) float64; offsets: (..., W) float64 sum of in-bin positions;
    under/over: (...,) samples below 10**lo or at/above 10**hi (kept out of the bins).

    The W columns are the grid's bins origin .. origin + W - 1: a window of the grid holding every
    sample that is on it (the full grid by default, origin 0). Windows start and end on whole
    decades (origin and origin + W multiples of bins_per_decade), so the edges every fit sees,
    and every candidate range of `powerlaw.select_range`, are those of the full grid; column
    indices (the fits' edge indices i, j) count from the window's first edge."""

    grid: Grid
    counts: np.ndarray
    offsets: np.ndarray
    under: np.ndarray
    over: np.ndarray
    origin: int = 0

    def __post_init__(self):
        bpd, w = self.grid.bins_per_decade, self.counts.shape[-1]
        if self.origin % bpd or w % bpd or not 0 <= self.origin <= self.origin + w <= self.grid.num_bins:
            raise ValueError(f"a LogHist window must be whole decades of its grid: bins {self.origin} "
                             f"to {self.origin + w} of {self.grid.num_bins} at {bpd} per decade")

    @property
    def stop(self) -> int:
        """One past the grid bin of the last column."""
        return self.origin + self.counts.shape[-1]

    def edges(self) -> np.ndarray:
        """(W + 1,) the window's bin edges in x (the grid's own values)."""
        return self.grid.edges()[self.origin : self.stop + 1]

    def centers(self) -> np.ndarray:
        """(W,) geometric centres of the window's bins."""
        return self.grid.centers()[self.origin : self.stop]

    def window(self, origin: int, stop: int) -> "LogHist":
        """The same histogram on the grid bins origin .. stop - 1 (whole decades), which must
        hold every populated column."""
        if origin == self.origin and stop == self.stop:
            return self
        lo, hi = max(origin, self.origin), min(stop, self.stop)
        inside = self.counts[..., lo - self.origin : hi - self.origin].sum() if hi > lo else 0.0
        if inside != self.counts.sum():
            raise ValueError(f"the window {origin}..{stop} cuts populated bins of {self.origin}..{self.stop}")
        counts = np.zeros(self.counts.shape[:-1] + (stop - origin,))
        offsets = np.zeros_like(counts)
        if hi > lo:
            counts[..., lo - origin : hi - origin] = self.counts[..., lo - self.origin : hi - self.origin]
            offsets[..., lo - origin : hi - origin] = self.offsets[..., lo - self.origin : hi - self.origin]
        return LogHist(self.grid, counts, offsets, self.under, self.over, origin)

    def full(self) -> "LogHist":
        """The same histogram on the whole grid."""
        return self.window(0, self.grid.num_bins)

    def trimmed(self) -> "LogHist":
        """The same histogram on the fewest whole decades holding every populated bin (one decade
        when none is)."""
        bpd = self.grid.bins_per_decade
        nz = np.flatnonzero(self.counts.reshape(-1, self.counts.shape[-1]).any(0))
        if nz.size == 0:
            return self.window(self.origin, self.origin + bpd) if self.counts.shape[-1] > bpd else self
        return self.window(self.origin + nz[0] // bpd * bpd, self.origin + -(-(nz[-1] + 1) // bpd) * bpd)

    def __add__(self, other: "LogHist") -> "LogHist":
        assert self.grid == other.grid
        lo, hi = min(self.origin, other.origin), max(self.stop, other.stop)
        a, b = self.window(lo, hi), other.window(lo, hi)
        return LogHist(self.grid, a.counts + b.counts, a.offsets + b.offsets, a.under + b.under, a.over + b.over, lo)

    def __sub__(self, other: "LogHist") -> "LogHist":
        """The histogram of the samples of self that are not in other (other: a subset of them)."""
        assert self.grid == other.grid
        b = other.window(self.origin, self.stop)
        return LogHist(self.grid, self.counts - b.counts, self.offsets - b.offsets, self.under - b.under,
                       self.over - b.over, self.origin)

    def take(self, index) -> "LogHist":
        """The histogram(s) at `index` of the leading axis (a series, or a time block)."""
        return LogHist(self.grid, self.counts[index], self.offsets[index], self.under[index], self.over[index],
                       self.origin)

    def sum(self, axis) -> "LogHist":
        return LogHist(self.grid, self.counts.sum(axis), self.offsets.sum(axis),
                       self.under.sum(axis), self.over.sum(axis), self.origin)

    def shifted(self, bins: int) -> "LogHist":
        """The histogram of x * 10**(-bins/bpd): an exact shift of whole bins (offsets unchanged).
        Samples shifted off the grid go to under/over."""
        nb, bpd = self.grid.num_bins, self.grid.bins_per_decade
        lo, hi = self.origin - bins, self.stop - bins  # the columns' new grid bins
        keep_lo, keep_hi = max(lo, 0), min(hi, nb)
        under = self.under + self.counts[..., : max(0, min(keep_lo, hi) - lo)].sum(-1)
        over = self.over + self.counts[..., max(0, max(keep_hi, lo) - lo) :].sum(-1)
        origin = max(0, min(keep_lo // bpd * bpd, nb - bpd))
        stop = max(origin + bpd, -(-keep_hi // bpd) * bpd)
        counts = np.zeros(self.counts.shape[:-1] + (stop - origin,))
        offsets = np.zeros_like(counts)
        if keep_hi > keep_lo:
            counts[..., keep_lo - origin : keep_hi - origin] = self.counts[..., keep_lo - lo : keep_hi - lo]
            offsets[..., keep_lo - origin : keep_hi - origin] = self.offsets[..., keep_lo - lo : keep_hi - lo]
        return LogHist(self.grid, counts, offsets, under, over, origin)

    def density(self) -> tuple[np.ndarray, np.ndarray]:
        """(centres, p): probability density of x per bin of the window, normalised by all samples
        (bins, under and over); zero where a bin is empty."""
        total = self.counts.sum(-1) + self.under + self.over
        return self.centers(), self.counts / (np.diff(self.edges()) * np.maximum(total, 1)[..., None])

    def rebinned(self, factor: int) -> "LogHist":
        """Merge `factor` adjacent bins (offsets rescaled to the new bin width)."""
        nb, bpd = self.grid.num_bins, self.grid.bins_per_decade
        if nb % factor or bpd % factor:
            raise ValueError(f"{factor} does not divide {nb} bins of {bpd} per decade")
        g = Grid(self.grid.lo, self.grid.hi, bpd // factor)
        shape = self.counts.shape[:-1] + (self.counts.shape[-1] // factor, factor)
        c = self.counts.reshape(shape)
        pos = np.arange(factor)
        off = (self.offsets.reshape(shape) + c * pos) / factor
        return LogHist(g, c.sum(-1), off.sum(-1), self.under, self.over, self.origin // factor)

    def quantile(self, q: float) -> np.ndarray:
        """The grid edge index at which the cumulative count (from under) first reaches q of all."""
        total = self.counts.sum(-1) + self.under + self.over
        cum = self.under[..., None] + np.cumsum(self.counts, -1)
        reached = cum >= q * total[..., None]
        # edge 0 when under alone reaches q (or nothing does), as on the full grid
        at_zero = (self.under >= q * total) | ~reached.any(-1)
        return np.where(at_zero, 0, self.origin + np.argmax(reached, axis=-1))


@dataclass
class SeriesHists:
    """Per-time-block histograms of S series, each on its own window of the grid (the whole
    decades its samples populate), stored ragged: series s has the columns start[s] to
    start[s + 1] - 1 of counts and offsets (blocks, N), the grid bins origin[s] onward; under,
    over: (S, blocks). Memory grows with the populated decades, not with the grid (85 decades).
    `take(s)` is series s's LogHist (blocks, W_s)."""

    grid: Grid
    origin: np.ndarray
    start: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray
    under: np.ndarray
    over: np.ndarray

    @classmethod
    def empty(cls, grid: Grid, origin: np.ndarray, stop: np.ndarray, blocks: int) -> "SeriesHists":
        """Zero histograms of the series with windows [origin[s], stop[s]) (whole decades)."""
        start = np.concatenate([[0], np.cumsum(stop - origin)]).astype(np.int64)
        s = origin.size
        return cls(grid, np.asarray(origin, np.int64), start, np.zeros((blocks, start[-1])), np.zeros((blocks, start[-1])),
                   np.zeros((s, blocks)), np.zeros((s, blocks)))

    @classmethod
    def of(cls, hists: list[LogHist]) -> "SeriesHists":
        """The series of `hists` (one LogHist (blocks, bins) each), each kept on its populated decades."""
        hists = [h.trimmed() for h in hists]
        origin = np.array([h.origin for h in hists], np.int64)
        out = cls.empty(hists[0].grid, origin, np.array([h.stop for h in hists], np.int64), hists[0].counts.shape[0])
        for s, h in enumerate(hists):
            assert h.grid == out.grid
            a, b = out.start[s], out.start[s + 1]
            out.counts[:, a:b], out.offsets[:, a:b], out.under[s], out.over[s] = h.counts, h.offsets, h.under, h.over
        return out

    @property
    def num_series(self) -> int:
        return self.origin.size

    def take(self, s: int) -> LogHist:
        """Series s's histograms (blocks, W_s) on its window."""
        a, b = self.start[s], self.start[s + 1]
        return LogHist(self.grid, self.counts[:, a:b], self.offsets[:, a:b], self.under[s], self.over[s],
                       int(self.origin[s]))

    def stacked(self, series) -> LogHist:
        """The histograms (len(series), blocks, W) of several series on the window of them all."""
        parts = [self.take(int(s)) for s in series]
        lo, hi = min(h.origin for h in parts), max(h.stop for h in parts)
        return stack([h.window(lo, hi) for h in parts])

    def totals(self) -> np.ndarray:
        """(S,) each series' samples on the grid, over every block."""
        return np.add.reduceat(self.counts.sum(0), self.start[:-1])

    def medians(self) -> np.ndarray:
        """(S,) the grid edge index at each series' median (`LogHist.quantile`)."""
        return np.array([self.take(s).sum(0).quantile(0.5) for s in range(self.num_series)], np.int64)

    def last_bins(self) -> np.ndarray:
        """(S,) the grid bin of each series' last populated bin (-1: none)."""
        out = np.full(self.num_series, -1)
        populated = self.counts.any(0)
        for s in range(self.num_series):
            nz = np.flatnonzero(populated[self.start[s] : self.start[s + 1]])
            if nz.size:
                out[s] = self.origin[s] + nz[-1]
        return out

    def _same_layout(self, other: "SeriesHists") -> None:
        if not (self.grid == other.grid and np.array_equal(self.origin, other.origin)
                and np.array_equal(self.start, other.start)):
            raise ValueError("SeriesHists of different windows")

    def __add__(self, other: "SeriesHists") -> "SeriesHists":
        self._same_layout(other)
        return SeriesHists(self.grid, self.origin, self.start, self.counts + other.counts, self.offsets + other.offsets,
                           self.under + other.under, self.over + other.over)

    def __sub__(self, other: "SeriesHists") -> "SeriesHists":
        """The samples of self that are not in other (other: a subset of them, same windows)."""
        self._same_layout(other)
        return SeriesHists(self.grid, self.origin, self.start, self.counts - other.counts, self.offsets - other.offsets,
                           self.under - other.under, self.over - other.over)


def stack(hists: list[LogHist]) -> LogHist:
    """The LogHists (one grid and window) stacked along a new leading axis."""
    first = hists[0]
    assert all(h.grid == first.grid and h.origin == first.origin and h.stop == first.stop for h in hists)
    return LogHist(first.grid, *(np.stack([getattr(h, f) for h in hists]) for f in ("counts", "offsets", "under", "over")),
                   first.origin)


def _bins(x, valid, grid: Grid):
    """Each sample's grid bin (int32), its position inside it, and whether it lies on the grid."""
    pos = (jnp.log10(jnp.where(valid, x, 1.0)) - grid.lo) * grid.bins_per_decade
    idx = jnp.floor(pos)
    inside = valid & (idx >= 0) & (idx < grid.num_bins)
    return idx, pos - idx, inside


def spans(x: jax.Array, series: jax.Array, valid: jax.Array, *, grid: Grid, num_series: int):
    """(num_series,) the first and last grid bin holding a sample of each series in this chunk
    (first > last where none does): where `accumulate`'s windows must reach. Traceable (call it
    inside a jitted function); arguments as `accumulate`'s."""
    idx, _, inside = _bins(x, valid, grid)
    idx = idx.astype(jnp.int32)
    first = jax.ops.segment_min(jnp.where(inside, idx, grid.num_bins), series, num_series)
    last = jax.ops.segment_max(jnp.where(inside, idx, -1), series, num_series)
    return first, last


def accumulate(x: jax.Array, series: jax.Array, valid: jax.Array, base: jax.Array, *, grid: Grid, size: int):
    """Per-series histograms of a chunk of samples, on each series' window (`SeriesHists`).

    x: (N,) positive samples (float32); series: (N,) int32 series index of each sample;
    valid: (N,) bool, samples to count; base: (S,) int32, start[s] - origin[s] (grid bin b of
    series s is flat column base[s] + b); size: at least start[S] + 1 (the last column collects
    what is not counted). Returns counts, offsets: (size - 1,) float32 and under, over: (S,)
    float32 for this chunk; add chunks on the host in float64. Traceable, like `spans`.
    """
    nb = grid.num_bins
    idx, offset, inside = _bins(x, valid, grid)
    seg = jnp.where(inside, base[series] + idx.astype(jnp.int32), size - 1)
    counts = jax.ops.segment_sum(jnp.where(inside, 1.0, 0.0).astype(x.dtype), seg, size)[:-1]
    offsets = jax.ops.segment_sum(jnp.where(inside, offset, 0.0), seg, size)[:-1]
    s = base.shape[0]
    under = jax.ops.segment_sum((valid & (idx < 0)).astype(x.dtype), series, s)
    over = jax.ops.segment_sum((valid & (idx >= nb)).astype(x.dtype), series, s)
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
