"""Does the verdict depend on how dw is represented? The two |dw| verdicts, gamma and beta under
each representation a reader might choose, pooled and weight by weight.

    REPRESENTATIONS            what is histogrammed and how it is binned
    nondecay_log               the analysis's own: |dw| of the non-decay increments, log bins
    all_log                    every increment, the pure weight-decay steps included
    positive_log, negative_log the non-decay increments of each sign alone (|dw| of dw > 0, of dw < 0)
    nondecay_linear            the non-decay |dw| in 60 linear bins over their range (the paper's and
                               Zhang & Tang's histograms), fitted by binned likelihood on those bins

Every representation is fitted with the same model and verdict rules (`cutoff`), pooled (each
series divided by its median non-decay |dw|, the analysis's pooling unit, in every
representation) and for each weight alone, whose verdicts are tallied and combined by
`verdicts.majority`. The linear bins start at the first bin edge at or above the log-bin fit's
xmin (of the weight, or of the pool), never at 0: the first linear bin, which holds most of the
mass, is left out, as a fit of a density falling from xmin must. The log-bin representations
are computed from `increments.stream`'s histograms; the linear ones need a second pass
(`increments.linear_stream`) with the widths of `linear_widths`.
"""

from __future__ import annotations

import numpy as np

from socjax.analysis import cutoff, verdicts
from socjax.analysis.increments import LINEAR_BINS, IncrementStats, fit_distribution, fit_distributions, pooled, scales
from socjax.analysis.loghist import LogHist

REPRESENTATIONS = {
    "nondecay_log": "non-decay |dw|, log bins (the analysis's own)",
    "all_log": "all increments, the pure-decay steps included, log bins",
    "positive_log": "non-decay dw > 0 alone, log bins",
    "negative_log": "non-decay dw < 0 alone, log bins",
    "nondecay_linear": f"non-decay |dw|, {LINEAR_BINS} linear bins (the paper's and Zhang & Tang's histograms)",
}


def tops(st: IncrementStats) -> np.ndarray:
    """(S,) the upper edge of each series' last populated bin of non-decay |dw| (0: none)."""
    last = st.hist.last_bins()
    return np.where(last >= 0, st.hist.grid.edges()[last + 1], 0.0)


def linear_widths(st: IncrementStats, groups: list[list[int]], bins: int = LINEAR_BINS) -> np.ndarray:
    """(2, S) bin widths for `increments.linear_stream`: row 0 each series' own range / bins (raw
    units); row 1 its median times its group's common width in median units (the largest
    range / median of the group, / bins), so the group's series add bin by bin when pooled."""
    top = tops(st)
    median = st.hist.grid.edges()[scales(st)]
    out = np.ones((2, top.size))
    have = top > 0
    out[0, have] = top[have] / bins
    for series in groups:
        idx = np.asarray(series, int)
        ok = idx[have[idx]]
        if ok.size:
            out[1, ok] = median[ok] * np.max(top[ok] / median[ok]) / bins
    return out


def _summary(model: dict | None) -> dict | None:
    if model is None:
        return None
    return dict(gamma=model["gamma"], gamma_ci95=model["gamma_ci95"], beta=model["beta"],
                beta_ci95=model["beta_ci95"], selected=model["selected"], xmin=model["xmin"], n=model["n"],
                decades=model["scale_invariant"]["decades"], verdicts=model["verdicts"])


def _linear_prepared(block_counts: np.ndarray, width: float, base: dict | None, min_count: int):
    """The linear bins of `width` from the first edge at or above the log fit's xmin, prepared
    for `cutoff.fit_many` (None: nothing to fit)."""
    if base is None or not width > 0:
        return None
    edges = width * np.arange(block_counts.shape[1] + 1)
    i = max(1, int(np.ceil(base["xmin"] / width - 1e-9)))
    if i >= block_counts.shape[1]:
        return None
    return cutoff.prepare_edges(block_counts, edges, i, min_count)


def _linear_fit(block_counts: np.ndarray, width: float, base: dict | None, min_count: int) -> dict | None:
    """The model on linear bins of `width` from the first edge at or above the log fit's xmin."""
    prepared = _linear_prepared(block_counts, width, base, min_count)
    return cutoff.fit_many([prepared], [base["gamma"] if base else None], min_count=min_count)[0]


def _models(hists: list[LogHist], min_count: int, progress) -> list[dict | None]:
    """The model of each histogram with at least min_count samples (else None), fitted together."""
    rows = [k for k, h in enumerate(hists) if h.counts.sum() >= min_count]
    if progress is not None and len(rows) < len(hists):
        progress(len(hists) - len(rows))
    fits = fit_distributions([hists[k] for k in rows], min_count, progress=progress)
    out: list[dict | None] = [None] * len(hists)
    for k, f in zip(rows, fits):
        out[k] = f["model"]
    return out


def table(st: IncrementStats, linear: np.ndarray, widths: np.ndarray, series, per_weight: list[dict],
          pooled_model: dict | None, min_count: int = 1000, progress=None) -> list[dict]:
    """One row per REPRESENTATIONS entry for the series `series`: "pooled" (the fit's gamma, beta,
    their intervals, verdicts; None when too few increments) and "weights" (per claim the tally of
    the weights' verdicts, a weight without a fit counted as not resolved; the median gamma and
    beta over the fitted weights), and "verdicts" (the weights' majority, as report.claims decides).
    linear, widths: `increments.linear_stream`'s histograms and their widths (`linear_widths`);
    per_weight: `increments.per_series` entries of every series (the analysis's own fits, reused
    for nondecay_log); pooled_model: the pooled fit of nondecay_log, reused likewise.
    Every weight's fits of the four other representations are batched (`cutoff.fit_many`);
    progress(k) after each k of them."""
    idx = [int(s) for s in series]
    per_rep: dict[str, list[dict | None]] = {"nondecay_log": [per_weight[s].get("model") for s in idx]}
    positive = st.positive()
    for key, h in (("all_log", st.hist + st.hist_decay), ("positive_log", positive), ("negative_log", st.hist_negative)):
        per_rep[key] = _models([h.take(s) for s in idx], min_count, progress)
    prepared = [_linear_prepared(linear[0, s], widths[0, s], base, min_count)
                for s, base in zip(idx, per_rep["nondecay_log"])]
    gammas = [base["gamma"] if base else None for base in per_rep["nondecay_log"]]
    per_rep["nondecay_linear"] = cutoff.fit_many(prepared, gammas, min_count=min_count, progress=progress)

    pools = {"all_log": pooled(st, idx, hist=st.hist + st.hist_decay), "positive_log": pooled(st, idx, hist=positive),
             "negative_log": pooled(st, idx, hist=st.hist_negative)}
    rows = []
    for key, what in REPRESENTATIONS.items():
        if key == "nondecay_log":
            pool_model = pooled_model
        elif key == "nondecay_linear":
            pool_model = _linear_fit(linear[1, idx].sum(0), _median_units_width(st, widths, idx), pooled_model, min_count)
        else:
            h = pools[key]
            pool_model = fit_distribution(h, min_count)["model"] if h is not None and h.counts.sum() >= min_count else None
        models = per_rep[key]
        weights = {claim: verdicts.tally(m["verdicts"][claim] if m else verdicts.UNRESOLVED for m in models)
                   for claim in ("power_law", "gaussian")}
        fitted = [m for m in models if m]
        betas = [m["beta"] for m in fitted if m["beta"] is not None]
        weights["gamma_median"] = float(np.median([m["gamma"] for m in fitted])) if fitted else None
        weights["beta_median"] = float(np.median(betas)) if betas else None
        weights["fitted"] = len(fitted)
        rows.append(dict(key=key, representation=what, pooled=_summary(pool_model), weights=weights,
                         verdicts={claim: verdicts.majority(weights[claim]) for claim in ("power_law", "gaussian")}))
    return rows


def _median_units_width(st: IncrementStats, widths: np.ndarray, idx: list[int]) -> float:
    """The pooled linear bins' width in median units: the same for every series of the pool that
    has a unit (a non-decay increment, as `linear_widths` and `increments.pooled` count them);
    0.0, nothing to fit, when none has one."""
    idx = np.asarray(idx, int)
    idx = idx[tops(st)[idx] > 0]
    if idx.size == 0:
        return 0.0
    median = st.hist.grid.edges()[scales(st)][idx]
    return float((widths[1, idx] / median)[0])


QUESTION = "Does the verdict depend on how dw is represented?"
