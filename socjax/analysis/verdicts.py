"""Three-valued verdicts: every claim is "yes", "no" or "not resolved" (the data cannot tell at
this size), or "not tested" when its measure could not be computed.

A "yes" needs the data to support the claim (an interval on the claim's side of its threshold,
a test significant in its favour); a "no" needs them to contradict it; everything between is
"not resolved", never a "no" by default. The claim-specific rules live with their measures
(`cutoff.claims` for the |dw| claims, `socjax.report` for the others); this module holds the
words, the interval comparisons they share, and the majority that combines several verdicts.
"""

from __future__ import annotations

from collections import Counter

YES, NO, UNRESOLVED, UNTESTED = "yes", "no", "not resolved", "not tested"
VERDICTS = (YES, NO, UNRESOLVED, UNTESTED)


def holds(verdict: str) -> bool | None:
    """The two-valued reading kept in analysis.json's `holds`: True for yes, False for no, None
    otherwise (not resolved, not tested)."""
    return {YES: True, NO: False}.get(verdict)


def _missing(ci) -> bool:
    return ci is None or ci[0] is None or ci[1] is None


def above(ci, threshold: float) -> str:
    """"yes" when the interval lies above threshold, "no" when it lies at or below it, else
    "not resolved"."""
    if _missing(ci):
        return UNTESTED
    return YES if ci[0] > threshold else NO if ci[1] <= threshold else UNRESOLVED


def at_least(ci, threshold: float) -> str:
    """"yes" when the interval lies at or above threshold, "no" when it lies below it."""
    if _missing(ci):
        return UNTESTED
    return YES if ci[0] >= threshold else NO if ci[1] < threshold else UNRESOLVED


def below(ci, threshold: float) -> str:
    """"yes" when the interval lies below threshold, "no" when it lies at or above it."""
    if _missing(ci):
        return UNTESTED
    return YES if ci[1] < threshold else NO if ci[0] >= threshold else UNRESOLVED


def within(ci, lo: float, hi: float) -> str:
    """An equivalence test: "yes" when the interval lies inside [lo, hi], "no" when it misses
    [lo, hi] entirely, else "not resolved"."""
    if _missing(ci):
        return UNTESTED
    if lo <= ci[0] and ci[1] <= hi:
        return YES
    if ci[1] < lo or ci[0] > hi:
        return NO
    return UNRESOLVED


def all_of(*conditions: str) -> str:
    """The conjunction of conditions that are each yes/no/not resolved: "no" if any is "no",
    "yes" if all are "yes", else "not resolved" (or "not tested" when one is and none is "no")."""
    if NO in conditions:
        return NO
    if UNTESTED in conditions:
        return UNTESTED
    return YES if all(c == YES for c in conditions) else UNRESOLVED


def test(r: float, p: float, alpha: float = 0.05) -> str:
    """A two-sided test of a against b read as a verdict on "a is better": "yes" when
    significant with R > 0, "no" when significant with R < 0, else "not resolved"."""
    if r is None or p is None:
        return UNTESTED
    if p < alpha:
        return YES if r > 0 else NO
    return UNRESOLVED


MAJORITY_RULE = ("the verdict of more than half of the weights (weights too short to fit count as not resolved); "
                 "without such a majority, not resolved")


def tally(verdicts) -> dict:
    """How many of `verdicts` are each of the four words, and how many there are."""
    c = Counter(verdicts)
    return {v: c.get(v, 0) for v in VERDICTS} | {"weights": sum(c.values())}


def majority(counts: dict) -> str:
    """MAJORITY_RULE on a `tally`: yes or no when more than half of all the weights say so."""
    n = counts["weights"]
    if n == 0:
        return UNTESTED
    for v in (YES, NO):
        if 2 * counts[v] > n:
            return v
    return UNRESOLVED


def agreeing(pooled: str, members: list[str]) -> str:
    """A group's verdict from its pooled verdict and its seeds' (GROUP_RULE in socjax.report):
    the pooled verdict when more than half of the seeds reach it too, else "not resolved"
    (one seed: the pooled verdict)."""
    if len(members) < 2 or pooled == UNTESTED:
        return pooled
    return pooled if 2 * sum(m == pooled for m in members) > len(members) else UNRESOLVED


def from_bool(b: bool) -> str:
    """A two-valued rule's outcome (a comparison with no interval) as a verdict."""
    return YES if b else NO


def of_claim(row: dict) -> str:
    """A claim row's verdict; an analysis written before verdicts had three values has only `holds`."""
    return row.get("verdict") or {True: YES, False: NO}.get(row.get("holds"), UNTESTED)
