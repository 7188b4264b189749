"""The run directory: the one module that knows its files, writes them and reads them.

    config.json         resolved RunConfig (+ "runs": seed/lr/l2 of each run), the recording layout
                        ("trajectory": first_step, stride, steps, ...), data source, socjax/jax
                        versions, backend, device
    tracked.json        [{"path": "w1", "index": [r, c]}, ...]: column k of trajectory.npy is element
                        index of the parameter at path (config.TrackedWeight; runs made before
                        paths wrote {"layer": 1-based, "row": r, "col": c}, read as w{layer})
    params_init.npz     w1, b1, w2, b2, w3, b3, each with a leading run axis: w1 (R, 784, 700)
    params_final.npz    same, after the last epoch (written once training ends)
    params_age{A}.npz   same, at the end of the recording window at age A (--record-windows)
    trajectory.npy      float32 (R, T, K): tracked weight k of run r after global SGD step
                        first_step + t * stride (steps counted from 1); with windows, each
                        window's rows and then the final recording's, each from its own first
                        step (`recordings`); a preallocated .npy, filled chunk by chunk, opened
                        with np.load(..., mmap_mode="r")
    metrics.json        {"epoch": [...], "train_loss": [[R] per epoch], ..., "timing": {...}},
                        rewritten after every chunk, so a crash keeps every finished epoch
    zero_grad.npy       uint8 (R, T, ceil(K / 8)), beside trajectory.npy row by row in runs on the XLA
                        step (layout "zero_grad"): np.packbits of K flags, flag k of row t set when
                        weight k's data-loss gradient was exactly 0 at every step of the increment
                        ending at row t (`open_zero_grad` unpacks them)
    order.npy           (with --save-order) int32 (R, steps * batch_size): the examples of every SGD
                        step, in the order they were taken
    weight_stats.npz    (with --weight-stats) running statistics of every weight's increments
                        over the recorded phase (see socjax.weight_stats)
    checkpoint.npz      the training state to resume from (socjax.checkpoint's format), with the
                        finished epochs, the metrics so far, and the configuration and tracked
                        weights it was written with (a resume refuses a config.json or tracked.json
                        that differs: `check_binding`)
    progress.json       what is written and durable: epochs_done, checkpoint_epoch, trajectory_rows
                        (and order_rows) of the preallocated ones; readers use no row beyond them
    .lock               flock'd by the one socjax process using the run (`RunLock`): train, analyze,
                        prune or plot, with its pid and command

A sweep trained by several processes (socjax.distributed) is sharded: process i writes its own
runs, a contiguous block of the sweep's, as a run directory of its own, shards/{i}/ (every file
above, its config.json's "shard" naming the block, its own .lock), and nothing else; process 0
also writes the top-level config.json (the whole sweep, with "processes": {"count", "shards": the
block of each process}) and tracked.json. No file is written by two processes.

and what `socjax analyze` derives from them (DERIVED): analysis.json, analysis.npz (bound to
each other by analysis.json's "arrays_sha256"), report.md, the figures (FIGURES; per group
`figure_name`), sweep.png, and with windows ages.json, ages.png and windows/age{A}/ (a window's
analysis); and what `socjax prune` writes (prune/, or any subdirectory holding prune.json). A
resume removes all of them, and params_final.npz and weight_stats.npz, which described the run
where it stopped (`RunWriter.reopen`). While analyze replaces its outputs, DIR/.analysis-incomplete
exists (`INCOMPLETE`): readers refuse the directory until a new analysis completes.

Writing: `RunLock`, then `RunWriter` (create, or reopen for resume; append a chunk's outputs;
checkpoint; finish). `create` writes a checkpoint of the initial state last, so a directory with a
checkpoint is resumable and one without is a set-up that never finished (named so by `check_new`
and `require_checkpoint`). Every file goes through `safe_write`: a temporary file in the same
directory, fsync, rename, fsync of the directory, so a crash leaves the old file or the new one,
never a torn one. The trajectory and order rows are flushed and fsynced before progress.json
counts them and before a checkpoint refers to them. A write that fails (disk full, read-only)
raises one RunDirError line naming the last intact checkpoint.

Reading: `read_info` (config.json, typed), `load_*`, `open_trajectory` (bounded memory). Anything
downstream (analysis, plots, report) reads a run through this module and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, NamedTuple

import numpy as np

from socjax import checkpoint
from socjax.config import ConfigError, RunConfig, TrackedWeight, steps_per_epoch

CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL = "config.json", "tracked.json", "params_init.npz", "params_final.npz"
TRAJECTORY, METRICS, ORDER = "trajectory.npy", "metrics.json", "order.npy"
ZERO_GRAD = "zero_grad.npy"
WEIGHT_STATS, CHECKPOINT, PROGRESS, LOCK = "weight_stats.npz", "checkpoint.npz", "progress.json", ".lock"
RUN_FILES = (CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL, TRAJECTORY, ZERO_GRAD, METRICS, ORDER, WEIGHT_STATS, CHECKPOINT,
             PROGRESS)
# what `socjax analyze` derives from a run: removed when the run is resumed, as they no longer describe it
ANALYSIS, ARRAYS, REPORT, SWEEP_FIGURE = "analysis.json", "analysis.npz", "report.md", "sweep.png"
FIGURES = ("fig1_neurons.png", "fig2_increments.png", "fig3_regimes.png", "fig4_spectrum.png", "fig2_paper.png",
           "fig3_paper.png")
AGES, AGES_FIGURE, WINDOWS = "ages.json", "ages.png", "windows"  # the age table; windows/age{A}/: a window's analysis
DERIVED = (ANALYSIS, ARRAYS, REPORT, SWEEP_FIGURE, AGES, AGES_FIGURE, *FIGURES)
INCOMPLETE = ".analysis-incomplete"  # exists while `socjax analyze` replaces the derived files (a crash leaves it)
# what `socjax prune` writes (by default into PRUNE_DIR of the run; the run's report.md then shows its claims)
PRUNE_DIR, PRUNE_JSON, PRUNE_FIGURE = "prune", "prune.json", "prune.png"
# what a published copy of a run leaves out (`publish`): the bulk, which no figure is drawn from;
# params_age{A}.npz (`window_params`) too. Everything else is small and goes with it.
BULK = (TRAJECTORY, ZERO_GRAD, ORDER, CHECKPOINT, WEIGHT_STATS, PARAMS_INIT, PARAMS_FINAL, LOCK)
NOTES = "README.md"  # a published directory's own notes (how it was made): kept when it is published again
SHARDS = "shards"  # a sharded run directory: shards/{i}/ is process i's run directory


def figure_name(figure: str, label: str | None = None) -> str:
    """The file of one of FIGURES for a group: the plain name when the run has one group (label
    None), else with the group's label, e.g. fig2_increments_l2=0.0005.png."""
    if label is None:
        return figure
    slug = re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_")
    return f"{figure[:-4]}_{slug}.png"


def derived_figures(run: Path) -> list[Path]:
    """Every figure `socjax analyze` may have drawn in `run`: FIGURES, their per-group forms, the
    sweep figure."""
    names = {p for fig in FIGURES for p in run.glob(f"{fig[:-4]}*.png")}
    return sorted(names | {p for p in [run / SWEEP_FIGURE] if p.exists()})


def remove_derived(run: Path) -> None:
    """Remove everything `socjax analyze` wrote into `run` (DERIVED, the figures, windows/): on
    resume, and before a new analysis is written, so that nothing stale outlives the run it described."""
    for path in [run / name for name in DERIVED] + derived_figures(run):
        path.unlink(missing_ok=True)
    shutil.rmtree(run / WINDOWS, ignore_errors=True)


def prune_dirs(run: Path) -> list[Path]:
    """The prune outputs inside `run`: PRUNE_DIR and any other subdirectory holding PRUNE_JSON, and
    the temporary directories of a prune that was stopped (`replace_dir`)."""
    return sorted(d for d in run.iterdir() if d.is_dir() and (d.name == PRUNE_DIR or (d / PRUNE_JSON).exists()
                                                              or re.fullmatch(r"\..+\.(new|old)", d.name)))


def digest(path: Path) -> str:
    """SHA-256 of a file, hex: binds a derived file to what it was computed from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replace_dir(out: Path, fill: Callable[[Path], None]) -> None:
    """Write a derived directory as a unit: fill(tmp) writes every file into a new directory beside
    `out` (.NAME.new); then the old `out` is renamed aside (.NAME.old), the new one renamed in and
    the old one removed. An exception in fill (an interruption, a full disk) leaves `out` as it was;
    a crash between the two renames leaves no `out` (and .NAME.old), never a mixture."""
    tmp, old = out.with_name(f".{out.name}.new"), out.with_name(f".{out.name}.old")
    for d in (tmp, old):
        shutil.rmtree(d, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


# config.json fields a resume may find changed: the data files are checked by SHA-256 wherever they
# are, and a longer epochs_record is an extension (--resume --epochs) whose first checkpoint is pending
MOVABLE = ("data_dir",)


class RunDirError(ConfigError):
    """A run directory that cannot be created, written or read."""


# --- writing -------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def safe_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file atomically and durably: write(f) into a temporary file beside `path`, fsync,
    rename over `path`, fsync the directory. On failure the temporary file is removed and the
    previous `path`, if any, is untouched."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj) -> None:
    """JSON through `safe_write`."""
    safe_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """An .npz of named arrays through `safe_write`."""
    safe_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def check_new(out: str | Path) -> Path:
    """Refuse an output directory that already holds a run (or is a file); nothing is touched."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    if out.is_dir() and (out / SHARDS).is_dir() and (out / CONFIG).exists():
        raise RunDirError(f"{out}: already holds a run (trained by {len(read_shards(out) or [])} processes, "
                          f"{SHARDS}/); choose another --out, or continue it with train --resume {out} in as many")
    if out.is_dir():
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present and not (out / CHECKPOINT).exists():
            raise RunDirError(f"{out}: holds a run whose set-up never finished (no {CHECKPOINT}, so nothing to "
                              f"resume); delete {out} or choose another --out")
        if present:
            raise RunDirError(f"{out}: already holds a run ({present[0]}); choose another --out, or continue "
                              f"it with --resume {out}")
    return out


class RunLock:
    """DIR/.lock, held (flock) by the one socjax process that uses a run directory (train writing it;
    analyze, prune and plot reading it and writing what they derive), holding its pid and command.

    The kernel drops the lock when the process ends, however it ends, so a killed run leaves no
    stale lock. A second process is refused in one line naming the holder, so nothing reads a run
    while another process writes it. create=True makes DIR (a new run); `discard()` then undoes a
    set-up that failed: the run files, the lock and DIR itself if this lock made it. On a sharded
    run (create=False: analyze, prune, plot), every shard's lock too: none is read while its
    process trains."""

    def __init__(self, out: Path, create: bool, command: str = "train"):
        self.out, self.created, self.fd, self.shards = out, False, None, []
        if create:
            try:
                out.mkdir(parents=True)
                self.created = True
            except FileExistsError:
                pass
            except OSError as e:
                raise RunDirError(f"{out}: cannot create ({e.strerror})") from None
        elif not out.is_dir():
            raise RunDirError(f"{out}: run directory not found")
        self.shards: list[int] = []  # a sharded run's shard locks (analyze, prune, plot: none may be training)
        self.fd = self._acquire(out, command, discard=True)
        try:
            for d in ([] if create else shard_dirs(out)):
                self.shards.append(self._acquire(d, command))
        except BaseException:
            self.release()
            raise

    def _acquire(self, out: Path, command: str, discard: bool = False) -> int:
        import fcntl

        try:
            fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if discard:
                self.discard()
            raise RunDirError(f"{out}: cannot write ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            pid, what = (holder[0] if holder else "unknown"), (holder[1] if len(holder) > 1 else "")
            doing = "writing this run" if what in ("train", "") else "using this run"
            raise RunDirError(f"{out}: another socjax process (pid {pid}{f', socjax {what}' if what else ''}) is "
                              f"{doing}; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        return fd

    def release(self) -> None:
        for fd in self.shards:
            os.close(fd)
        self.shards = []
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def discard(self) -> None:
        """Remove what a failed set-up wrote (check_new made sure DIR held no run files before)."""
        for name in (*RUN_FILES, LOCK):
            (self.out / name).unlink(missing_ok=True)
        self.release()
        if self.created:
            try:
                self.out.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: leave it


def environment() -> dict:
    import jax

    import socjax

    dev = jax.devices()[0]
    return dict(
        socjax=socjax.__version__,
        jax=jax.__version__,
        jaxlib=jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        backend=jax.default_backend(),
        device=str(getattr(dev, "device_kind", dev)),
        device_count=jax.device_count(),
        python=platform.python_version(),
        machine=platform.machine(),
    )


def layout(cfg: RunConfig, num_train: int, num_test: int) -> dict:
    """config.json's "trajectory" section: where the recorded rows sit among the SGD steps (steps,
    not examples: a step takes batch_size examples).

    first_step, steps, row: the final recording's first step (global, from 1), recorded steps and
    first row of trajectory.npy; rows: the file's rows (every window and the final recording);
    windows: one entry per recording window (`window_layout`); steps_per_epoch and batch_size;
    zero_grad: whether zero_grad.npy records each row's zero-gradient flags (the XLA step does);
    num_train: the training examples (train_limit applied)."""
    n = steps_per_epoch(cfg, num_train)
    return dict(first_step=cfg.epochs_equilibrate * n + cfg.stride, stride=cfg.stride,
                steps=cfg.epochs_record * n // cfg.stride, steps_per_epoch=n, batch_size=cfg.batch_size,
                zero_grad=cfg.step == "xla",
                num_train=num_train,
                num_test=num_test, num_runs=len(cfg.runs()),
                row=cfg.recorded_before(cfg.epochs_equilibrate) * n // cfg.stride,
                rows=cfg.recorded_before(cfg.epochs) * n // cfg.stride,
                windows=[window_layout(cfg, n, age) for age in cfg.record_windows])


def window_layout(cfg: RunConfig, steps_per_epoch: int, age: int) -> dict:
    """One recording window: age (epochs trained before it), epochs, end_epoch, first_step
    (global step of its first row, from 1), row (its first row of trajectory.npy), steps (rows)."""
    n, w = steps_per_epoch, cfg.window_epochs
    return dict(age=age, epochs=w, end_epoch=age + w, first_step=age * n + cfg.stride,
                row=cfg.recorded_before(age) * n // cfg.stride, steps=w * n // cfg.stride)


def window_params(age: int) -> str:
    """The file of the parameters at the end of the window at `age`: params_age{age}.npz."""
    return f"params_age{age}.npz"


def window_dir(run: str | Path, age: int) -> Path:
    """Where `socjax analyze` writes the analysis of the window at `age`: DIR/windows/age{age}/."""
    return Path(run) / WINDOWS / f"age{age}"


class Recording(NamedTuple):
    """One stretch of consecutive recorded steps of a run, analysed on its own: a window or the
    final recording. age: epochs trained before it; epochs: its length; final: the final recording;
    first_step: global step of its first row (from 1); row: its first row of trajectory.npy;
    steps: its rows; params: the file of the parameters at its end; out: the directory its analysis
    is written to (the run's own for the final recording, `window_dir` for a window)."""

    age: int
    epochs: int
    final: bool
    first_step: int
    row: int
    steps: int
    params: str
    out: Path

    @property
    def end_epoch(self) -> int:
        return self.age + self.epochs


def recordings(run: str | Path, info: "RunInfo") -> list[Recording]:
    """The windows (in order of age), then the final recording, of a run directory. A minimal
    directory (no configuration) has one: its whole trajectory, as the final recording."""
    run, layout, cfg = Path(run), info.layout, info.config
    stride = info.stride
    if cfg is None:
        rows = open_trajectory(run).shape[1]
        return [Recording(0, 0, True, int(layout.get("first_step", stride)), 0, rows, PARAMS_FINAL, run)]
    out = [Recording(w["age"], w["epochs"], False, w["first_step"], w["row"], w["steps"], window_params(w["age"]),
                     window_dir(run, w["age"])) for w in layout.get("windows", [])]
    out.append(Recording(cfg.epochs_equilibrate, cfg.epochs_record, True, layout["first_step"], layout.get("row", 0),
                         layout["steps"], PARAMS_FINAL, run))
    return out


def _array_shapes(cfg: RunConfig, layout: dict, num_tracked: int) -> dict[str, tuple[int, ...]]:
    """The preallocated arrays of a run and their shapes: trajectory (R, rows, K), order (R, steps)."""
    shapes = {TRAJECTORY: (layout["num_runs"], layout.get("rows", layout["steps"]), num_tracked)}
    if layout.get("zero_grad") and num_tracked:
        shapes[ZERO_GRAD] = (*shapes[TRAJECTORY][:2], -(-num_tracked // 8))
    if cfg.save_order:
        shapes[ORDER] = (layout["num_runs"], cfg.epochs * _order_per_epoch(layout))
    return shapes


def _order_per_epoch(layout: dict) -> int:
    """order.npy's columns per epoch: the examples the epoch's steps took (batch_size per step)."""
    return layout["steps_per_epoch"] * layout.get("batch_size", 1)


def _size(nbytes: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000
    raise AssertionError


def _open_existing(path: Path) -> np.memmap:
    """A run's .npy opened read-only, or one line saying why it cannot be."""
    if not path.exists():
        raise RunDirError(f"{path}: missing, so the run cannot be resumed")
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise RunDirError(f"{path}: unreadable ({e}), so the run cannot be resumed") from None


def check_space(out: Path, cfg: RunConfig, layout: dict, num_tracked: int) -> None:
    """Refuse, before anything is written, trajectory and order files larger than the free space on
    out's file system (a file that must grow is copied, so its whole new size counts)."""
    need = 0
    for name, shape in _array_shapes(cfg, layout, num_tracked).items():
        path = out / name
        if path.exists() and _open_existing(path).shape == shape:
            continue
        need += 4 * math.prod(shape)
    base = out
    while not base.exists():
        base = base.parent
    free = shutil.disk_usage(base).free
    if need > free:
        raise RunDirError(f"{out}: the trajectory and order files need {_size(need)}, {_size(free)} is free there; "
                          "record fewer epochs, raise --stride or track fewer weights")


def open_array(path: Path, dtype, shape) -> np.memmap:
    """A preallocated .npy on disk, opened for writing chunk by chunk (np.load mmap-compatible)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def check_resumable(out: Path, cfg: RunConfig, layout: dict, num_tracked: int) -> None:
    """The arrays a resume writes into exist, are readable and can hold (or grow to) the layout."""
    for name, shape in _array_shapes(cfg, layout, num_tracked).items():
        old = _open_existing(out / name)
        if old.shape[0] != shape[0] or old.shape[2:] != shape[2:] or old.shape[1] > shape[1]:
            raise RunDirError(f"{out / name}: shape {old.shape} does not fit this run's {shape}, so the run "
                              "cannot be resumed")


def _grow(path: Path, shape) -> np.memmap:
    """A run's .npy (runs, steps, ...) reopened for writing; grown along the steps axis (copied
    into a larger file, then renamed over it) when --epochs extends the run."""
    old = _open_existing(path)
    if old.shape == tuple(shape):
        del old
        return np.load(path, mmap_mode="r+")
    tmp = path.with_name(f".{path.name}.grow")
    try:
        new = open_array(tmp, old.dtype, shape)
        step = 1 << 20
        for t0 in range(0, old.shape[1], step):
            t1 = min(t0 + step, old.shape[1])
            new[:, t0:t1] = old[:, t0:t1]
        new.flush()
        del old, new
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r+")


def _write_config(out: Path, cfg: RunConfig, layout: dict, source: str, env: dict | None = None, **extra) -> None:
    """config.json: the configuration, the recording layout, the data source and the environment
    (this process's unless given), with any `extra` sections (a sharded run's "processes")."""
    write_json(out / CONFIG, dict(config=cfg.to_json(), trajectory=layout, data_source=source,
                                  environment=environment() if env is None else env, **extra))


def shard_dir(run: str | Path, index: int) -> Path:
    """The run directory of process `index` of a sharded run."""
    return Path(run) / SHARDS / str(index)


def read_shards(run: str | Path) -> list[tuple[int, int]] | None:
    """The runs [start, stop) of each process of a sharded run directory (config.json's
    "processes"), None for a run trained by one process (or no config.json yet)."""
    path = Path(run) / CONFIG
    if not path.exists():
        return None
    processes = load_config(run).get("processes")
    if processes is None:
        return None
    try:
        shards = [(int(a), int(b)) for a, b in processes["shards"]]
    except (KeyError, TypeError, ValueError):
        raise RunDirError(f"{path}: malformed \"processes\" section (no list of [start, stop] shards)") from None
    return shards


def shard_dirs(run: str | Path) -> list[Path]:
    """The shards' run directories of a sharded run, in process order; [] for a run of one process."""
    shards = read_shards(run)
    return [] if shards is None else [shard_dir(run, i) for i in range(len(shards))]


def has(run: str | Path, name: str) -> bool:
    """Whether the run holds file `name` (a sharded run: every shard does)."""
    shards = shard_dirs(run)
    return all((d / name).exists() for d in shards) if shards else (Path(run) / name).exists()


def write_sharded(out: Path, cfg: RunConfig, layout: dict, source: str, tracked: tuple[TrackedWeight, ...],
                  shards: list[tuple[int, int]], env: dict | None = None, **extra) -> None:
    """The top-level files of a sharded run (process 0, or `merge`): config.json (the whole sweep's
    `cfg` and `layout`, the processes and their shards, any `extra` section) and tracked.json."""
    try:
        _write_config(out, cfg, layout, source, env, processes=dict(count=len(shards), shards=[list(s) for s in shards]),
                      **extra)
        write_json(out / TRACKED, _tracked_json(tracked))
    except OSError as e:
        raise RunDirError(f"{out}: cannot write ({e.strerror or e})") from None


# what may differ between run directories merged as one sweep (`merge`): their seeds, and labels
MERGE_FREE = ("seeds", "shard", "preset", "data_dir")


def merge(dirs: list[str | Path], out: str | Path) -> Path:
    """Present independent run directories of one protocol (a job array's, a seed or a few each)
    as one sweep in `out`: a sharded run directory whose shards are links to them, in the given
    order, with config.json holding their seeds in that order and "merged" naming them. Everything
    is checked before anything is written, each refusal one RunDirError line naming the field:
    every configuration field but MERGE_FREE, the data source, the recording layout and the tracked
    weights must agree, the seeds must be distinct, and no input may itself be sharded. `out` must
    be new, empty or an earlier merge (its links are replaced; its analysis outputs, which may
    describe other inputs, are removed)."""
    dirs, out = [Path(d) for d in dirs], Path(out)
    if not dirs:
        raise RunDirError("--merge needs at least one run directory")
    infos, tracked = [], []
    for d in dirs:
        if not (d / CONFIG).exists():
            raise RunDirError(f"{d}: not a run directory (no {CONFIG})")
        if read_shards(d) is not None:
            raise RunDirError(f"{d}: a sharded run directory; it is one sweep already, merge its own inputs instead")
        info = read_info(d)
        if info.config is None:
            raise RunDirError(f"{d}: {CONFIG} holds no run configuration (a minimal directory cannot be merged)")
        infos.append(info)
        tracked.append([str(t) for t in load_tracked(d)])
    first, first_flat = infos[0], _flat(_as_json(infos[0].config))

    def first_difference(a: dict, b: dict, free) -> str | None:
        """The first key (sorted) whose values differ, ignoring those `free` takes; None if none."""
        return next((k for k in sorted(set(a) | set(b)) if not free(k) and a.get(k) != b.get(k)), None)

    seen: dict[int, Path] = {}
    for d, info, weights in zip(dirs, infos, tracked):
        flat = _flat(_as_json(info.config))
        k = first_difference(first_flat, flat, lambda k: k.split(".")[0] in MERGE_FREE)
        if k is not None:
            raise RunDirError(f"{d}: its protocol differs from {dirs[0]}'s ({k}: {first_flat.get(k)!r} -> "
                              f"{flat.get(k)!r}); only the seeds may differ between merged runs")
        k = first_difference(first.layout, info.layout, lambda k: k == "num_runs")
        if k is not None:
            raise RunDirError(f"{d}: its recording layout differs from {dirs[0]}'s (trajectory.{k}: "
                              f"{first.layout.get(k)!r} -> {info.layout.get(k)!r})")
        if info.data_source != first.data_source:
            raise RunDirError(f"{d}: trained on {info.data_source}, {dirs[0]} on {first.data_source}")
        if weights != tracked[0]:
            raise RunDirError(f"{d}: tracks other weights than {dirs[0]} ({TRACKED} differs)")
        for seed in info.config.seeds:
            if seed in seen:
                raise RunDirError(f"{d}: seed {seed} is also in {seen[seed]}; merged runs need distinct seeds")
            seen[seed] = d
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and "merged" not in (
            load_config(out) if (out / CONFIG).exists() else {}))):
        raise RunDirError(f"{out}: exists and is not an earlier merge; choose a new --out")
    cfg = dataclasses.replace(first.config, seeds=tuple(s for info in infos for s in info.config.seeds), shard=None)
    bounds, start = [], 0
    for info in infos:
        bounds.append((start, start + len(info.config.runs())))
        start = bounds[-1][1]
    try:
        if out.is_dir():
            remove_derived(out)
            shutil.rmtree(out / SHARDS, ignore_errors=True)
        (out / SHARDS).mkdir(parents=True)
        for i, d in enumerate(dirs):
            (out / SHARDS / str(i)).symlink_to(d.resolve(), target_is_directory=True)
    except OSError as e:
        raise RunDirError(f"{out}: cannot write ({e.strerror or e})") from None
    write_sharded(out, cfg, dict(first.layout, num_runs=start), first.data_source, load_tracked(dirs[0]), bounds,
                  env=first.environment, merged=[str(d.resolve()) for d in dirs])
    return out


def _tracked_json(tracked) -> list[dict]:
    return [t.to_json() for t in tracked]


def _new_metrics() -> dict:
    return {"epoch": [], "timing": {"compile_seconds": [], "chunk_end_epoch": [], "chunk_seconds": []}}


def written_rows(cfg: RunConfig, layout: dict, epochs_done: int) -> dict:
    """progress.json's counts after `epochs_done` epochs: the trajectory rows and order steps (per
    run) that are written and durable, out of the layout's."""
    n = layout["steps_per_epoch"]
    recorded = min(max(epochs_done - cfg.epochs_equilibrate, 0), cfg.epochs_record)
    out = dict(recorded_epochs=recorded, record_epochs=cfg.epochs_record,
               trajectory_rows=cfg.recorded_before(epochs_done) * n // cfg.stride,
               trajectory_steps=layout.get("rows", layout["steps"]))
    if cfg.save_order:
        per = _order_per_epoch(layout)
        out.update(order_rows=epochs_done * per, order_steps=cfg.epochs * per)
    return out


class RunWriter:
    """Writes one run directory while it trains, under its RunLock. `epoch`: epochs whose outputs
    are written; `checkpointed`: the epoch of the last checkpoint written (what a failed write
    says is intact), None until the set-up's checkpoint at epoch 0."""

    def __init__(self, out: Path, cfg: RunConfig, layout: dict, tracked: list[dict], trajectory, order,
                 metrics: dict, epoch: int, checkpointed: int | None):
        self.out, self.cfg, self.layout, self.tracked = out, cfg, layout, tracked
        self.trajectory, self.order, self.metrics = trajectory, order, metrics
        self.zero_grad = None
        self.epoch, self.checkpointed = epoch, checkpointed

    # The one place where an OSError becomes a one-line error.
    def _io(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            kept = ("the run was not set up" if self.checkpointed is None
                    else f"the last checkpoint (epoch {self.checkpointed}) is intact")
            raise RunDirError(f"{self.out}: cannot write ({e.strerror or e}); {kept}") from None

    @classmethod
    def create(cls, out: Path, cfg: RunConfig, layout: dict, source: str, tracked: tuple[TrackedWeight, ...],
               params_init: Mapping[str, np.ndarray], state) -> "RunWriter":
        """Set up a new run in `out` (made and locked by a RunLock): config, tracked weights,
        initial parameters, preallocated trajectory (and order), then a checkpoint of the initial
        `state` at epoch 0, last: a directory with a checkpoint is resumable, one without is a
        set-up that never finished."""
        w = cls(out, cfg, layout, _tracked_json(tracked), None, None, _new_metrics(), 0, None)
        shapes = _array_shapes(cfg, layout, len(tracked))

        def write():
            _write_config(out, cfg, layout, source)
            write_json(out / TRACKED, w.tracked)
            write_npz(out / PARAMS_INIT, params_init)
            w.trajectory = open_array(out / TRAJECTORY, np.float32, shapes[TRAJECTORY])
            if ZERO_GRAD in shapes:
                w.zero_grad = open_array(out / ZERO_GRAD, np.uint8, shapes[ZERO_GRAD])
            if ORDER in shapes:
                w.order = open_array(out / ORDER, np.int32, shapes[ORDER])
            write_json(out / METRICS, w.metrics)

        w._io(write)
        w.checkpoint(state)
        return w

    @classmethod
    def reopen(cls, out: Path, cfg: RunConfig, layout: dict, source: str, tracked: tuple[TrackedWeight, ...],
               epoch: int, metrics: dict) -> "RunWriter":
        """Continue the run in `out` (locked by a RunLock) after `epoch` epochs, its checkpoint's:
        grow the trajectory and order files for a longer run, rewrite config.json, reset
        metrics.json and progress.json to the checkpoint, and remove what described the run where it
        stopped: the analysis outputs, the prune outputs inside it, and the final parameters and
        weight statistics of a finished run that is extended (rewritten when it finishes again)."""
        w = cls(out, cfg, layout, _tracked_json(tracked), None, None, metrics, epoch, epoch)

        def write():
            (out / INCOMPLETE).unlink(missing_ok=True)
            remove_derived(out)
            for d in prune_dirs(out):
                shutil.rmtree(d)
            for name in (PARAMS_FINAL, WEIGHT_STATS):
                (out / name).unlink(missing_ok=True)
            shapes = _array_shapes(cfg, layout, len(w.tracked))
            w.trajectory = _grow(out / TRAJECTORY, shapes[TRAJECTORY])
            if ZERO_GRAD in shapes:
                w.zero_grad = _grow(out / ZERO_GRAD, shapes[ZERO_GRAD])
            if ORDER in shapes:
                w.order = _grow(out / ORDER, shapes[ORDER])
            _write_config(out, cfg, layout, source)  # a longer run changes the layout
            write_json(out / METRICS, metrics)
            w._write_progress()

        w._io(write)
        return w

    def _write_progress(self) -> None:
        write_json(self.out / PROGRESS, dict(epochs_done=self.epoch, epochs=self.cfg.epochs,
                                             checkpoint_epoch=self.checkpointed,
                                             **written_rows(self.cfg, self.layout, self.epoch)))

    def compiled(self, seconds: float) -> None:
        """Note the compile time of this session (written with the next chunk)."""
        self.metrics["timing"]["compile_seconds"].append(seconds)

    def append(self, metrics: Mapping[str, np.ndarray], trajectory: np.ndarray | None, order: np.ndarray | None,
               seconds: float, zero_grad: np.ndarray | None = None) -> None:
        """Write a chunk's outputs, following `self.epoch`: metrics {name: (R, E)}, trajectory rows
        (R, T, K) of recorded epochs, order (R, E, N); flush and fsync them, then metrics.json, then
        progress.json, which counts them as written (a checkpoint written after this can refer to
        them). `seconds`: the chunk's wall time."""
        first = self.epoch
        num_epochs = len(next(iter(metrics.values()))[0])
        m = self.metrics
        for e in range(num_epochs):
            m["epoch"].append(first + e + 1)
            for k, v in metrics.items():
                m.setdefault(k, []).append([float(x) for x in v[:, e]])
        m["timing"]["chunk_end_epoch"].append(first + num_epochs)
        m["timing"]["chunk_seconds"].append(seconds)

        def write():
            n = self.layout["steps_per_epoch"]
            if trajectory is not None and trajectory.shape[-1]:
                row = self.cfg.recorded_before(first) * n // self.cfg.stride
                self.trajectory[:, row : row + trajectory.shape[1]] = trajectory
                if self.zero_grad is not None and zero_grad is not None:
                    self.zero_grad[:, row : row + zero_grad.shape[1]] = zero_grad
            if order is not None:
                per = _order_per_epoch(self.layout)
                self.order[:, first * per : (first + num_epochs) * per] = order.reshape(order.shape[0], -1)
            for arr in (self.trajectory, self.zero_grad, self.order):
                if arr is not None:
                    arr.flush()
                    with open(arr.filename, "rb+") as f:
                        os.fsync(f.fileno())
            write_json(self.out / METRICS, m)
            self.epoch = first + num_epochs
            self._write_progress()

        self._io(write)

    def window_end(self, age: int, params: Mapping[str, np.ndarray]) -> None:
        """The parameters at the end of the window at `age` (params_age{age}.npz); written before
        any checkpoint after it, so a resume past the window finds them."""
        self._io(write_npz, self.out / window_params(age), params)

    def checkpoint(self, state) -> None:
        """checkpoint.npz: `state` (any pytree) after `self.epoch` epochs, with the metrics so far
        and the configuration and tracked weights it belongs to (checked on resume); then
        progress.json."""
        user = dict(epochs_done=self.epoch, metrics=self.metrics, config=self.cfg.to_json(), tracked=self.tracked)
        self._io(save_checkpoint, self.out, state, user)
        self.checkpointed = self.epoch
        self._io(self._write_progress)

    def finish(self, params: Mapping[str, np.ndarray], weight_stats: Mapping[str, np.ndarray] | None = None) -> None:
        """The final parameters (and --weight-stats statistics)."""
        self._io(write_npz, self.out / PARAMS_FINAL, params)
        if weight_stats is not None:
            self._io(write_npz, self.out / WEIGHT_STATS, weight_stats)


def save_checkpoint(out: Path, state, user: dict) -> None:
    """DIR/checkpoint.npz through `safe_write`."""
    safe_write(out / CHECKPOINT, lambda f: checkpoint.save(f, state, user))


def require_checkpoint(out: str | Path) -> Path:
    """DIR/checkpoint.npz, refused in one line when there is none to resume from."""
    out = Path(out)
    path = out / CHECKPOINT
    if not out.is_dir():
        raise RunDirError(f"{out}: run directory not found")
    if not path.exists():
        if (out / CONFIG).exists():
            raise RunDirError(f"{out}: no {CHECKPOINT}: the run's set-up never finished, so there is nothing to "
                              f"resume; delete {out} and start the run again")
        raise RunDirError(f"{out}: no {CHECKPOINT} to resume from")
    return path


def load_checkpoint(out: Path, template) -> tuple[Any, int, dict]:
    """(state restored into `template`'s structure, finished epochs, metrics) from DIR/checkpoint.npz."""
    path = require_checkpoint(out)
    state, user = checkpoint.read(path, template, name=str(path))
    return state, int(user["epochs_done"]), user["metrics"]


def check_binding(out: Path, cfg: RunConfig) -> None:
    """Refuse, in one line naming what changed, a config.json (`cfg`, as read) or tracked.json that
    differs from what DIR's checkpoint was written with: a resume would silently train on with the
    edited values. Fields in MOVABLE and a longer epochs_record are allowed (see MOVABLE)."""
    path = require_checkpoint(out)
    user = checkpoint.read_user(path, name=str(path))
    if "config" not in user or "tracked" not in user:
        raise RunDirError(f"{path}: records no configuration to check config.json against (written by an "
                          "earlier socjax); resume it with that version")
    # both as JSON has them, the bound one read as a RunConfig first: a field added since the
    # checkpoint was written takes its default, and an older spelling (tracked weights) the new one
    try:
        bound = _flat(_as_json(RunConfig.from_json(user["config"])))
    except (ConfigError, TypeError, KeyError):
        bound = _flat(user["config"])
    now = _flat(_as_json(cfg))
    changes = [f"{k}: {bound.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(bound) | set(now))
               if bound.get(k) != now.get(k) and k not in MOVABLE
               and not (k == "epochs_record" and now[k] > bound[k])]
    if changes:
        raise RunDirError(f"{out / CONFIG}: differs from the configuration its checkpoint was written with "
                          f"({'; '.join(changes)}); undo the edit, or start a new run with the values you want")
    # both parsed: a checkpoint from before paths records {"layer", "row", "col"}
    bound_tracked = [str(TrackedWeight.from_json(t)) for t in user["tracked"]]
    now_tracked = [str(t) for t in load_tracked(out)]
    if bound_tracked != now_tracked:
        if len(bound_tracked) != len(now_tracked):
            what = f"{len(bound_tracked)} weights -> {len(now_tracked)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(bound_tracked, now_tracked)) if a != b)
            what = f"entry {i}: {bound_tracked[i]} -> {now_tracked[i]}"
        raise RunDirError(f"{out / TRACKED}: differs from the weights its checkpoint was written with ({what}); "
                          "undo the edit")


def _as_json(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(cfg.to_json()))


def _flat(d: dict, prefix: str = "") -> dict:
    """A nested config dict as {"model.loss": ..., "lr": [...], ...}, without the derived "runs"."""
    out = {}
    for k, v in d.items():
        if k == "runs":
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def is_bulk(name: str) -> bool:
    """Whether a run directory's top-level file `name` is left out of a published copy (BULK)."""
    return name in BULK or re.fullmatch(r"params_age\d+\.npz", name) is not None


def published_files(run: str | Path) -> list[Path]:
    """What `publish` copies of `run`, relative to it: every file but the bulk (`is_bulk`) and
    temporary files: config, metrics, tracked weights, progress, each recording's analysis.json,
    analysis.npz, figures and report.md, the age table, and prune outputs."""
    run = Path(run)
    tops = {run, *shard_dirs(run)}  # a sharded run's shards hold its bulk
    return sorted(p.relative_to(run) for p in run.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and not (p.parent in tops and is_bulk(p.name)))


def publish(run: str | Path, dest: str | Path) -> list[Path]:
    """Copy the small part of `run` (`published_files`) into `dest`, laid out as in the run, so that
    `load_run`, `socjax plot` and the reports' links work there without the trajectory. `dest` must
    be new, empty, or an earlier publication (it holds config.json): that one's files are replaced,
    its NOTES kept. Returns the files written, relative to `dest`."""
    run, dest = Path(run), Path(dest)
    if not (run / CONFIG).exists():
        raise RunDirError(f"{run}: not a run directory (no {CONFIG})")
    if run.resolve() == dest.resolve() or run.resolve() in dest.resolve().parents:
        raise RunDirError(f"{dest}: inside the run {run}; publish to a directory outside it")
    if dest.exists() and not dest.is_dir():
        raise RunDirError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not (dest / CONFIG).exists():
            raise RunDirError(f"{dest}: not empty and not an earlier publication (no {CONFIG}); choose another")
        for path in sorted(dest.iterdir()):
            if path.name != NOTES:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    files = published_files(run)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / rel, dest / rel)
    return files


# --- reading -------------------------------------------------------------------------------------


def _require(path: Path) -> Path:
    if not path.exists():
        raise RunDirError(f"{path}: missing from the run directory")
    return path


def load_config(run: str | Path) -> dict:
    """config.json as a dict, as written; `read_info` gives it typed."""
    try:
        return json.loads(_require(Path(run) / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{Path(run) / CONFIG}: malformed JSON ({e})") from None


class RunInfo(NamedTuple):
    """config.json, typed.

    config: the run's RunConfig; None in a minimal directory (see analysis: a trajectory,
        tracked.json and {"trajectory": {"stride": k}}, optionally "config": {"runs": [...]}).
    runs: one {"seed", "lr", "l2"} per run, in the order of the run axis (a minimal directory's
        entries may lack "seed"); None when config.json lists none.
    layout: the "trajectory" section (first_step, stride, steps, ...; a minimal one has stride).
    data_source, environment: as written by `RunWriter` (None and {} when absent).
    """

    config: RunConfig | None
    runs: list[dict] | None
    layout: dict
    data_source: str | None
    environment: dict

    @property
    def stride(self) -> int:
        return int(self.layout.get("stride", 1))


def read_info(run: str | Path) -> RunInfo:
    """config.json of `run` as a RunInfo; a configuration that is not a valid RunConfig is refused."""
    d = load_config(run)
    section = d.get("config") or {}
    config = None
    if set(section) - {"runs"}:
        try:
            config = RunConfig.from_json(section)
        except (KeyError, TypeError) as e:
            raise RunDirError(f"{Path(run) / CONFIG}: malformed configuration ({type(e).__name__}: {e})") from None
        except ConfigError as e:
            raise RunDirError(f"{Path(run) / CONFIG}: {e}") from None
    runs = section.get("runs")
    if config is not None:
        runs = [dict(seed=s, lr=lr, l2=l2) for s, lr, l2 in config.runs()]
    return RunInfo(config, runs, d.get("trajectory", {}), d.get("data_source"), d.get("environment", {}))


def load_tracked(run: str | Path) -> tuple[TrackedWeight, ...]:
    return tuple(TrackedWeight.from_json(t) for t in json.loads(_require(Path(run) / TRACKED).read_text()))


def load_trajectory(run: str | Path) -> np.ndarray:
    """trajectory.npy memory-mapped read-only: float32 (R, T, K); of a sharded run, the shards'
    concatenated along the runs (in memory)."""
    shards = shard_dirs(run)
    if shards:
        return np.concatenate([np.load(_require(d / TRAJECTORY), mmap_mode="r") for d in shards])
    return np.load(_require(Path(run) / TRAJECTORY), mmap_mode="r")


def rewrite_hint(path: Path) -> str:
    """What rewrites a derived file of a run: `socjax analyze` its run (a window's is its run's)."""
    run = path.parent.parent.parent if path.parent.parent.name == WINDOWS else path.parent
    return f"`socjax analyze {run}` rewrites it"


def _optional_json(path: Path, remedy: str | None = None) -> dict | None:
    """A JSON object of the run, or None when the file does not exist; a file that is not a JSON
    object (malformed, binary, a list) is one line, ending with `remedy` when one is given."""
    if not path.exists():
        return None
    tail = f"; {remedy}" if remedy else ""
    try:
        obj = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: malformed JSON ({e}){tail}") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: damaged (a JSON {type(obj).__name__}, not an object){tail}")
    return obj


def load_npz(path: Path, remedy: str) -> dict[str, np.ndarray]:
    """An .npz of numeric arrays as {name: array}; a file that is not one (truncated, empty, random
    bytes, an .npy, pickled objects) is one RunDirError line naming it and ending with `remedy`."""
    try:
        with open(path, "rb") as f:  # ours to close: np.load leaks its own on a damaged archive
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("an .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path}: damaged (not a readable .npz archive: {type(e).__name__}); {remedy}") from None
    odd = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
    if odd:
        raise RunDirError(f"{path}: damaged (non-numeric array {odd[0]!r}); {remedy}")
    return arrays


def read_progress(run: str | Path) -> dict | None:
    """progress.json (how much of the run is written: epochs_done, trajectory_rows, ...), or None
    for a directory without one (a minimal directory: every trajectory row counts as written). Of
    a sharded run: what every shard has written (the least of each count; None while one has none)."""
    shards = shard_dirs(run)
    if not shards:
        return _optional_json(Path(run) / PROGRESS)
    parts = [_optional_json(d / PROGRESS) for d in shards]
    if any(p is None for p in parts):
        return None
    return {k: (min(p[k] for p in parts) if all(isinstance(p.get(k), int) for p in parts) else parts[0][k])
            for k in parts[0]}


class TrajectoryReader:
    """trajectory.npy read in chunks of rows with explicit reads, not a memory map: a memory map's
    pages stay resident once touched (a 6 GB trajectory would hold 6 GB), this holds one chunk.
    start, rows: read only rows start..start+rows-1 of the file (a window, or the written rows of a
    partial run), as rows 0..rows-1; default all.

    Supports `.shape`, `.dtype`, `.ndim` and `reader[:, t0:t1, :]` -> (R, t1 - t0, K) ndarray.
    """

    def __init__(self, path: Path, rows: int | None = None, start: int = 0):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError("Fortran-ordered arrays are not supported")
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.file_steps = self.shape[1] if self.ndim == 3 else None
        self.start = start
        if self.ndim == 3:
            rows = self.file_steps - start if rows is None else rows
            if not (0 <= start and 0 <= rows and start + rows <= self.file_steps):
                raise ValueError(f"rows {start}..{start + rows - 1} of a file of {self.file_steps}")
            self.shape = (self.shape[0], rows, self.shape[2])

    def __getitem__(self, key) -> np.ndarray:
        if self.ndim != 3 or not (isinstance(key, tuple) and len(key) == 3 and key[0] == slice(None)
                                  and key[2] == slice(None) and isinstance(key[1], slice) and key[1].step in (None, 1)):
            raise TypeError("TrajectoryReader supports reader[:, t0:t1, :] only")
        runs, steps, k = self.shape
        t0, t1, _ = key[1].indices(steps)
        rows = max(t1 - t0, 0)
        out = np.empty((runs, rows, k), self.dtype)
        item = self.dtype.itemsize
        with open(self.path, "rb") as f:
            for r in range(runs):
                f.seek(self.offset + (r * self.file_steps + self.start + t0) * k * item)
                out[r] = np.fromfile(f, self.dtype, rows * k).reshape(rows, k)
        return out


class ShardedReader:
    """TrajectoryReaders of a sharded run's shards as one: reader[:, t0:t1, :] is their rows
    concatenated along the runs, in the sweep's order."""

    def __init__(self, readers: list):
        self.readers = readers
        first = readers[0]
        self.shape = (sum(r.shape[0] for r in readers), *first.shape[1:])
        self.dtype, self.ndim = first.dtype, first.ndim
        if any(r.shape[1:] != first.shape[1:] for r in readers):
            raise RunDirError(f"{first.path.parent.parent}: the shards' trajectories differ in shape "
                              f"({', '.join(str(r.shape) for r in readers)})")

    def __getitem__(self, key) -> np.ndarray:
        return np.concatenate([r[key] for r in self.readers])


def open_trajectory(run: str | Path, rows: int | None = None, start: int = 0) -> TrajectoryReader | ShardedReader:
    """trajectory.npy as a TrajectoryReader (bounded memory, for streaming analysis) of `rows`
    rows from row `start` (default all); of a sharded run, its shards' as one (`ShardedReader`)."""
    shards = shard_dirs(run)
    if shards:
        return ShardedReader([TrajectoryReader(_require(d / TRAJECTORY), rows, start) for d in shards])
    return TrajectoryReader(_require(Path(run) / TRAJECTORY), rows, start)


class ZeroGradReader:
    """zero_grad.npy's rows `start`..`start + rows - 1` unpacked: reader[:, t0:t1, :] is bool
    (R, t1 - t0, K), flag k of row t set when weight k's data-loss gradient was exactly 0 at every
    step of the increment ending at row t."""

    def __init__(self, paths: list[Path], rows: int | None, start: int, num_tracked: int):
        readers = [TrajectoryReader(path, rows, start) for path in paths]
        self.packed, self.k = readers[0] if len(readers) == 1 else ShardedReader(readers), num_tracked
        self.shape = (*self.packed.shape[:2], num_tracked)

    def __getitem__(self, key) -> np.ndarray:
        return np.unpackbits(self.packed[key], axis=-1, count=self.k).astype(bool)


def open_zero_grad(run: str | Path, num_tracked: int, rows: int | None = None, start: int = 0) -> ZeroGradReader | None:
    """zero_grad.npy as a ZeroGradReader of `rows` rows from `start`, or None for a run without it
    (the native step, or a run made before the flags were recorded)."""
    info = read_info(run)
    if not has(run, ZERO_GRAD) or not info.layout.get("zero_grad"):
        return None
    paths = [d / ZERO_GRAD for d in shard_dirs(run)] or [Path(run) / ZERO_GRAD]
    return ZeroGradReader(paths, rows, start, num_tracked)


def load_params(run: str | Path, which: str = "final") -> dict[str, np.ndarray]:
    """params_{init,final}.npz (which "init" or "final"), or another parameter file of the run
    (a window's, `window_params`), as {"w1": (R, 784, 700), "b1": (R, 700), ...}."""
    name = {"final": PARAMS_FINAL, "init": PARAMS_INIT}.get(which, which)
    shards = shard_dirs(run)
    if shards:
        parts = [load_params(d, name) for d in shards]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    path = _require(Path(run) / name)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_metrics(run: str | Path) -> dict:
    """metrics.json: {"epoch": [...], name: [[R values] per epoch], "timing": {...}}. Of a sharded
    run: the epochs every shard has, each epoch's values of every run in the sweep's order, and
    process 0's timing, with every process's under timing["processes"]."""
    shards = shard_dirs(run)
    if not shards:
        return json.loads(_require(Path(run) / METRICS).read_text())
    parts = [load_metrics(d) for d in shards]
    epochs = min(len(p["epoch"]) for p in parts)
    out = {"epoch": parts[0]["epoch"][:epochs]}
    for k in parts[0]:
        if k not in ("epoch", "timing"):
            out[k] = [sum((p[k][e] for p in parts), []) for e in range(epochs)]
    out["timing"] = dict(parts[0].get("timing", {}), processes=[p.get("timing", {}) for p in parts])
    return out


def load_analysis(run: str | Path) -> dict | None:
    """analysis.json as written by `socjax analyze`, or None when the run has none."""
    path = Path(run) / ANALYSIS
    return _optional_json(path, rewrite_hint(path))


def load_ages(run: str | Path) -> dict | None:
    """ages.json (the age table of a run with recording windows), or None when absent."""
    path = Path(run) / AGES
    return _optional_json(path, rewrite_hint(path))


def load_weight_stats(run: str | Path, cfg: RunConfig) -> dict[str, np.ndarray]:
    """weight_stats.npz of a run trained with --weight-stats, checked against its configuration: every
    per-element array present has the shape (runs, *element's shape). A damaged file is one line
    (it cannot be rebuilt: the statistics are gathered during training)."""
    remedy = "the statistics are gathered during training: train the run again with --weight-stats"
    shards = shard_dirs(run)
    if shards:  # every array but the shared edges has a leading run axis
        parts = [load_npz(_require(d / WEIGHT_STATS), remedy) for d in shards]
        stats = {k: parts[0][k] if k == "hist_edges" else np.concatenate([p[k] for p in parts]) for k in parts[0]}
        path = Path(run) / SHARDS / "*" / WEIGHT_STATS
    else:
        path = _require(Path(run) / WEIGHT_STATS)
        stats = load_npz(path, remedy)
    runs = len(list(cfg.runs()))
    sizes = cfg.model.sizes
    shapes = {f"w{l + 1}": (runs, sizes[l], sizes[l + 1]) for l in range(len(sizes) - 1)}
    shapes.update({f"b{l + 1}": (runs, sizes[l + 1]) for l in range(len(sizes) - 1)})
    for name, array in stats.items():
        element = name.rsplit("_", 1)[-1]
        if element in shapes and name != f"hist_{element}" and array.shape != shapes[element]:
            raise RunDirError(f"{path}: damaged ({name} has shape {array.shape}, the run's {element} is "
                              f"{shapes[element]}); {remedy}")
    if not any(name.rsplit("_", 1)[-1] in shapes for name in stats):
        raise RunDirError(f"{path}: damaged (no per-weight statistics); {remedy}")
    return stats


def not_final(run: str | Path) -> str | None:
    """Why `run` has no final state to prune, in one line (trained without --weight-stats, still
    training, stopped before its end), or None when params_final.npz and weight_stats.npz describe
    its end."""
    run = Path(run)
    cfg = read_info(run).config
    if cfg is not None and cfg.model.is_flax:
        return f"{run} trains --model {cfg.model.arch}; pruning ranks the weights of the paper's pure-function MLP"
    if cfg is not None and not cfg.weight_stats:
        return f"{run} was trained without --weight-stats: train it again with --weight-stats to prune by amplitude"
    done = (read_progress(run) or {}).get("epochs_done")
    if cfg is not None and done is not None and done < cfg.epochs:
        return (f"{run}: the run has not finished (epoch {done} of {cfg.epochs}); finish it with "
                f"`socjax train --resume {run}`, then prune it")
    if not has(run, WEIGHT_STATS):
        return f"{run} has no {WEIGHT_STATS}: train it with --weight-stats to prune by amplitude"
    if not has(run, PARAMS_FINAL):
        return f"{run} has no {PARAMS_FINAL}: the run has not finished"
    return None


def load_prune(out: str | Path) -> dict | None:
    """prune.json of a prune output directory (`socjax prune`'s --out, by default DIR/PRUNE_DIR),
    or None when absent; a damaged one is one line."""
    path = Path(out) / PRUNE_JSON
    result = _optional_json(path, "`socjax prune` rewrites it")
    if result is not None and not ({"criteria", "sparsities", "runs"} <= set(result)
                                   and ("groups" in result or "summary" in result)):
        raise RunDirError(f"{path}: damaged (not socjax prune's output); `socjax prune` rewrites it")
    return result


def prune_state(run: Path) -> dict:
    """What a prune describes, to tell a stale one: the SHA-256 of the parameters and weight
    statistics it read, and the run's epochs."""
    files = lambda name: [d / name for d in shard_dirs(run)] or [run / name]
    combined = lambda name: (digest(files(name)[0]) if len(files(name)) == 1 else  # a sharded run: of the shards' digests
                             hashlib.sha256("".join(digest(f) for f in files(name)).encode()).hexdigest())
    return dict(epochs_done=(read_progress(run) or {}).get("epochs_done"),
                params_final_sha256=combined(PARAMS_FINAL), weight_stats_sha256=combined(WEIGHT_STATS))


def prune_is_current(run: Path, result: dict) -> bool:
    """Whether prune.json's "state" is the run's now (an older prune.json without one: unknown, True)."""
    state = result.get("state")
    if state is None:
        return True
    try:
        return prune_state(run) == state
    except OSError:  # the parameters or statistics are gone: not the state it pruned
        return False


def prune_groups(result: dict) -> list[dict]:
    """The groups of settings of a prune.json, each pruned on its own seeds: its "groups", or the
    file itself for one written before groups (one group)."""
    return result["groups"] if "groups" in result else [result]


def prune_figures(result: dict) -> list[str]:
    """The figure file of each of `prune_groups(result)`: prune.png, or per group of a sweep
    prune_<label>.png (`figure_name`)."""
    groups = prune_groups(result)
    return [figure_name(PRUNE_FIGURE, None if len(groups) == 1 else g["label"]) for g in groups]


def load_arrays(run: str | Path) -> dict[str, np.ndarray]:
    """analysis.npz (what the figures are drawn from) as {name: array}; {} when absent."""
    path = Path(run) / ARRAYS
    return load_npz(path, rewrite_hint(path)) if path.exists() else {}


def load_order(run: str | Path) -> np.ndarray:
    shards = shard_dirs(run)
    if shards:
        return np.concatenate([np.load(_require(d / ORDER), mmap_mode="r") for d in shards])
    return np.load(_require(Path(run) / ORDER), mmap_mode="r")
