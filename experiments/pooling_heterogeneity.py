"""Pooling and heterogeneity: what the pooled fit says when every weight has exactly a Gaussian
cutoff but the cutoff sits at a different multiple of each weight's median.

    python experiments/pooling_heterogeneity.py [--weights 16] [--n 100000]
        [--out experiments/results/pooling_heterogeneity.json]

Each weight's |dw| are independent draws of x^-1.5 exp(-(x/tau)^2) from xmin (eq. 21, beta = 2),
with tau/xmin spread log-uniformly over `spread` decades from 10 (spread 0: every weight alike,
the control). They are pooled exactly as the analysis pools a run's weights (each divided by its
median, `increments.pooled_summary`) and each is also fitted alone (`increments.per_series`). The
table printed at the end (for the README) gives the pooled beta and verdicts against the
per-weight betas and the tally of the per-weight verdicts. The JSON is written once at the end
(about two minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from socjax.analysis import increments, synthetic, verdicts
from socjax.analysis.increments import IncrementStats
from socjax.analysis.loghist import SeriesHists

SPREADS = (0.0, 1.0, 2.0)  # decades of tau / xmin across the weights


def stats_of(rng, weights: int, n: int, spread: float, gamma: float = 1.5, xmin: float = 1e-6) -> IncrementStats:
    """IncrementStats of `weights` series of n Gaussian-cutoff increments each, tau / xmin from 10
    to 10^(1 + spread), no decay steps."""
    ratios = np.geomspace(10.0, 10.0 ** (1.0 + spread), weights)
    hists = [synthetic.hist_blocks(synthetic.sample("paper", rng, n, gamma=gamma, xmin=xmin, tau=xmin * r))
             for r in ratios]
    hist = SeriesHists.of(hists)
    zeros = np.zeros(weights)
    return IncrementStats(hist, np.full(weights, float(n)), zeros, zeros, zeros, np.zeros((weights, 4)))


def one(rng, weights: int, n: int, spread: float) -> dict:
    st = stats_of(rng, weights, n, spread)
    inc, _ = increments.pooled_summary(st)
    m = inc["model"]
    per = [e.get("model") for e in increments.per_series(st, [dict(weight=k) for k in range(weights)])]
    betas = [p["beta"] for p in per if p and p["beta"] is not None]
    tally = {c: verdicts.tally(p["verdicts"][c] if p else verdicts.UNRESOLVED for p in per)
             for c in ("power_law", "gaussian")}
    return dict(spread_decades=spread, weights=weights, n_per_weight=n,
                pooled=dict(beta=m["beta"], beta_ci95=m["beta_ci95"], gamma=m["gamma"], verdicts=m["verdicts"]),
                per_weight=dict(beta_median=float(np.median(betas)) if betas else None,
                                beta_range=[float(min(betas)), float(max(betas))] if betas else None,
                                beta_ci_holds_2=sum(p is not None and p["beta_ci95"] is not None
                                                    and p["beta_ci95"][0] <= 2 <= p["beta_ci95"][1] for p in per),
                                tally=tally, majority={c: verdicts.majority(t) for c, t in tally.items()}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=int, default=16)
    p.add_argument("--n", type=int, default=100_000, help="increments per weight (default 100,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results/pooling_heterogeneity.json")
    args = p.parse_args(argv)
    t0 = time.time()
    rows = [one(np.random.default_rng([args.seed, k]), args.weights, args.n, s) for k, s in enumerate(SPREADS)]
    doc = dict(machine=platform.processor() or platform.machine(), seconds=time.time() - t0, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print("| tau / xmin across weights | pooled beta [95%] | pooled: power law, Gaussian | per-weight beta: "
          "median (range) | weights whose beta interval holds 2 | weights: Gaussian yes / no / not resolved | "
          "majority: Gaussian |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        po, pw = r["pooled"], r["per_weight"]
        t = pw["tally"]["gaussian"]
        pooled_beta = "no cutoff" if po["beta"] is None else \
            f"{po['beta']:.2f} [{po['beta_ci95'][0]:.2f}, {po['beta_ci95'][1]:.2f}]"
        weights_beta = "none fitted" if pw["beta_median"] is None else \
            f"{pw['beta_median']:.2f} ({pw['beta_range'][0]:.2f}-{pw['beta_range'][1]:.2f})"
        print(f"| {r['spread_decades']:g} decades | {pooled_beta} | {po['verdicts']['power_law']}, "
              f"{po['verdicts']['gaussian']} | {weights_beta} | {pw['beta_ci_holds_2']} of {r['weights']} | "
              f"{t['yes']} / {t['no']} / {t['not resolved']} | {pw['majority']['gaussian']} |")
    print(f"\n{args.weights} weights x {args.n:,} increments; {doc['seconds']:.0f} s")


if __name__ == "__main__":
    main()
