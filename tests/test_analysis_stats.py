"""The estimators on synthetic data with known answers, against a second computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from socjax.analysis import loghist, neurons, powerlaw, spectrum
from socjax.analysis.synthetic import bounded_powerlaw

GRID = loghist.Grid()


def edge(x):
    return int(round((np.log10(x) - GRID.lo) * GRID.bins_per_decade))


def test_range_fits_in_one_call_equal_each_fitted_on_its_whole_histogram():
    """`fit_ranges` (each range's own stretch of prefix sums, padded, vmapped) against
    `fit_range` on each whole histogram: alpha, stderr, n and KS distance."""
    rng = np.random.default_rng(4)
    items = []
    for a, lo, hi, n, (i, j) in ((1.7, 1e-4, 1e-1, 50_000, (1e-4, 1e-1)), (2.5, 1e-5, 1e-1, 8_000, (1e-4, 1e-2)),
                                  (1.1, 1e-3, 1.0, 20_000, (1e-3, 1.0))):
        h = loghist.from_samples(bounded_powerlaw(rng, a, lo, hi, n))
        items.append((h, edge(i) - h.origin, edge(j) - h.origin))
    for (h, i, j), got in zip(items, powerlaw.fit_ranges(items)):
        np.testing.assert_allclose(got, [v[0] for v in powerlaw.fit_range(h, i, j)], rtol=1e-12)


def test_mle_equals_scipy_on_raw_samples():
    rng = np.random.default_rng(0)
    x = bounded_powerlaw(rng, 1.7, 1e-4, 1e-1, 50_000)
    alpha, stderr, n, ks = (v[0] for v in powerlaw.fit_range(loghist.from_samples(x), edge(1e-4), edge(1e-1)))

    def nll(a):
        lam = 1 - a
        return -(x.size * np.log(lam / (1e-1**lam - 1e-4**lam)) - a * np.log(x).sum())

    ref = optimize.minimize_scalar(nll, bounds=(1.01, 3), method="bounded", options=dict(xatol=1e-10)).x
    assert n == x.size
    np.testing.assert_allclose(alpha, ref, rtol=1e-7)
    # Fisher information from a numerical second derivative of the same likelihood
    h = 1e-4
    info = (nll(ref + h) - 2 * nll(ref) + nll(ref - h)) / h**2
    np.testing.assert_allclose(stderr, 1 / np.sqrt(info), rtol=1e-3)
    # KS distance against scipy's on the raw samples (the LogHist evaluates it on bin edges only)
    lam = 1 - alpha
    cdf = lambda t: (t**lam - 1e-4**lam) / (1e-1**lam - 1e-4**lam)
    assert abs(ks - stats.kstest(x, cdf).statistic) < 2e-3


def test_exponent_interval_covers_truth_in_most_seeds():
    covered = 0
    seeds = 40
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        x = bounded_powerlaw(rng, 2.3, 1e-3, 1.0, 20_000)
        alpha, se, _, _ = (v[0] for v in powerlaw.fit_range(loghist.from_samples(x), edge(1e-3), edge(1.0)))
        covered += abs(alpha - 2.3) <= 1.96 * se
    assert covered >= 0.85 * seeds  # nominal 95%


def test_loghist_shift_rebin_density():
    rng = np.random.default_rng(4)
    x = rng.lognormal(-3, 1, 100_000)
    h = loghist.from_samples(x)
    shifted = h.shifted(37)  # x * 10**(-0.37)
    ref = loghist.from_samples(x * 10 ** (-37 / GRID.bins_per_decade))
    np.testing.assert_array_equal(shifted.counts[5:-5], ref.counts[5:-5])  # rounding at exact edges aside
    np.testing.assert_allclose(shifted.offsets.sum(), ref.offsets.sum(), rtol=1e-6)
    coarse = h.rebinned(5)
    np.testing.assert_array_equal(coarse.counts, loghist.from_samples(x, loghist.Grid(bins_per_decade=20)).counts)
    c, p = h.density()
    assert abs((p * np.diff(GRID.edges())).sum() - 1) < 1e-9


def _full_grid_hist(h):
    """A LogHist on the whole grid, built by hand (the reference the windows are checked against)."""
    return loghist.LogHist(h.grid, h.counts.copy(), h.offsets.copy(), h.under.copy(), h.over.copy())


@pytest.mark.parametrize("shift", [0, 37, -37, 4000, -4000, 9000, -9000])
def test_a_window_of_the_grid_computes_what_the_whole_grid_does(shift):
    """Every operation on a LogHist kept on its populated decades equals the same operation on the
    whole grid (shifts off the grid's ends included), and the fits pick the same range and numbers."""
    rng = np.random.default_rng(5)
    blocks = [loghist.from_samples(rng.lognormal(-3 + b, 1.5, 20_000)) for b in range(3)]
    full = loghist.LogHist(GRID, *(np.stack([getattr(h, f) for h in blocks]) for f in ("counts", "offsets", "under", "over")))
    win = full.trimmed()
    assert win.origin % GRID.bins_per_decade == 0 and win.counts.shape[-1] < 0.2 * GRID.num_bins
    same = lambda a, b: all(np.array_equal(getattr(a.full(), f), getattr(b.full(), f)) for f in ("counts", "offsets", "under", "over"))
    assert same(win, full)
    assert same(win.shifted(shift), full.shifted(shift))
    other = _full_grid_hist(full.take(1)).shifted(-shift // 3).trimmed()  # another window, partly overlapping
    assert same(win.take(0) + other, full.take(0) + other.full())
    assert same((win.take(0) + other) - other, win.take(0))
    np.testing.assert_array_equal(win.quantile(0.5), full.quantile(0.5))
    np.testing.assert_array_equal(win.shifted(shift).quantile(0.3), full.shifted(shift).quantile(0.3))
    np.testing.assert_array_equal(win.rebinned(5).full().counts, full.rebinned(5).counts)
    np.testing.assert_array_equal(win.sum(0).edges(), GRID.edges()[win.origin : win.stop + 1])
    x, p = win.sum(0).density()
    xf, pf = full.sum(0).density()
    np.testing.assert_array_equal(p, pf[win.origin : win.stop])
    np.testing.assert_array_equal(x, xf[win.origin : win.stop])
    with pytest.raises(ValueError, match="whole decades"):
        loghist.LogHist(GRID, win.counts[..., 1:], win.offsets[..., 1:], win.under, win.over, win.origin)
    with pytest.raises(ValueError, match="cuts populated bins"):
        win.window(win.origin + GRID.bins_per_decade, win.stop)
    # the range search and the fits see the same edges: identical results
    h, hf = win.sum(0), full.sum(0)
    (i, j), (fi, fj) = powerlaw.select_range(h), powerlaw.select_range(hf)
    assert (i + win.origin, j + win.origin) == (fi, fj)
    assert powerlaw.fit(h, i, j) == powerlaw.fit(hf, fi, fj)
    np.testing.assert_array_equal(powerlaw.fit_range_blocks(win, i, j), powerlaw.fit_range_blocks(full, fi, fj))


def test_series_hists_hold_each_series_on_its_own_window():
    """SeriesHists.of keeps each series on its populated decades; take, totals, medians and
    last_bins equal the same on the whole grid."""
    rng = np.random.default_rng(6)
    parts = [loghist.from_samples(rng.lognormal(mu, 1.0, 5_000)) for mu in (-20.0, 0.0, 30.0)]
    parts.append(loghist.LogHist(GRID, np.zeros(GRID.num_bins), np.zeros(GRID.num_bins), np.array(3.0), np.array(0.0)))
    stacked = [loghist.LogHist(GRID, *(getattr(h, f)[None] for f in ("counts", "offsets", "under", "over"))) for h in parts]
    sh = loghist.SeriesHists.of(stacked)
    assert sh.counts.shape[1] < 0.1 * 4 * GRID.num_bins
    for s, h in enumerate(stacked):
        np.testing.assert_array_equal(sh.take(s).full().counts, h.counts)
        np.testing.assert_array_equal(sh.take(s).full().offsets, h.offsets)
        assert sh.totals()[s] == h.counts.sum()
        assert sh.medians()[s] == h.sum(0).quantile(0.5)
        nz = np.flatnonzero(h.counts[0])
        assert sh.last_bins()[s] == (nz[-1] if nz.size else -1)
    both = sh.stacked([0, 2])
    np.testing.assert_array_equal(both.full().counts, np.stack([stacked[0].counts, stacked[2].counts]))
    np.testing.assert_array_equal((sh + sh - sh).counts, sh.counts)


@pytest.mark.parametrize("name, make, a", [
    ("white", lambda rng, t, k: rng.normal(size=(t, k)), 0.0),
    ("random walk", lambda rng, t, k: np.cumsum(rng.normal(size=(t, k)), 0), 2.0),
    ("1/f^1.5", None, 1.5),
])
def test_welch_exponents_in_both_bands(name, make, a):
    rng = np.random.default_rng(5)
    t, k = 2**17, 8
    if make is None:  # shaped noise with P ~ f^-a exactly, in continuous frequency
        f = np.fft.rfftfreq(t)
        amp = np.where(f > 0, f, 1) ** (-a / 2) * (f > 0)
        x = np.fft.irfft((rng.normal(size=(k, f.size)) + 1j * rng.normal(size=(k, f.size))) * amp, n=t, axis=1).T
    else:
        x = make(rng, t, k)
    f, psd, _ = spectrum.welch(x[None].astype(np.float32))
    seg = spectrum.default_segment(t)
    out = spectrum.fit_bands(f, psd, seg, 1)
    for band in ("a_low", "a_high"):
        lo, hi = out[band]["ci95"]
        assert lo - 0.05 <= a <= hi + 0.05, (band, out[band])
        assert out[band]["band"][1] <= 0.05 + 1e-12


def test_welch_parseval_sine_and_streaming():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1024, 1)).astype(np.float32)  # trajectories are float32 on disk
    f, psd, n = spectrum.welch(x[None], segment=1024, window="boxcar")
    np.testing.assert_allclose(psd.sum() * (f[1] - f[0]), x.astype(np.float64).var(), rtol=1e-10)
    t = np.arange(8192)
    s = np.sin(2 * np.pi * 0.0625 * t)[:, None]
    f, psd, _ = spectrum.welch(s[None], segment=512)
    assert f[np.argmax(psd[0])] == 0.0625
    y = np.cumsum(rng.normal(size=(3, 5000, 2)), 1)
    one = spectrum.welch(y, segment=256, chunk_segments=10_000)[1]
    many = spectrum.welch(y, segment=256, chunk_segments=3)[1]
    np.testing.assert_allclose(many, one, rtol=1e-12)
    f2, p2, _ = spectrum.welch(y[:, ::2], stride=2, segment=128)
    assert f2[-1] == 0.25  # Nyquist of a stride-2 recording, in cycles per SGD step


def test_sarle_and_kde_modes():
    rng = np.random.default_rng(7)
    z = np.stack([rng.normal(size=4000),
                  np.concatenate([rng.normal(-2, 0.5, 2000), rng.normal(2, 0.5, 2000)])], axis=1)
    g, k = stats.skew(z, axis=0), stats.kurtosis(z, axis=0)
    n = z.shape[0]
    np.testing.assert_allclose(neurons.sarle(z), (g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))), rtol=1e-10)
    modes, _, _ = neurons.kde_modes(z.astype(np.float32))
    assert list(np.asarray(modes)) == [1, 2]


@pytest.mark.parametrize("steps, segment", [(5000, None), (4097, 1024), (3000, 512), (600, 128)])
def test_progress_reports_sum_to_the_documented_totals(steps, segment):
    """analyze's bar total is 3 (steps - 1) + spectrum.rows_covered: what the four passes report
    (the increments' two, their linear bins, the spectra)."""
    from socjax.analysis import increments

    traj = np.cumsum(np.random.default_rng(4).normal(size=(2, steps, 3)), axis=1).astype(np.float32)
    seen = []
    increments.stream(traj, None, None, stride=1, chunk_rows=333, progress=seen.append)
    assert sum(seen) == 2 * (steps - 1)
    seen.clear()
    increments.linear_stream(traj, None, None, 1, np.ones((2, 6)), chunk_rows=333, progress=seen.append)
    assert sum(seen) == steps - 1
    seen.clear()
    spectrum.welch(traj, 1, segment, chunk_segments=3, progress=seen.append)
    covered = spectrum.rows_covered(steps, segment)
    assert sum(seen) == covered and steps - (segment or spectrum.default_segment(steps)) // 2 < covered <= steps
    assert spectrum.rows_covered(100) == 0  # too short for a spectrum: nothing to report
