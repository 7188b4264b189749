"""`socjax analyze DIR`: read a run directory, write DIR/analysis.json, DIR/analysis.npz and the figures.

Needs trajectory.npy, tracked.json and config.json (read as a `rundir.RunInfo`: at least
{"trajectory": {"stride": k}}; with "config": {"runs": [{"lr": ..., "l2": ...}, ...]} pure
weight-decay steps are identified and the runs are grouped by setting).
With params_final.npz and the run's data, Fig. 1 (neuron distributions) is made too.

Runs are grouped by their setting (`analysis.groups`: every hyperparameter but the seed), and
everything is computed per group (series pooled only within it), per run, and per weight, from
two streamed passes over the trajectory that every grouping shares. Each group with several
seeds gets the spread of its headline numbers across them. analysis.npz holds what the figures
are drawn from, so `socjax plot DIR` redraws them without reading the trajectory.
Problems in the data (NaN, constant series, too short for a spectrum) are flagged in
analysis.json's "warnings" and in the affected entries, never turned into silent numbers.

A run that is still training, or was interrupted, is analysed on the trajectory rows its
progress.json counts as written ("trajectory": {"partial": ...} and a warning say so); the
preallocated rows after them are never read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

import socjax
from socjax import report, results, rundir
from socjax.analysis import groups as grouping
from socjax.analysis import increments, neurons, nulls, peers, sensitivity, spectrum, verdicts
from socjax.config import ConfigError, TrackedWeight

ANALYSIS, ARRAYS, FIGURES = rundir.ANALYSIS, rundir.ARRAYS, rundir.FIGURES
FIG1_NEURONS = 6  # neurons drawn in Fig. 1


class AnalysisError(ConfigError):
    """A run directory that cannot be analysed; the message says why, in one line."""


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, NumPy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def load_inputs(run: Path) -> tuple[rundir.RunInfo, tuple[TrackedWeight, ...], int]:
    """(config.json typed, tracked weights, the trajectory rows written) of a run directory, validated."""
    if not run.is_dir():
        raise AnalysisError(f"{run}: run directory not found")
    info = rundir.read_info(run)
    try:
        tracked = rundir.load_tracked(run)
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise AnalysisError(f"{run / rundir.TRACKED}: malformed ({e})") from None
    if not tracked:
        raise AnalysisError(f"{run / rundir.TRACKED}: lists no weights (the run was trained with --track 0); "
                            "nothing to analyse")
    if not rundir.has(run, rundir.TRAJECTORY):
        published = "a published copy (rundir.publish); `socjax plot` redraws its figures from its analysis" \
            if (run / rundir.ANALYSIS).exists() or (run / rundir.AGES).exists() else "nothing to analyse"
        raise AnalysisError(f"{run}: no {rundir.TRAJECTORY} ({published})")
    progress = rundir.read_progress(run)
    try:
        traj = rundir.open_trajectory(run, None if progress is None else int(progress["trajectory_rows"]))
    except (ValueError, KeyError, TypeError) as e:
        raise AnalysisError(f"{run / rundir.TRAJECTORY}: not readable with {rundir.PROGRESS} "
                            f"({type(e).__name__}: {e})") from None
    if traj.ndim != 3 or traj.shape[2] != len(tracked):
        raise AnalysisError(
            f"{run / rundir.TRAJECTORY}: shape {traj.shape}, expected (runs, steps, {len(tracked)} tracked weights)"
        )
    if traj.dtype.kind != "f":
        raise AnalysisError(f"{run / rundir.TRAJECTORY}: dtype {traj.dtype}, expected floating point")
    if info.runs is not None and len(info.runs) != traj.shape[0]:
        raise AnalysisError(f"config.json lists {len(info.runs)} runs, trajectory.npy holds {traj.shape[0]}")
    return info, tracked, traj.shape[1]


def open_recording(run: Path, rec: rundir.Recording, written: int) -> tuple[rundir.TrajectoryReader, dict | None]:
    """(a reader of the recording's rows that are written, `partial`: how much of it that is, or
    None when all of it)."""
    rows = min(max(written - rec.row, 0), rec.steps)
    traj = rundir.open_trajectory(run, rows, rec.row)
    if rows == rec.steps:
        return traj, None
    per_epoch = rec.steps // rec.epochs if rec.epochs else None
    return traj, dict(recorded_epochs=rows // per_epoch if per_epoch else None, record_epochs=rec.epochs,
                      steps=rows, of_steps=rec.steps)


def decay_rates(info: rundir.RunInfo) -> tuple[list[float] | None, list[float] | None]:
    """(lr, l2) per run, which identify pure weight-decay steps; (None, None) when not recorded, or
    when the run's optimizer is not plain SGD (`undetectable_decay`)."""
    if info.runs is None or any("lr" not in r or "l2" not in r for r in info.runs) or undetectable_decay(info):
        return None, None
    return [r["lr"] for r in info.runs], [r["l2"] for r in info.runs]


def undetectable_decay(info: rundir.RunInfo) -> str | None:
    """Why a zero data-loss gradient cannot be read off this run's trajectory, or None. Under plain
    SGD (any batch size) such a step is pure decay, w(t+1) = (1 - lr l2) w(t); momentum and Adam
    carry earlier gradients into it, so no increment shows it."""
    name = info.config.optimizer.name if info.config is not None else "sgd"
    if name == "sgd":
        return None
    return (f"--optimizer {name} carries earlier gradients into every step, so zero-gradient (pure weight-decay) "
            "steps cannot be identified from the trajectory: every increment is counted and fitted")


def describe_series(info: rundir.RunInfo, tracked, num_runs: int, groups: list[grouping.Group] | None = None) -> list[dict]:
    """One dict per series (run r, tracked weight k), in series order s = r * K + k: the run, its
    seed, lr, l2 and group, and the weight: "weight" its PATH:I,J (config.TrackedWeight), and for the
    paper's MLP also its layer, row and col."""
    runs = info.runs or [{} for _ in range(num_runs)]
    group_of = {r: g.index for g in groups or () for r in g.runs}

    def weight(t) -> dict:
        try:
            return dict(weight=str(t), layer=t.layer, row=t.row, col=t.col)
        except ValueError:  # a flax model's parameter
            return dict(weight=str(t))

    return [dict(run=r, seed=runs[r].get("seed"), lr=runs[r].get("lr"), l2=runs[r].get("l2"),
                 group=group_of.get(r, 0), **weight(t)) for r in range(num_runs) for t in tracked]


def increment_warnings(st: increments.IncrementStats, series: list[dict], warnings: list[str]) -> None:
    """What the streamed increments say is excluded or untestable, into `warnings`."""
    if st.n_nonfinite.sum():
        bad = sorted({series[s]["run"] for s in np.flatnonzero(st.n_nonfinite)})
        warnings.append(f"non-finite values in the trajectory of runs {bad}: those increments are excluded")
    outside = st.hist.under.sum(-1) + st.hist.over.sum(-1)
    for s in np.flatnonzero(outside):
        warnings.append(f"series {series[s]}: {int(outside[s]):,} fluctuating increments lie outside "
                        "the histogram's grid and are in none of its fits")
    still = st.n_decay + st.n_zero + st.n_nonfinite >= st.n
    if still.all():
        warnings.append("every series is constant or pure decay: no fluctuations, so the claims about them "
                        "cannot be tested")
    else:
        for s in np.flatnonzero(still):
            warnings.append(f"series {series[s]} is constant or pure decay: no fluctuations to fit")


class Spectra(NamedTuple):
    """The Welch pass over every series: f (F,), psd (S, F), usable (S,) bool (finite, positive
    power), and analysis.json's settings; or error (str) with the other fields None."""

    f: np.ndarray | None
    psd: np.ndarray | None
    usable: np.ndarray | None
    settings: dict | None
    error: str | None = None


def spectra_pass(traj, stride, segment, window, warnings, progress=None) -> Spectra:
    """Welch spectra of every series (one streamed pass); a trajectory unfit for a spectrum gives
    Spectra.error, with a warning."""
    try:
        seg = segment or spectrum.default_segment(traj.shape[1])
        f, psd, n_seg = spectrum.welch(traj, stride, seg, window, progress=progress)
        spectrum.bands(seg, stride)  # refuses a segment too short for two bands, before any fit
    except ValueError as e:
        warnings.append(f"spectrum: {e}")
        return Spectra(None, None, None, None, str(e))
    usable = np.all(np.isfinite(psd), axis=1) & np.all(psd[:, 1:] > 0, axis=1)
    if not usable.all():
        warnings.append(f"{int((~usable).sum())} series have non-finite or zero power (NaN or constant): "
                        "left out of the spectrum")
    settings = dict(segment=seg, window=window, overlap=0.5, segments=n_seg, stride=stride,
                    units="P(f): (weight units)^2 per (cycle/step); f: cycles per SGD step")
    return Spectra(f, psd, usable, settings)


def spectrum_summary(sp: Spectra, series) -> tuple[dict, np.ndarray | None]:
    """(analysis.json's "spectrum" of the series in `series` (a_low, a_high on their usable
    spectra), the indices of those usable series)."""
    if sp.error is not None:
        return dict(error=sp.error), None
    idx = np.asarray(series, int)
    rows = idx[sp.usable[idx]]
    if rows.size == 0:
        return dict(error="no series has a usable spectrum (all NaN or constant)"), None
    spec = dict(sp.settings)
    spec.update(spectrum.fit_bands(sp.f, sp.psd[rows], sp.settings["segment"], sp.settings["stride"]))
    spec.pop("per_series")
    return spec, rows


class Recorded(NamedTuple):
    """One recording's analysis, computed and not yet written: rec, analysis.json's dict, analysis.npz's arrays."""

    rec: rundir.Recording
    result: dict
    arrays: dict


def analyze(run: str | Path, data_dir: str | None = None, segment: int | None = None,
            window: str = "hann", progress: bool = True, figures: bool = True,
            neuron_layer: str | None = None) -> dict:
    """Analyse a run directory; writes analysis.json, analysis.npz, report.md (and the figures) into
    it; returns the analysis.json dict (see the README's table of its keys). neuron_layer: the
hidden layer of Fig. 1 (analysis.neurons.layers; default its default_layer).

    A run with recording windows gets each complete window analysed the same way, on its own,
    into windows/age{A}/ (with its report.md), and the age table (`socjax.analysis.ages`) in
    ages.json, ages.png and the returned dict's "ages". Until the final recording has two written
    steps there is no analysis.json of it: the return value then holds only "ages" and "warnings".

    Holds the run's lock (refused while train, prune or another analyze uses the run: what it
    reads is one snapshot). Everything is computed before anything is written: a signal (`interrupt.poll`
    between fits) or an error leaves the previous analysis as it was; then `commit` replaces it."""
    from socjax import interrupt

    run = Path(run)
    if not run.is_dir():
        raise AnalysisError(f"{run}: run directory not found")
    with rundir.RunLock(run, create=False, command="analyze"), \
            interrupt.kept(f"the previous analysis of {run} is unchanged"):
        info, tracked, written = load_inputs(run)
        recs = rundir.recordings(run, info)
        data_cache: dict = {}
        done: list[Recorded] = []
        for rec in recs[:-1]:
            traj, part = open_recording(run, rec, written)
            if part is not None or rec.steps < 2:  # a window is analysed once it is complete
                continue
            done.append(analyze_recording(run, info, tracked, rec, traj, None, data_dir, segment, window, progress,
                                          data_cache, neuron_layer))
        final = recs[-1]
        traj, part = open_recording(run, final, written)
        if traj.shape[1] < 2 and not done:
            written_note = "" if part is None else f" written so far (of {part['of_steps']:,}; see {rundir.PROGRESS})"
            raise AnalysisError(f"{run / rundir.TRAJECTORY}: {traj.shape[1]} recorded steps{written_note}, "
                                "no increments to analyse")
        last = None
        if traj.shape[1] >= 2:
            last = analyze_recording(run, info, tracked, final, traj, part, data_dir, segment, window, progress,
                                     data_cache, neuron_layer)
        table = None
        if done:
            from socjax.analysis import ages

            # the final recording is a row of its own unless a window starts with it (and is comparable)
            rows = done + ([last] if last is not None and final.age not in {d.rec.age for d in done} else [])
            table = _clean(ages.table([(d.rec.age, _epochs_analysed(d), d.rec.final, d.result) for d in rows]))
        waiting = None if last is not None else (
            f"the final recording has not started (epoch {(rundir.read_progress(run) or {}).get('epochs_done')} of "
            f"{info.config.epochs}): only the windows are analysed")
        result = commit(run, done, last, table, waiting, figures)
    return result


def _epochs_analysed(done: Recorded) -> int:
    """The epochs of a recording that were analysed: all of them, or of a partly written final
    recording those its written rows cover."""
    part = done.result["trajectory"].get("partial")
    return done.rec.epochs if part is None else part["recorded_epochs"]


def commit(run: Path, windows: list[Recorded], final: Recorded | None, table: dict | None, waiting: str | None,
           figures: bool) -> dict:
    """Replace the run's derived files with a new analysis and return the run's result (the final
    recording's analysis.json dict with "ages", or with only the windows "ages" and "warnings"
    [`waiting`]): INCOMPLETE first, the old files removed, every analysis.npz and analysis.json
    (bound to its npz by "arrays_sha256"), ages.json; INCOMPLETE removed; then the figures and, as
    they link the figures drawn, every report.md. A crash after INCOMPLETE is gone leaves figures or
    reports absent, never stale (`socjax plot` draws the figures). A signal meanwhile waits for the
    end: the handler only sets a flag."""
    marker = run / rundir.INCOMPLETE
    rundir.safe_write(marker, lambda f: f.write(b"socjax analyze is replacing this run's analysis\n"))
    rundir.remove_derived(run)
    recorded = windows + ([final] if final is not None else [])
    for done in recorded:
        done.rec.out.mkdir(parents=True, exist_ok=True)
        rundir.write_npz(done.rec.out / ARRAYS, done.arrays)
        done.result["arrays_sha256"] = rundir.digest(done.rec.out / ARRAYS)
        rundir.write_json(done.rec.out / ANALYSIS, done.result)
    if table is not None:
        rundir.write_json(run / rundir.AGES, table)
    marker.unlink()
    rundir.fsync_dir(run)
    if figures:
        from socjax import plots

        for done in recorded:
            plots.all_figures(results.load_run(run, None if done.rec.final else done.rec.age))
        if table is not None:
            plots.age_figure(table, run / rundir.AGES_FIGURE)
    for done in windows:
        report.write(done.rec.out, done.result, run)
    if final is None:
        result = dict(ages=table, warnings=[waiting])
    else:
        result = dict(final.result, ages=table) if table is not None else final.result
    report.write(run, result)
    return result


def analyze_recording(run: Path, info: rundir.RunInfo, tracked, rec: rundir.Recording, traj, part: dict | None,
                      data_dir, segment, window, progress, data_cache, neuron_layer=None) -> Recorded:
    """Analyse one recording of a run (a window, or the final recording) from its rows `traj`;
    writes nothing (`commit` does)."""
    from tqdm.auto import tqdm

    lr, l2 = decay_rates(info)
    stride = info.stride
    num_runs, steps, k = traj.shape
    warnings: list[str] = []
    # recorded flags decide which increments had a zero gradient; without them (the native step,
    # runs made before them) plain SGD's are inferred from the trajectory, others' cannot be
    zero = rundir.open_zero_grad(run, k, steps, rec.row) if info.config is not None else None
    identified = zero is not None or lr is not None
    if zero is None and undetectable_decay(info):
        warnings.append(undetectable_decay(info))
    elif zero is None and lr is None:
        warnings.append("config.json has no runs with lr/l2: pure weight-decay steps are not identified")
    if part is not None:
        warnings.append(f"partial run: {part['recorded_epochs']} of {part['record_epochs']} recorded epochs written "
                        f"({part['steps']:,} of {part['of_steps']:,} recorded steps); only these are analysed")
    groups, swept = grouping.group_runs(info.runs, num_runs)
    series = describe_series(info, tracked, num_runs, groups)
    end_epoch = rec.end_epoch if info.config is not None else None
    what = "analysing" if rec.final else f"window {rec.age}"

    # passes over the data, shared by every grouping, all counted by the bar: the increments
    # (two: their windows and counts, then their histograms), their linear bins (the sensitivity
    # table), and every row the Welch segments cover
    total = 3 * (steps - 1) + spectrum.rows_covered(steps, segment)
    with tqdm(total=total, unit="step", desc=what, disable=not progress, dynamic_ncols=True) as bar:
        st = increments.stream(traj, lr, l2, stride, progress=_polling(bar.update), zero_grad=zero)
        widths = sensitivity.linear_widths(st, [_series_of(g.runs, k) for g in groups])
        linear = increments.linear_stream(traj, lr, l2, stride, widths, progress=_polling(bar.update), zero_grad=zero)
        sp = spectra_pass(traj, stride, segment, window, warnings, _polling(bar.update))
    increment_warnings(st, series, warnings)

    with tqdm(total=len(series), unit="weight", desc="fitting", disable=not progress, dynamic_ncols=True) as bar:
        per_weight = increments.per_series(st, series, progress=_polling(bar.update))
    _, rows = spectrum_summary(sp, np.arange(len(series)))
    a_series = {"a_low": [None] * len(series), "a_high": [None] * len(series)}
    if rows is not None:
        a = spectrum.fit_bands(sp.f, sp.psd[rows], sp.settings["segment"], stride)["per_series"]
        for pos, s in enumerate(rows):
            per_weight[s]["spectrum"] = {name: a[name][pos] for name in ("a_low", "a_high")}
            for name in a_series:
                a_series[name][s] = a[name][pos]
    null = spectrum_null(traj, sp, window, warnings)
    samples = increments.recent(traj, lr, l2, stride, zero)
    alphas = peers.tail_index_per_series(samples)  # every series' own, once: the groups summarise them
    for s, x in enumerate(samples):
        per_weight[s]["peers"] = dict(alpha={str(e["m"]): e["values"][s] for e in alphas}, increments=len(x))
        if null is not None and "spectrum" in per_weight[s]:
            per_weight[s]["spectrum"]["null"] = {key: null[key][s] for key in ("a_low", "a_high", "phi", "corner")}

    tests, test_loss = test_metrics(run, num_runs, warnings, None if rec.final else end_epoch)
    neuron_runs, neuron_data = neurons_part(run, info, data_dir, warnings, num_runs, rec.params, data_cache,
                                            neuron_layer)
    group_of = {r: g for g in groups for r in g.runs}
    per_run, run_pools = [], []
    for r in range(num_runs):
        inc, pool = increments.pooled_summary(st, _series_of([r], k))
        inc["decay_identified"], inc["decay_from"] = identified, "flags" if zero is not None else "trajectory"
        inc["per_weight"] = _weight_verdicts(per_weight, _series_of([r], k))
        spec, _ = spectrum_summary(sp, _series_of([r], k))
        entry = dict(run=r, seed=series[r * k]["seed"], **group_of[r].settings, group=group_of[r].index,
                     increments=inc, spectrum=spec, neurons=neuron_runs[r], test=tests[r])
        entry["claims"] = report.claims(entry, steps)
        per_run.append(entry)
        run_pools.append(pool)

    group_entries, arrays = [], {"f": sp.f} if sp.f is not None else {}
    for g in groups:
        if len(g.runs) == 1:  # the group is its run: nothing to pool again
            inc, pool = per_run[g.runs[0]]["increments"], run_pools[g.runs[0]]
        else:
            inc, pool = increments.pooled_summary(st, _series_of(g.runs, k))
            inc["decay_identified"], inc["decay_from"] = identified, "flags" if zero is not None else "trajectory"
            inc["per_weight"] = _weight_verdicts(per_weight, _series_of(g.runs, k))
        with tqdm(total=4 * len(g.runs) * k, unit="fit", desc=f"representations {g.label}", disable=not progress,
                  dynamic_ncols=True) as bar:
            inc["sensitivity"] = sensitivity.table(st, linear, widths, _series_of(g.runs, k), per_weight,
                                                   inc.get("model"), progress=_polling(bar.update))
        spec, rows = spectrum_summary(sp, _series_of(g.runs, k))
        if null is not None and "error" not in spec:
            spec["null"] = spectrum_versus_null(a_series, null, _series_of(g.runs, k))
        entry = group_entry(g, inc, spec, per_run, neuron_runs, _group_test(g, tests, test_loss), steps, warnings)
        members = _series_of(g.runs, k)
        entry["peers"] = peer_estimates([samples[s] for s in members],
                                        [peers.series_summary(e["m"], [e["values"][s] for s in members]) for e in alphas],
                                        inc, increments.recent_rows(num_runs * k, steps))
        picks = paper_weights(tracked, g.runs[0], k)
        entry["paper_weights"] = picks
        group_entries.append(entry)
        drawn = entry["neurons"].get("figure_run")
        arrays.update(figure_arrays(g.index, pool, sp, rows, None if drawn is None else neuron_data[drawn]))
        arrays.update(paper_arrays(g.index, st, linear, widths, picks))

    result = _clean(dict(
        schema_version=results.SCHEMA_VERSION,
        socjax=socjax.__version__,
        run=str(run.resolve()),
        recording=dict(age=rec.age, epochs=rec.epochs, end_epoch=end_epoch, final=rec.final),
        trajectory=dict(runs=num_runs, steps=steps, weights=k, stride=stride, first_step=rec.first_step,
                        partial=part),
        warnings=warnings,
        swept=swept,
        spectrum_settings=sp.settings,
        groups=group_entries,
        per_run=per_run,
        per_weight=per_weight,
    ))
    return Recorded(rec, result, arrays)


def spectrum_null(traj, sp: Spectra, window: str, warnings: list[str]) -> dict | None:
    """Every series' Ornstein-Uhlenbeck (AR(1)) null through the same Welch estimate and band fits
    (`nulls.ou_spectra`); None, with a warning, where the data have no spectrum."""
    if sp.error is not None:
        return None
    try:
        return nulls.ou_spectra(traj, sp.settings["stride"], sp.settings["segment"], window)
    except ValueError as e:
        warnings.append(f"spectrum null: {e}")
        return None


def spectrum_versus_null(a_series: dict, null: dict, series: list[int]) -> dict:
    """analysis.json's spectrum "null" of a set of series: per band the null's exponent and the
    data's difference from it (`nulls.versus`), and the low band's verdict (`verdicts.below` of
    the difference's 95% interval against 0): "yes" when the data's a lies below its null's, "no"
    when at or above it, "not resolved" when the interval holds 0."""
    out = dict(model="each weight's AR(1) (Ornstein-Uhlenbeck) null with its own phi and innovation variance, "
               "simulated over the same rows and fitted on the same bands")
    for name in ("a_low", "a_high"):
        out[name] = nulls.versus(a_series[name], null[name], series)
    diff = out["a_low"].get("difference")
    out["verdict_low_below_null"] = verdicts.below(None if diff is None else diff["ci95"], 0.0)
    return out


def peer_estimates(samples: list[np.ndarray], per_weight: list[dict], inc: dict, rows: int) -> dict:
    """analysis.json's "peers" of a set of series from their non-decay increments (`increments.recent`):
    Simsekli et al.'s tail index pooled and per weight, the pooled one on the Gaussian scale-mixture
    null, Clauset et al.'s unbounded power law on the pooled |dw| in median units beside socjax's
    range fit, and Zhang & Tang's linear bins (the representation table's row). per_weight: the
    summaries of the series' own tail indices (`peers.series_summary`), one per block size; rows:
    the recorded steps the increments come from (the last ones)."""
    units = [np.abs(x) / np.median(np.abs(x)) for x in samples if len(x)]
    csn = peers.csn_fit(np.concatenate(units)) if units else None
    ranged = inc.get("powerlaw")
    if csn is not None and ranged:
        csn["socjax_range_exponent"] = ranged.get("exponent")
        csn["socjax_range"] = [ranged.get("xmin"), ranged.get("xmax")]
        csn["minus_socjax"] = None if ranged.get("exponent") is None else csn["alpha"] - ranged["exponent"]
    linear = next((r for r in inc.get("sensitivity") or () if r.get("key") == "nondecay_linear"), None)
    return dict(
        increments=int(sum(len(x) for x in samples)), weights=len(samples), last_steps=rows,
        tail_index=dict(pooled=peers.tail_index_pooled(samples),
                        pooled_gaussian_null=peers.tail_index_pooled(nulls.gaussian_scale_mixture(samples)),
                        per_weight=per_weight),
        csn=csn,
        zhang_tang_linear_bins=None if linear is None else linear.get("pooled"),
    )


def _polling(update):
    """A progress callback that also stops the analysis on a signal (`interrupt.poll`), between
    compiled calls."""
    from socjax import interrupt

    def tick(n):
        update(n)
        interrupt.poll("analyze")

    return tick


def _weight_verdicts(per_weight: list[dict], series: list[int]) -> dict | None:
    """Per |dw| claim, the tally of the weights' own verdicts (a weight too short to fit counts as
    not resolved), which the |dw| claims of an entry of several weights rest on (report.WEIGHT_RULE);
    None for a single weight."""
    if len(series) < 2:
        return None
    models = [per_weight[s].get("model") for s in series]
    return {claim: verdicts.tally(m["verdicts"][claim] if m else verdicts.UNRESOLVED for m in models)
            for claim in ("power_law", "gaussian")}


def _series_of(runs, k: int) -> list[int]:
    """The series indices s = r * K + k of the runs `runs`, K tracked weights each."""
    return [r * k + j for r in runs for j in range(k)]


def group_entry(g: grouping.Group, inc: dict, spec: dict, per_run: list[dict], neuron_runs: list[dict],
                test: dict | None, steps: int, warnings: list[str]) -> dict:
    """analysis.json's entry of group g: its pooled increments, spectrum and test metrics (given),
    neurons over its runs, its claims (pooled, combined with its seeds' by the group rule), and,
    with several seeds, the headline numbers across them."""
    members = [per_run[r] for r in g.runs]
    entry = dict(group=g.index, label=g.label, settings=g.settings, runs=list(g.runs), seeds=list(g.seeds),
                 increments=inc, spectrum=spec, neurons=_group_neurons(neuron_runs, g), test=test)
    if outside := inc.get("outside_grid"):
        warnings.append(f"group {g.label}: {outside:,} of {inc['fluctuating']:,} fluctuating increments "
                        f"({outside / inc['fluctuating']:.2g}) lie outside the pooled histogram's grid and "
                        "are in no pooled fit")
    entry["claims"] = report.group_claims(report.claims(entry, steps), [m["claims"] for m in members])
    if len(g.runs) >= 2:
        entry["across_seeds"] = grouping.summarize(members)
    return entry


def figure_arrays(g: int, pool, sp: Spectra, rows, neuron_figure) -> dict[str, np.ndarray]:
    """What group g's figures are drawn from, for analysis.npz (see `results`): its pooled
    histogram summed over time blocks and its local slope (where defined), the geometric mean and
    16/84% percentiles of the power spectra of its usable series, and Fig. 1's neurons."""
    from socjax.analysis import powerlaw

    out = {}
    if pool is not None:
        h = pool.sum(0).full()  # analysis.npz keeps the whole grid
        out.update({f"g{g}/hist_{name}": getattr(h, name) for name in ("counts", "offsets", "under", "over")})
        out[f"g{g}/hist_grid"] = np.array([h.grid.lo, h.grid.hi, h.grid.bins_per_decade], np.float64)
        x, slope = powerlaw.local_slope(h)
        keep = np.isfinite(slope)
        out[f"g{g}/local_slope_x"], out[f"g{g}/local_slope"] = x[keep], slope[keep]
    if rows is not None:
        psd = sp.psd[rows]
        with np.errstate(divide="ignore"):
            out[f"g{g}/psd_geomean"] = 10 ** np.mean(np.log10(psd), axis=0)
        out[f"g{g}/psd_p16"], out[f"g{g}/psd_p84"] = np.percentile(psd, [16, 84], axis=0)
        out[f"g{g}/psd_series"] = np.asarray(rows, np.int64)
    if neuron_figure is not None:
        out.update({f"g{g}/neurons_{name}": v for name, v in neuron_figure.items()})
    return out


PAPER_WEIGHTS_PER_KERNEL = 2  # "a few randomly selected weights" of each of the first two weight matrices


def paper_weights(tracked, run: int, k: int) -> list[int]:
    """The series drawn in fig2_paper.png and fig3_paper.png: PAPER_WEIGHTS_PER_KERNEL tracked
    weights of each of the first two parameters tracked (the paper's layers 1 and 2), picked at
    random (seeded) in one run, as the paper draws a few weights of one network."""
    rng = np.random.default_rng(0)
    paths = list(dict.fromkeys(t.path for t in tracked))[:2]
    picks = []
    for path in paths:
        mine = [j for j, t in enumerate(tracked) if t.path == path]
        picks += sorted(rng.choice(mine, min(PAPER_WEIGHTS_PER_KERNEL, len(mine)), replace=False).tolist())
    return [run * k + j for j in picks]


def paper_arrays(g: int, st: increments.IncrementStats, linear: np.ndarray, widths: np.ndarray,
                 picks: list[int]) -> dict[str, np.ndarray]:
    """What the paper-style figures of group g draw, for the series `picks` in raw units: the log
    histograms (20 bins per decade, summed over time blocks) of all increments and of the
    non-decay ones, and the linear one of the non-decay |dw| with its bin width."""
    from socjax.plots import DISPLAY_BINS_PER_DECADE

    if not picks:
        return {}
    every = st.hist + st.hist_decay
    factor = st.hist.grid.bins_per_decade // DISPLAY_BINS_PER_DECADE
    coarse = lambda h: h.stacked(picks).sum(1).full().rebinned(factor)
    nondecay, all_ = coarse(st.hist), coarse(every)
    grid = nondecay.grid
    return {f"g{g}/paper_series": np.asarray(picks, np.int64),
            f"g{g}/paper_log_grid": np.array([grid.lo, grid.hi, grid.bins_per_decade], np.float64),
            f"g{g}/paper_log_all": all_.counts, f"g{g}/paper_log_nondecay": nondecay.counts,
            f"g{g}/paper_linear": linear[0, picks].sum(1), f"g{g}/paper_linear_width": widths[0, picks]}


def _group_neurons(per_run: list[dict], g: grouping.Group) -> dict:
    """A group's Fig. 1 numbers: the mean bimodal fractions over its runs that have them (a run
    that diverged has none); drawn: the first of those."""
    have = [r for r in g.runs if "fraction_bimodal_kde" in per_run[r]]
    if not have:
        return per_run[g.runs[0]]
    out = dict(per_run[have[0]], figure_run=have[0], runs=have)
    for key in ("fraction_bimodal_kde", "fraction_bimodal_sarle", "fraction_never_active"):
        out[key] = float(np.mean([per_run[r][key] for r in have]))
    return out


def _loss_summary(loss: np.ndarray, accuracy_last: float | None) -> dict:
    """The overfitting numbers of one test-loss curve (epochs,): first, lowest (and its epoch), last."""
    return dict(epochs=int(loss.size), loss_first=float(loss[0]), loss_min=float(loss.min()),
                loss_min_epoch=int(np.argmin(loss)) + 1, loss_last=float(loss[-1]), accuracy_last=accuracy_last)


def test_metrics(run: Path, num_runs: int, warnings: list[str],
                 end_epoch: int | None = None) -> tuple[list[dict | None], np.ndarray | None]:
    """(per run, from metrics.json: the test loss at the first, lowest and last epoch and the last
    test accuracy, None for a run that diverged (a non-finite loss); the test losses (epochs,
    runs)), over epochs 1..end_epoch (default all). All None and None without metrics.json (with a
    warning)."""
    try:
        m = rundir.load_metrics(run)
    except (rundir.RunDirError, json.JSONDecodeError) as e:
        warnings.append(f"no usable {rundir.METRICS} ({str(e).split(': ')[-1]}): the overfitting claim is not tested")
        return [None] * num_runs, None
    loss = np.array(m.get("test_loss", []), dtype=float).reshape(-1, num_runs)  # (epochs, runs)
    acc = np.array(m.get("test_acc", []), dtype=float).reshape(-1, num_runs)
    if end_epoch is not None:
        loss, acc = loss[:end_epoch], acc[:end_epoch]
    out = []
    for r in range(num_runs):
        curve = loss[:, r]
        ok = curve.size and np.all(np.isfinite(curve))
        out.append(_loss_summary(curve, float(acc[-1, r]) if acc.size else None) if ok else None)
    return out, loss


def _group_test(g: grouping.Group, per_run: list[dict | None], loss: np.ndarray | None) -> dict | None:
    """A group's overfitting numbers: its mean test-loss curve over the runs that never diverged."""
    ok = [r for r in g.runs if per_run[r] is not None]
    if not ok:
        return None
    acc = [per_run[r]["accuracy_last"] for r in ok]
    return dict(_loss_summary(loss[:, ok].mean(axis=1), None if None in acc else float(np.mean(acc))), runs=len(ok))


def neurons_part(run: Path, info: rundir.RunInfo, data_dir: str | None, warnings: list[str],
                 num_runs: int, params: str = rundir.PARAMS_FINAL,
                 data_cache: dict | None = None, neuron_layer: str | None = None) -> tuple[list[dict], dict[int, dict]]:
    """Fig. 1: bimodality of the neurons of a hidden layer (`neuron_layer`, default
    neurons.default_layer: the second hidden layer, the paper's) of every run over the run's test
    images, with the parameters in the run's file `params` (params_final.npz, or a window's).

    Returns (one summary per run, or {"skipped": why}; {run: Fig. 1's arrays} for every run with
    a summary: FIG1_NEURONS live neurons picked at random (seeded), their pre-activations z
    (images, n), KDE grid and density, mode counts and Sarle's b). A run whose parameters are
    not finite (it diverged) is skipped."""

    def skipped(why):
        return [dict(skipped=why) for _ in range(num_runs)], {}

    if not rundir.has(run, params):
        if info.config is not None:
            warnings.append(f"no {params} (the run has not finished): Fig. 1 is not drawn")
        return skipped(f"no {params}")
    cfg = info.config
    if cfg is None:
        return skipped("config.json has no model configuration")
    from socjax import data, model

    try:
        hidden = neurons.layers(cfg.model)
    except ConfigError as e:  # a user's module that no longer imports
        return skipped(str(e))
    layer = neuron_layer or neurons.default_layer(cfg.model)
    if layer is None:
        return skipped("the network has no hidden layer")
    if layer not in hidden:
        raise AnalysisError(f"--neuron-layer {layer}: not a hidden layer of this model; choose {', '.join(hidden)}")

    data_cache = {} if data_cache is None else data_cache
    try:
        if "test" not in data_cache:
            raw, source = data.load_raw(cfg.dataset, data_dir or cfg.data_dir, cfg.teacher)
            data_cache["test"] = data.decode(raw, cfg.pixel_scale).test_x, source
        test_x, source = data_cache["test"]
    except ConfigError as e:
        warnings.append(f"neurons skipped: {e}")
        return skipped(str(e))
    named = rundir.load_params(run, params)
    per_run, figure = [], {}
    for r in range(next(iter(named.values())).shape[0]):
        one = {k: v[r] for k, v in named.items()}
        if not all(np.all(np.isfinite(v)) for v in one.values()):
            per_run.append(dict(skipped="the run diverged: its final parameters are not finite"))
            continue
        net = model.unnamed(one, cfg.model)
        depth = int(layer[1:]) if not cfg.model.is_flax else layer
        summary, z, (modes, grid, dens, b) = neurons.analyze(net, test_x, depth, cfg.model)
        per_run.append(dict(summary, data_source=source))
        rng = np.random.default_rng(0)
        alive = np.flatnonzero(z.max(0) > 0)
        pool = alive if alive.size >= FIG1_NEURONS else np.arange(z.shape[1])
        pick = np.sort(rng.choice(pool, min(FIG1_NEURONS, pool.size), replace=False))
        figure[r] = dict(ids=pick, z=z[:, pick], kde_grid=grid[pick], kde_density=dens[pick], modes=modes[pick],
                         sarle=b[pick])
    return per_run, figure
