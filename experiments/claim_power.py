"""How often the two |dw| claims are called true on synthetic increments of known shape: the
power of the tests in socjax.analysis.cutoff (shapes that are the paper's) and their false-
positive rates (shapes that are not), at the sample sizes of the quick and paper presets.

    python experiments/claim_power.py [--reps 100] [--sizes quick-weight quick-pooled ...]
        [--out experiments/results/claim_power.json]

Each repetition draws independent |dw| of one shape (socjax.analysis.synthetic), splits them
into 8 time blocks and runs the analysis's own `fit_distribution`. Real increments are
autocorrelated; these are not, so the table is the tests' behaviour under independence. The
JSON is rewritten after every cell, and a rerun skips the cells already there (nothing is lost
when it is stopped). The Markdown table for the README is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from socjax.analysis import synthetic
from socjax.analysis.increments import fit_distribution

# Non-decay increments per distribution. quick: the quick preset's analysis (55,436 fluctuating
# increments pooled over 16 weights, 3,800 for a typical weight); paper: 1.2e7 recorded steps per
# weight with the quick run's non-decay fraction (11.6%), and 16 weights pooled.
SIZES = {"quick-weight": 4_000, "quick-pooled": 55_000, "paper-weight": 1_400_000, "paper-pooled": 22_000_000}
# (label, shape, parameters, truth): gamma and beta where the shape is the model's
SHAPES = [
    ("paper, gamma 1.5", "paper", dict(gamma=1.5, xmin=1e-3, tau=np.sqrt(2.0)), dict(gamma=1.5, beta=2.0)),
    ("paper, gamma 0.5", "paper", dict(gamma=0.5, xmin=1e-3, tau=np.sqrt(2.0)), dict(gamma=0.5, beta=2.0)),
    ("exponential cutoff, gamma 1.5", "exponential_cutoff", dict(gamma=1.5, xmin=1e-3, tau=1.0), dict(gamma=1.5, beta=1.0)),
    ("pure power law 1e-3..10, gamma 1.5", "power_law", dict(gamma=1.5, xmin=1e-3, xmax=10.0), dict(gamma=1.5)),
    ("lognormal, s = 2", "lognormal", dict(mu=0.0, s=2.0), {}),
    ("half-normal", "half_normal", dict(sigma=1.0), {}),
]


def one(shape: str, params: dict, truth: dict, n: int, rng) -> dict:
    fit = fit_distribution(synthetic.hist_blocks(synthetic.sample(shape, rng, n, **params)))["model"]
    if fit is None:
        return dict(fitted=False, power_law=False, gaussian=False)
    out = dict(fitted=True, power_law=fit["is_power_law"], gaussian=fit["is_gaussian"], gamma=fit["gamma"])
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
    return dict(reps=len(rows), fitted=frac("fitted"), power_law=frac("power_law"), gaussian=frac("gaussian"),
                gamma_covered=frac("gamma_covered"), beta_covered=frac("beta_covered"))


def table(results: dict, cell) -> str:
    """A Markdown table, shapes by sizes, of cell(result) (skipping shapes where it is None)."""
    sizes = [s for s in SIZES if any(f"{label}|{s}" in results for label, *_ in SHAPES)]
    lines = ["| shape | " + " | ".join(f"{s} (n = {SIZES[s]:,})" for s in sizes) + " |",
             "| --- |" + " --- |" * len(sizes)]
    for label, *_ in SHAPES:
        cells = [cell(results[f"{label}|{s}"]) if f"{label}|{s}" in results else "" for s in sizes]
        if any(c is not None for c in cells):
            lines.append(f"| {label} | " + " | ".join(c or "" for c in cells) + " |")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def verdicts(r: dict) -> str:
    return f"{_pct(r['power_law'])} / {_pct(r['gaussian'])}"


def coverage(r: dict) -> str | None:
    if r["gamma_covered"] is None:
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
            if key in doc["results"] and doc["results"][key]["reps"] >= args.reps:
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
    print("Cells: % called a power law / % called Gaussian at large |dw|.\n")
    print(table(doc["results"], verdicts))
    print("\nCells: % of 95% intervals holding the true gamma / the true beta.\n")
    print(table(doc["results"], coverage))


if __name__ == "__main__":
    main()
