"""Is it universal? The paper's claims across models, optimizers, batch sizes and data sets, beside
the peers' estimators and the null models, one cell (setting) per run directory.

    python experiments/universality.py --out runs/universality [--cells NAME,...]
    python experiments/universality.py --out runs/universality --analyze-only
    python experiments/universality.py --out runs/universality --results experiments/results/universality

Every cell is a `socjax reproduce` run of 3 seeds (all vmapped in one process), with recording
windows at several ages so that its age table shows whether the measures have stopped moving by
the final recording. Cells run one after another; rerunning the command continues the cell in
progress from its checkpoint (SIGINT or SIGTERM stops it after the epoch in flight) and skips the
finished ones. `--analyze-only` analyses every cell again (after a change to the analysis) without
training. `--results DIR` writes the cross-setting table (results.json, README.md) and figure
(claims.png) into DIR from the analysed cells and the committed paper-scale results (`--paper`),
with each cell's report.md, analysis.json and age table beside them; with `--cells`, the rows of
the other cells are kept from DIR's results.json where their definition there is still CELLS' (a
cell rerun replaces its own rows; the others' run directories need not be at hand). `--tiny`
trains each cell for 3 epochs on 500 examples (a check that every cell runs, not a result).

The cells and why each is as it is are in CELLS; `--list` prints them. All but the paper's own
run use the embedded 10,000-image MNIST subset (`mnist-mini`) or the data set named, so that the
variants differ from the same-data baseline `paper-mini` in one thing each. Where a setting
needs a learning rate the peers or the paper do not fix, the choice and its reason are in the
cell's `why`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from socjax import rundir
from socjax.analysis import verdicts
from socjax.cli import main as socjax

SEEDS = 3
PAPER_RESULTS = Path(__file__).resolve().parent / "results" / "paper_scale"
TRACK = 32  # weights per run: half from the first weight layer, half from the second


@dataclass(frozen=True)
class Cell:
    """One setting: `socjax reproduce` flags (beyond seeds and tracking), its length in epochs
    (`epochs` in all, the last `record` recorded), its recording windows (`window_epochs` epochs
    from each age in `ages`), and why it is set as it is."""

    name: str
    what: str
    flags: tuple[str, ...]
    epochs: int
    record: int
    ages: tuple[int, ...]
    window_epochs: int
    why: str = ""

    def train_flags(self) -> list[str]:
        return [*self.flags, "--seeds", str(SEEDS), "--track", str(TRACK), "--epochs", str(self.epochs),
                "--record-epochs", str(self.record), "--record-windows", ",".join(map(str, self.ages)),
                "--window-epochs", str(self.window_epochs)]

    def tiny(self) -> "Cell":
        """The cell at its smallest: 3 epochs of the first 500 training examples (2,000 for a batch
        above 1, so an epoch still has steps), one window at age 0, the last epoch recorded."""
        batch = "--batch-size" in self.flags
        return dataclasses.replace(self, flags=(*self.flags, "--train-limit", "2048" if batch else "500"), epochs=3,
                                   record=1, ages=(0,), window_epochs=1)


MINI = ("--dataset", "mnist-mini")
PAPER_SGD = ("--lr", "2e-3", "--l2", "5e-4")  # the paper's network (784-700-476-10, MSE) is the default
XENT_NO_L2 = ("--loss", "xent", "--l2", "0")
# 10,000 steps an epoch; native step, about 4 minutes of training per 300 epochs on 2 cores. 1,000
# epochs are 10 relaxation times of the L2 decay, 1 / (lr l2) = 10^6 steps = 100 epochs: a run of
# 300 still had measures moving between its last two ages (100 and 300). Every cell's last window
# opens the final recording (its first epochs), so that the age table's last two rows are recordings
# of the same length: a spectrum or a density of 20,000 steps against one of 40,000 differs by length alone
BATCH1 = dict(epochs=1004, record=4, ages=(1, 3, 10, 30, 100, 300, 1000), window_epochs=2)

CELLS: tuple[Cell, ...] = (
    Cell("paper-mini", "the paper's network and protocol on the 10,000-image subset", (*MINI, *PAPER_SGD), **BATCH1,
         why="the same-data baseline every variant below differs from in one thing"),
    Cell("random-labels", "paper-mini trained on randomly permuted training labels", (*MINI, *PAPER_SGD,
         "--random-labels", "0"), **BATCH1, why="control: learning without structure to learn"),
    Cell("teacher", "the paper's protocol on the synthetic teacher task (100-dim Gaussian inputs)",
         ("--dataset", "teacher", *PAPER_SGD), **BATCH1, why="a synthetic data set"),
    Cell("no-learning", "the teacher task with lr 1e-6, 2,000x below the paper's", ("--dataset", "teacher", "--lr",
         "1e-6", "--l2", "5e-4"), epochs=304, record=4, ages=(1, 3, 10, 30, 100, 300), window_epochs=2,
         why="control: the same noise source at a step so small the weights never leave their initial basin; its "
             "relaxation time 1 / (lr l2) is 2 x 10^9 steps, so a longer run would not settle it either: 300 epochs"),
    Cell("digits", "the paper's protocol on scikit-learn's 1,797 8x8 digits", ("--dataset", "digits", *PAPER_SGD),
         epochs=2010, record=10, ages=(10, 30, 100, 300, 1000, 2000), window_epochs=10,
         why="a second real data set; 10-epoch windows hold 17,970 steps as paper-mini's 2 hold 20,000; "
             "2,000 epochs (3.6 x 10^6 steps, the L2 relaxation time 3.6 times) as a run of 600 still moved"),
    Cell("batch-512", "the paper's network at batch 512, lr 2e-3 x sqrt(512) = 0.0453",
         (*MINI, "--batch-size", "512", "--lr", "0.0453", "--l2", "5e-4", "--chunk-epochs", "50"),
         epochs=4000, record=200, ages=(100, 300, 1000, 3800), window_epochs=200,
         why="Panigrahi et al.'s Gaussian regime; the square-root rule keeps each step's noise variance "
             "lr^2 var(g)/B equal to the paper's; 19 steps an epoch, so windows as long as the final "
             "recording (200 epochs, 3,800 steps, the fewest a spectrum's two bands need); its L2 "
             "relaxation time 1 / (lr l2) is 44,000 steps = 2,300 epochs, so 4,000 epochs (1.7 of them, "
             "about 55 minutes alone) as a run of 700 compared windows of 950 steps with a final recording "
             "of 3,800"),
    Cell("momentum", "the paper's network with momentum 0.9, lr 2e-4", (*MINI, "--optimizer", "momentum",
         "--momentum", "0.9", "--lr", "2e-4", "--l2", "5e-4"), epochs=104, record=4, ages=(1, 3, 10, 30, 100),
         window_epochs=2, why="lr / (1 - momentum) = 2e-3 keeps the long-run step of the paper's SGD; 100 epochs "
         "(XLA's step, about 7 minutes per 30 epochs) as a run of 30 still moved"),
    Cell("adam", "the paper's network with Adam, lr 1e-4", (*MINI, "--optimizer", "adam", "--lr", "1e-4", "--l2",
         "5e-4"), epochs=64, record=4, ages=(1, 3, 10, 30, 60), window_epochs=2,
         why="Adam moves every weight by about lr a step; 1e-4, a tenth of the usual 1e-3, for single examples; "
             "60 epochs (XLA's step, about 11 minutes per 30 epochs) as a run of 30 still moved"),
    Cell("cnn", "a LeNet-like CNN (conv 8, 16; dense 128) with the paper's protocol", (*MINI, "--model", "cnn",
         "--hidden", "128", *PAPER_SGD), epochs=302, record=2, ages=(1, 3, 10, 30, 100, 300), window_epochs=2,
         why="another architecture; batch 1 through XLA (about 22 s an epoch on 2 cores) is the slowest cell: "
             "300 epochs (3 x 10^6 steps, three L2 relaxation times) as a run of 100 still moved"),
    Cell("zhang-tang", "Zhang & Tang: MLP 784-128-10, SGD, batch 64, lr 0.1 and 0.01, no L2, cross-entropy",
         (*MINI, "--hidden", "128", "--batch-size", "64", "--lr", "0.1", "0.01", *XENT_NO_L2, "--chunk-epochs",
          "10"), epochs=1020, record=20, ages=(10, 30, 100, 300, 1000), window_epochs=10,
         why="their setting; 156 steps an epoch, so 10-epoch windows; 1,000 epochs as a run of 300 still moved"),
    Cell("gurbuzbalaban-b1", "Gurbuzbalaban et al.: 3 hidden layers of 128, batch 1, lr 1e-3, 1e-2, 3e-2",
         (*MINI, "--hidden", "128", "128", "128", "--lr", "1e-3", "1e-2", "3e-2", *XENT_NO_L2), epochs=304, record=4,
         ages=(1, 3, 10, 30, 100, 300), window_epochs=2,
         why="their setting, lr/B from 1e-3 to 3e-2: at lr 0.1 two of three seeds diverged in the first epoch; "
             "300 epochs as a run of 30 still moved"),
    Cell("gurbuzbalaban-b10", "Gurbuzbalaban et al.: 3 hidden layers of 128, batch 10, lr 1e-3, 1e-2, 1e-1",
         (*MINI, "--hidden", "128", "128", "128", "--batch-size", "10", "--lr", "1e-3", "1e-2", "1e-1", *XENT_NO_L2,
          "--chunk-epochs", "5"), epochs=310, record=10, ages=(10, 30, 100, 300), window_epochs=10,
         why="their setting, lr/B from 1e-4 to 1e-2; 1,000 steps an epoch, so 10-epoch windows; 300 epochs as a "
             "run of 100 still moved"),
)
CELL_NAMES = tuple(c.name for c in CELLS)


def _cells(names: str | None) -> list[Cell]:
    if not names:
        return list(CELLS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in CELL_NAMES]
    if unknown:
        sys.exit(f"universality: unknown cell {unknown[0]!r}; choose from {', '.join(CELL_NAMES)}")
    return [c for c in CELLS if c.name in wanted]


def state(run: Path) -> str:
    """"new", "training" (a checkpointed run not finished) or "done" (trained and analysed)."""
    progress = rundir.read_progress(run) if run.is_dir() else None
    if progress is None:
        return "new"
    if progress["epochs_done"] < progress["epochs"]:
        return "training"
    return "done" if (run / rundir.ANALYSIS).exists() else "trained"


def schedule_mismatch(cell: Cell, run: Path) -> str | None:
    """How the run in `run` differs from the cell's schedule (epochs, final recording, windows), or
    None: a cell whose definition changed is not continued or reported from a run of the old one."""
    cfg = rundir.read_info(run).config
    if cfg is None:
        return f"{run}: config.json holds no run configuration"
    have = (cfg.epochs, cfg.epochs_record, tuple(cfg.record_windows), cfg.window_epochs)
    want = (cell.epochs, cell.record, tuple(cell.ages), cell.window_epochs)
    if have == want:
        return None
    show = lambda e, r, a, w: f"{e} epochs, last {r} recorded, windows at {','.join(map(str, a)) or 'none'} ({w} each)"
    return (f"{run} holds a run of {show(*have)}, but cell {cell.name} is now {show(*want)}; move that run "
            "away (or pass another --out) to train the cell as defined")


def run_cell(cell: Cell, out: Path, quiet: list[str]) -> int:
    """Train and analyse one cell in out/NAME, continuing it where it stopped."""
    run = out / cell.name
    s = state(run)
    if s != "new" and (why := schedule_mismatch(cell, run)):
        print(f"universality: {why}", file=sys.stderr)
        return 2
    if s == "done":
        print(f"universality: {cell.name}: done")
        return 0
    t0 = time.time()
    if s == "new":
        print(f"universality: {cell.name}: {cell.what}", flush=True)
        rc = socjax(["reproduce", *cell.train_flags(), "--out", str(run), *quiet])
    elif s == "training":
        print(f"universality: {cell.name}: continuing from its checkpoint", flush=True)
        rc = socjax(["reproduce", "--resume", str(run), *quiet])
    else:
        rc = socjax(["analyze", str(run), *quiet])
    print(f"universality: {cell.name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    return rc


# --- the cross-setting results ------------------------------------------------------------------

# (claim key, the across-seeds number it is judged on, its name in the table)
CLAIM_NUMBERS = (("bimodal", "bimodal_kde", "bimodal share"), ("decay", "decay_fraction", "pure decay"),
                 ("powerlaw", "gamma", "gamma"), ("gaussian", "beta", "beta"), ("a_high", "a_high", "a_high"),
                 ("a_low", "a_low", "a_low"), ("overfit", "test_loss", "test loss"))


def _across(group: dict, name: str) -> dict:
    """A group's number across its seeds (mean and 95% t interval), or its pooled value with one seed."""
    x = (group.get("across_seeds") or {}).get(name)
    if x and x.get("mean") is not None:
        return dict(value=x["mean"], ci95=x["ci95"], seeds=x["n"])
    return dict(value=None, ci95=None, seeds=0)


def _training_seconds(run: Path) -> float | None:
    try:
        t = json.loads((run / rundir.METRICS).read_text())["timing"]
    except (OSError, KeyError, ValueError):
        return None
    return float(sum(t.get("chunk_seconds", [])) + sum(t.get("compile_seconds", [])))


def setting_rows(name: str, what: str, run: Path) -> list[dict]:
    """One row per group (setting) of an analysed cell: its claims' verdicts with their numbers,
    the peers' estimators, the spectrum against its null, and which claims' measures still moved
    between the last two ages (ages.json)."""
    analysis = json.loads((run / rundir.ANALYSIS).read_text())
    ages = json.loads((run / rundir.AGES).read_text()) if (run / rundir.AGES).exists() else None
    # every group has the same recordings: each age's analysis is read once for all of them
    by_age = None if ages is None else recordings_by_age(run, analysis, [r["age"] for r in ages["groups"][0]["rows"]])
    rows = []
    for g in analysis["groups"]:
        label = name if len(analysis["groups"]) == 1 else f"{name} {g['label']}"
        claims = {c["key"]: c for c in g["claims"]}
        row = dict(setting=label, cell=name, what=what, group=g["group"], seeds=g["seeds"],
                   claims={key: dict(verdict=verdicts.of_claim(claims[key]), measure=measure, **_across(g, measure))
                           for key, measure, _ in CLAIM_NUMBERS if key in claims},
                   peers=g.get("peers"), spectrum_null=(g.get("spectrum") or {}).get("null"),
                   steps=analysis["trajectory"]["steps"], training_seconds=_training_seconds(run))
        if ages is not None:
            ag = next(a for a in ages["groups"] if a["group"] == g["group"])
            row["moving"] = {c["key"]: c["moving"] for c in ag["claims"]}
            row["change"] = {c["key"]: dict(change=c["change"], p=c["p"], verdicts=[r["claims"].get(c["key"])
                                                                                 for r in ag["rows"][-2:]])
                             for c in ag["claims"]}
            row["last_ages"] = [r["age"] for r in ag["rows"][-2:]]
            row["same_length"] = ag["rows"][-1]["steps"] == ag["rows"][-2]["steps"] if len(ag["rows"]) > 1 else None
            row["peers_by_age"] = peers_by_age(by_age, g["group"])
        rows.append(row)
    return rows


def recordings_by_age(run: Path, final: dict, ages: list[int]) -> dict[int, dict]:
    """The analysis.json of each age of the age table: its window's, or `final` (the final
    recording's, already read) where no window has that age."""
    out = {}
    for age in ages:
        path = rundir.window_dir(run, age) / rundir.ANALYSIS
        out[age] = json.loads(path.read_text()) if path.exists() else final
    return out


def peers_by_age(by_age: dict[int, dict], group: int) -> list[dict]:
    """The group's tail index at each age (`recordings_by_age`): pooled, its Gaussian scale-mixture
    null and the per-weight median, each at m = 10, 100, 1000 (None where not estimated)."""
    value = lambda es, key="value": [e.get(key) for e in es or []]
    out = []
    for age, a in by_age.items():
        t = ((a["groups"][group].get("peers") or {}).get("tail_index")) or {}
        out.append(dict(age=age, pooled=value(t.get("pooled")), null=value(t.get("pooled_gaussian_null")),
                        per_weight=value(t.get("per_weight"), "median")))
    return out


def _cell(claim: dict) -> str:
    v = claim.get("value")
    if v is None:
        return f"{claim['verdict']}"
    ci = claim.get("ci95")
    return f"{claim['verdict']}: {v:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")


def _alpha(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "-"
    ci = e.get("ci95")
    return f"{e['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else "")


def results_markdown(rows: list[dict]) -> list[str]:
    """README.md of the results: the claims table, the peers' table, the nulls, settling and cost."""
    head = [name for _, _, name in CLAIM_NUMBERS]
    lines = ["# Is it universal? The paper's claims across settings", "",
             "Written by `experiments/universality.py --results`. One row per setting; each claim's verdict by "
             "socjax's fixed rules (report.md of each cell gives the rule), with the number it is judged on: the "
             "mean over the seeds and its 95% t interval. `paper` is the committed full-scale run "
             "(experiments/results/paper_scale), analysed before the peers' estimators existed.", "",
             "## The paper's claims", "",
             "| setting | " + " | ".join(f"{n} ({k})" for k, _, n in CLAIM_NUMBERS) + " |",
             "| --- " * (1 + len(head)) + "|"]
    for r in rows:
        lines.append(f"| {r['setting']} | " + " | ".join(
            _cell(r["claims"][k]) if k in r["claims"] else "-" for k, _, _ in CLAIM_NUMBERS).replace("|dw|", "dw")
            + " |")
    lines += ["", "## What other estimators say, and the nulls", "",
              "Simsekli et al.'s tail index alpha (2 = Gaussian) pooled over weights at m = 10, 100, 1000 and on "
              "the pooled Gaussian scale-mixture null (each weight's own scale); per weight in time order (median "
              "over weights); Clauset et al.'s unbounded power law against socjax's bounded range fit; Zhang & "
              "Tang's linear bins through socjax's model (its power-law verdict, gamma, beta, and the |dw| / median "
              "where the fitted range begins); the low-band spectral exponent minus each weight's "
              "Ornstein-Uhlenbeck null's, and whether the data lie below their null.", "",
              "| setting | alpha pooled m=10 | m=100 | m=1000 | null pooled m=10 | m=1000 | per weight m=10 | m=100 "
              "| CSN alpha (xmin) | socjax range exponent | linear bins: power law?, gamma, beta (from) "
              "| a_low - a_null | below null |",
              "| --- " * 13 + "|"]
    for r in rows:
        p, n = r.get("peers"), r.get("spectrum_null")
        if not p:
            lines.append(f"| {r['setting']} | " + " | ".join(["not computed"] * 12) + " |")
            continue
        t = p["tail_index"]
        per = [f"{e['median']:.2f}" if e.get("median") is not None else "-" for e in t["per_weight"][:2]]
        csn = p.get("csn") or {}
        zt = p.get("zhang_tang_linear_bins") or {}
        d = (n or {}).get("a_low", {}).get("difference")
        cells = [_alpha(e) for e in t["pooled"]] + [_alpha(t["pooled_gaussian_null"][0]),
                                                      _alpha(t["pooled_gaussian_null"][2])] + per + [
            f"{csn['alpha']:.2f} ({csn['xmin']:.2g})" if csn else "-",
            f"{csn['socjax_range_exponent']:.2f}" if csn.get("socjax_range_exponent") is not None else "-",
            (f"{(zt.get('verdicts') or {}).get('power_law', '-')}: {zt['gamma']:.2f}, "
             + ("none" if zt.get("beta") is None else f"{zt['beta']:.2f}") + f" (from {zt['xmin']:.2g})")
            if zt else "-",
            _alpha(d) if d else "-", (n or {}).get("verdict_low_below_null", "-")]
        lines.append(f"| {r['setting']} | " + " | ".join(cells) + " |")
    lines += ["", "## Had the measures stopped moving?", "",
              "A claim's measure is still moving when its change between the last two recording ages is "
              "significant in a paired t test over the seeds (p < 0.05; ages.json of each cell); the column gives "
              "its mean change between those ages, p, and the claim's verdict at the two ages. \"Same length\": "
              "whether the two recordings compared hold as many steps (a spectrum or density of fewer steps "
              "differs by that alone).", "",
              "| setting | last two ages (epochs) | same length | still moving (change, p) | recorded steps analysed "
              "| training time (the cell's: one run trains all its settings) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        change = r.get("change") or {}
        moving = [f"{k} ({change[k]['change']:+.3g}, p {change[k]['p']:.2g}; {' -> '.join(change[k]['verdicts'])})"
                  if k in change else k for k, m in (r.get("moving") or {}).items() if m]
        secs, same = r.get("training_seconds"), r.get("same_length")
        lines.append(f"| {r['setting']} | {', '.join(map(str, r.get('last_ages') or [])) or '-'} | "
                     f"{'-' if same is None else 'yes' if same else 'no'} | {', '.join(moving) or 'none'} | "
                     f"{r['steps']:,} | {'-' if secs is None else f'{secs / 60:.1f} min'} |")
    lines += ["", "### The tail index by age", "",
              "Simsekli et al.'s alpha at m = 10 at each age of the age table: pooled over weights, with its "
              "Gaussian scale-mixture null in brackets, and the median over weights of each weight's own.", "",
              "| setting | pooled (null) at each age | per weight at each age |", "| --- | --- | --- |"]
    f2 = lambda v: "-" if v is None else f"{v:.2f}"
    first = lambda xs: xs[0] if xs else None
    for r in rows:
        by_age = r.get("peers_by_age") or []
        if all(first(e["pooled"]) is None for e in by_age):  # the paper's run: analysed before the peers
            continue
        lines.append(f"| {r['setting']} | " + ", ".join(
            f"{e['age']}: {f2(first(e['pooled']))} ({f2(first(e['null']))})" for e in by_age) + " | " + ", ".join(
            f"{e['age']}: {f2(first(e['per_weight']))}" for e in by_age) + " |")
    lines += ["", "![Each claim's measure across the settings](claims.png)", ""]
    return lines


def figure(rows: list[dict], path: Path) -> None:
    """claims.png: per panel one measure across the settings, mean and 95% interval over the seeds
    (the tail index: pooled, its Gaussian null, and per-weight median; a_low beside its null)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("gamma", "gamma (power law: > 0.1)"), ("beta", "beta (Gaussian: 2)"), ("a_high", "a_high (2)"),
              ("a_low", "a_low (< 2), and its OU null"), ("bimodal", "bimodal share (> 1/2)"),
              ("alpha", "tail index alpha, m = 10 / 100 / 1000")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.7 * len(rows)), 2.3 * len(panels)), sharex=True)
    x = np.arange(len(rows))
    for ax, (key, title) in zip(axes, panels):
        ax.set_title(title, fontsize=9, loc="left")
        if key == "alpha":
            for j, (m, c) in enumerate(zip(("10", "100", "1000"), ("C0", "C1", "C2"))):
                vals = [((r.get("peers") or {}).get("tail_index", {}).get("pooled") or [{}] * 3)[j] for r in rows]
                _points(ax, x + (j - 1) * 0.15, vals, c, f"pooled m={m}")
            nulls = [((r.get("peers") or {}).get("tail_index", {}).get("pooled_gaussian_null") or [{}])[0] for r in rows]
            _points(ax, x + 0.3, nulls, "0.5", "Gaussian null m=10", marker="x")
            ax.axhline(2, color="k", lw=0.5)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, ncol=4, loc="lower right")
            continue
        claim = {"bimodal": "bimodal", "gamma": "powerlaw", "beta": "gaussian", "a_high": "a_high", "a_low": "a_low"}[key]
        vals = [r["claims"].get(claim, {}) for r in rows]
        colors = ["C2" if v.get("verdict") == "yes" else "C3" if v.get("verdict") == "no" else "0.4" for v in vals]
        for xi, v, c in zip(x, vals, colors):
            _points(ax, [xi], [v], c, None)
        if key == "a_low":
            nulls = [((r.get("spectrum_null") or {}).get("a_low") or {}).get("null") for r in rows]
            _points(ax, x + 0.2, nulls, "0.5", "OU null", marker="x")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, loc="upper right")
        ref = {"gamma": 0.1, "beta": 2, "a_high": 2, "a_low": 2, "bimodal": 0.5}[key]
        ax.axhline(ref, color="k", lw=0.5)
        if key in ("gamma", "beta"):  # a seed-to-seed interval of a few units would flatten the rest
            ax.set_ylim(-1 if key == "gamma" else 0, 3)
    axes[-1].set_xticks(x, [r["setting"] for r in rows], rotation=40, ha="right", fontsize=7)
    fig.suptitle("The paper's claims across settings (green: yes, red: no, grey: not resolved; bars: 95%)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _points(ax, xs, vals, color, label, marker="o"):
    first = True
    for xi, v in zip(xs, vals):
        if not v or v.get("value") is None:
            continue
        ci = v.get("ci95")
        err = None if not ci or None in ci else [[v["value"] - ci[0]], [ci[1] - v["value"]]]
        ax.errorbar([xi], [v["value"]], yerr=err, fmt=marker, color=color, ms=4, capsize=2,
                    label=label if first else None)
        first = False


def kept_rows(dest: Path, cells: list[Cell]) -> dict[str, list[dict]]:
    """The rows, by cell, that a results.json already in dest holds for `cells`, where that cell's
    definition there is its definition now: a row of another schedule is not carried into the table."""
    path = dest / "results.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    defined = {c["name"]: c for c in old.get("cells", [])}
    kept = {}
    for c in cells:
        if c.name not in defined:
            continue
        if defined[c.name] != _clean(dataclasses.asdict(c)):
            print(f"universality: {path} holds cell {c.name} of another definition; its rows are dropped",
                  file=sys.stderr)
            continue
        if rows := [r for r in old["rows"] if r.get("cell") == c.name]:
            kept[c.name] = rows
    return kept


def write_results(out: Path, cells: list[Cell], dest: Path, paper: Path, keep: list[Cell] = ()) -> int:
    """The cross-setting table, figure and per-cell reports into dest (see the module docstring).
    `cells` are written from their runs in `out`; the rows of the cells in `keep` (none of `cells`)
    are carried over from dest's results.json where it has them (`kept_rows`), so that one cell can
    be rerun and its rows replaced without every other cell's run directory at hand. Rows follow
    CELLS' order."""
    rows = []
    if (paper / rundir.ANALYSIS).exists():
        rows += setting_rows("paper", "the paper's network and protocol on full MNIST (committed)", paper)
    missing = [c.name for c in cells if state(out / c.name) != "done"]
    for c in cells:
        if c.name not in missing and (why := schedule_mismatch(c, out / c.name)):
            print(f"universality: {why}; left out", file=sys.stderr)
            missing.append(c.name)
    kept = kept_rows(dest, keep)
    defined = {c.name: c for c in [*keep, *cells]}
    written = {c.name for c in cells}
    order = [defined[n] for n in CELL_NAMES if n in kept or n in written]
    for c in order:
        if c.name in kept:
            rows += kept[c.name]
        elif c.name not in missing:
            rows += setting_rows(c.name, c.what, out / c.name)
    if not rows:
        sys.exit(f"universality: no analysed cell in {out}")
    dest.mkdir(parents=True, exist_ok=True)
    for c in cells:
        if c.name in missing:
            continue
        cell_dir = dest / c.name
        cell_dir.mkdir(exist_ok=True)
        for name in (rundir.ANALYSIS, rundir.AGES, "report.md", "config.json"):
            if (out / c.name / name).exists():
                shutil.copy2(out / c.name / name, cell_dir / name)
    results = dict(cells=[dataclasses.asdict(c) for c in order], seeds=SEEDS, tracked=TRACK, rows=rows,
                   missing=missing)
    (dest / "results.json").write_text(json.dumps(_clean(results), indent=1) + "\n")
    (dest / "README.md").write_text("\n".join(results_markdown(rows)) + "\n")
    figure(rows, dest / "claims.png")
    print(f"universality: wrote {dest}/results.json, README.md and claims.png ({len(rows)} settings"
          + (f"; {len(kept)} cells' rows kept from the results.json there" if kept else "")
          + (f"; left out, not analysed or of another schedule: {', '.join(missing)}" if missing else "") + ")")
    return 0


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="directory of the cells' run directories (created, or continued)")
    p.add_argument("--cells", help=f"comma-separated cells to run (default all: {', '.join(CELL_NAMES)})")
    p.add_argument("--list", action="store_true", help="print the cells and stop")
    p.add_argument("--analyze-only", action="store_true", help="analyse every trained cell again; do not train")
    p.add_argument("--results", metavar="DIR", help="write the cross-setting table, figure and each cell's report "
                   "into DIR, and stop")
    p.add_argument("--paper", default=str(PAPER_RESULTS),
                   help="the paper-scale results' directory for the paper's row (default: the committed ones)")
    p.add_argument("--tiny", action="store_true", help="3 epochs on 500 examples per cell: a check, not a result")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.list:
        for c in CELLS:
            print(f"{c.name:18s} {c.what}\n{'':18s} {c.epochs} epochs, windows at {','.join(map(str, c.ages))} "
                  f"({c.window_epochs} each), last {c.record} recorded; {c.why}")
        return 0
    if not args.out:
        p.error("--out is required (unless --list)")
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    cells = [c.tiny() if args.tiny else c for c in _cells(args.cells)]
    if args.results:
        others = [c.tiny() if args.tiny else c for c in CELLS if c.name not in {x.name for x in cells}]
        return write_results(out, cells, Path(args.results), Path(args.paper), keep=others)
    worst = 0
    for cell in cells:
        if args.analyze_only:
            if state(out / cell.name) in ("done", "trained"):
                worst = max(worst, socjax(["analyze", str(out / cell.name), *quiet]))
            continue
        rc = run_cell(cell, out, quiet)
        if rc in (130, 143):  # stopped by a signal with a checkpoint: rerun to continue
            return rc
        worst = max(worst, rc)
    return worst


if __name__ == "__main__":
    sys.exit(main())
