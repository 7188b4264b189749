"""report.md: the four figures and the paper's claims against this run's numbers.

Each claim has a stated, fixed test (below); a claim that fails says what longer training would
be needed to test it properly. The tests were fixed before looking at any run's result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from socjax import rundir
from socjax.analysis import verdicts

# The rules, in one place, also printed in the report. Each verdict is "yes", "no" or "not resolved"
# (socjax.analysis.verdicts); "not resolved" means the data cannot tell at this size.
RULES = {
    "bimodal": "at least half of the layer-2 neurons have >= 2 KDE modes of their pre-activation: yes when the 95% "
               "Wilson interval of that fraction (over the neurons) lies above 1/2, no when below",
    "decay": "pure weight-decay steps are at least 10% of all increments: yes when the 95% t interval of the "
             "per-weight fraction (over the weights) lies at or above 10%, no when below",
    "powerlaw": "in the model p ~ |dw|^-gamma exp(-(|dw|/tau)^beta) fitted above xmin, the 95% interval of gamma "
                "lies above 0.1 (a flat density is no power law), the 95% interval of the decades over which the "
                "model's local slope stays within +-0.1 of -gamma lies at or above 1, and the model beats a "
                "lognormal (Vuong, variance from the time blocks, p < 0.05); no when any of the three is "
                "contradicted (interval at or below 0.1, below 1 decade, the lognormal significantly better)",
    "gaussian": "in the same model a cutoff is detected (likelihood ratio against the pure power law, p < 0.05; "
                "without one, not resolved), beta = 2 lies in the 95% interval of beta (no when outside), and "
                "beta = 2 is significantly preferred over beta = 1 (Vuong, variance from the time blocks, "
                "p < 0.05; no when beta = 1 is)",
    "a_high": "yes when the 95% interval of a_high lies inside [1.9, 2.1], no when it misses [1.9, 2.1]",
    "a_low": "yes when the 95% interval of a_low lies below 2, no when it lies at or above 2",
    "overfit": "the last test loss is within 5% of the lowest (a comparison within one curve: yes or no)",
}
WEIGHT_RULE = ("the |dw| claims of a run or group rest on its weights' own fits: " + verdicts.MAJORITY_RULE
               + "; the pooled fit (in median units) is shown beside it, because pooling weights whose cutoffs "
               "sit at different multiples of their medians mixes shapes and biases beta low (README, \"Pooling "
               "and heterogeneity\")")

MARK = {verdicts.YES: "yes", verdicts.NO: "**no**", verdicts.UNRESOLVED: "not resolved", verdicts.UNTESTED: "not tested"}


def mark(verdict) -> str:
    """A verdict for a report table (an older analysis's True/False/None too)."""
    return MARK[{True: verdicts.YES, False: verdicts.NO, None: verdicts.UNTESTED}.get(verdict, verdict)]


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}g}"


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """The 95% Wilson score interval of a proportion seen k times in n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _weights_text(t: dict) -> str:
    return (f"weights: {t[verdicts.YES]} yes, {t[verdicts.NO]} no, {t[verdicts.UNRESOLVED]} not resolved"
            f" of {t['weights']}")


def claims(entry: dict, steps: int) -> list[dict]:
    """The paper's claims, each tested by its RULES entry on one analysis entry (a group's pooled
    numbers or one run's: its "increments", "spectrum", "neurons", "test") of `steps` recorded
    steps. verdict: yes / no / not resolved / not tested; holds: True (yes), False (no) or None.
    The |dw| claims of an entry with several weights rest on their per-weight verdicts
    (`increments.per_weight`, WEIGHT_RULE)."""
    inc, spec, neu = entry["increments"], entry["spectrum"], entry.get("neurons") or {}
    out = []

    def add(key, claim, measured, verdict, needed, **extra):
        out.append(dict(key=key, claim=claim, rule=RULES[key], measured=measured, verdict=verdict,
                        holds=verdicts.holds(verdict), needed=None if verdict == verdicts.YES else needed, **extra))

    if "fraction_bimodal_kde" in neu:
        n = neu.get("neurons")
        ci = wilson(round(neu["fraction_bimodal_kde"] * n), n) if n else None
        add("bimodal", "Fig. 1: layer-2 neurons are bimodal (frustrated states)",
            f"{neu['fraction_bimodal_kde']:.0%} bimodal by KDE"
            + (f" [{ci[0]:.0%}, {ci[1]:.0%}] of {n} neurons" if ci else "")
            + f", {neu['fraction_bimodal_sarle']:.0%} by Sarle's b"
            + ("" if neu.get("layer", 2) == 2 else f" (neurons of {neu['layer']})"),
            verdicts.above(ci, 0.5) if ci else verdicts.from_bool(neu["fraction_bimodal_kde"] >= 0.5),
            "more training: a pilot on full MNIST found 42% bimodal at epoch 7, 66% at 32, 90% at 142")
    else:
        add("bimodal", "Fig. 1: layer-2 neurons are bimodal (frustrated states)",
            f"not measured ({neu.get('skipped', 'no parameters')})", verdicts.UNTESTED,
            "params_final.npz and the run's data")
    if inc.get("decay_identified") is False:  # momentum, Adam: zero-gradient steps do not show in the trajectory
        add("decay", "Fig. 2: a peak of very small fluctuations",
            "not testable: pure weight-decay steps cannot be identified from this run's trajectory (see the "
            "warnings: an optimizer with momentum, or no lr/l2 in config.json)", verdicts.UNTESTED,
            "plain SGD with lr and l2 in config.json")
    elif inc.get("fluctuating", 1) == 0:  # a constant trajectory is all "decay": it tests nothing
        add("decay", "Fig. 2: a peak of very small fluctuations",
            f"not testable: no increment fluctuates ({inc['decay_fraction']:.1%} pure decay, "
            f"{inc['zero_fraction']:.1%} exactly zero)", verdicts.UNTESTED, "a trajectory whose weights move")
    else:
        ci = inc.get("decay_fraction_ci95")
        add("decay", "Fig. 2: a peak of very small fluctuations",
            f"{inc['decay_fraction']:.1%} of increments " + ("had an exactly zero data gradient (recorded flags)"
                                                             if inc.get("decay_from") == "flags" else
                                                             "are pure weight decay")
            + (f" (per weight [{ci[0]:.1%}, {ci[1]:.1%}])" if ci else ""),
            verdicts.at_least(ci, 0.1) if ci else verdicts.from_bool(inc["decay_fraction"] >= 0.1), "-")
    model = inc.get("model")
    weights = inc.get("per_weight")
    if model:
        si, ln = model["scale_invariant"], model["tests"]["lognormal"]
        dec_ci = si.get("decades_ci95") or [si["decades"]] * 2
        pooled = model.get("verdicts") or {}

        def add_dw(key, claim, name, numbers, needed):
            """A |dw| claim: the pooled numbers, and with several weights their tally, which decides."""
            add(key, claim, ("pooled: " if weights else "") + numbers
                + (f"; pooled verdict {mark(pooled.get(name))}; {_weights_text(weights[name])}" if weights else ""),
                verdicts.majority(weights[name]) if weights else pooled.get(name, verdicts.UNTESTED), needed)

        add_dw("powerlaw", "Figs. 2-3: a power law at intermediate |dw|", "power_law",
               f"gamma {model['gamma']:.3f} [{model['gamma_ci95'][0]:.3f}, {model['gamma_ci95'][1]:.3f}] from "
               f"{_fmt(model['xmin'])} ({model['selected'].replace('_', ' ')}); model slope within "
               f"{si['slope_tolerance']} of -gamma over {si['decades']:.2f} [{dec_ci[0]:.2f}, {dec_ci[1]:.2f}] decades; "
               f"vs lognormal R {ln['loglik_ratio']:.3g} (p {_fmt(ln['p'], 2)})", _powerlaw_needed(model, weights))
        cut, m = model["tests"]["cutoff"], model["models"]
        beta = (f"beta {model['beta']:.2f} [{model['beta_ci95'][0]:.2f}, {model['beta_ci95'][1]:.2f}]"
                + (" (pooled weights: biased low by their differing cutoffs)" if weights else "")
                if model["beta"] is not None else "no cutoff to measure beta on")
        add_dw("gaussian", "Fig. 3b: Gaussian decay at large |dw|", "gaussian",
               f"cutoff vs pure power law p {_fmt(cut['p'], 2)}; {beta}; log-likelihood beta = 2 minus beta = 1: "
               f"{m['gaussian_cutoff']['loglik'] - m['exponential_cutoff']['loglik']:.3g} "
               f"(p {_fmt(model['tests']['beta2_vs_beta1']['p'], 2)})", _gaussian_needed(model, weights))
    else:
        for key, claim in (("powerlaw", "Figs. 2-3: a power law at intermediate |dw|"),
                           ("gaussian", "Fig. 3b: Gaussian decay at large |dw|")):
            add(key, claim, f"not testable: {inc.get('note', 'no fit')}", verdicts.UNTESTED,
                "more non-decay increments (longer recording)")
    for key, claim, test in (
        ("a_high", "Fig. 4: 1/f^2 (uncorrelated jumps) at high f", lambda ci: verdicts.within(ci, 1.9, 2.1)),
        ("a_low", "Fig. 4: 1/f^a with a < 2 at low f (hopping between minima)", lambda ci: verdicts.below(ci, 2.0)),
    ):
        fit = spec.get(key)
        if fit:
            add(key, claim, f"a = {fit['value']:.3f} [{fit['ci95'][0]:.3f}, {fit['ci95'][1]:.3f}] on f = "
                f"{fit['band'][0]:.2g}-{fit['band'][1]:.2g} cycles/step ({fit['n_series']} series)",
                test(fit["ci95"]),
                f"lower frequencies: this run's lowest fitted frequency is {fit['band'][0]:.2g} cycles/step "
                f"({steps:,} recorded steps); the paper records 1.2e7 steps per weight (--preset paper)")
        else:
            add(key, claim, spec.get("error", "not measured"), verdicts.UNTESTED, "a longer recorded trajectory")
    tl = entry.get("test")
    if tl:
        add("overfit", "Sec. 5: test loss shows no overfitting",
            f"test loss {tl['loss_first']:.4f} (epoch 1) -> min {tl['loss_min']:.4f} (epoch {tl['loss_min_epoch']}) "
            f"-> last {tl['loss_last']:.4f}",
            verdicts.from_bool(tl["loss_last"] <= 1.05 * tl["loss_min"]), "-")
    return out


GROUP_RULE = ("a group of several seeds takes the verdict of its pooled data when more than half of its seeds "
              "reach the same verdict by the same rule; otherwise it is not resolved (the seeds disagree)")


def group_claims(pooled: list[dict], per_seed: list[list[dict]]) -> list[dict]:
    """A group's claims: `pooled` (claims of its pooled entry), each combined with the same claim
    in each seed (`per_seed`: claims of each run) by GROUP_RULE. Adds "verdict_pooled",
    "holds_pooled", "seeds_holding" (seeds saying yes), "seeds_agreeing", "seeds"; with one seed
    the pooled verdict stands."""
    out = []
    for c in pooled:
        seeds = [next(verdicts.of_claim(x) for x in seed if x["key"] == c["key"]) for seed in per_seed]
        mine = verdicts.of_claim(c)
        verdict = verdicts.agreeing(mine, seeds)
        row = dict(c, verdict=verdict, holds=verdicts.holds(verdict), verdict_pooled=mine,
                   holds_pooled=c["holds"], seeds_holding=sum(v == verdicts.YES for v in seeds),
                   seeds_agreeing=sum(v == mine for v in seeds), seeds=len(seeds))
        if verdict != mine:
            row["needed"] = f"the pooled data say {mine} but only {row['seeds_agreeing']} of {len(seeds)} seeds do"
        out.append(row)
    return out


def _tally_cell(t: dict) -> str:
    return f"{t[verdicts.YES]} / {t[verdicts.NO]} / {t[verdicts.UNRESOLVED]}"


def _sensitivity(rows: list[dict] | None) -> list[str]:
    """The sensitivity table (`socjax.analysis.sensitivity`): the |dw| verdicts under each representation."""
    from socjax.analysis.sensitivity import QUESTION

    if not rows:
        return []
    lines = ["", f"### {QUESTION}", "",
             "The two |dw| claims under each representation a reader might choose, by the same model and rules: "
             "pooled in median units (gamma, beta with their 95% intervals, the verdicts) and weight by weight "
             "(how many weights say yes / no / not resolved; the verdict is their majority, as above).", "",
             "| representation | pooled gamma | pooled beta | pooled: power law, Gaussian | weights: power law "
             "y / n / nr | weights: Gaussian y / n / nr | median gamma, beta over weights | verdict: power law, "
             "Gaussian |", "| --- " * 8 + "|"]
    for r in rows:
        p, w = r["pooled"], r["weights"]
        if p is None:
            pooled = ["too few increments", "-", "-"]
        else:
            beta = "no cutoff" if p["beta"] is None else f"{p['beta']:.2f} [{p['beta_ci95'][0]:.2f}, {p['beta_ci95'][1]:.2f}]"
            pooled = [f"{p['gamma']:.2f} [{p['gamma_ci95'][0]:.2f}, {p['gamma_ci95'][1]:.2f}]", beta,
                      f"{p['verdicts']['power_law']}, {p['verdicts']['gaussian']}"]
        cells = [r["representation"], *pooled, _tally_cell(w["power_law"]), _tally_cell(w["gaussian"]),
                 f"{_fmt(w['gamma_median'])}, {_fmt(w['beta_median'])}",
                 f"{mark(r['verdicts']['power_law'])}, {mark(r['verdicts']['gaussian'])}"]
        lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return lines


PEERS_TITLE = "What other estimators say"


def _value_ci(e: dict | None, key: str = "value", digits: int = 2) -> str:
    if e is None or e.get(key) is None:
        return "too few"
    ci = e.get("ci95")
    return f"{e[key]:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def peers_section(g: dict) -> list[str]:
    """The peers' estimators on this group's increments, beside the nulls (analyze.peer_estimates,
    analyze.spectrum_versus_null), as report.md's table "What other estimators say"."""
    p = g.get("peers")
    if not p:
        return []
    t = p["tail_index"]
    lines = ["", f"### {PEERS_TITLE}", "",
             f"On the same non-decay increments ({p['increments']:,} of {p['weights']} weights over the last "
             f"{p['last_steps']:,} recorded steps): Simsekli et al.'s tail index alpha of a stable law (Mohammadi et "
             "al.'s block sums of m; 2 = Gaussian), pooled as they pool and per weight over time, with the pooled "
             "one's null (Gaussian increments with each weight's own scale: alpha below 2 there is the pooling's); "
             "Clauset, Shalizi & Newman's unbounded power law beside socjax's bounded range fit; Zhang & Tang's "
             "linear bins; and the spectrum's exponent against each weight's Ornstein-Uhlenbeck null.", "",
             "| estimator | m = " + " | m = ".join(str(e["m"]) for e in t["pooled"]) + " |",
             "| --- " * (1 + len(t["pooled"])) + "|",
             "| alpha, pooled [95%] | " + " | ".join(_value_ci(e) for e in t["pooled"]) + " |",
             "| alpha, pooled, Gaussian scale-mixture null | " + " | ".join(_value_ci(e) for e in t["pooled_gaussian_null"])
             + " |",
             "| alpha per weight: median [quartiles] (weights) | " + " | ".join(
                 "too few" if e.get("median") is None else
                 f"{e['median']:.2f} [{e['q25']:.2f}, {e['q75']:.2f}] ({e['series']} of {e['of']})"
                 for e in t["per_weight"]) + " |",
             "| share of weights with alpha < 2 | " + " | ".join(
                 "-" if e.get("below_2") is None else f"{e['below_2']:.0%}" for e in t["per_weight"]) + " |", ""]
    csn = p.get("csn")
    if csn:
        ranged = csn.get("socjax_range_exponent")
        lines.append(f"- Unbounded power law (Clauset et al.): alpha {csn['alpha']:.2f} +- {csn['stderr']:.2f} above "
                     f"xmin {csn['xmin']:.3g} median units ({csn['tail_fraction']:.1%} of {csn['sampled']:,} "
                     f"increments; KS distance {csn['ks']:.3f})"
                     + ("" if ranged is None else f"; socjax's range fit on [{csn['socjax_range'][0]:.3g}, "
                        f"{csn['socjax_range'][1]:.3g}]: {ranged:.2f}, a difference of {csn['minus_socjax']:+.2f}") + ".")
    zt = p.get("zhang_tang_linear_bins")
    if zt:
        beta = "no cutoff" if zt.get("beta") is None else f"beta {zt['beta']:.2f}"
        lines.append(f"- Zhang & Tang's linear bins, through socjax's model: gamma {zt['gamma']:.2f} "
                     f"[{zt['gamma_ci95'][0]:.2f}, {zt['gamma_ci95'][1]:.2f}], {beta}; power law: "
                     f"{zt['verdicts']['power_law']}, Gaussian: {zt['verdicts']['gaussian']}.")
    null = (g.get("spectrum") or {}).get("null")
    if null and "difference" in null["a_low"]:
        lo, hi = null["a_low"], null["a_high"]
        lines.append(f"- Spectrum against each weight's Ornstein-Uhlenbeck null: at low f the null's a is "
                     f"{_value_ci(lo['null'])}, the data's minus the null's {_value_ci(lo['difference'])} "
                     f"({lo['series']} weights, {lo['below_null']:.0%} below their null): a below its null: "
                     f"{null['verdict_low_below_null']}. At high f: null {_value_ci(hi['null'])}, difference "
                     f"{_value_ci(hi['difference'])}.")
    return lines


def _powerlaw_needed(model: dict, weights: dict | None = None) -> str:
    lead = ""
    if weights:
        lead = f"{_weights_text(weights['power_law'])}; pooled: "
    if model["gamma_ci95"][0] <= model["scale_invariant"]["slope_tolerance"]:
        return lead + (f"gamma is not above {model['scale_invariant']['slope_tolerance']} here: the density does not "
                       "fall as a power law above xmin")
    if model["scale_invariant"]["decades"] < 1.0:
        return lead + (f"the fitted model's slope stays near -gamma over only {model['scale_invariant']['decades']:.2f} "
                       "decades here; whether a straight stretch of a decade appears at equilibrium needs the paper's "
                       "protocol (--preset paper: 3000 epochs, then 200 recorded)")
    ln = model["tests"]["lognormal"]
    if ln["p"] >= 0.05:
        return lead + "the power law and a lognormal fit these increments equally well at this size"
    if ln["loglik_ratio"] < 0:
        return lead + "a lognormal describes these increments significantly better than the power law with its cutoff"
    return lead + "the intervals of gamma or of the decades straddle their thresholds at this size"


def _gaussian_needed(model: dict, weights: dict | None = None) -> str:
    lead = f"{_weights_text(weights['gaussian'])}; pooled: " if weights else ""
    if model["tests"]["cutoff"]["p"] >= 0.05:
        return lead + "no cutoff is detected within the recorded increments: a longer recording reaches further into the tail"
    lo, hi = model["beta_ci95"]
    if hi < 2.0:
        return lead + (f"the cutoff is softer than Gaussian here (beta {model['beta']:.2f}, interval below 2): the "
                       "large-|dw| tail is heavier than eq. (21)'s; whether it sharpens at equilibrium needs the "
                       "paper's protocol (--preset paper)")
    if lo > 2.0:
        return lead + f"the cutoff is sharper than Gaussian here (beta {model['beta']:.2f}, interval above 2)"
    b21 = model["tests"]["beta2_vs_beta1"]
    if b21["p"] < 0.05 and b21["loglik_ratio"] < 0:
        return lead + "beta = 2 is within the interval but an exponential cutoff (beta = 1) fits significantly better"
    return lead + ("beta = 2 is within the interval but not significantly preferred over beta = 1 at this size "
                   "(a wide interval holding both is not a yes)")


def table_cell(text: str) -> str:
    """Text for one Markdown table cell: a literal | (as in |dw|) would end the cell, so it is escaped."""
    return str(text).replace("|", "\\|")


def _ci(x: dict, digits=3) -> str:
    """A number summarised across seeds: mean [95% t interval], or the mean alone."""
    if x["mean"] is None:
        return "n/a"
    if x["ci95"] is None:
        return _fmt(x["mean"], digits)
    return f"{_fmt(x['mean'], digits)} [{_fmt(x['ci95'][0], digits)}, {_fmt(x['ci95'][1], digits)}]"


# the columns of the sweep table: (header, HEADLINE name, digits)
SWEEP_COLUMNS = (("pure decay", "decay_fraction", 3), ("gamma", "gamma", 3), ("decades", "scale_invariant_decades", 2),
                 ("beta", "beta", 2), ("a_low", "a_low", 3), ("a_high", "a_high", 3),
                 ("bimodal (KDE)", "bimodal_kde", 2), ("test accuracy", "test_accuracy", 4))


def sweep_rows(result: dict) -> list[dict]:
    """One row per group for the sweep table and figure: each SWEEP_COLUMNS number as
    `groups.across_seeds` gives it over the group's seeds (one seed: that run's value)."""
    from socjax.analysis import groups as grouping

    rows = []
    for g in result["groups"]:
        members = [result["per_run"][r] for r in g["runs"]]
        summary = g.get("across_seeds") or grouping.summarize(members)
        held = sum(verdicts.of_claim(c) == verdicts.YES for c in g["claims"])
        rows.append(dict(label=g["label"], settings=g["settings"], seeds=len(g["runs"]), held=held,
                         claims=len(g["claims"]), numbers={name: summary[name] for _, name, _ in SWEEP_COLUMNS}))
    return rows


def _header(run: Path, result: dict) -> list[str]:
    try:
        info = rundir.read_info(run)
    except rundir.RunDirError:
        info = None
    cfg = info.config if info is not None else None
    lines = []
    if cfg is not None:
        lines += [f"Run `{run.name}`: preset `{cfg.preset}`, dataset `{cfg.dataset}`, model "
                  f"{cfg.model.describe()}, optimizer "
                  f"{cfg.optimizer.describe()}, batch size {cfg.batch_size}, "
                  f"{cfg.epochs_equilibrate} epochs to equilibrate + {cfg.epochs_record} recorded, "
                  f"{len(cfg.runs())} run(s) (seed, lr, l2: "
                  + ", ".join(f"({s}, {lr:g}, {l2:g})" for s, lr, l2 in cfg.runs()) + "). "
                  f"Step: `{cfg.step}`. Backend: {info.environment.get('backend')}.", ""]
    elif info is not None and info.runs:  # a minimal config.json: only the runs' settings are known
        lines += [f"Run `{run.name}`: {len(info.runs)} run(s) (" + "; ".join(
            ", ".join(f"{k}={_fmt(v, 4)}" for k, v in r.items()) for r in info.runs) + "); config.json records "
                  "no training configuration.", ""]
    if result is None:
        return lines
    t = result["trajectory"]
    lines += [f"{t['runs']} run(s) x {t['weights']} tracked weights x {t['steps']:,} recorded steps (stride {t['stride']}).", ""]
    part = t.get("partial")
    if part:
        lines += [f"**Partial run: {part['recorded_epochs']} of {part['record_epochs']} recorded epochs "
                  f"({part['steps']:,} of {part['of_steps']:,} recorded steps) were written when this was "
                  "analysed; every number below is from those.**", ""]
    return lines


def _sweep(run: Path, result: dict) -> list[str]:
    lines = ["## Sweep: the groups side by side", "",
             f"One row per setting ({', '.join(result['swept'])} swept). Numbers are means over the group's seeds "
             "with their 95% t interval (one seed: that run's value); each group's claims follow below.", "",
             "| group | seeds | claims holding | " + " | ".join(h for h, _, _ in SWEEP_COLUMNS) + " |",
             "| --- " * (3 + len(SWEEP_COLUMNS)) + "|"]
    for row in sweep_rows(result):
        cells = [row["label"], str(row["seeds"]), f"{row['held']} of {row['claims']}"]
        cells += [_ci(row["numbers"][name], digits) for _, name, digits in SWEEP_COLUMNS]
        lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    lines.append("")
    if (run / rundir.SWEEP_FIGURE).exists():
        lines += [f"![The headline numbers against the swept setting]({rundir.SWEEP_FIGURE})", ""]
    return lines


def _group(run: Path, result: dict, g: dict, several: bool) -> list[str]:
    rows = g["claims"]
    seeds = len(g["runs"])
    lines = [f"## Group {g['label']}: runs {g['runs']}, seeds {g['seeds']}" if several else "## Claims", ""]
    said = {v: [r for r in rows if verdicts.of_claim(r) == v] for v in verdicts.VERDICTS}
    lines += [f"**{len(said[verdicts.YES])} of {len(rows)} claims hold for this {'group' if several else 'run'}.**"
              + "".join(f" {what}: " + "; ".join(r["claim"] for r in said[v]) + "."
                        for v, what in ((verdicts.NO, "Not holding"), (verdicts.UNRESOLVED, "Not resolved at this size"))
                        if said[v]), ""]
    if seeds >= 2:
        lines += ["| claim | measured (pooled over the seeds) | seeds: yes / same verdict as pooled | verdict |",
                  "| --- | --- | --- | --- |"]
        for r in rows:
            agree = r.get("seeds_agreeing")
            lines.append(f"| {table_cell(r['claim'])} | {table_cell(r['measured'])} | {r['seeds_holding']} / "
                         f"{'n/a' if agree is None else agree} of {r['seeds']} | {mark(verdicts.of_claim(r))} |")
        lines += ["", "Across seeds (mean, standard deviation, 95% t interval of the mean):", "",
                  "| number | mean | sd | 95% interval | seeds |", "| --- | --- | --- | --- | --- |"]
        from socjax.analysis.groups import HEADLINE

        for name, _, what in HEADLINE:
            x = g["across_seeds"][name]
            if x["n"]:
                ci = "n/a" if x["ci95"] is None else f"[{_fmt(x['ci95'][0], 4)}, {_fmt(x['ci95'][1], 4)}]"
                lines.append(f"| {table_cell(what)} | {_fmt(x['mean'], 4)} | {_fmt(x['sd'], 2)} | {ci} | "
                             f"{x['n']} of {x['of']} |")
        chosen = g["across_seeds"]["selected"]
        if chosen:
            lines += ["", "|dw| model selected per seed: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in chosen.items())
                      + "."]
    else:
        lines += ["| claim | measured | verdict |", "| --- | --- | --- |"]
        for r in rows:
            lines.append(f"| {table_cell(r['claim'])} | {table_cell(r['measured'])} | {mark(verdicts.of_claim(r))} |")
    lines += _sensitivity(g["increments"].get("sensitivity"))
    lines += peers_section(g)
    lines += ["", "Where a claim does not hold, is not resolved, or was not tested:", ""]
    lines += [f"- {r['claim']} ({verdicts.of_claim(r)}): {r['needed']}." for r in rows if verdicts.of_claim(r) != verdicts.YES] \
        or ["- none"]
    lines.append("")
    label = g["label"] if several else None
    for fig, cap in (("fig1_neurons.png", "Fig. 1: layer-2 pre-activations over the test images"),
                     ("fig2_increments.png", "Fig. 2: density and local slope of |dw|"),
                     ("fig3_regimes.png", "Fig. 3: the intermediate range (log-log) and the tail (log p vs dw^2)"),
                     ("fig4_spectrum.png", "Fig. 4: f^2 P(f)"),
                     ("fig2_paper.png", "Fig. 2 drawn the paper's way: a few weights, log-log, the straightest decade"),
                     ("fig3_paper.png", "Fig. 3 drawn the paper's way: log-log, and ln p against dw^2 from linear bins")):
        name = rundir.figure_name(fig, label)
        if (run / name).exists():
            lines += [f"![{cap}]({name})", "", f"*{cap}*", ""]
    return lines


def _recording(result: dict) -> list[str]:
    rec = result.get("recording") or {}
    if rec.get("final", True):
        return []
    return [f"**Recording window at age {rec['age']}: epochs {rec['age'] + 1}-{rec['end_epoch']} "
            f"({rec['epochs']} epochs); the test numbers are at epoch {rec['end_epoch']}.** The run's other "
            "recordings and the age table: `../../report.md`.", ""]


AGE_COLUMNS = (("bimodal KDE", "bimodal_kde", 2), ("bimodal Sarle", "bimodal_sarle", 2),
               ("pure decay", "decay_fraction", 3), ("gamma", "gamma", 3), ("decades", "scale_invariant_decades", 2),
               ("beta", "beta", 2), ("excess kurtosis", "excess_kurtosis", 3), ("a_high", "a_high", 3),
               ("a_low", "a_low", 3), ("test loss", "test_loss", 4), ("test accuracy", "test_accuracy", 4))


def _ages(table: dict, several: bool) -> list[str]:
    """The age table and, per claim, its verdict at the last age and whether its measure still moves."""
    from socjax.analysis.ages import MOVING_RULE

    lines = ["## Age: each claim's measure as the network trains", "",
             "One row per recording (age = epochs trained before it). Numbers are means over the seeds with their "
             "95% t interval; `models` counts the |dw| model each seed selected; `claims` lists those holding.", ""]
    for g in table["groups"]:
        if several:
            lines += [f"### Group {g['label']}", ""]
        lines += ["| age | epochs | " + " | ".join(h for h, _, _ in AGE_COLUMNS) + " | models | claims holding |",
                  "| --- " * (4 + len(AGE_COLUMNS)) + "|"]
        for r in g["rows"]:
            cells = [f"{r['age']}{' (final)' if r['final'] else ''}",
                     f"{r['epochs']}{' (partly written)' if r.get('partial') else ''}"]
            cells += [_ci(r["numbers"][name], digits) for _, name, digits in AGE_COLUMNS]
            cells.append(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["numbers"]["selected"].items()) or "-")
            cells.append(", ".join(k for k, v in r["claims"].items() if v in (True, verdicts.YES)) or "none")
            lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
        lines += ["", "| claim | measure | holds at the last age | change over the last two ages | paired t p | "
                      "still moving |", "| --- | --- | --- | --- | --- | --- |"]
        for c in g["claims"]:
            if c["since_age"] is None:
                change, p = "one age only", "n/a"
            else:
                change = (f"{_fmt(c['change'], 3)} ({c['since_age']} -> {c['last_age']}"
                          + ("" if c["comparable"] else ", recordings of different length") + ")")
                p = _fmt(c["p"], 2)
            moving = {True: "**yes**", False: "no", None: "not tested"}[c["moving"]]
            lines.append(f"| {table_cell(c['claim'])} | {c['measure']} | {mark(c['holds_last'])} (age "
                         f"{c['last_age']}) | {table_cell(change)} | {p} | {moving} |")
        lines.append("")
    lines += [f"Still moving: {MOVING_RULE}. With two seeds the test has one degree of freedom, so \"no\" is weak "
              "evidence that a measure has settled.", "", f"![Each claim's measure against age]({rundir.AGES_FIGURE})",
              ""]
    return lines


def write(out: str | Path, result: dict, run: str | Path | None = None) -> Path:
    """Write out/report.md from an analysis result; returns its path. out: the run directory, or a
    window's directory (windows/age{A}/) of the run directory `run` (default: out itself)."""
    out = Path(out)
    run = out if run is None else Path(run)
    lines = ["# socjax reproduction report", ""] + _body(out, run, result)
    path = out / rundir.REPORT
    rundir.safe_write(path, lambda f: f.write(("\n".join(lines) + "\n").encode()))
    return path


def _body(out: Path, run: Path, result: dict) -> list[str]:
    groups = result.get("groups")
    if groups is None:  # only the windows so far: the age table
        return (_header(run, None) + [f"- {w}" for w in result["warnings"]] + [""]
                + _ages(result["ages"], len(result["ages"]["groups"]) > 1))
    several = len(groups) > 1
    lines = _header(run, result) + _recording(result)
    if result.get("ages"):
        lines += _ages(result["ages"], several)
    if several:
        lines += _sweep(out, result)
    for g in groups:
        lines += _group(out, result, g, several)
    if out == run:
        lines += _discussion(run)
    lines += ["## How each claim is tested", ""]
    lines += [f"- {r['claim']}: {r['rule']}." for r in groups[0]["claims"]]
    lines += [f"- The |dw| claims of several weights: {WEIGHT_RULE}."]
    if any(len(g["runs"]) >= 2 for g in groups):
        lines += [f"- For a group: {GROUP_RULE}."]
    lines += ["", "A \"no\" for the |dw| claims weighs only as much as the test's power at this sample size: "
              "the README's table \"What the |dw| tests can detect\" gives how often each verdict is \"yes\" on "
              "synthetic increments of known shape."]
    if result.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result["warnings"]]
    return lines + ["", "All numbers: `analysis.json` (documented in the README)."]


# --- the pruning test (socjax prune): prune.json -> report.md ---------------------------------------

# each pruning criterion in words (plots.prune_figure's legend too)
CRITERION_LABELS = {"amplitude": "largest amplitude first (paper)", "amplitude_smallest": "smallest amplitude first",
                    "magnitude": "smallest |w| first", "snr": "smallest |w| / amplitude first", "random": "random"}
MODE_NAMES = {"none": "no retraining", "finetuned": "after fine-tuning"}


def _interval(ci, digits=3) -> str:
    return "n/a" if ci is None else f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def prune_claim_rows(group: dict) -> list[dict]:
    """The Discussion's claims of one group of a prune.json (`rundir.prune_groups`) as report rows:
    claim, measured, interval, rule, holds."""
    rows = []
    corr = group["correlation"]
    if corr.get("pairs"):
        p = next(x for x in corr["pairs"] if [x["width"], x["measure"]] == corr["primary"])
        rows.append(dict(claim="range width falls as the fluctuation amplitude rises",
                         measured=f"Spearman rho {_fmt(p['rho']['mean'])} (seeds: "
                                  f"{', '.join(_fmt(v) for v in p['rho']['values'] if v is not None)}); "
                                  f"{corr['fitted']} of {corr['weights']} weights fitted",
                         interval=f"{_interval(p['rho']['ci95'])} across seeds; bootstrap {_interval(p['bootstrap_ci95'])}",
                         rule=corr["rule"], holds=corr["holds"]))
    else:
        rows.append(dict(claim="range width falls as the fluctuation amplitude rises", measured=corr.get("note", "n/a"),
                         interval="n/a", rule="", holds=None))
    for c in group["claims"]:
        what = ("the amplitude criterion beats random" if c["key"] == "beats_random"
                else "the amplitude criterion is comparable to magnitude")
        other = "random" if c["key"] == "beats_random" else "magnitude"
        d = c["difference"]
        rows.append(dict(claim=f"{what} ({MODE_NAMES[c['mode']]})",
                         measured=f"accuracy averaged over the sparsities: paper {_fmt(np.mean(c['area']['amplitude']), 4)}"
                                  f", {other} {_fmt(np.mean(c['area'][other]), 4)}; difference {_fmt(d['mean'], 4)}",
                         interval=_interval(d["ci95"], 4), rule=c["rule"], holds=c["holds"]))
    return rows


def _prune_claim_table(rows: list[dict]) -> list[str]:
    mark = {True: "yes", False: "**no**", None: "not tested"}
    return ["| claim | measured | 95% interval | holds |", "| --- | --- | --- | --- |"] + [
        f"| {table_cell(r['claim'])} | {table_cell(r['measured'])} | {table_cell(r['interval'])} | {mark[r['holds']]} |"
        for r in rows]


def _discussion(run: Path) -> list[str]:
    """The Discussion's claims, when `socjax prune` has written RUN/prune/prune.json (per group in
    a sweep); a prune.json of another state of the run (other final parameters) is named stale."""
    result = rundir.load_prune(run / rundir.PRUNE_DIR)
    if result is None:
        return []
    link = f"{rundir.PRUNE_DIR}/{rundir.REPORT}"
    lines = ["## The Discussion's claims (socjax prune)", ""]
    if not rundir.prune_is_current(run, result):
        return lines + [f"**Stale:** [{link}]({link}) was computed from other final parameters or weight "
                        f"statistics than the run's now; `socjax prune {run}` computes them again.", ""]
    lines += [f"From [{link}]({link}), where each rule is stated.", ""]
    groups = rundir.prune_groups(result)
    for g in groups:
        if len(groups) > 1:
            lines += [f"### {g['label']}", ""]
        lines += _prune_claim_table(prune_claim_rows(g)) + [""]
    return lines


def write_prune(out: str | Path, result: dict) -> Path:
    """out/report.md of the pruning test (one section per group of a sweep); returns its path."""
    out = Path(out)
    ft = result["finetune"]
    groups = rundir.prune_groups(result)
    lines = ["# socjax: which weights matter (the paper's Discussion)", "",
             f"- run: `{result['run']}`; data: {result['data_source']}",
             f"- seeds: {', '.join(str(r['seed']) for r in groups[0]['runs'])}" if len(groups) == 1 else
             f"- {len(groups)} groups of settings, each pruned and tested on its own seeds: "
             + "; ".join(f"{g['label']} (seeds {', '.join(str(r['seed']) for r in g['runs'])})" for g in groups),
             f"- pruned: {', '.join(result['pruned_layers'])} ({result['weights_ranked']:,} weights per run, "
             f"{result['scope']} scope); the output layer{' ' + result['output_layer'] if 'output_layer' in result else ''}"
             " and the biases are kept",
             f"- amplitude: {result['amplitude']}",
             f"- random: {result['random_draws']} draws; fine-tuning: "
             + (f"{ft['epochs']} epoch(s) with the mask fixed, step {ft['step']}, from epoch {ft['first_epoch']}; "
                f"pruned weights not exactly 0 afterwards: {ft['pruned_nonzero']}; non-finite runs: {ft['nonfinite']}"
                if ft["epochs"] else "none"), ""]
    for g, figure in zip(groups, rundir.prune_figures(result)):
        lines += _prune_group(result, g, f"{g['label']}: " if len(groups) > 1 else "", figure)
    lines += ["All numbers: `prune.json`."]
    path = out / rundir.REPORT
    rundir.safe_write(path, lambda f: f.write(("\n".join(lines) + "\n").encode()))
    return path


def _prune_group(result: dict, g: dict, title: str, figure: str) -> list[str]:
    """One group's part of prune/report.md: its claims, correlations, accuracy tables and figure."""
    lines = ["- weights with no non-decay step (amplitude 0: a gradient of 0 at every recorded step, from a "
             "pixel blank in every training image or a neuron that never fires; kept last by the paper's criterion "
             "and by \\|w\\| / amplitude): "
             + ", ".join(f"{k} {100 * v:.3g}%" for k, v in g.get("no_nondecay_share", {}).items()), "",
             f"## {title}The Discussion's claims", ""]
    rows = prune_claim_rows(g)
    lines += _prune_claim_table(rows)
    lines += ["", "How each is tested:", ""] + [f"- {r['claim']}: {r['rule']}." for r in rows if r["rule"]]
    corr = g["correlation"]
    if corr.get("pairs"):
        lines += ["", f"## {title}Rank correlations over the tracked weights", "",
                  f"Per seed, Spearman's rho over the tracked weights with a fit ({corr['fitted']} of "
                  f"{corr['weights']}; {_fmt(100 * (corr['zero_width_share'] or 0), 3)}% of them have a "
                  "scale-invariant width of 0); mean [95% t interval across seeds]; bootstrap over weights.", "",
                  "| range width | against | rho per seed | mean [95% t] | bootstrap 95% |", "| --- | --- | --- | --- | --- |"]
        for p in corr["pairs"]:
            lines.append(f"| {p['width']} | {p['measure']} | {', '.join(_fmt(v) for v in p['rho']['values'] if v is not None)}"
                         f" | {_ci(p['rho'])} | {_interval(p['bootstrap_ci95'])} |")
    for mode in [m for m in ("none", "finetuned") if m in g["summary"][result["paper_criterion"]]]:
        lines += ["", f"## {title}Test accuracy, {MODE_NAMES[mode]}", "",
                  "Mean over the seeds [95% t interval]; random: its draws averaged within each seed first.", "",
                  "| removed | " + " | ".join(table_cell(CRITERION_LABELS[c]) for c in result["criteria"]) + " |",
                  "| --- |" + " --- |" * len(result["criteria"])]
        for si, s in enumerate(result["sparsities"]):
            cells = [_ci(g["summary"][c][mode]["test_acc"]["across"][si], 4) for c in result["criteria"]]
            lines.append(f"| {100 * s:g}% | " + " | ".join(cells) + " |")
    return lines + ["", f"![Pruning curves]({figure})", ""]
