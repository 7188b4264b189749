"""The Discussion's correlation claim: a weight's scale-invariant range against its fluctuation amplitude.

    correlations(per_weight, stats, params) -> dict (prune.json's "correlation", with the per-weight
    table it is computed from)

The paper's Discussion (shared/PAPER.md): every weight has a scale-invariant range of its own;
wide ranges mark well-trained, vital weights; the range is narrower where the fluctuation
amplitude is larger. So the rank correlation between range width and amplitude should be negative.

Range width, two definitions fixed before looking (both from analysis.json's per-weight fits):
  scale_invariant  the decades over which the selected |dw| model's local slope stays within the
                   analysis's tolerance of a power law (model.scale_invariant.decades): PRIMARY
  powerlaw_range   the width of the straightest bounded power-law range (powerlaw.width_decades;
                   at least one decade by construction)
Amplitude, from weight_stats.npz (the recorded phase, every step of the weight):
  nondecay_std       std of the non-decay increments: the paper's notion, PRIMARY
  nondecay_mean_abs  mean |dw| of the non-decay increments
  all_std            std of all increments, pure decay -lr*l2*w included (so partly |w|)
and |w| (the final parameters) as a further variable.

Per run: Spearman's rho (ties averaged) over the weights with a fit. Intervals: across runs, the
95% t interval of the per-run rho (groups.across_seeds); and a bootstrap of the mean per-run rho,
resampling weights within each run (BOOTSTRAP resamples, fixed seed), percentile 95% interval.
The claim holds when the across-run interval of rho(scale_invariant, nondecay_std) lies below 0
(with one run, when the bootstrap interval does).
"""

from __future__ import annotations

import numpy as np

from socjax.analysis.groups import across_seeds

WIDTHS = {"scale_invariant": ("model", "scale_invariant", "decades"), "powerlaw_range": ("powerlaw", "width_decades")}
MEASURES = ("nondecay_std", "nondecay_mean_abs", "all_std", "abs_w")
PRIMARY = ("scale_invariant", "nondecay_std")
BOOTSTRAP = 2000
RULE = ("holds when the 95% interval across seeds of Spearman's rho(scale-invariant width, non-decay std) is "
        "below 0 (the paper: a larger amplitude goes with a narrower range)")


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties given their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, axis=-1, kind="stable")
    sorted_x = np.take_along_axis(x, order, -1)
    out = np.empty(x.shape, np.float64)
    for idx in np.ndindex(x.shape[:-1]):
        s = sorted_x[idx]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], s.size]
        avg = (starts + ends + 1) / 2.0  # the mean of the ranks starts+1 .. ends
        r = np.repeat(avg, ends - starts)
        out[idx + (order[idx],)] = r
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of x and y along the last axis (NaN where either is constant)."""
    rx, ry = ranks(x), ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))


def _get(entry: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(entry, dict) or entry.get(key) is None:
            return None
        entry = entry[key]
    return float(entry)


def weight_table(per_weight: list[dict], stats: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> dict:
    """One row per tracked weight: run, layer, row, col, each width (NaN without a fit) and each
    measure. Arrays of length K * R."""
    cols = {k: [] for k in ("run", "layer", "row", "col", *WIDTHS, *MEASURES)}
    for e in per_weight:
        r, l, i, j = int(e["run"]), int(e["layer"]), int(e["row"]), int(e["col"])
        cols["run"].append(r)
        cols["layer"].append(l)
        cols["row"].append(i)
        cols["col"].append(j)
        for name, path in WIDTHS.items():
            v = _get(e, path)
            cols[name].append(np.nan if v is None else v)
        n_live = stats[f"nondecay_count_w{l}"][r, i, j]
        cols["nondecay_std"].append(float(np.sqrt(max(stats[f"nondecay_var_w{l}"][r, i, j], 0.0))) if n_live else 0.0)
        cols["nondecay_mean_abs"].append(float(stats[f"nondecay_mean_abs_w{l}"][r, i, j]) if n_live else 0.0)
        cols["all_std"].append(float(np.sqrt(max(stats[f"var_w{l}"][r, i, j], 0.0))))
        cols["abs_w"].append(float(abs(params[f"w{l}"][r, i, j])))
    return {k: np.asarray(v) for k, v in cols.items()}


def correlation(table: dict, width: str, measure: str, runs: list[int], boot: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Spearman's rho of `width` against `measure` per run, across-run interval, bootstrap interval."""
    rng = np.random.default_rng(seed)
    per_run, n, boots = [], [], []
    for r in runs:
        sel = (table["run"] == r) & np.isfinite(table[width])
        x, y = table[width][sel], table[measure][sel]
        n.append(int(sel.sum()))
        if sel.sum() < 3:
            per_run.append(None)
            continue
        per_run.append(float(spearman(x, y)))
        pick = rng.integers(0, x.size, (boot, x.size))
        boots.append(spearman(x[pick], y[pick]))
    out = dict(width=width, measure=measure, n=n, rho=across_seeds(per_run), bootstrap_ci95=None)
    if boots:  # a resample of a run whose widths are all equal has no rho (NaN): left out
        b = np.stack(boots)
        ok = np.isfinite(b)
        mean_boot = np.where(ok, b, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
        mean_boot = mean_boot[ok.any(0)]
        if mean_boot.size:
            out["bootstrap_ci95"] = [float(np.percentile(mean_boot, 2.5)), float(np.percentile(mean_boot, 97.5))]
    return out


def correlations(per_weight: list[dict], stats: dict[str, np.ndarray], params: dict[str, np.ndarray],
                 boot: int = BOOTSTRAP) -> dict:
    """Every (width, measure) pair, plus |w| against the primary amplitude, and the claim's verdict."""
    t = weight_table(per_weight, stats, params)
    runs = sorted(set(t["run"].tolist()))
    pairs = [correlation(t, w, m, runs, boot) for w in WIDTHS for m in MEASURES]
    pairs.append(correlation(t, "abs_w", "nondecay_std", runs, boot))
    primary = next(p for p in pairs if (p["width"], p["measure"]) == PRIMARY)
    ci = primary["rho"]["ci95"] or (primary["bootstrap_ci95"] if len(runs) == 1 else None)
    fitted = int(np.isfinite(t["scale_invariant"]).sum())
    table = {k: [None if not np.isfinite(x) else (int(x) if k in ("run", "layer", "row", "col") else float(x))
                 for x in v.tolist()] for k, v in t.items()}
    return dict(pairs=pairs, primary=list(PRIMARY), rule=RULE, holds=None if ci is None else bool(ci[1] < 0),
                weights=int(t["run"].size), fitted=fitted, table=table,
                zero_width_share=float(np.mean(t["scale_invariant"][np.isfinite(t["scale_invariant"])] == 0))
                if fitted else None)
