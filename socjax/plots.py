"""Every figure socjax draws: the paper's four, with the fits over the data, the sweep
summary, and the toy model's.

The run figures are drawn from a loaded run (`socjax.load_run`: analysis.json and analysis.npz),
never from the trajectory, so `socjax plot DIR` redraws them in a second:

    run = socjax.load_run("runs/quick")
    fig = socjax.plots.fig2_increments(run, group=0)           # a matplotlib Figure
    socjax.plots.fig2_increments(run, 0, path="fig2.png")      # or written to a file

Each figure of the paper is FIGSIZE inches at DPI, so every PNG is 1200 x 450 pixels. A figure
that cannot be drawn raises `NotDrawn`, whose one line says which figure and why (the recording
has no data for it, or analysis.npz is missing or lacks its arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FIGSIZE = (12, 4.5)
DPI = 100
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
DISPLAY_BINS_PER_DECADE = 20


class NotDrawn(Exception):
    """A figure that cannot be drawn; the message says which and why, in one line. `missing`: a
    file it is drawn from is absent (a published copy without analysis.npz), as opposed to a
    recording that has no data for it."""

    def __init__(self, which: str, why: str, missing: bool = False):
        super().__init__(f"{which}: {why}")
        self.why, self.missing = why, missing


def _need(got, run, g: int, figure: str, no_data: str | None):
    """`got` (an accessor's value), or NotDrawn: `no_data` when analysis.json says the group has no
    data for `figure`; else analysis.npz is missing or lacks the group's arrays."""
    if got is not None and no_data is None:
        return got
    from socjax import rundir

    which = f"{figure}{'' if len(run.groups) == 1 else ' of group ' + run.group(g)['label']}"
    if no_data is not None:
        raise NotDrawn(which, no_data)
    path = run.out / rundir.ARRAYS
    if not path.exists():
        raise NotDrawn(which, f"{path} is missing (what the figure is drawn from; `socjax analyze` writes it from "
                       "the trajectory)", missing=True)
    raise NotDrawn(which, f"{path} lacks this group's arrays (damaged, or another analysis'); `socjax analyze` "
                   "rewrites it", missing=True)


def _save(fig, path: Path):
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _out(fig, path):
    """The figure, or, given a path, the figure written there (and closed) and the path."""
    if path is None:
        return fig
    _save(fig, Path(path))
    return Path(path)


def _title(run, g: int) -> str:
    return "" if len(run.groups) == 1 else f"[{run.group(g)['label']}] "


def _layer_name(summary: dict) -> str:
    """The neuron layer of a Fig. 1 summary: "layer 2" (the paper's MLP, an int) or a flax path."""
    layer = summary.get("layer", 2)
    return f"layer {layer}" if isinstance(layer, int) else str(layer)


def fig1_neurons(run, group: int = 0, path=None):
    """Histograms of the pre-activation of a few random live layer-2 neurons of the group's first
    run over the test images, with their KDE; NotDrawn when the analysis has no neuron data."""
    summary = run.group(group)["neurons"]
    data = _need(run.neurons(group), run, group, "Fig. 1",
                 f"no neuron data ({summary['skipped']})" if "skipped" in summary else None)
    z, grid, dens, modes, sarle = data["z"], data["kde_grid"], data["kde_density"], data["modes"], data["sarle"]
    fig, axes = plt.subplots(1, len(data["ids"]), figsize=FIGSIZE, sharey=False, squeeze=False)
    for i, (ax, n) in enumerate(zip(axes[0], data["ids"])):
        ax.hist(z[:, i], bins=60, density=True, color="0.75", label="pre-activation z")
        ax.plot(grid[i], dens[i], "C0", lw=1.2, label="KDE")
        ax.axvline(0, color="C3", lw=0.8, ls="--", label="ReLU: output = 0 left of here")
        ax.set_title(f"neuron {n}: {modes[i]} mode{'s' if modes[i] != 1 else ''}\nSarle b = {sarle[i]:.2f}", fontsize=9)
        ax.set_xlabel(f"z ({_layer_name(summary)} pre-activation)")
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("density over test images")
    axes[0, 0].legend(fontsize=6, loc="upper right")
    over = f"mean over {len(summary['runs'])} runs" if len(summary.get("runs", [])) > 1 else "this run"
    fig.suptitle(f"{_title(run, group)}Fig. 1: p(x|q), {_layer_name(summary)} of run {summary.get('figure_run', 0)} — bimodal (KDE): "
                 f"{summary['fraction_bimodal_kde']:.0%} of {summary['neurons']} neurons, Sarle b > 5/9: "
                 f"{summary['fraction_bimodal_sarle']:.0%} ({over})", fontsize=10)
    fig.tight_layout()
    return _out(fig, path)


def _display(pool, bins_per_decade: int = DISPLAY_BINS_PER_DECADE):
    """The pooled histogram summed over time blocks, on a coarser grid for display (fits use the fine one)."""
    h = pool.sum(0) if pool.counts.ndim == 2 else pool
    return h.rebinned(h.grid.bins_per_decade // bins_per_decade)


CUTOFF_STYLE = {"exponential_cutoff": ("C1", "beta = 1"), "gaussian_cutoff": ("C0", "beta = 2 (Gaussian)"),
                "stretched_cutoff": ("C2--", "beta free")}


def _model_label(model: dict) -> str:
    g = f"gamma {model['gamma']:.3f} [{model['gamma_ci95'][0]:.3f}, {model['gamma_ci95'][1]:.3f}]"
    if model["selected"] == "power_law":
        return f"power law (no cutoff detected), {g}"
    return f"x^-gamma exp(-(x/tau)^beta), {g}, beta {model['beta']:.2f}"


def _no_increments(inc: dict) -> str | None:
    """Why a group's |dw| figures have no data (analysis.json's increments), or None."""
    return None if inc.get("fluctuating") else f"no non-decay increments ({inc.get('series', 0)} series; " \
        f"pure weight decay {inc.get('decay_fraction', 0):.1%}, zero {inc.get('zero_fraction', 0):.1%})"


def fig2_increments(run, group: int = 0, path=None):
    """(a) density of |dw| (pooled over the group, scaled) on log-log axes with the fitted model;
    (b) the local slope of the data and of the model. NotDrawn when the group has no non-decay |dw|."""
    from socjax.analysis import cutoff

    inc = run.group(group)["increments"]
    pool = _need(run.histogram(group), run, group, "Fig. 2", _no_increments(inc))
    fig, (a, b) = plt.subplots(1, 2, figsize=FIGSIZE)
    x, p = _display(pool).density()
    ok = p > 0
    a.loglog(x[ok], p[ok], ".", ms=2, color="k", label="pooled, non-decay steps")
    model = inc.get("model")
    if model:
        xs = np.geomspace(model["xmin"], model["xend"], 200)
        a.loglog(xs, cutoff.density(model, model["selected"], xs), "C3", lw=2, label=_model_label(model))
        a.axvline(model["xmin"], color="0.5", lw=0.8, ls=":", label=f"xmin {model['xmin']:.3g}")
        if model["crossover"] is not None:
            a.axvline(model["crossover"], color="C2", lw=0.8, ls="--", label=f"crossover {model['crossover']:.3g}")
    a.set_xlabel("|dw| / median |dw| of its series")
    a.set_ylabel("probability density")
    a.set_title(f"{_title(run, group)}Fig. 2: local fluctuations; pure weight-decay steps: {inc['decay_fraction']:.1%} "
                "(left out)", fontsize=10)
    a.legend(fontsize=7)
    xs, sl = run.local_slope(group)
    if xs is not None:
        b.semilogx(xs, sl, "k.", ms=3, label="data: local slope d log p / d log |dw|")
        if model:
            si = model["scale_invariant"]
            xm = np.geomspace(model["xmin"], model["xend"], 200)
            b.semilogx(xm, cutoff.local_slope(model, model["selected"], xm), "C3", lw=1.5, label="the fitted model")
            b.axhspan(-model["gamma"] - si["slope_tolerance"], -model["gamma"] + si["slope_tolerance"], color="C3", alpha=0.2,
                      label=f"-gamma ± {si['slope_tolerance']}")
            if si["hi"] is not None:
                b.axvspan(si["lo"], si["hi"], color="C2", alpha=0.15,
                          label=f"model within the band: {si['decades']:.2f} decades")
            finite = sl[np.isfinite(sl)]
            if finite.size:
                b.set_ylim(max(finite.min(), -model["gamma"] - 6) - 0.5, finite.max() + 0.5)
        b.set_xlabel("|dw| / median |dw|")
        b.set_ylabel("local slope")
        b.legend(fontsize=7)
        b.set_title("a power law has a constant local slope", fontsize=10)
    fig.tight_layout()
    return _out(fig, path)


def fig3_regimes(run, group: int = 0, path=None):
    """(a) the intermediate range, log-log, with the fitted model; (b) the large range, log of
    |dw|^gamma p against dw^2 (the power-law factor divided out, so a Gaussian cutoff is a
    straight line), with the three cutoffs. NotDrawn when the group has no non-decay |dw|."""
    from socjax.analysis import cutoff

    inc = run.group(group)["increments"]
    pool = _need(run.histogram(group), run, group, "Fig. 3", _no_increments(inc))
    fig, (a, b) = plt.subplots(1, 2, figsize=FIGSIZE)
    x, p = _display(pool).density()
    ok = p > 0
    model = inc.get("model")
    if model:
        # the intermediate range: xmin to the crossover (at least a decade, at most xend)
        top = min(max(model["crossover"] or model["xend"], 10 * model["xmin"]) * 3, model["xend"])
        sel = ok & (x >= model["xmin"] / 3) & (x <= top)
        a.loglog(x[sel], p[sel], ".", ms=3, color="k", label="data")
        xs = np.geomspace(model["xmin"], top, 100)
        a.loglog(xs, cutoff.density(model, model["selected"], xs), "C3", lw=2, label=_model_label(model))
        a.loglog(xs, cutoff.density(model, "power_law", xs), "C7:", lw=1,
                 label=f"pure power law, gamma {model['models']['power_law']['gamma']:.3f}")
        a.set_title(f"{_title(run, group)}Fig. 3a: intermediate |dw|, log-log (straight line = power law)", fontsize=10)
        a.legend(fontsize=7)
        # the power-law factor divided out (with the selected model's gamma), so that a Gaussian
        # cutoff is a straight line against dw^2, as in the paper's Fig. 3b
        start, g = model["crossover"] or model["xmin"], model["gamma"]
        sel = ok & (x >= start)
        b.semilogy(x[sel] ** 2, p[sel] * x[sel] ** g, ".", ms=3, color="k", label="data")
        xs = np.linspace(start, model["xend"], 300)
        m = model["models"]
        for name, (style, label) in CUTOFF_STYLE.items():
            extra = f", beta {m[name]['beta']:.2f}" if name == "stretched_cutoff" else ""
            b.semilogy(xs**2, cutoff.density(model, name, xs) * xs**g, style,
                       label=f"{label}{extra}: log-likelihood {m[name]['loglik'] - m['power_law']['loglik']:+.4g} vs pure PL")
        b.set_title(f"Fig. 3b: |dw| beyond {start:.3g}; Gaussian cutoff (pooled): "
                    f"{(model.get('verdicts') or {}).get('gaussian', 'yes' if model['is_gaussian'] else 'no')}",
                    fontsize=10)
        b.legend(fontsize=7)
        if sel.any():
            scaled = p[sel] * x[sel] ** g
            b.set_ylim(max(scaled.min() / 10, 1e-300), scaled.max() * 3)
        b.set_ylabel(f"|dw|^gamma p(|dw|), gamma = {g:.3f}")
    a.set_xlabel("|dw| / median |dw|")
    a.set_ylabel("probability density")
    b.set_xlabel("(|dw| / median |dw|)^2   (straight line = Gaussian cutoff)")
    fig.tight_layout()
    return _out(fig, path)


def fig4_spectrum(run, group: int = 0, path=None):
    """f^2 P(f) on log-log axes: mean over the group's series, 16-84% spread, fits in both bands.
    NotDrawn when the trajectory gave no spectrum."""
    spec = run.group(group)["spectrum"]
    no_data = None if "a_low" in spec else f"no spectrum ({spec.get('error', 'no fit of a_low')})"
    got = _need(run.spectrum(group), run, group, "Fig. 4", no_data)
    stride = run.analysis["trajectory"]["stride"]
    fig, ax = plt.subplots(1, 1, figsize=FIGSIZE)
    ff = got["f"][1:]
    geo, lo, hi = (got[k][1:] for k in ("geomean", "p16", "p84"))
    ax.fill_between(ff, ff**2 * lo, ff**2 * hi, color="0.85", label="16-84% over series")
    ax.loglog(ff, ff**2 * geo, "k", lw=1, label=f"geometric mean of {got['series'].size} series")
    for name, color in (("a_low", "C0"), ("a_high", "C3")):
        fit = spec.get(name)
        if not fit:
            continue
        band = fit["band"]
        sel = (ff >= band[0]) & (ff <= band[1])
        icpt = np.mean(np.log10(geo[sel]) + fit["value"] * np.log10(ff[sel]))
        xs = np.geomspace(*band, 20)
        ax.loglog(xs, xs**2 * 10**icpt * xs ** (-fit["value"]), color=color, lw=2.5,
                  label=f"{name} = {fit['value']:.3f} [{fit['ci95'][0]:.3f}, {fit['ci95'][1]:.3f}], band {band[0]:.2g}-{band[1]:.2g}")
    nyq = 0.5 / stride
    ax.axvspan(spec.get("f_top", 0.05), nyq, color="C1", alpha=0.1, label="discrete-time upturn (not physics), not fitted")
    ax.set_xlabel("f (cycles per SGD step)")
    ax.set_ylabel("f^2 P(f)")
    ax.set_title(f"{_title(run, group)}Fig. 4: power spectrum; flat = 1/f^2, rising = 1/f^a with a < 2", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _out(fig, path)


# the panels of the sweep figure: (HEADLINE name, axis label, reference line or None)
SWEEP_PANELS = (("decay_fraction", "pure weight-decay share", None), ("gamma", "gamma (|dw| power law)", None),
                ("scale_invariant_decades", "scale-invariant decades", 1.0), ("beta", "beta (2 = Gaussian)", 2.0),
                ("a_low", "a_low (< 2: hopping)", 2.0), ("a_high", "a_high (2 = jumps)", 2.0),
                ("bimodal_kde", "bimodal neurons (KDE)", 0.5), ("test_accuracy", "final test accuracy", None))
# the range a HEADLINE number can take: its interval is clipped to it (a t interval from two seeds
# easily runs past a share's [0, 1]); None: unbounded on that side
RANGES = {"decay_fraction": (0.0, 1.0), "bimodal_kde": (0.0, 1.0), "bimodal_sarle": (0.0, 1.0),
          "test_accuracy": (0.0, 1.0), "scale_invariant_decades": (0.0, None), "excess_kurtosis": (-2.0, None),
          "test_loss": (0.0, None), "crossover": (0.0, None)}
LEGEND_NAMES = {"bimodal_kde": "KDE: two or more modes", "bimodal_sarle": "Sarle's b > 5/9",
                "a_low": "a_low (low-frequency band)", "a_high": "a_high (high-frequency band)"}
REFERENCE_NOTE = "dotted line: the value the paper's claim is judged against"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _mean_and_bars(numbers: list[dict], bounds: tuple[float | None, float | None] = (None, None)
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    """(means, [below, above] error-bar lengths) of `groups.across_seeds` summaries: the 95% t
    interval, clipped to `bounds` (the quantity's range); no bar where there is none (one seed),
    NaN where there is no mean."""
    m = np.array([np.nan if x.get("mean") is None else x["mean"] for x in numbers], np.float64)
    lo_bound, hi_bound = (-np.inf if bounds[0] is None else bounds[0]), (np.inf if bounds[1] is None else bounds[1])
    ci = [x.get("ci95") for x in numbers]
    lo = np.array([m[i] - max(c[0], lo_bound) if c else 0.0 for i, c in enumerate(ci)])
    hi = np.array([min(c[1], hi_bound) - m[i] if c else 0.0 for i, c in enumerate(ci)])
    return m, [lo, hi]


def sweep_figure(run, path=None):
    """Each headline number against the groups (the swept settings), the mean over each group's
    seeds with its 95% t interval as error bars (one seed: its value, no bar); dotted: the value
    the paper's claim is judged against."""
    from socjax import report

    rows = report.sweep_rows(run.analysis)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), squeeze=False)
    x = np.arange(len(rows))
    for ax, (name, label, ref) in zip(axes.ravel(), SWEEP_PANELS):
        m, bars = _mean_and_bars([r["numbers"].get(name, {}) for r in rows], RANGES.get(name, (None, None)))
        ax.errorbar(x, m, yerr=bars, fmt="o-", color="C0", capsize=4)
        if ref is not None:
            ax.axhline(ref, color="0.5", ls=":", lw=1)
        ax.set_xticks(x, [r["label"] for r in rows], rotation=20, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel(f"setting ({', '.join(run.analysis['swept']) or 'group'})", fontsize=8)
    seeds = sorted({r["seeds"] for r in rows})
    fig.suptitle(f"Sweep over {', '.join(run.analysis['swept']) or 'settings'}: mean over "
                 f"{'/'.join(map(str, seeds))} {'seed' if seeds == [1] else 'seeds'} per group, 95% t interval "
                 f"(clipped to each quantity's range); {REFERENCE_NOTE}", fontsize=11)
    fig.tight_layout()
    return _out(fig, path)


# (numbers drawn together, panel title, y-axis label, the value the claim is judged against, y scale)
AGE_PANELS = ((("bimodal_kde", "bimodal_sarle"), "bimodal layer-2 neurons", "share of neurons", 0.5, "linear"),
              (("decay_fraction",), "pure weight-decay increments", "share of increments", 0.1, "linear"),
              (("gamma",), "power-law exponent gamma", "gamma", None, "linear"),
              (("scale_invariant_decades",), "width of the power-law range", "decades of |dw|", 1.0, "linear"),
              (("beta",), "cutoff shape beta (2: Gaussian)", "beta", 2.0, "linear"),
              (("excess_kurtosis",), "excess kurtosis of dw (0: Gaussian)", "excess kurtosis", None, "symlog"),
              (("a_low", "a_high"), "spectral exponents (P ~ 1/f^a)", "a", 2.0, "linear"),
              (("test_loss",), "test loss", "eq. (10), no L2", None, "log"),
              (("test_accuracy",), "test accuracy", "share of test images", None, "linear"))


def age_figure(table: dict, path=None):
    """Each claim's measure against age (epochs trained, log axis, at each recording's centre):
    the mean over the seeds with its 95% t interval (error bars, clipped to the quantity's range)
    and each seed's value (crosses), one colour per number and line style per group; an open
    marker is the final recording when its length differs from the windows'; dotted: the value
    the claim is judged against. The tenth panel says how to read the others."""
    fig, axes = plt.subplots(2, 5, figsize=(20, 7.5), squeeze=False)
    for gi, g in enumerate(table["groups"]):
        rows = g["rows"]
        x = np.array([r["age"] + r["epochs"] / 2 for r in rows], np.float64)
        window_len = rows[0]["epochs"]
        for ax, (names, title, ylabel, ref, yscale) in zip(axes.ravel(), AGE_PANELS):
            for ci, name in enumerate(names):
                colour = f"C{ci}"
                m, bars = _mean_and_bars([r["numbers"][name] for r in rows], RANGES.get(name, (None, None)))
                ax.errorbar(x, m, yerr=bars, fmt="o", ls=("-", "--", ":")[gi % 3], color=colour, capsize=3,
                            label=LEGEND_NAMES.get(name, name) if gi == 0 else None, ms=4)
                for i, r in enumerate(rows):
                    seeds = [v for v in r["per_seed"][name] if v is not None]
                    ax.plot([x[i]] * len(seeds), seeds, "x", color=colour, alpha=0.6, ms=5)
                    if r["final"] and r["epochs"] != window_len:
                        ax.plot(x[i], m[i], "o", mfc="white", color=colour, ms=7)
            if ref is not None:
                ax.axhline(ref, color="0.5", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_yscale(yscale)
            ax.set_xlim(x.min() / 1.5, x.max() * 1.5)  # also where a number was never measured
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("epochs trained (recording centre)", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            if len(names) > 1 and gi == 0:
                ax.legend(fontsize=7)
    key = axes.ravel()[-1]
    key.axis("off")
    styles = "; ".join(f"{('solid', 'dashed', 'dotted')[i % 3]}: {g['label']}" for i, g in enumerate(table["groups"]))
    key.text(0, 1, "How to read the panels\n\n"
             "dot and bar: mean over the seeds and its\n95% t interval (clipped to the quantity's range)\n"
             "crosses: the individual seeds\n"
             f"{REFERENCE_NOTE.replace('the paper', chr(10) + 'the paper')}\n"
             "open circle: the final recording, where its\nlength differs from the windows'\n"
             f"{styles}", va="top", fontsize=8, transform=key.transAxes)
    labels = "; ".join(f"{g['label']} ({_plural(len(g['seeds']), 'seed')})" for g in table["groups"])
    fig.suptitle(f"Each claim's measure against age: mean over the seeds, 95% t interval, crosses = seeds [{labels}]",
                 fontsize=11)
    fig.tight_layout()
    return _out(fig, path)


PRUNE_STYLE = {"amplitude": ("C3", "-"), "amplitude_smallest": ("C1", "--"), "magnitude": ("C0", "-"),
               "snr": ("C2", "-."), "random": ("0.4", ":")}  # colour, line style per criterion


def prune_figure(result: dict, group: dict, path=None):
    """One group's curves of a prune.json (`rundir.prune_groups(result)`): test accuracy and loss
    against the fraction of hidden-layer weights removed, without retraining and after
    fine-tuning; per criterion the mean over the group's seeds (random: over its draws first)
    with the 95% t interval as a band (one seed: no band)."""
    from socjax.report import CRITERION_LABELS

    modes = [m for m in ("none", "finetuned") if m in group["summary"][result["paper_criterion"]]]
    fig, axes = plt.subplots(len(modes), 2, figsize=(12, 4.2 * len(modes)), squeeze=False)
    x = 100 * np.asarray(result["sparsities"])
    for row, mode in zip(axes, modes):
        for ax, key, label in zip(row, ("test_acc", "test_loss"), ("test accuracy", "test loss")):
            for c in result["criteria"]:
                colour, ls = PRUNE_STYLE[c]
                bounds = (0.0, 1.0) if key == "test_acc" else (0.0, None)
                m, (lo, hi) = _mean_and_bars(group["summary"][c][mode][key]["across"], bounds)
                ax.plot(x, m, ls=ls, marker="o", ms=3, color=colour, label=CRITERION_LABELS[c])
                ax.fill_between(x, m - lo, m + hi, color=colour, alpha=0.15, lw=0)
            ax.set_yscale("log" if key == "test_loss" else "linear")
            ax.set_xlabel(f"hidden-layer weights removed, % ({result['scope']} scope)", fontsize=8)
            ax.set_ylabel("share of test images correct" if key == "test_acc" else "test loss, eq. (10), no L2",
                          fontsize=8)
            when = ("no retraining" if mode == "none"
                    else f"after {_plural(result['finetune']['epochs'], 'epoch')} of fine-tuning with the mask fixed")
            ax.set_title(f"{label}, {when}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    which = f"{group['label']}: " if "label" in group and len(result.get("groups", [])) > 1 else ""
    fig.suptitle(f"{which}Pruning by criterion: mean over {_plural(len(group['runs']), 'seed')}, 95% t interval "
                 f"(band, clipped to the quantity's range); random: {_plural(result['random_draws'], 'draw')}",
                 fontsize=11)
    fig.tight_layout()
    return _out(fig, path)


MIN_GUIDE_COUNT = 10  # bins the eye's guides are fitted to hold at least this many increments
MIN_TAIL_GUIDE_COUNT = 3  # ... on the linear bins of Fig. 3b, whose tail bins hold few


def _legend(ax):
    """A legend where something is labelled (a weight may have nothing to draw)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")


def _paper_data(run, group: int, figure: str) -> tuple[dict, list[dict]]:
    """The paper-style figures' arrays of a group and the analysis' per-weight entries of its
    drawn weights; NotDrawn for an analysis made before these figures existed."""
    g = run.group(group)
    no_data = None if g.get("paper_weights") else (
        "this analysis predates the paper-style figures (`socjax analyze` draws them from the trajectory)"
        if "paper_weights" not in g else "no tracked weights to draw")
    got = _need(run.paper_weights(group), run, group, figure, no_data)
    return got, [run.analysis["per_weight"][int(s)] for s in got["series"]]


def _log_density(counts: np.ndarray, grid_row: np.ndarray, total: float):
    """(x, p, counts) of one coarse log histogram's populated bins: centres and densities over `total`."""
    from socjax.analysis.loghist import Grid

    grid = Grid(float(grid_row[0]), float(grid_row[1]), int(grid_row[2]))
    keep = counts > 0
    return grid.centers()[keep], (counts / (np.diff(grid.edges()) * max(total, 1)))[keep], counts[keep]


def _verdict(entry: dict, claim: str) -> str:
    m = entry.get("model")
    return m["verdicts"][claim] if m and "verdicts" in m else "not tested"


def _decade_guide(ax, x, p, c, entry):
    """The straightest decade of a log-log density (bins with >= MIN_GUIDE_COUNT increments), drawn
    with its slope, the local slope's spread over it and the model's verdict."""
    from socjax.analysis import guides

    ok = c >= MIN_GUIDE_COUNT
    guide = guides.straightest(np.log10(x[ok]), np.log10(p[ok]), 1.0)
    m = entry.get("model")
    model = (f"model: power law {_verdict(entry, 'power_law')}, gamma {m['gamma']:.2f} "
             f"[{m['gamma_ci95'][0]:.2f}, {m['gamma_ci95'][1]:.2f}]") if m else "model: too few increments to fit"
    if guide is None:
        ax.text(0.02, 0.02, f"no decade with >= {MIN_GUIDE_COUNT} per bin\n{model}", transform=ax.transAxes, fontsize=7)
        return None
    u = np.linspace(guide["lo"], guide["hi"], 20)
    ax.loglog(10**u, 10 ** (guide["slope"] * u + guide["intercept"]), "C3", lw=2,
              label=f"straightest decade: slope {guide['slope']:.2f}")
    ax.text(0.02, 0.02, f"local slope over it: {guide['local_min']:.2f} to {guide['local_max']:.2f}\n{model}",
            transform=ax.transAxes, fontsize=7)
    return guide


def fig2_paper(run, group: int = 0, path=None):
    """Fig. 2 the paper's way: for a few randomly selected weights of the first two layers, the
    histogram of their increments on log-log axes in raw units (all increments, the pure-decay
    steps included, and the non-decay ones), with the straight line the eye would draw (the
    straightest decade) and, beside it, the local slope's spread there and the model's verdict."""
    got, entries = _paper_data(run, group, "Fig. 2 (paper's way)")
    n = len(entries)
    cols = min(n, 2)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, e, c_all, c_nd in zip(axes.flat, entries, got["log_all"], got["log_nondecay"]):
        total = float(c_all.sum())
        x, p, _ = _log_density(c_all, got["log_grid"], total)
        ax.loglog(x, p, ".", ms=3, color="0.6", label="all increments (pure decay included)")
        x, p, c = _log_density(c_nd, got["log_grid"], total)
        ax.loglog(x, p, ".", ms=3, color="k", label="non-decay increments")
        _decade_guide(ax, x, p, c, e)
        ax.set_title(f"{_title(run, group)}weight {e['weight']} (run {e['run']})", fontsize=9)
        ax.set_xlabel("|dw|")
        ax.set_ylabel("p(|dw|)")
        _legend(ax)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle("Fig. 2, drawn as the paper draws it: a few weights, log-log, a line where the eye puts it",
                 fontsize=10)
    fig.tight_layout()
    return _out(fig, path)


def fig3_paper(run, group: int = 0, path=None):
    """Fig. 3 the paper's way, per drawn weight: (a) the non-decay |dw| around its straightest
    decade on log-log axes; (b) ln p against dw^2 from linear bins (straight line = Gaussian),
    with the straightest stretch spanning a third of the populated dw^2 axis, the local slope's
    spread over it and the model's verdict on the Gaussian tail."""
    from socjax.analysis import guides

    got, entries = _paper_data(run, group, "Fig. 3 (paper's way)")
    n = len(entries)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 7.5), squeeze=False)
    for col, (e, c_nd, lin, width) in enumerate(zip(entries, got["log_nondecay"], got["linear"], got["linear_width"])):
        a, b = axes[0, col], axes[1, col]
        x, p, c = _log_density(c_nd, got["log_grid"], float(c_nd.sum()))
        guide = _decade_guide(a, x, p, c, e) if x.size else None
        if guide is not None:
            near = (np.log10(x) >= guide["lo"] - 0.5) & (np.log10(x) <= guide["hi"] + 0.5)
            a.loglog(x[near], p[near], ".", ms=3, color="k", label="non-decay increments", zorder=0)
        a.set_title(f"{_title(run, group)}3a: weight {e['weight']}", fontsize=9)
        a.set_xlabel("|dw|")
        a.set_ylabel("p(|dw|)")
        _legend(a)
        centres = (np.arange(lin.size) + 0.5) * width
        ok = lin >= MIN_TAIL_GUIDE_COUNT
        dens = lin / (width * max(lin.sum(), 1))
        b.plot(centres[lin > 0] ** 2, np.log(dens[lin > 0]), ".", ms=4, color="k", label=f"{lin.size} linear bins")
        m = e.get("model")
        beta = "" if not m or m["beta"] is None else f", beta {m['beta']:.2f} [{m['beta_ci95'][0]:.2f}, {m['beta_ci95'][1]:.2f}]"
        model = f"model: Gaussian {_verdict(e, 'gaussian')}{beta}"
        u2 = centres[ok] ** 2
        guide = guides.straightest(u2, np.log(dens[ok]), (u2.max() - u2.min()) / 3) if ok.sum() >= 5 else None
        if guide is not None:
            u = np.linspace(guide["lo"], guide["hi"], 20)
            b.plot(u, guide["slope"] * u + guide["intercept"], "C3", lw=2,
                   label=f"straightest third of the dw^2 axis: slope {guide['slope']:.3g}")
            b.text(0.02, 0.02, f"local slope over it: {guide['local_min']:.3g} to {guide['local_max']:.3g}\n{model}",
                   transform=b.transAxes, fontsize=7)
        else:
            b.text(0.02, 0.02, model, transform=b.transAxes, fontsize=7)
        b.set_title("3b: ln p against dw^2 (straight line = Gaussian)", fontsize=9)
        b.set_xlabel("dw^2")
        b.set_ylabel("ln p(|dw|)")
        _legend(b)
    fig.tight_layout()
    return _out(fig, path)


FIGURE_FUNCTIONS = (("fig1_neurons.png", fig1_neurons), ("fig2_increments.png", fig2_increments),
                    ("fig3_regimes.png", fig3_regimes), ("fig4_spectrum.png", fig4_spectrum),
                    ("fig2_paper.png", fig2_paper), ("fig3_paper.png", fig3_paper))


@dataclass
class Drawn:
    """What a redraw wrote, and one line per figure it could not draw (`NotDrawn`'s, with the
    file it would have written); `missing`: some were not drawn for want of a file."""

    written: list[Path] = field(default_factory=list)
    not_drawn: list[str] = field(default_factory=list)
    missing: bool = False

    def add(self, other: "Drawn") -> None:
        self.written += other.written
        self.not_drawn += other.not_drawn
        self.missing |= other.missing


def all_figures(run) -> Drawn:
    """Draw every figure of a loaded run (`socjax.load_run`) into its directory: the four per group
    (plain names with one group, `figN_..._<label>.png` with several) and, with several groups,
    sweep.png."""
    from socjax import rundir

    groups = run.groups
    written, not_drawn, missing = [], [], False
    for g in groups:
        label = g["label"] if len(groups) > 1 else None
        for name, draw in FIGURE_FUNCTIONS:
            path = run.out / rundir.figure_name(name, label)
            try:
                written.append(draw(run, g["group"], path=path))
            except NotDrawn as e:
                not_drawn.append(f"{path} not drawn: {e.why}")
                missing |= e.missing
    if len(groups) > 1:
        written.append(sweep_figure(run, run.out / rundir.SWEEP_FIGURE))
    return Drawn(written, not_drawn, missing)


def redraw(path) -> Drawn:
    """Every figure of a run directory, or of a published copy of one (`rundir.publish`), redrawn
    from what `socjax analyze` and `socjax prune` saved: the final recording's, each analysed
    window's, the age figure, and prune.png of every prune output inside it (DIR/*/prune.json).
    A directory with none of these is a ResultsError."""
    from socjax import interrupt, results, rundir

    run = results.load_run(path)
    interrupt.poll("plot")  # stops here, or between figure sets, on a signal: each figure is whole
    pruned = sorted(p.parent for p in run.path.glob(f"*/{rundir.PRUNE_JSON}"))
    drawn = Drawn()
    if run.analysis is not None or (run.ages is None and not pruned):
        drawn.add(all_figures(run))  # raises, naming `socjax analyze`, when there is no analysis
    elif run.ages is None or rundir.derived_figures(run.path):  # a final recording drawn once, not analysed now
        why = run.stale or (f"no {rundir.ANALYSIS} (`socjax analyze {run.path}` writes it from the trajectory)"
                            if rundir.has(run.path, rundir.TRAJECTORY) else
                            f"no {rundir.ANALYSIS}, and no {rundir.TRAJECTORY} to analyse (a copy published without it)")
        drawn.add(Drawn([], [f"{run.path}/fig*.png not drawn: {why}"], missing=True))
    for w in run.info.layout.get("windows", []):
        if (rundir.window_dir(run.path, w["age"]) / rundir.ANALYSIS).exists():
            interrupt.poll("plot")
            drawn.add(all_figures(results.load_run(run.path, w["age"])))
    if run.ages is not None:
        drawn.written.append(age_figure(run.ages, run.path / rundir.AGES_FIGURE))
    for out in pruned:
        interrupt.poll("plot")
        result = rundir.load_prune(out)
        for g, name in zip(rundir.prune_groups(result), rundir.prune_figures(result)):
            drawn.written.append(prune_figure(result, g, out / name))
    return drawn


def toy_figure(path, result: dict, samples: dict, p, curves: dict) -> None:
    """The toy model (socjax.toy). Left: log-log density of |q - qb|: eq. (6), both simulations, the
    frustrated, power-law and Gaussian regions at the analytic crossovers. Right: p(x|q) at the
    probes, analytic and sampled. `curves`: the analytic curves (socjax.toy.experiment.curves)."""
    from socjax.analysis import loghist

    q, dens = curves["q"], curves["density"]
    d = np.abs(q - p.qb)
    pos = q >= p.qb
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100, gridspec_kw=dict(width_ratios=[3, 2]))
    ax.loglog(d[pos][1:], 2 * dens[pos][1:], "k", lw=2, label=f"eq. (6), alpha = {p.alpha:g}")
    h = loghist.from_samples(np.abs(samples["langevin"] - p.qb), loghist.Grid(bins_per_decade=20))
    x, dd = h.density()
    ok = dd > 0
    ax.loglog(x[ok], dd[ok], ".", color="C0", ms=4, label="Langevin on F at temperature 1/alpha")
    ax.text(0.98, 0.97, f"SGD learning picture (x ~ p(x|q)), started from eq. (6):\n"
            f"{result['sgd']['fraction_at_qb']:.0%} of chains end exactly at q = qb\n"
            "(multiplicative noise; drift = -eta F'(q), see toy.json)",
            transform=ax.transAxes, ha="right", va="top", fontsize=8, color="C3")
    c = result["analytic"]
    lo = c["power_law_from"] / 30
    if c["frustrated"]:
        ax.axvspan(lo, c["lower"], color="C3", alpha=0.10, label="frustrated: p(x|q) bimodal")
    ax.axvspan(c["power_law_from"], c["upper"], color="C2", alpha=0.12, label=f"power law |q-qb|^-{c['exponent']:.3g} (eq. 7)")
    ax.axvspan(c["upper"], d.max(), color="C1", alpha=0.08, label="Gaussian")
    ax.set_xlim(lo, curves["span"])
    ax.set_ylim(1e-4 * dens.max(), 5 * dens.max())
    ax.set_xlabel("|q - qb|")
    ax.set_ylabel("density of |q - qb|")
    kx = f", kx = {p.kx:g}" if p.kx else ""
    ax.set_title(f"Toy model (Section 2): learning equilibrium p(q); lx = {p.lx:g}{kx}", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    u = curves["u"]
    for i, (r, xs, (rms, curve)) in enumerate(zip(result["x_given_q"], samples["x"], curves["x_given_q"])):
        bx.hist((xs - p.xb) / rms, bins=80, range=(-4, 4), density=True, color=f"C{i}", alpha=0.3)
        bx.plot(u, curve, color=f"C{i}", label=f"|q-qb| = {abs(r['q'] - p.qb):.3g}  (KS p = {r['p_value']:.2f})")
    bx.set_xlabel("(x - xb) / rms")
    bx.set_ylabel("p(x|q) x rms")
    bx.set_title("p(x|q): analytic (lines), exact sampler (histograms)", fontsize=10)
    bx.legend(fontsize=8, loc="upper right")  # "best" searches the histograms: seconds, and a warning, on a busy machine
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def toy_sweep_figure(path, result: dict) -> None:
    """Fitted exponent against the swept value: alpha/beta (eq. 7), the fit on the Langevin chains
    with its 95% interval, and the same fit on exact draws of eq. (6)."""
    rows = [r for r in result["rows"] if "exponent" in r["powerlaw"]]
    v = np.array([r["value"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(v, [r["analytic"]["exponent"] for r in rows], "k-", lw=1.5, label="alpha / beta (eq. 7)")
    fit = np.array([r["powerlaw"]["exponent"] for r in rows])
    ci = np.array([r["powerlaw"]["ci95"] for r in rows]).reshape(-1, 2)
    ax.errorbar(v, fit, yerr=[fit - ci[:, 0], ci[:, 1] - fit], fmt="o", color="C0", capsize=3,
                label="fit on Langevin chains (95%)")
    ax.plot(v, [r["powerlaw_exact_draws"].get("exponent", np.nan) for r in rows], "x", color="C3", ms=8,
            label="same fit on 10^6 exact draws of eq. (6)")
    ax.set_xlabel(result["field"])
    ax.set_ylabel("power-law exponent of p(|q - qb|)")
    ax.set_title(f"Toy model: exponent across a sweep of {result['field']} "
                 f"({result['chains']} chains x {result['steps']} steps each)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
