"""How often each |dw| verdict ("yes", "no", "not resolved") comes out on synthetic increments of
known shape: the power of the tests in socjax.analysis.cutoff (shapes where the claim is true) and
their false-"yes" rates (controls, where it is false), at the sample sizes of the quick and paper
presets.

    python experiments/claim_power.py [--reps 100] [--sizes quick-weight quick-pooled ...]
        [--out experiments/results/claim_power.json]

Each repetition draws independent |dw| of one shape (socjax.analysis.synthetic), splits them
into 8 time blocks and runs the analysis's own `fit_distribution`. Real increments are
autocorrelated; these are not, so the table is the tests' behaviour under independence. The
JSON is rewritten after every cell, and a rerun skips the cells already there (nothing is lost
when it is stopped); cells tallied by the earlier two-valued rules are recomputed. The Markdown
tables for the README are printed at the end: per claim, yes / no / not resolved, with the
false-"yes" rate's 95% upper bound (Clopper-Pearson) on each control.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from scipy import stats

from socjax.analysis import synthetic, verdicts
from socjax.analysis.increments import fit_distribution

# Non-decay increments per distribution. quick: the quick preset's analysis (55,436 fluctuating
# increments pooled over 16 weights, 3,800 for a typical weight); paper: 1.2e7 recorded steps per
# weight with the quick run's non-decay fraction (11.6%), and 16 weights pooled.
SIZES = {"quick-weight": 4_000, "quick-pooled": 55_000, "paper-weight": 1_400_000, "paper-pooled": 22_000_000}
# (label, shape, parameters, truth): gamma and beta where the shape is the model's, and whether each
# claim is true of it (False: the shape is a control for that claim)
SHAPES = [
    ("paper, gamma 1.5", "paper", dict(gamma=1.5, xmin=1e-3, tau=np.sqrt(2.0)),
     dict(gamma=1.5, beta=2.0, power_law=True, gaussian=True)),
    ("paper, gamma 0.5", "paper", dict(gamma=0.5, xmin=1e-3, tau=np.sqrt(2.0)),
     dict(gamma=0.5, beta=2.0, power_law=True, gaussian=True)),
    ("exponential cutoff, gamma 1.5", "exponential_cutoff", dict(gamma=1.5, xmin=1e-3, tau=1.0),
     dict(gamma=1.5, beta=1.0, power_law=True, gaussian=False)),
    ("pure power law 1e-3..10, gamma 1.5", "power_law", dict(gamma=1.5, xmin=1e-3, xmax=10.0),
     dict(gamma=1.5, power_law=True, gaussian=False)),
    ("stretched exponential, beta 0.3", "stretched", dict(gamma=0.0, tau=1.0, beta=0.3),
     dict(gamma=0.0, beta=0.3, power_law=False, gaussian=False)),
    ("lognormal, s = 2", "lognormal", dict(mu=0.0, s=2.0), dict(power_law=False, gaussian=False)),
    ("half-normal", "half_normal", dict(sigma=1.0), dict(gamma=0.0, beta=2.0, power_law=False, gaussian=True)),
]
CLAIMS = ("power_law", "gaussian")


def one(shape: str, params: dict, truth: dict, n: int, rng) -> dict:
    fit = fit_distribution(synthetic.hist_blocks(synthetic.sample(shape, rng, n, **params)))["model"]
    if fit is None:
        return dict(fitted=False, power_law=verdicts.UNTESTED, gaussian=verdicts.UNTESTED)
    out = dict(fitted=True, **fit["verdicts"], gamma=fit["gamma"])
    if "gamma" in truth:
        out["gamma_covered"] = fit["gamma_ci95"][0] <= truth["gamma"] <= fit["gamma_ci95"][1]
    if "beta" in truth:
        ci = fit["beta_ci95"]
        out["beta_covered"] = ci is not None and ci[0] <= truth["beta"] <= ci[1]
    return out


def summarise(rows: list[dict]) -> dict:
    def frac(key):
        vals = [r[key] for r in rows if key in r]
        return None if not vals else float(np.mean(vals))
    out = dict(reps=len(rows), fitted=frac("fitted"), gamma_covered=frac("gamma_covered"),
               beta_covered=frac("beta_covered"))
    for claim in CLAIMS:
        out[claim] = verdicts.tally(r[claim] for r in rows)
    return out


def upper95(k: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound of a rate seen k times in n."""
    return 1.0 if k >= n else float(stats.beta.ppf(0.95, k + 1, n - k))


def table(results: dict, cell) -> str:
    """A Markdown table, shapes by sizes, of cell(label, truth, result) (skipping shapes where it is None)."""
    sizes = [s for s in SIZES if any(f"{label}|{s}" in results for label, *_ in SHAPES)]
    lines = ["| shape | " + " | ".join(f"{s} (n = {SIZES[s]:,})" for s in sizes) + " |",
             "| --- |" + " --- |" * len(sizes)]
    for label, _, _, truth in SHAPES:
        cells = [cell(truth, results[f"{label}|{s}"]) if f"{label}|{s}" in results else "" for s in sizes]
        if any(c is not None for c in cells):
            lines.append(f"| {label} | " + " | ".join(c or "" for c in cells) + " |")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def verdict_cell(claim: str):
    """yes / no / not resolved as shares of the repetitions; on a control (the claim is false) the
    share of "yes" is a false "yes", given with its 95% upper bound."""
    def cell(truth, r):
        t, n = r[claim], r[claim]["weights"]
        text = " / ".join(_pct(t[v] / n) for v in (verdicts.YES, verdicts.NO, verdicts.UNRESOLVED))
        if not truth[claim]:
            text = f"**control** {text} (false yes <= {upper95(t[verdicts.YES], n):.0%})"
        return text
    return cell


def coverage(truth, r: dict) -> str | None:
    if r["gamma_covered"] is None and r["beta_covered"] is None:
        return None
    return f"{_pct(r['gamma_covered'])} / {_pct(r['beta_covered'])}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=100, help="repetitions per cell (default 100)")
    p.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results/claim_power.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else dict(results={})
    doc.update(machine=platform.processor() or platform.machine(), sizes=SIZES,
               shapes={label: dict(shape=s, params={k: float(v) for k, v in prm.items()}, truth=t)
                       for label, s, prm, t in SHAPES})
    from tqdm.auto import tqdm

    for size in args.sizes:
        for k, (label, shape, params, truth) in enumerate(SHAPES):
            key = f"{label}|{size}"
            done = doc["results"].get(key)
            if done is not None and isinstance(done.get("power_law"), dict) and done["reps"] >= args.reps:
                continue
            rng = np.random.default_rng([args.seed, k, list(SIZES).index(size)])
            t0 = time.time()
            rows = [one(shape, params, truth, SIZES[size], rng)
                    for _ in tqdm(range(args.reps), desc=key, unit="rep", dynamic_ncols=True)]
            doc["results"][key] = dict(summarise(rows), seconds=time.time() - t0)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1))
            tmp.replace(out)
    doc["results"] = {k: v for k, v in doc["results"].items() if isinstance(v.get("power_law"), dict)}
    for claim, what in (("power_law", "a power law at intermediate |dw|"), ("gaussian", "Gaussian at large |dw|")):
        print(f"\nCells: {what}: % yes / no / not resolved.\n")
        print(table(doc["results"], verdict_cell(claim)))
    print("\nCells: % of 95% intervals holding the true gamma / the true beta.\n")
    print(table(doc["results"], coverage))


if __name__ == "__main__":
    main()
