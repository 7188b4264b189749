"""The age table: each claim's measure against training age, over the recording windows of a run.

    table([(age, epochs, final, analysis), ...]) -> ages.json's dict

`analysis` is one recording's analysis.json dict (a window's, or the final recording's), in order
of age. The groups (settings) are the same in every recording of a run. Per group, one row per
recording: its age (epochs trained before it), length, every `groups.HEADLINE` number across the
group's seeds (mean, sd, 95% t interval, per-seed values), the |dw| models the seeds selected,
and each claim's verdict (`verdicts`). Then per claim (`CLAIM_MEASURE` names the number that decides it):

    holds_last   the verdict at the last age (yes / no / not resolved / not tested);
    change       that number's change between the last two rows (mean over the seeds);
    p            a paired t test of that change over the seeds (each seed is one run, the same
                 run at both ages), two-sided;
    moving       p < MOVING_P: the change is larger than the seeds' spread explains; None with
                 fewer than two rows or two seeds with the number at both ages.

With two seeds the paired t test has one degree of freedom: only a change large against the
spread of the two seeds' changes counts as moving, so "not moving" is weak evidence of a plateau.
The rows compared may differ in length (a 2-epoch window against a 200-epoch final recording, or
a final recording only partly written): `comparable` says whether they do not, by the recorded
steps each analysed; a row's `epochs` are those analysed, `partial` says it was not all written.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from socjax.analysis import verdicts
from socjax.analysis.groups import HEADLINE, lookup, summarize

# the number that decides each claim of report.claims (and whose movement with age is judged)
CLAIM_MEASURE = {"bimodal": "bimodal_kde", "decay": "decay_fraction", "powerlaw": "gamma", "gaussian": "beta",
                 "a_high": "a_high", "a_low": "a_low", "overfit": "test_loss"}
MOVING_P = 0.05
MOVING_RULE = (f"a claim's measure is still moving when its change over the last two ages is significant in a "
               f"paired t test over the seeds (two-sided p < {MOVING_P})")


def paired_change(before: list, after: list) -> dict:
    """The change after - before of one number measured on the same seeds at two ages (None or NaN
    where a seed lacks it): mean change, its paired t test (p, two-sided), the seeds used, and
    moving (p < MOVING_P; None with fewer than two seeds)."""
    a = np.array([np.nan if x is None else x for x in before], np.float64)
    b = np.array([np.nan if x is None else x for x in after], np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    n = int(d.size)
    out = dict(change=float(d.mean()) if n else None, seeds=n, sd_change=None, p=None, moving=None)
    if n >= 2:
        sd = float(d.std(ddof=1))
        out["sd_change"] = sd
        if sd > 0:
            t = float(d.mean()) / (sd / math.sqrt(n))
            out["p"] = float(2 * sps.t.sf(abs(t), n - 1))
        else:  # every seed changed by exactly the same amount
            out["p"] = 1.0 if d.mean() == 0 else 0.0
        out["moving"] = out["p"] < MOVING_P
    return out


def table(recordings: list[tuple[int, int, bool, dict]]) -> dict:
    """ages.json from the analyses of a run's recordings [(age, epochs analysed, final, analysis.json
    dict)], in order of age (see the module docstring)."""
    if not recordings:
        raise ValueError("no recordings to tabulate")
    first = recordings[0][3]
    groups = []
    for gi, g in enumerate(first["groups"]):
        rows = []
        for age, epochs, final, a in recordings:
            entry = a["groups"][gi]
            members = [a["per_run"][r] for r in entry["runs"]]
            rows.append(dict(age=age, epochs=epochs, final=final, steps=a["trajectory"]["steps"],
                             partial=a["trajectory"].get("partial") is not None,
                             numbers=summarize(members), claims={c["key"]: verdicts.of_claim(c) for c in entry["claims"]},
                             per_seed={name: [lookup(m, path) for m in members] for name, path, _ in HEADLINE}))
        claims = []
        for c in g["claims"]:
            measure = CLAIM_MEASURE[c["key"]]
            verdict = dict(key=c["key"], claim=c["claim"], measure=measure, last_age=rows[-1]["age"],
                           holds_last=rows[-1]["claims"].get(c["key"]))
            if len(rows) >= 2:
                verdict.update(paired_change(rows[-2]["per_seed"][measure], rows[-1]["per_seed"][measure]),
                               since_age=rows[-2]["age"], comparable=rows[-2]["steps"] == rows[-1]["steps"])
            else:
                verdict.update(change=None, p=None, moving=None, since_age=None, comparable=None)
            claims.append(verdict)
        groups.append(dict(group=gi, label=g["label"], settings=g["settings"], seeds=g["seeds"], rows=rows,
                           claims=claims))
    return dict(measures=[dict(name=n, path=p, what=w) for n, p, w in HEADLINE], claim_measure=CLAIM_MEASURE,
                moving_rule=MOVING_RULE, groups=groups)
