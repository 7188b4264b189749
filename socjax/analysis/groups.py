"""Groups of runs, and statistics across the seeds of a group.

The runs of one directory (every combination of seeds, --lr and --l2 values) are grouped by
their setting: every recorded hyperparameter but the seed. The seeds of one setting form a group.
The analysis pools series only within a group, never across settings, so a `--l2 0 5e-4` sweep
gets one answer per l2, not a mixture of two regimes.

`across_seeds` summarises one number measured on each seed of a group: mean, standard deviation
and the two-sided 95% t interval of the mean, mean +- t(0.975, n - 1) sd / sqrt(n). `HEADLINE`
names the numbers summarised this way, each read from a per-run analysis entry by a path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as sps


class Group(NamedTuple):
    """index: position in analysis.json's "groups"; settings: {name: value} shared by its runs
    (lr, l2, ...); runs: run indices (positions on the run axis); seeds: theirs (None where not
    recorded); label: the settings that vary across the directory's groups, e.g. "l2=0.0005"."""

    index: int
    settings: dict
    runs: tuple[int, ...]
    seeds: tuple
    label: str


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def group_runs(runs: list[dict] | None, num_runs: int) -> tuple[list[Group], list[str]]:
    """(groups in order of first appearance, the names of the settings that vary across them).

    runs: one dict per run ({"seed", "lr", "l2", ...}), or None when the directory records none
    (then every run is one group with no settings)."""
    if runs is None:
        return [Group(0, {}, tuple(range(num_runs)), (None,) * num_runs, "all runs")], []
    names = sorted({k for r in runs for k in r} - {"seed"})
    keyed: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        keyed.setdefault(tuple(r.get(k) for k in names), []).append(i)
    swept = [n for j, n in enumerate(names) if len({key[j] for key in keyed}) > 1]
    shown = swept or names
    groups = []
    for g, (key, members) in enumerate(keyed.items()):
        settings = dict(zip(names, key))
        label = ", ".join(f"{n}={_fmt(settings[n])}" for n in shown) or "all runs"
        groups.append(Group(g, settings, tuple(members), tuple(runs[i].get("seed") for i in members), label))
    return groups, swept


def across_seeds(values) -> dict:
    """Mean, sd and 95% t interval of the finite values among `values` (one per seed; None or NaN
    where a seed has no such number). With fewer than two finite values: no sd and no interval."""
    v = np.array([np.nan if x is None else float(x) for x in values], np.float64)
    good = v[np.isfinite(v)]
    n = int(good.size)
    out = dict(n=n, of=len(v), values=[None if not math.isfinite(x) else float(x) for x in v],
               mean=float(good.mean()) if n else None, sd=None, ci95=None)
    if n >= 2:
        sd = float(good.std(ddof=1))
        half = float(sps.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half])
    return out


def lookup(entry: dict, path: str):
    """entry["a"]["b"]... for path "a.b..."; None where any level is missing or None."""
    for key in path.split("."):
        if not isinstance(entry, dict) or entry.get(key) is None:
            return None
        entry = entry[key]
    return entry


# (name, path in a per-run entry, what it is): the numbers analysis.json summarises across seeds
HEADLINE = (
    ("decay_fraction", "increments.decay_fraction", "share of pure weight-decay increments"),
    ("gamma", "increments.model.gamma", "power-law exponent of the |dw| model"),
    ("scale_invariant_decades", "increments.model.scale_invariant.decades",
     "decades where the model's slope stays within the tolerance of -gamma"),
    ("crossover", "increments.model.crossover", "|dw| / median where the cutoff takes over"),
    ("beta", "increments.model.beta", "cutoff shape (2: Gaussian)"),
    ("excess_kurtosis", "increments.excess_kurtosis", "excess kurtosis of the non-decay increments"),
    ("a_low", "spectrum.a_low.value", "spectral exponent, low band"),
    ("a_high", "spectrum.a_high.value", "spectral exponent, high band"),
    ("bimodal_kde", "neurons.fraction_bimodal_kde", "share of bimodal layer-2 neurons (KDE)"),
    ("bimodal_sarle", "neurons.fraction_bimodal_sarle", "share of bimodal layer-2 neurons (Sarle)"),
    ("test_loss", "test.loss_last", "final test loss"),
    ("test_accuracy", "test.accuracy_last", "final test accuracy"),
)


def summarize(entries: list[dict]) -> dict:
    """analysis.json's "across_seeds" of a group from its per-run entries: every HEADLINE number
    through `across_seeds`, and how many seeds' |dw| models selected each form."""
    out = {name: across_seeds([lookup(e, path) for e in entries]) for name, path, _ in HEADLINE}
    selected: dict[str, int] = {}
    for e in entries:
        s = lookup(e, "increments.model.selected")
        if s is not None:
            selected[s] = selected.get(s, 0) + 1
    out["selected"] = selected
    return out
