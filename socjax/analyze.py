"""`socjax analyze DIR`: read a run directory, write DIR/analysis.json and the four figures.

Needs trajectory.npy, tracked.json and config.json (read as a `rundir.RunInfo`: at least
{"trajectory": {"stride": k}}; with "config": {"runs": [{"lr": ..., "l2": ...}, ...]} pure
weight-decay steps are identified).
With params_final.npz and the run's data, Fig. 1 (neuron distributions) is made too.
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

import numpy as np

from socjax import rundir
from socjax.analysis import increments, neurons, spectrum
from socjax.config import ConfigError, TrackedWeight

ANALYSIS, FIGURES = rundir.ANALYSIS, rundir.FIGURES


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


def load_inputs(run: Path) -> tuple[rundir.RunInfo, tuple[TrackedWeight, ...], rundir.TrajectoryReader]:
    """(config.json typed, tracked weights, the trajectory reader) of a run directory, validated."""
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
    if traj.shape[1] < 2:
        written = "" if progress is None else f" written so far (of {traj.file_steps:,}; see {rundir.PROGRESS})"
        raise AnalysisError(f"{run / rundir.TRAJECTORY}: {traj.shape[1]} recorded steps{written}, "
                            "no increments to analyse")
    if traj.dtype.kind != "f":
        raise AnalysisError(f"{run / rundir.TRAJECTORY}: dtype {traj.dtype}, expected floating point")
    if info.runs is not None and len(info.runs) != traj.shape[0]:
        raise AnalysisError(f"config.json lists {len(info.runs)} runs, trajectory.npy holds {traj.shape[0]}")
    return info, tracked, traj


def decay_rates(info: rundir.RunInfo) -> tuple[list[float] | None, list[float] | None]:
    """(lr, l2) per run, which identify pure weight-decay steps; (None, None) when not recorded."""
    if info.runs is None:
        return None, None
    return [r["lr"] for r in info.runs], [r["l2"] for r in info.runs]


def increments_part(traj, lr, l2, stride, series, warnings, progress=None):
    """(analysis.json "increments", per-series entries, pooled LogHist) of a trajectory."""
    st = increments.stream(traj, lr, l2, stride, progress=progress)
    inc, per_series, pool = increments.analyze(st, series)
    if st.n_nonfinite.sum():
        bad = sorted({series[s]["run"] for s in np.flatnonzero(st.n_nonfinite)})
        warnings.append(f"non-finite values in the trajectory of runs {bad}: those increments are excluded")
    if inc["outside_grid"]:
        warnings.append(f"{inc['outside_grid']:,} of {inc['fluctuating']:,} fluctuating increments "
                        f"({inc['outside_grid'] / inc['fluctuating']:.2g}) "
                        "lie outside the pooled histogram's grid and are in no pooled fit")
    for s in np.flatnonzero([e["outside_grid"] for e in per_series]):
        warnings.append(f"series {series[s]}: {per_series[s]['outside_grid']:,} fluctuating increments lie outside "
                        "the histogram's grid and are in none of its fits")
    still = st.n_decay + st.n_zero + st.n_nonfinite >= st.n
    if still.all():
        warnings.append("every series is constant or pure decay: no fluctuations, so the claims about them "
                        "cannot be tested")
    else:
        for s in np.flatnonzero(still):
            warnings.append(f"series {series[s]} is constant or pure decay: no fluctuations to fit")
    return inc, per_series, pool


def spectrum_part(traj, stride, segment, window, warnings, progress=None):
    """(analysis.json "spectrum", f, P of the usable series, indices of the usable series).
    A trajectory unfit for a spectrum gives {"error": ...} and None arrays, with a warning."""
    steps = traj.shape[1]
    try:
        seg = segment or spectrum.default_segment(steps)
        f, psd, n_seg = spectrum.welch(traj, stride, seg, window, progress=progress)
        usable = np.all(np.isfinite(psd), axis=1) & np.all(psd[:, 1:] > 0, axis=1)
        if not usable.all():
            warnings.append(f"{int((~usable).sum())} series have non-finite or zero power (NaN or constant): "
                            "left out of the spectrum")
        if not usable.any():
            raise ValueError("no series has a usable spectrum")
        spec = dict(segment=seg, window=window, overlap=0.5, segments=n_seg, stride=stride,
                    units="P(f): (weight units)^2 per (cycle/step); f: cycles per SGD step")
        spec.update(spectrum.fit_bands(f, psd[usable], seg, stride))
        return spec, f, psd[usable], np.flatnonzero(usable)
    except ValueError as e:
        warnings.append(f"spectrum: {e}")
        return dict(error=str(e)), None, None, None


def describe_series(info: rundir.RunInfo, tracked, num_runs: int) -> list[dict]:
    """One dict per series (run r, tracked weight k), in series order s = r * K + k."""
    runs = info.runs or [{} for _ in range(num_runs)]
    return [dict(run=r, seed=runs[r].get("seed"), layer=t.layer, row=t.row, col=t.col)
            for r in range(num_runs) for t in tracked]


def partial(run: Path, traj: rundir.TrajectoryReader) -> dict | None:
    """How much of a run that is still training, or was interrupted, is analysed; None when the
    whole trajectory is written."""
    progress = rundir.read_progress(run)
    if progress is None or traj.shape[1] == traj.file_steps:
        return None
    return dict(recorded_epochs=progress.get("recorded_epochs"), record_epochs=progress.get("record_epochs"),
                steps=traj.shape[1], of_steps=traj.file_steps)


def analyze(run: str | Path, data_dir: str | None = None, segment: int | None = None,
            window: str = "hann", progress: bool = True, figures: bool = True) -> dict:
    """Analyse a run directory; writes analysis.json (and figures) into it; returns the dict."""
    run = Path(run)
    info, tracked, traj = load_inputs(run)
    lr, l2 = decay_rates(info)
    stride = info.stride
    num_runs, steps, k = traj.shape
    warnings: list[str] = []
    if lr is None:
        warnings.append("config.json has no runs with lr/l2: pure weight-decay steps are not identified")
    part = partial(run, traj)
    if part is not None:
        warnings.append(f"partial run: {part['recorded_epochs']} of {part['record_epochs']} recorded epochs written "
                        f"({part['steps']:,} of {part['of_steps']:,} recorded steps); only these are analysed")
    series = describe_series(info, tracked, num_runs)

    from tqdm.auto import tqdm

    # the two passes report what they read: every increment, then every row the Welch segments cover
    total = (steps - 1) + spectrum.rows_covered(steps, segment)
    with tqdm(total=total, unit="step", desc="analysing", disable=not progress, dynamic_ncols=True) as bar:
        inc, per_series, pool = increments_part(traj, lr, l2, stride, series, warnings, bar.update)
        spec, f, psd, usable = spectrum_part(traj, stride, segment, window, warnings, bar.update)
    if usable is not None:
        for pos, s in enumerate(usable):
            per_series[s]["spectrum"] = {name: spec["per_series"][name][pos] for name in ("a_low", "a_high")}
    spec.pop("per_series", None)

    neuron_summary, neuron_data = neurons_part(run, info, data_dir, warnings)
    result = _clean(dict(
        run=str(run.resolve()),
        trajectory=dict(runs=num_runs, steps=steps, weights=k, stride=stride, first_step=info.layout.get("first_step"),
                        partial=part),
        warnings=warnings,
        increments=inc,
        spectrum=spec,
        neurons=neuron_summary,
        per_weight=per_series,
        test_loss=_test_loss(run),
    ))
    rundir.write_json(run / ANALYSIS, result)
    if figures:
        from socjax import plots

        plots.all_figures(run, result, pool, f, psd, neuron_data)
    return result


def _test_loss(run: Path):
    """Overfitting check from metrics.json: first, minimum and last mean test loss."""
    try:
        m = rundir.load_metrics(run)
    except (rundir.RunDirError, json.JSONDecodeError):
        return None
    per_run = np.array(m.get("test_loss", []), dtype=float)  # (epochs, runs)
    finite = per_run.size and np.all(np.isfinite(per_run), axis=0)
    if per_run.size == 0 or not finite.any():
        return None
    loss = per_run[:, finite].mean(axis=1)  # over the runs that never diverged
    return dict(epochs=len(loss), runs=int(finite.sum()), first=float(loss[0]), min=float(loss.min()),
                min_epoch=int(np.argmin(loss)) + 1, last=float(loss[-1]))


def neurons_part(run: Path, info: rundir.RunInfo, data_dir: str | None, warnings: list[str]):
    """Fig. 1 data: bimodality of layer-2 neurons of run 0 over the run's test images."""
    if not (run / rundir.PARAMS_FINAL).exists():
        return dict(skipped="no params_final.npz"), None
    cfg = info.config
    if cfg is None:
        return dict(skipped="config.json has no model configuration"), None
    if cfg.model.num_layers < 3:
        return dict(skipped="the network has fewer than two hidden layers"), None
    from socjax import data, model

    try:
        raw, source = data.load_raw(cfg.dataset, data_dir or cfg.data_dir)
    except ConfigError as e:
        warnings.append(f"neurons skipped: {e}")
        return dict(skipped=str(e)), None
    ds = data.decode(raw, cfg.pixel_scale)
    named = rundir.load_params(run, "final")
    per_run = []
    first = None
    for r in range(named["w1"].shape[0]):
        params = model.from_named({k: v[r] for k, v in named.items()}, cfg.model.num_layers)
        summary, z, extra = neurons.analyze(params, ds.test_x, layer=2)
        per_run.append(dict(run=r, fraction_bimodal_kde=summary["fraction_bimodal_kde"],
                            fraction_bimodal_sarle=summary["fraction_bimodal_sarle"]))
        if first is None:
            first = (summary, z, extra)
    summary = dict(first[0], data_source=source, per_run=per_run,
                   fraction_bimodal_kde=float(np.mean([p["fraction_bimodal_kde"] for p in per_run])),
                   fraction_bimodal_sarle=float(np.mean([p["fraction_bimodal_sarle"] for p in per_run])))
    return summary, (first[1], first[2])
