"""Three-valued verdicts (socjax.analysis.verdicts, cutoff.claims, report.claims): each rule on
hand-made numbers, each |dw| rule on synthetic shapes of known answer, Vuong's test with the time
blocks against a direct computation over the samples."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats

from socjax import report
from socjax.analysis import cutoff, powerlaw, synthetic, verdicts
from socjax.analysis.increments import fit_distribution

Y, N, U, T = verdicts.YES, verdicts.NO, verdicts.UNRESOLVED, verdicts.UNTESTED


@pytest.mark.parametrize("ci, above, below, within", [
    ([0.2, 0.5], Y, Y, N), ([-0.3, 0.05], N, Y, N), ([0.05, 0.3], U, Y, N), ([1.95, 2.05], Y, U, Y),
    ([1.85, 2.05], Y, U, U), ([2.2, 2.4], Y, N, N), (None, T, T, T),
])
def test_interval_rules(ci, above, below, within):
    """above 0.1 (gamma), below 2 (a_low), inside [1.9, 2.1] (a_high), each by its definition."""
    assert verdicts.above(ci, 0.1) == above
    assert verdicts.below(ci, 2.0) == below
    assert verdicts.within(ci, 1.9, 2.1) == within


def test_combinations_majority_and_group_agreement():
    assert verdicts.all_of(Y, Y, Y) == Y and verdicts.all_of(Y, U, Y) == U and verdicts.all_of(U, N) == N
    assert verdicts.test(5.0, 0.01) == Y and verdicts.test(-5.0, 0.01) == N and verdicts.test(5.0, 0.2) == U
    # more than half of ALL the weights, those too short to fit included (as not resolved)
    assert verdicts.majority(verdicts.tally([Y] * 5 + [N] * 2 + [U] * 3)) == U
    assert verdicts.majority(verdicts.tally([Y] * 6 + [N] * 2 + [U] * 2)) == Y
    assert verdicts.majority(verdicts.tally([N] * 9 + [U] * 7)) == N
    # a group takes its pooled verdict when more than half of its seeds reach it too
    assert verdicts.agreeing(Y, [Y, Y, N]) == Y and verdicts.agreeing(Y, [Y, N]) == U
    assert verdicts.agreeing(N, [U, U]) == U and verdicts.agreeing(N, [N]) == N


def fit_numbers(gamma_ci=(1.3, 1.7), decades_ci=(1.5, 1.8), ln=(100.0, 1e-4), cut_p=1e-9, beta_ci=(1.8, 2.2),
                b21=(50.0, 1e-3)) -> dict:
    """The numbers cutoff.claims reads, as cutoff.fit writes them."""
    return dict(gamma_ci95=list(gamma_ci), beta_ci95=list(beta_ci),
                scale_invariant=dict(slope_tolerance=0.1, decades_ci95=list(decades_ci)),
                tests=dict(lognormal=dict(loglik_ratio=ln[0], p=ln[1]), cutoff=dict(p=cut_p),
                           beta2_vs_beta1=dict(loglik_ratio=b21[0], p=b21[1])))


@pytest.mark.parametrize("change, power_law, gaussian", [
    ({}, Y, Y),
    (dict(gamma_ci=(0.05, 0.4)), U, Y),           # gamma's interval straddles the threshold
    (dict(gamma_ci=(-0.2, 0.08)), N, Y),          # ... lies below it: flat, no power law
    (dict(decades_ci=(0.7, 1.4)), U, Y),          # the decades' interval straddles 1
    (dict(decades_ci=(0.0, 0.3)), N, Y),
    (dict(ln=(100.0, 0.3)), U, Y),                # the lognormal fits as well
    (dict(ln=(-100.0, 1e-4)), N, Y),              # ... significantly better
    (dict(cut_p=0.2), Y, U),                      # no cutoff reached: the tail cannot be judged
    (dict(beta_ci=(0.5, 4.0), b21=(3.0, 0.3)), Y, U),   # a wide interval holding 1 and 2 is no "yes"
    (dict(beta_ci=(0.5, 4.0), b21=(-30.0, 1e-3)), Y, N),  # ... and beta = 1 fits significantly better
    (dict(beta_ci=(0.3, 0.6)), Y, N),             # beta's interval excludes 2
])
def test_claims_rules(change, power_law, gaussian):
    got = cutoff.claims(fit_numbers(**change))
    assert got["verdicts"] == dict(power_law=power_law, gaussian=gaussian)
    assert got["is_power_law"] == (power_law == Y) and got["is_gaussian"] == (gaussian == Y)


@pytest.mark.parametrize("shape, params, power_law, gaussian", [
    ("paper", dict(gamma=1.5, xmin=1e-3, tau=np.sqrt(2.0)), Y, Y),
    ("exponential_cutoff", dict(gamma=1.5, xmin=1e-3, tau=1.0), Y, N),
    ("stretched", dict(gamma=0.0, tau=1.0, beta=0.3), N, N),
    ("half_normal", dict(sigma=1.0), N, Y),
])
def test_each_rule_on_shapes_of_known_answer(shape, params, power_law, gaussian):
    """The power table's generator (experiments/claim_power.py) at 400,000 increments: every
    verdict is the shape's truth, and resolved."""
    m = fit_distribution(synthetic.hist_blocks(synthetic.sample(shape, np.random.default_rng(3), 400_000, **params)))["model"]
    assert m["verdicts"] == dict(power_law=power_law, gaussian=gaussian), (m["verdicts"], m["beta_ci95"], m["tests"])


def test_small_samples_say_not_resolved_not_yes():
    """At the quick preset's per-weight size (4,000) the paper's own shape and an exponential
    cutoff are rarely told apart: across 12 draws of each, an exponential cutoff is never called
    Gaussian, and whenever beta's interval holds both 1 and 2 the Gaussian verdict is not "yes"."""
    rng = np.random.default_rng(7)
    for shape in ("paper", "exponential_cutoff"):
        for _ in range(12):
            m = fit_distribution(synthetic.hist_blocks(synthetic.sample(shape, rng, 4000)))["model"]
            ci = m["beta_ci95"]
            if shape == "exponential_cutoff":
                assert m["verdicts"]["gaussian"] != Y
            if ci is not None and ci[0] <= 1.0 and ci[1] >= 2.0:
                assert m["verdicts"]["gaussian"] != Y or m["tests"]["beta2_vs_beta1"]["p"] < 0.05


def test_vuong_with_blocks_equals_the_clustered_variance_over_samples():
    """Each sample repeated 40 times in a row (strong autocorrelation): the independent test is far
    too confident; the blocked one equals the cluster-robust computation over the samples
    themselves (sum over blocks of (R_b - n_b R / n)^2, B / (B - 1)), with t at B - 1 dof."""
    rng = np.random.default_rng(0)
    e = np.linspace(0.0, 1.0, 21)
    x = np.repeat(rng.beta(1.0, 1.3, 400), 40)  # not uniform
    blocks = np.array_split(x, 8)
    block_counts = np.stack([np.histogram(b, e)[0] for b in blocks]).astype(float)
    counts = block_counts.sum(0)
    logp_a = np.log(np.diff(e))  # uniform
    w = 1.0 - 0.2 * (e[:-1] + e[1:]) / 2
    logp_b = np.log(w * np.diff(e) / np.sum(w * np.diff(e)))
    r_iid, p_iid = powerlaw.vuong(counts, logp_a, logp_b)
    r, p = powerlaw.vuong(counts, logp_a, logp_b, block_counts)
    # the direct computation over the samples
    k = np.clip(np.searchsorted(e, x, side="right") - 1, 0, 19)
    d = (logp_a - logp_b)[k]
    n, total = d.size, d.sum()
    rb = np.array([s.sum() for s in np.array_split(d, 8)])
    nb = np.array([s.size for s in np.array_split(d, 8)])
    var = max(np.sum((d - total / n) ** 2), 8 / 7 * np.sum((rb - nb * total / n) ** 2))
    np.testing.assert_allclose(r, total, rtol=1e-12)
    np.testing.assert_allclose(p, 2 * stats.t.sf(abs(total) / np.sqrt(var), 7), rtol=1e-9)
    assert r == r_iid and p_iid < 1e-40 and p > 0.05  # 400 independent draws cannot tell what 16,000 would


def test_report_rests_the_dw_claims_on_the_weights_and_the_group_on_its_seeds():
    """An entry of 16 weights whose pooled fit says yes but whose weights mostly cannot tell: the
    claim is not resolved, and the row shows both; two seeds disagreeing make the group not resolved."""
    model = dict(fit_numbers(), gamma=1.5, xmin=1e-3, selected="stretched_cutoff", beta=2.0,
                 models=dict(gaussian_cutoff=dict(loglik=10.0), exponential_cutoff=dict(loglik=0.0)))
    model["scale_invariant"].update(decades=1.6)
    model["tests"]["cutoff"]["p"] = 1e-9
    model.update(cutoff.claims(model))
    weights = {c: verdicts.tally([Y] * 5 + [U] * 11) for c in ("power_law", "gaussian")}
    entry = dict(increments=dict(model=model, per_weight=weights, decay_fraction=0.5, fluctuating=10), spectrum={})
    rows = {r["key"]: r for r in report.claims(entry, 1000)}
    assert model["verdicts"] == dict(power_law=Y, gaussian=Y)
    for key in ("powerlaw", "gaussian"):
        assert rows[key]["verdict"] == U and rows[key]["holds"] is None
        assert "pooled verdict yes" in rows[key]["measured"] and "5 yes, 0 no, 11 not resolved of 16" in rows[key]["measured"]
    alone = copy.deepcopy(entry)
    del alone["increments"]["per_weight"]
    seed = {r["key"]: r for r in report.claims(alone, 1000)}
    assert seed["powerlaw"]["verdict"] == Y
    other = copy.deepcopy(alone)
    other["increments"]["model"]["verdicts"] = dict(power_law=N, gaussian=Y)
    group = {r["key"]: r for r in report.group_claims(report.claims(alone, 1000),
                                                      [report.claims(alone, 1000), report.claims(other, 1000)])}
    assert group["powerlaw"]["verdict"] == U and group["powerlaw"]["seeds_agreeing"] == 1
    assert group["gaussian"]["verdict"] == Y
