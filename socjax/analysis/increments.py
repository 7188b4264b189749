"""Local fluctuations dw = w(t+1) - w(t) of the recorded weights (the paper's Figs. 2 and 3).

`stream` makes one pass over a trajectory (R, T, K), in chunks of rows, so a trajectory larger
than memory (an np.memmap) streams through in bounded memory. For every series (run r, weight k)
it counts the increments, identifies the pure weight-decay ones, and histograms |dw| of the rest
on a log grid (`LogHist`), separately for `blocks` consecutive stretches of time.

Pure weight decay (the paper's "peak at very small fluctuations"): a step whose gradient term is
zero moves w to w * (1 - lr * l2) exactly, up to float32 rounding. An increment over `stride`
steps is classified as pure decay when |w(t+1) - w(t) (1 - lr l2)^stride| <= (stride + 1) ulp(w(t)):
within the rounding of the decay itself. A gradient step smaller than that is below float32
resolution and indistinguishable from decay in the trajectory. Decay increments are counted and
kept out of every fit.

`pooled_summary` turns the streamed statistics of a set of series (a group's or a run's) into
the fits of analysis.json, pooled (each |dw| divided by its series' median non-decay |dw|,
rounded to the grid so pooling is an exact shift of whole bins); `per_series` fits each series
on its own (raw units), every series' models optimised together (`fit_distributions`, batched
compiled calls). One pass over the data serves every grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special
from scipy import stats as sps

from socjax.analysis import cutoff, powerlaw
from socjax.analysis.loghist import Grid, LogHist, SeriesHists, accumulate, spans


@dataclass
class IncrementStats:
    """Streamed statistics of S series. hist: SeriesHists (each series' histograms (blocks, W_s)
    on its own window of the grid) of non-decay |dw|; hist_negative: the same of those with dw < 0
    (dw > 0: hist minus it); hist_decay: |dw| of the pure-decay increments (the sensitivity
    table's "all increments"), all three on the same windows; n: (S,) increments;
    n_decay: (S,) pure-decay increments; n_zero: (S,) exact zeros that are not decay (a weight
    that does not move at all); n_nonfinite: (S,) NaN/inf increments; moments: (S, 4) sums of
    dw^1..dw^4 over the histogrammed increments (float64)."""

    hist: SeriesHists
    n: np.ndarray
    n_decay: np.ndarray
    n_zero: np.ndarray
    n_nonfinite: np.ndarray
    moments: np.ndarray
    hist_negative: SeriesHists | None = None
    hist_decay: SeriesHists | None = None

    def positive(self) -> SeriesHists:
        """The non-decay |dw| of increments with dw > 0."""
        return self.hist - self.hist_negative


def _classify(w, q, zero, live, stride: int):
    """The increments of consecutive rows w (Tc + 1, S) and which are finite and pure decay: by
    the recorded zero-gradient flags `zero` (Tc, S) where given, else inferred from the decay
    factor q (S,) (the module docstring). live: how many of the Tc increments are the chunk's
    own; the rest pad it to a bucket of rows (`_chunks`) and are neither finite nor decay."""
    prev, nxt = w[:-1], w[1:]
    dw = nxt - prev
    finite = jnp.isfinite(dw) & (jnp.arange(dw.shape[0]) < live)[:, None]
    if zero is None:
        ulp = jnp.spacing(jnp.abs(prev)).astype(jnp.float64)
        resid = nxt.astype(jnp.float64) - prev.astype(jnp.float64) * q[None, :]
        decay = finite & (jnp.abs(resid) <= (stride + 1) * ulp)
    else:
        decay = finite & zero
    return dw, finite, decay


def _kinds(dw, finite, decay):
    """|dw| of a chunk's increments (`_classify`), flat, their series, and the three sets
    histogrammed: the non-decay increments, those of them with dw < 0, and the decay increments
    that move."""
    valid = finite & ~decay & (dw != 0)
    series = jnp.broadcast_to(jnp.arange(dw.shape[1], dtype=jnp.int32), dw.shape).ravel()
    return jnp.abs(dw).ravel(), series, (valid.ravel(), (valid & (dw < 0)).ravel(), (decay & (dw != 0)).ravel())


@partial(jax.jit, static_argnames=("grid", "stride"))
def _counts_chunk(w, q, zero, live, *, grid: Grid, stride: int):
    """The first pass over one chunk. w: (Tc + 1, S) float32 consecutive rows; q: (S,) float64
    decay factor per recorded interval; zero: (Tc, S) bool recorded zero-gradient flags of the
    increments, or None (then decay is inferred from q); live: the chunk's own increments, the
    first `live` of the Tc (`_chunks`). Per series: the first and last grid bin of any
    histogrammed |dw| (`loghist.spans`), the decay, zero and non-finite counts, and the moments
    of the non-decay dw."""
    dw, finite, decay = _classify(w, q, zero, live, stride)
    x, series, (nondecay, _, moving_decay) = _kinds(dw, finite, decay)
    first, last = spans(x, series, nondecay | moving_decay, grid=grid, num_series=w.shape[1])
    d = jnp.where(nondecay.reshape(dw.shape), dw, 0.0).astype(jnp.float64)
    moments = jnp.stack([jnp.sum(d**k, axis=0) for k in (1, 2, 3, 4)], axis=1)
    zero = finite & ~decay & (dw == 0)
    nonfinite = ~finite & (jnp.arange(dw.shape[0]) < live)[:, None]
    return first, last, decay.sum(0), zero.sum(0), nonfinite.sum(0), moments


@partial(jax.jit, static_argnames=("grid", "stride", "size"))
def _hist_chunk(w, q, zero, live, base, *, grid: Grid, stride: int, size: int):
    """The second pass over one chunk (arguments as `_counts_chunk`'s; base and size as
    `loghist.accumulate`'s): the three histograms of `_kinds` on the series' windows."""
    x, series, keeps = _kinds(*_classify(w, q, zero, live, stride))
    return tuple(accumulate(x, series, keep, base, grid=grid, size=size) for keep in keeps)


@partial(jax.jit, static_argnames=("stride", "bins"))
def _linear_chunk(w, q, zero, live, widths, *, stride: int, bins: int):
    """Linear-bin histograms of the non-decay |dw| of one chunk: (W, S, bins) float32 counts, one
    histogram per row of widths (W, S), bin k = [k width, (k + 1) width), the last bin also
    holding everything above it."""
    dw, finite, decay = _classify(w, q, zero, live, stride)
    valid = (finite & ~decay & (dw != 0)).ravel()
    s = w.shape[1]
    series = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), dw.shape).ravel()
    x = jnp.abs(dw).ravel().astype(jnp.float64)

    def one(width):
        k = jnp.clip(jnp.floor(x / width[series]), 0, bins - 1).astype(jnp.int32)
        seg = jnp.where(valid, series * bins + k, s * bins)
        return jax.ops.segment_sum(jnp.ones_like(x, jnp.float32), seg, s * bins + 1)[:-1].reshape(s, bins)

    return jax.vmap(one)(widths)


ELEMENTS_PER_CHUNK = 1 << 22  # values per compiled call: float64 temporaries of ~32 MB each


def stream(trajectory, lr, l2, stride: int, grid: Grid = Grid(), blocks: int = 8,
           chunk_rows: int | None = None, progress=None, zero_grad=None) -> IncrementStats:
    """Statistics of the increments of trajectory (R, T, K) (an array or np.memmap).

    lr, l2: (R,) per run (None: no decay identification); series s = r * K + k.
    zero_grad: (R, T, K) bool, the recorded zero-gradient flags (rundir.open_zero_grad): where
    given, an increment t -> t + 1 is "decay" exactly when flag t + 1 is set, whatever lr and l2;
    else decay is inferred from the trajectory (the module docstring).
    chunk_rows: rows per compiled call (default: ELEMENTS_PER_CHUNK values for all series), so
    memory is bounded whatever the length. Two passes: the first finds each series' populated
    decades (its histograms' window) and counts; the second histograms. `progress(rows)` is
    called after each chunk of each pass, if given (2 (T - 1) rows in all).
    """
    num_runs, steps, k = trajectory.shape
    s = num_runs * k
    bpd = grid.bins_per_decade
    first, last = np.full(s, grid.num_bins), np.full(s, -1)
    n_decay, n_zero, n_nonfinite, moments = np.zeros(s), np.zeros(s), np.zeros(s), np.zeros((s, 4))
    with jax.enable_x64(True):
        for _, rows, zero, live, qj in _chunks(trajectory, lr, l2, stride, zero_grad, blocks, chunk_rows, progress):
            f, l, nd, nz, nf, m = jax.device_get(_counts_chunk(rows, qj, zero, live, grid=grid, stride=stride))
            first, last = np.minimum(first, f), np.maximum(last, l)
            n_decay += nd
            n_zero += nz
            n_nonfinite += nf
            moments += m
        have = last >= first
        origin = np.where(have, first // bpd * bpd, 0)
        stop = np.where(have, -(-(last + 1) // bpd) * bpd, bpd)
        hists = [SeriesHists.empty(grid, origin, stop, blocks) for _ in range(3)]  # non-decay, its dw < 0, decay
        total = int(hists[0].start[-1])
        size = _flat_size(total + 1)
        base = jnp.asarray((hists[0].start[:-1] - origin).astype(np.int32))
        for b, rows, zero, live, qj in _chunks(trajectory, lr, l2, stride, zero_grad, blocks, chunk_rows, progress):
            out = jax.device_get(_hist_chunk(rows, qj, zero, live, base, grid=grid, stride=stride, size=size))
            for h, (counts, offsets, under, over) in zip(hists, out):
                h.counts[b] += counts[:total]
                h.offsets[b] += offsets[:total]
                h.under[:, b] += under
                h.over[:, b] += over
    hist, negative, decay = hists
    return IncrementStats(hist, np.full(s, steps - 1.0), n_decay, n_zero, n_nonfinite, moments, negative, decay)


def _flat_size(n: int) -> int:
    """n rounded up to 1, 1.25, 1.5 or 1.75 times a power of two: few distinct shapes to compile."""
    unit = max(1, 1 << max(0, (n - 1).bit_length() - 3))
    return -(-n // unit) * unit


def _decay_factors(lr, l2, stride: int, num_runs: int, k: int) -> np.ndarray:
    """(R * K,) float64: each series' decay factor over one recorded interval, (1 - lr l2)^stride
    of its run; NaN for all when lr or l2 is None (nothing matches NaN: no increment is decay)."""
    if lr is None or l2 is None:
        return np.full(num_runs * k, np.nan)
    return np.repeat((1.0 - np.asarray(lr, np.float64) * np.asarray(l2, np.float64)) ** stride, k)


def _chunks(trajectory, lr, l2, stride, zero_grad, blocks, chunk_rows, progress):
    """The chunks of a streamed pass: (time block, rows (Tc + 1, S) float32, zero-gradient flags
    (Tc, S) or None, live: how many of the Tc increments are the chunk's own, the decay factor q
    (S,) as a float64 JAX array); `progress(rows)` after each. A chunk's increments are padded to
    a bucket (`_flat_size`, at most chunk_rows) by repeating its last row (flags unset), so the
    passes compile one program per bucket, not one per chunk length (the time blocks differ by a
    row, a block's last chunk is shorter). Call with x64 enabled."""
    num_runs, steps, k = trajectory.shape
    s = num_runs * k
    chunk_rows = chunk_rows or max(2, ELEMENTS_PER_CHUNK // s)
    if steps < 2:
        raise ValueError(f"a trajectory of {steps} recorded steps has no increments")
    qj = jnp.asarray(_decay_factors(lr, l2, stride, num_runs, k))
    bounds = np.linspace(0, steps - 1, blocks + 1).round().astype(int)  # increment indices
    for b in range(blocks):
        for t0 in range(bounds[b], bounds[b + 1], chunk_rows):
            t1 = min(t0 + chunk_rows, bounds[b + 1])
            rows = np.asarray(trajectory[:, t0 : t1 + 1, :], np.float32)  # (R, Tc+1, K)
            rows = rows.transpose(1, 0, 2).reshape(t1 + 1 - t0, s)
            live = int(t1 - t0)
            pad = min(_flat_size(live), max(chunk_rows, live)) - live  # 0 for a long run's full chunks: no copy
            if pad:
                rows = np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)])
            zero = None
            if zero_grad is not None:
                zero = np.asarray(zero_grad[:, t0 + 1 : t1 + 1, :], bool).transpose(1, 0, 2).reshape(live, s)
                if pad:
                    zero = np.concatenate([zero, np.zeros((pad, s), bool)])
            yield b, rows, zero, jnp.int32(live), qj
            if progress is not None:
                progress(t1 - t0)


RECENT_VALUES = 1 << 23  # increments `recent` holds at once, over all series
RECENT_ROWS = (1 << 12, 1 << 16)  # its fewest and most rows per series


def recent_rows(series: int, steps: int) -> int:
    """The recorded steps `recent` reads by default: RECENT_VALUES shared over the series, within
    RECENT_ROWS, at most the recording's steps - 1 increments."""
    return min(int(np.clip(RECENT_VALUES // series, *RECENT_ROWS)), steps - 1)


def recent(trajectory, lr, l2, stride: int, zero_grad=None, rows: int | None = None) -> list[np.ndarray]:
    """Each series' non-decay increments (the set every fit uses: finite, not pure decay, not
    zero) over the last `rows` recorded steps, in time order, float64: the raw samples the peers'
    estimators need (`socjax.analysis.peers`). Default rows: RECENT_VALUES shared over the
    series, within RECENT_ROWS, at most the recording. The decay rule is `stream`'s (`_classify`)."""
    num_runs, steps, k = trajectory.shape
    s = num_runs * k
    rows = min(recent_rows(s, steps) if rows is None else rows, steps - 1)
    t0 = steps - 1 - rows
    q = _decay_factors(lr, l2, stride, num_runs, k)
    rows_all = np.asarray(trajectory[:, t0:, :], np.float32)  # (R, rows + 1, K): float32, the readers' one slice
    flags = None if zero_grad is None else np.asarray(zero_grad[:, t0 + 1 :, :], bool)
    out = []
    for r in range(num_runs):  # one run's series at a time through the float64 classification
        w = rows_all[r]
        zero = None if flags is None else jnp.asarray(flags[r])
        with jax.enable_x64(True):
            dw, finite, decay = jax.device_get(_classify(jnp.asarray(w), jnp.asarray(q[r * k : (r + 1) * k]), zero,
                                                         rows, stride))
        dw = np.asarray(dw, np.float64)
        keep = finite & ~decay & (dw != 0)
        out += [dw[keep[:, j], j] for j in range(k)]
    return out


LINEAR_BINS = 60  # Zhang & Tang's MNIST histograms: 60 linear bins over the range of |dw|


def linear_stream(trajectory, lr, l2, stride: int, widths: np.ndarray, bins: int = LINEAR_BINS, blocks: int = 8,
                  chunk_rows: int | None = None, progress=None, zero_grad=None) -> np.ndarray:
    """Linear-bin histograms of the non-decay |dw| of trajectory (R, T, K), a second streamed pass
    with the same decay rule and time blocks as `stream`: (W, S, blocks, bins) counts, bin k of
    histogram w of series s covering [k widths[w, s], (k + 1) widths[w, s]) (the last bin holds
    everything above). widths (W, S): e.g. each series' own range / bins, and its median times a
    group's common width in median units (`sensitivity`)."""
    widths = np.asarray(widths, np.float64)
    out = np.zeros((widths.shape[0], widths.shape[1], blocks, bins))
    with jax.enable_x64(True):
        wj = jnp.asarray(widths)
        for b, rows, zero, live, qj in _chunks(trajectory, lr, l2, stride, zero_grad, blocks, chunk_rows, progress):
            out[:, :, b] += np.asarray(_linear_chunk(rows, qj, zero, live, wj, stride=stride, bins=bins))
    return out


def _kurtosis(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Excess kurtosis from sums of dw^1..dw^4 over n samples."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = m[..., 0] / n
        var = m[..., 1] / n - mu**2
        c4 = m[..., 3] / n - 4 * mu * m[..., 2] / n + 6 * mu**2 * m[..., 1] / n - 3 * mu**4
        return c4 / var**2 - 3.0


INTERMEDIATE_SHARE = 0.1  # the least share of the increments the power-law range must hold


def fit_distribution(h_blocks: LogHist, min_count: int = 1000, slope_tol: float = 0.1) -> dict:
    """Every fit of one distribution of |dw| given per-time-block histograms (blocks, bins): the
    straightest bounded power-law range (`powerlaw`, which also sets xmin) and the model of the
    whole distribution above xmin (`model`, see `cutoff`), whose verdicts are the claims."""
    return fit_distributions([h_blocks], min_count, slope_tol)[0]


def fit_distributions(hists: list[LogHist], min_count: int = 1000, slope_tol: float = 0.1, progress=None) -> list[dict]:
    """`fit_distribution` of each of `hists`, the range fits' lognormals and block exponents
    batched (`_range_fits`) and the models of all of them optimised together (`cutoff.fit_many`:
    batched compiled calls); progress(k) after each k are done."""
    outs, sels = _range_fits(hists, min_count)
    prepared = [None if sel is None else cutoff.prepare(h, sel, min_count) for h, sel in zip(hists, sels)]
    gammas = [None if sel is None else out["powerlaw"]["exponent"] for out, sel in zip(outs, sels)]
    models = cutoff.fit_many(prepared, gammas, slope_tol, min_count, progress=progress)
    for out, model in zip(outs, models):
        if "powerlaw" in out and out["powerlaw"] is not None:
            out["model"] = model
            out["crossover"] = None if model is None else model["crossover"]
    return outs


def _range_fits(hists: list[LogHist], min_count: int) -> tuple[list[dict], list[int | None]]:
    """The bounded power-law range of each distribution (blocks, bins): (the fit's dict so far,
    the range's first edge, or None when no range qualifies), per distribution."""
    outs, sels, found = [], [], []
    for h_blocks in hists:
        h = h_blocks.sum(0)
        total = float(h.counts.sum())
        out: dict = dict(n=int(total))
        # "intermediate |dw|": the range must hold a tenth of the increments. By KS alone, with 2e7
        # increments, a decade in the far tail holding 0.02% of them can win, and there a lognormal's
        # tail passes for a power law (17% of synthetic lognormal sets were called power laws)
        need = max(min_count, int(np.ceil(INTERMEDIATE_SHARE * total)))
        sel = powerlaw.select_range(h, min_count=need)
        if sel is None:
            out["powerlaw"] = out["model"] = None
            out["note"] = f"no range of at least one decade holds {need} samples"
        else:
            found.append((h_blocks, h, *sel, out))
        outs.append(out)
        sels.append(None if sel is None else sel[0])
    fits = powerlaw.fit_many([(h, i, j) for _, h, i, j, _ in found])
    # batch means over time blocks: increments are autocorrelated, so the Fisher stderr (which
    # assumes independence) can be too small; the spread of per-block exponents is not
    block_alphas = powerlaw.fit_range_blocks_many([(h_blocks, i, j) for h_blocks, _, i, j, _ in found])
    for (h_blocks, _, i, j, out), pl, alphas in zip(found, fits, block_alphas):
        blocks = h_blocks.counts.shape[0]
        ok = np.isfinite(alphas) & (h_blocks.counts[:, i:j].sum(1) >= min_count / blocks)
        se_bm = float(np.std(alphas[ok], ddof=1) / np.sqrt(ok.sum())) if ok.sum() >= 3 else float("nan")
        se = max(pl.stderr, se_bm) if np.isfinite(se_bm) else pl.stderr
        tq = float(special.stdtrit(max(int(ok.sum()) - 1, 1), 0.975)) if np.isfinite(se_bm) else 1.96
        out["powerlaw"] = dict(pl.to_json(), stderr_batch_means=se_bm, blocks=int(ok.sum()),
                               ci95=[pl.exponent - tq * se, pl.exponent + tq * se])
    return outs, sels


def scales(st: IncrementStats) -> np.ndarray:
    """Per series: the index of the grid edge at its median non-decay |dw| (pooling unit)."""
    return st.hist.medians()


def pooled(st: IncrementStats, series=None, ref_index: int | None = None, hist: SeriesHists | None = None) -> LogHist | None:
    """The histograms (blocks, bins) of the series in `series` (default all), each divided by its
    median non-decay |dw| rounded to the grid: the median edge of every series is moved to
    ref_index (default: the edge of x = 1). hist: another histogram of the same series to pool
    in the same units (default st.hist). A series without a non-decay increment (constant, or
    pure decay) has no unit and is left out. None when none of them has a sample."""
    g = st.hist.grid
    ref = int(round(-g.lo * g.bins_per_decade)) if ref_index is None else ref_index
    med = scales(st)
    hist = st.hist if hist is None else hist
    total = None
    for s in range(st.hist.num_series) if series is None else series:
        one = hist.take(int(s))
        if one.counts.sum() == 0 or st.hist.take(int(s)).counts.sum() == 0:  # nothing, or no unit
            continue
        shifted = one.shifted(int(med[s] - ref))
        total = shifted if total is None else total + shifted
    return total


def _fluctuating(st: IncrementStats) -> np.ndarray:
    return st.n - st.n_decay - st.n_zero - st.n_nonfinite


def per_series(st: IncrementStats, series: list[dict], min_count: int = 1000, progress=None) -> list[dict]:
    """One entry per series (raw units): the dict of `series` (run, layer, row, col, ...) with its
    counts, median |dw|, excess kurtosis, and its own fits when it has min_count non-decay increments.
    progress: called with k after each k series (a progress bar; the command line also stops there on a signal)."""
    g = st.hist.grid
    edges = g.edges()
    med = scales(st)
    kurt = _kurtosis(st.moments, _fluctuating(st))
    outside = st.hist.under.sum(-1) + st.hist.over.sum(-1)  # (S,): off the grid, in no fit
    totals = st.hist.totals()
    out, fit_rows = [], []
    for s, info in enumerate(series):
        entry = dict(info, n=int(st.n[s]), decay_fraction=float(st.n_decay[s] / st.n[s]),
                     zero_fraction=float(st.n_zero[s] / st.n[s]),
                     nonfinite=int(st.n_nonfinite[s]), median_abs_dw=float(edges[med[s]]),
                     excess_kurtosis=float(kurt[s]), outside_grid=int(outside[s]))
        if totals[s] >= min_count:
            fit_rows.append(s)
        else:
            entry["powerlaw"] = None
            entry["note"] = f"fewer than {min_count} non-decay increments"
        out.append(entry)
    if progress is not None and len(fit_rows) < len(series):
        progress(len(series) - len(fit_rows))
    fits = fit_distributions([st.hist.take(s) for s in fit_rows], min_count, progress=progress)
    for s, f in zip(fit_rows, fits):
        out[s].update(f)
    return out


def pooled_summary(st: IncrementStats, series=None, min_count: int = 1000) -> tuple[dict, LogHist | None]:
    """(analysis.json's "increments" of the series in `series` (default all) pooled, in units of
    each series' median non-decay |dw|; their pooled LogHist (blocks, bins), or None when none of
    them has a non-decay increment)."""
    idx = np.arange(st.n.size) if series is None else np.asarray(series, int)
    edges = st.hist.grid.edges()
    med = scales(st)[idx]
    n_fluct = _fluctuating(st)[idx]
    n = st.n[idx]
    pool = pooled(st, idx)
    scaled_moments = st.moments[idx] / edges[med][:, None] ** np.arange(1, 5)  # pooled units: |dw| / median
    share = st.n_decay[idx] / n
    decay_ci = None
    if idx.size >= 2:  # over the weights: the population the claim is about
        half = float(sps.t.ppf(0.975, idx.size - 1) * share.std(ddof=1) / np.sqrt(idx.size))
        decay_ci = [float(share.mean() - half), float(share.mean() + half)]
    out = dict(
        units="|dw| divided by each series' median non-decay |dw|",
        series=int(idx.size),
        decay_fraction=float(st.n_decay[idx].sum() / n.sum()),
        decay_fraction_ci95=decay_ci,
        zero_fraction=float(st.n_zero[idx].sum() / n.sum()),
        nonfinite=int(st.n_nonfinite[idx].sum()),
        fluctuating=int(n_fluct.sum()),  # increments that are neither pure decay, zero nor non-finite
        excess_kurtosis=float(_kurtosis(scaled_moments.sum(0), float(n_fluct.sum()))),
        decay_rule="|w(t+1) - w(t) (1 - lr l2)^stride| <= (stride + 1) ulp(w(t))",
        # fluctuating increments outside the pooled grid (off the raw grid, or shifted off it)
        outside_grid=0 if pool is None else int(pool.under.sum() + pool.over.sum()),
    )
    if pool is not None:
        out.update(fit_distribution(pool, min_count))
    else:
        out["powerlaw"] = None
        out["note"] = "no non-decay increments"
    return out, pool

