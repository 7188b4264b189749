"""A run directory's results, loaded for Python: `load_run(DIR)`.

    run = socjax.load_run("runs/quick")
    run.config                 # RunConfig (None for a minimal directory)
    run.runs                   # [{"run": 0, "seed": 0, "lr": 0.002, "l2": 0.0005, "group": 0}, ...]
    run.metrics                # long table: columns epoch, run, seed, lr, l2, group, metric, value
    run.analysis               # analysis.json (None before `socjax analyze`)
    run.group(0)               # one group's entry of analysis.json
    run.histogram(0)           # its pooled LogHist of |dw| / median (from analysis.npz)
    run.spectrum(0)            # its P(f) over its usable series: geometric mean, percentiles
    run.trajectory             # the recorded trajectory, opened lazily (bounded memory)
    socjax.load_run("runs/paper_scale", age=100)   # the window at age 100 (windows/age100/)
    run.ages                   # the age table (ages.json), for a run with recording windows

`run.metrics` is a dict of equal-length NumPy columns: `pandas.DataFrame(run.metrics)` turns it
into a frame (pandas is not a dependency). analysis.npz holds what the figures are drawn from,
per group g:
    g{g}/hist_counts, _offsets, _under, _over, _grid   the pooled log-histogram of |dw| / median,
                                                       summed over time blocks (grid: lo, hi, bins
                                                       per decade)
    g{g}/local_slope_x, g{g}/local_slope               its local slope d log p / d log x, where
                                                       defined (Fig. 2b)
    f, g{g}/psd_geomean, _p16, _p84                    frequencies; the geometric mean and the
                                                       16/84% percentiles of P(f) over the group's
                                                       usable series
    g{g}/psd_series                                    those series (s = run * K + k)
    g{g}/neurons_ids, _z, _kde_grid, _kde_density,     Fig. 1's neurons
        _modes, _sarle
    g{g}/paper_series, _log_grid, _log_all,            the paper-style figures' weights (raw units):
        _log_nondecay, _linear, _linear_width          log histograms of all and of the non-decay
                                                       increments, linear bins of the non-decay |dw|
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from socjax import rundir
from socjax.config import RunConfig, TrackedWeight

# analysis.json's layout: 2 = groups, per_run, schema_version (1: one pooled "increments", unversioned)
SCHEMA_VERSION = 2


class ResultsError(rundir.RunDirError):
    """Results that cannot be loaded or drawn; the message says why, in one line."""


@dataclass(frozen=True)
class Run:
    """One run directory's results (see the module docstring)."""

    path: Path
    info: rundir.RunInfo
    runs: list[dict]
    tracked: tuple[TrackedWeight, ...]
    metrics: dict[str, np.ndarray] | None
    analysis: dict | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    stale: str | None = None  # why analysis.json was not loaded, when it exists but is another version's
    age: int | None = None  # a recording window's age; None: the final recording

    @property
    def config(self) -> RunConfig | None:
        return self.info.config

    @property
    def out(self) -> Path:
        """Where this recording's analysis, figures and report are: the run directory, or the window's."""
        return self.path if self.age is None else rundir.window_dir(self.path, self.age)

    @property
    def ages(self) -> dict | None:
        """The age table (ages.json: `socjax.analysis.ages.table`), None without windows analysed."""
        return rundir.load_ages(self.path)

    @property
    def trajectory(self) -> rundir.TrajectoryReader:
        """trajectory.npy (runs, steps, tracked weights), read on demand, only its written rows; with
        recording windows, every recording's rows in order (`rundir.recordings` says where each is)."""
        progress = rundir.read_progress(self.path)
        return rundir.open_trajectory(self.path, None if progress is None else int(progress["trajectory_rows"]))

    def _analysed(self) -> dict:
        if self.analysis is None:
            raise ResultsError(self.stale or f"{self.path}: no analysis (run `socjax analyze {self.path}`)")
        return self.analysis

    @property
    def groups(self) -> list[dict]:
        """analysis.json's groups (raises ResultsError when the run has not been analysed)."""
        return self._analysed()["groups"]

    def group(self, g: int = 0) -> dict:
        """Group g's entry of analysis.json ("label", "settings", "runs", "increments", ...)."""
        groups = self.groups
        if not 0 <= g < len(groups):
            raise ResultsError(f"{self.path}: no group {g} (the analysis has {len(groups)})")
        return groups[g]

    def histogram(self, g: int = 0):
        """Group g's pooled LogHist of |dw| / median (summed over time blocks); None when it has no
        non-decay increment."""
        from socjax.analysis.loghist import Grid, LogHist

        self.group(g)
        if f"g{g}/hist_counts" not in self.arrays:
            return None
        lo, hi, bpd = self.arrays[f"g{g}/hist_grid"]
        return LogHist(Grid(float(lo), float(hi), int(bpd)),
                       *(self.arrays[f"g{g}/hist_{name}"] for name in ("counts", "offsets", "under", "over")))

    def spectrum(self, g: int = 0) -> dict[str, np.ndarray] | None:
        """Group g's power spectra over its usable series: "f" (F,) cycles per SGD step, "geomean"
        (F,) the geometric mean of P over the series (what a_low and a_high are fitted to),
        "p16", "p84" (F,) percentiles of P over the series, "series" their indices (s = run * K + k);
        None when the trajectory gave no spectrum."""
        self.group(g)
        if f"g{g}/psd_geomean" not in self.arrays:
            return None
        return dict(f=self.arrays["f"], **{k: self.arrays[f"g{g}/psd_{k}"] for k in ("geomean", "p16", "p84", "series")})

    def local_slope(self, g: int = 0) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(x, slope) of group g's pooled |dw| density, d log p / d log x where defined (Fig. 2b);
        (None, None) without one."""
        self.group(g)
        if f"g{g}/local_slope" not in self.arrays:
            return None, None
        return self.arrays[f"g{g}/local_slope_x"], self.arrays[f"g{g}/local_slope"]

    def paper_weights(self, g: int = 0) -> dict[str, np.ndarray] | None:
        """What the paper-style figures (fig2_paper, fig3_paper) of group g draw: "series" (n,),
        "log_grid" (lo, hi, bins per decade), "log_all" and "log_nondecay" (n, bins) counts of
        all increments and of the non-decay ones, "linear" (n, 60) non-decay counts in linear bins
        of "linear_width" (n,), all in raw units; None for an analysis without them."""
        self.group(g)
        prefix = f"g{g}/paper_"
        got = {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        return got or None

    def neurons(self, g: int = 0) -> dict[str, np.ndarray] | None:
        """Fig. 1's arrays of group g (ids, z, kde_grid, kde_density, modes, sarle), or None."""
        self.group(g)
        prefix = f"g{g}/neurons_"
        got = {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        return got or None


def metrics_table(metrics: dict, runs: list[dict]) -> dict[str, np.ndarray]:
    """metrics.json ({"epoch": [...], name: [[value per run] per epoch], ...}) as a long table:
    one row per (epoch, run, metric), columns epoch, run, seed, lr, l2, group, metric, value."""
    names = [k for k, v in metrics.items() if k not in ("epoch", "timing") and isinstance(v, list)]
    epochs = np.asarray(metrics.get("epoch", []), np.int64)
    cols: dict[str, list] = {k: [] for k in ("epoch", "run", "seed", "lr", "l2", "group", "metric", "value")}
    for name in names:
        values = np.asarray(metrics[name], np.float64).reshape(len(epochs), len(runs))
        for r, info in enumerate(runs):
            cols["epoch"].append(epochs)
            cols["run"].append(np.full(len(epochs), r))
            for key in ("seed", "lr", "l2", "group"):
                v = info.get(key)
                cols[key].append(np.full(len(epochs), np.nan if v is None else v,
                                         dtype=np.float64 if key in ("lr", "l2") or v is None else np.int64))
            cols["metric"].append(np.full(len(epochs), name, dtype=object))
            cols["value"].append(values[:, r])
    return {k: np.concatenate(v) if v else np.array([]) for k, v in cols.items()}


def _load_analysis(run: Path) -> tuple[dict | None, dict[str, np.ndarray], str | None]:
    """(analysis.json, analysis.npz's arrays, None), or (None, {}, why) for an analysis.json of
    another schema version; (None, {}, None) when there is none. run: the directory holding
    analysis.json (the run's, or a window's)."""
    analysis = rundir.load_analysis(run)
    if analysis is None:
        return None, {}, None
    version = analysis.get("schema_version")
    if version != SCHEMA_VERSION:
        return None, {}, (f"{run / rundir.ANALYSIS}: written by another socjax (schema {version or 1}, this one "
                          f"reads {SCHEMA_VERSION}); run `socjax analyze {run}` again")
    return analysis, rundir.load_arrays(run), None


def _check(analysis: dict, arrays: dict[str, np.ndarray], info: rundir.RunInfo, tracked, age: int | None,
           where: Path) -> None:
    """Refuse, in one line, an analysis.json that is not this recording's (another run's, or a stub)
    and an analysis.npz whose arrays do not fit it: what the figures would draw is then wrong."""
    json_path, npz_path = where / rundir.ANALYSIS, where / rundir.ARRAYS
    remedy = rundir.rewrite_hint(json_path)
    missing = [k for k in ("groups", "per_run", "trajectory") if not isinstance(analysis.get(k), (list, dict))]
    if missing:
        raise ResultsError(f"{json_path}: damaged (no {missing[0]!r}); {remedy}")
    traj, rec = analysis["trajectory"], analysis.get("recording") or dict(final=True)  # older: no "recording"
    runs = len(info.runs) if info.runs is not None else traj.get("runs")
    found = dict(runs=traj.get("runs"), weights=traj.get("weights"), age=None if rec.get("final") else rec.get("age"))
    expected = dict(runs=runs, weights=len(tracked), age=age)
    window = next((w for w in info.layout.get("windows", []) if w["age"] == age), None)
    first_step = (window or info.layout).get("first_step")
    if first_step is not None:
        found["first_step"], expected["first_step"] = traj.get("first_step"), first_step
    if info.config is not None:
        found["settings"] = [(e.get("seed"), e.get("lr"), e.get("l2")) for e in analysis["per_run"]]
        expected["settings"] = [(r.get("seed"), r.get("lr"), r.get("l2")) for r in info.runs]
    differ = [k for k in expected if found[k] != expected[k]]
    if differ:
        k = differ[0]
        raise ResultsError(f"{json_path}: another recording's analysis ({k} {found[k]}, this one's {expected[k]}); "
                           f"{remedy}")
    groups = len(analysis["groups"])
    for name, a in arrays.items():
        g = re.match(r"g(\d+)/", name)
        if name != "f" and (g is None or int(g.group(1)) >= groups):
            raise ResultsError(f"{npz_path}: damaged (array {name!r} is not of the {groups} group(s) of "
                               f"{rundir.ANALYSIS}); {remedy}")
    for g in range(groups):
        for parts in (("hist_counts", "hist_offsets", "hist_under", "hist_over", "hist_grid"),
                      ("psd_geomean", "psd_p16", "psd_p84", "psd_series"),
                      ("neurons_ids", "neurons_z", "neurons_kde_grid", "neurons_kde_density", "neurons_modes",
                       "neurons_sarle")):
            have = [f"g{g}/{p}" in arrays for p in parts]
            if any(have) and not all(have):
                absent = parts[have.index(False)]
                raise ResultsError(f"{npz_path}: damaged (g{g}/{absent} is missing); {remedy}")
        psd = arrays.get(f"g{g}/psd_geomean")
        if psd is not None and ("f" not in arrays or arrays["f"].shape != psd.shape):
            raise ResultsError(f"{npz_path}: damaged (the frequencies do not fit g{g}'s spectrum); {remedy}")
        counts = arrays.get(f"g{g}/hist_counts")
        if counts is not None and (counts.shape != arrays[f"g{g}/hist_offsets"].shape
                                   or arrays[f"g{g}/hist_grid"].shape != (3,)):
            raise ResultsError(f"{npz_path}: damaged (g{g}'s histogram arrays do not fit); {remedy}")


def load_run(path: str | Path, age: int | None = None) -> Run:
    """The results of a run directory: config, runs and their groups, tracked weights, metrics
    (long table), the analysis and its arrays (if analysed), and the trajectory (lazily). With
    `age`, the analysis is the recording window's at that age (windows/age{age}/)."""
    from socjax.analysis import groups as grouping

    run = Path(path)
    if not run.is_dir():
        raise ResultsError(f"{run}: run directory not found")
    if (run / rundir.INCOMPLETE).exists():
        raise ResultsError(f"{run}: its analysis was stopped while its files were replaced ({rundir.INCOMPLETE} "
                           f"is there), so they may be a mixture; {rundir.rewrite_hint(run / rundir.ANALYSIS)}")
    info = rundir.read_info(run)
    tracked = rundir.load_tracked(run)
    if age is not None and age not in (w["age"] for w in info.layout.get("windows", [])):
        ages = [w["age"] for w in info.layout.get("windows", [])]
        raise ResultsError(f"{run}: no recording window at age {age} (windows: {ages or 'none'})")
    where = run if age is None else rundir.window_dir(run, age)
    analysis, arrays, stale = _load_analysis(where)
    if analysis is not None:
        _check(analysis, arrays, info, tracked, age, where)
        bound = analysis.get("arrays_sha256")  # absent in analyses written before the two were bound
        if arrays and bound is not None and rundir.digest(where / rundir.ARRAYS) != bound:
            raise ResultsError(f"{where / rundir.ARRAYS}: not the arrays written with {where / rundir.ANALYSIS} "
                               f"(another analysis's: their SHA-256 differs from its \"arrays_sha256\"); "
                               f"{rundir.rewrite_hint(where / rundir.ANALYSIS)}")
        runs = [{k: e.get(k) for k in ("run", "seed", "lr", "l2", "group")} for e in analysis["per_run"]]
    else:
        num_runs = len(info.runs) if info.runs is not None else rundir.open_trajectory(run).shape[0]
        groups, _ = grouping.group_runs(info.runs, num_runs)
        group_of = {r: g.index for g in groups for r in g.runs}
        listed = info.runs or [{} for _ in range(num_runs)]
        runs = [dict(run=r, seed=listed[r].get("seed"), lr=listed[r].get("lr"), l2=listed[r].get("l2"),
                     group=group_of[r]) for r in range(num_runs)]
    metrics = None
    if rundir.has(run, rundir.METRICS):
        metrics = metrics_table(rundir.load_metrics(run), runs)
    return Run(run, info, runs, tracked, metrics, analysis, arrays, stale, age)
