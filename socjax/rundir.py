"""The run directory: the one module that knows its files, writes them and reads them.

    config.json         resolved RunConfig (+ "runs": seed/lr/l2 of each run), the recording layout
                        ("trajectory": first_step, stride, steps, ...), data source, socjax/jax
                        versions, backend, device
    tracked.json        [{"layer": 1-based, "row": r, "col": c}, ...]: column k of trajectory.npy
    params_init.npz     w1, b1, w2, b2, w3, b3, each with a leading run axis: w1 (R, 784, 700)
    params_final.npz    same, after the last epoch (written once training ends)
    trajectory.npy      float32 (R, T, K): tracked weight k of run r after global SGD step
                        first_step + t * stride (steps counted from 1); a preallocated .npy,
                        filled chunk by chunk, opened with np.load(..., mmap_mode="r")
    metrics.json        {"epoch": [...], "train_loss": [[R] per epoch], ..., "timing": {...}},
                        rewritten after every chunk, so a crash keeps every finished epoch
    order.npy           (with --save-order) int32 (R, steps): example index of each SGD step
    weight_stats.npz    (with --weight-stats) running statistics of every weight's increments
                        over the recorded phase (see socjax.weight_stats)
    checkpoint.npz      the training state to resume from (socjax.checkpoint's format), with the
                        finished epochs and the metrics so far

Writing: `RunWriter` (create, or reopen for resume; append a chunk's outputs; checkpoint; finish).
Every file goes through `safe_write`: a temporary file in the same directory, fsync, rename, fsync
of the directory, so a crash leaves the old file or the new one, never a torn one. The trajectory
and order rows a checkpoint refers to are flushed and fsynced before it is written. A write that
fails (disk full, read-only) raises one RunDirError line naming the last intact checkpoint.

Reading: `read_info` (config.json, typed), `load_*`, `open_trajectory` (bounded memory). Anything
downstream (analysis, plots, report) reads a run through this module and nothing else.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, NamedTuple

import numpy as np

from socjax import checkpoint
from socjax.config import ConfigError, RunConfig, TrackedWeight

CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL = "config.json", "tracked.json", "params_init.npz", "params_final.npz"
TRAJECTORY, METRICS, ORDER = "trajectory.npy", "metrics.json", "order.npy"
WEIGHT_STATS, CHECKPOINT = "weight_stats.npz", "checkpoint.npz"
RUN_FILES = (CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL, TRAJECTORY, METRICS, ORDER, WEIGHT_STATS)


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
    if out.is_dir():
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present:
            raise RunDirError(f"{out}: already holds a run ({present[0]}); choose another --out")
    return out


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


def layout(cfg: RunConfig, steps_per_epoch: int, num_test: int) -> dict:
    """config.json's "trajectory" section: where the recorded rows sit among the SGD steps."""
    n = steps_per_epoch
    return dict(first_step=cfg.epochs_equilibrate * n + cfg.stride, stride=cfg.stride,
                steps=cfg.epochs_record * n // cfg.stride, steps_per_epoch=n, num_train=n,
                num_test=num_test, num_runs=len(cfg.runs()))


def open_array(path: Path, dtype, shape) -> np.memmap:
    """A preallocated .npy on disk, opened for writing chunk by chunk (np.load mmap-compatible)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _grow(path: Path, shape) -> np.memmap:
    """A run's .npy (runs, steps, ...) reopened for writing; grown along the steps axis (copied
    into a larger file, then renamed over it) when --epochs extends the run."""
    old = np.load(path, mmap_mode="r")
    if old.shape == tuple(shape):
        del old
        return np.load(path, mmap_mode="r+")
    if old.shape[0] != shape[0] or old.shape[2:] != tuple(shape[2:]) or old.shape[1] > shape[1]:
        raise RunDirError(f"{path}: shape {old.shape} cannot grow to {tuple(shape)}")
    tmp = path.with_name(f".{path.name}.grow")
    new = open_array(tmp, old.dtype, shape)
    step = 1 << 20
    for t0 in range(0, old.shape[1], step):
        t1 = min(t0 + step, old.shape[1])
        new[:, t0:t1] = old[:, t0:t1]
    new.flush()
    del old, new
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r+")


def _write_config(out: Path, cfg: RunConfig, layout: dict, source: str) -> None:
    write_json(out / CONFIG, dict(config=cfg.to_json(), trajectory=layout, data_source=source,
                                  environment=environment()))


def _new_metrics() -> dict:
    return {"epoch": [], "timing": {"compile_seconds": [], "chunk_end_epoch": [], "chunk_seconds": []}}


class RunWriter:
    """Writes one run directory while it trains. `epoch`: epochs whose outputs are written;
    `checkpointed`: the epoch of the last checkpoint written (what a failed write says is intact)."""

    def __init__(self, out: Path, cfg: RunConfig, layout: dict, trajectory, order, metrics: dict, epoch: int):
        self.out, self.cfg, self.layout = out, cfg, layout
        self.trajectory, self.order, self.metrics = trajectory, order, metrics
        self.epoch = self.checkpointed = epoch

    # The one place where an OSError becomes a one-line error.
    def _io(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            raise RunDirError(f"{self.out}: cannot write ({e.strerror or e}); the last checkpoint "
                              f"(epoch {self.checkpointed}) is intact") from None

    @classmethod
    def create(cls, out: Path, cfg: RunConfig, layout: dict, source: str, tracked: tuple[TrackedWeight, ...],
               params_init: Mapping[str, np.ndarray]) -> "RunWriter":
        """A new run directory with its config, tracked weights, initial parameters and
        preallocated trajectory (and order) files."""
        out = check_new(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{out}: cannot create ({e.strerror})") from None
        if not os.access(out, os.W_OK):
            raise RunDirError(f"{out}: not writable")
        w = cls(out, cfg, layout, None, None, _new_metrics(), 0)

        def write():
            _write_config(out, cfg, layout, source)
            write_json(out / TRACKED, [dict(layer=t.layer, row=t.row, col=t.col) for t in tracked])
            write_npz(out / PARAMS_INIT, params_init)
            w.trajectory = open_array(out / TRAJECTORY, np.float32, (layout["num_runs"], layout["steps"], len(tracked)))
            if cfg.save_order:
                w.order = open_array(out / ORDER, np.int32, (layout["num_runs"], cfg.epochs * layout["steps_per_epoch"]))

        w._io(write)
        return w

    @classmethod
    def reopen(cls, out: Path, cfg: RunConfig, layout: dict, source: str, template) -> tuple["RunWriter", Any]:
        """Continue the run in `out` from its checkpoint: (writer, state restored into `template`'s
        structure on the host). A longer run grows the trajectory and order files."""
        state, epoch, metrics = load_checkpoint(out, template)
        num_runs, n = layout["num_runs"], layout["steps_per_epoch"]
        trajectory = _grow(out / TRAJECTORY, (num_runs, layout["steps"], len(load_tracked(out))))
        order = _grow(out / ORDER, (num_runs, cfg.epochs * n)) if cfg.save_order else None
        w = cls(out, cfg, layout, trajectory, order, metrics, epoch)
        w._io(_write_config, out, cfg, layout, source)  # a longer run changes the layout
        return w, state

    def compiled(self, seconds: float) -> None:
        """Note the compile time of this session (written with the next chunk)."""
        self.metrics["timing"]["compile_seconds"].append(seconds)

    def append(self, metrics: Mapping[str, np.ndarray], trajectory: np.ndarray | None, order: np.ndarray | None,
               seconds: float) -> None:
        """Write a chunk's outputs, following `self.epoch`: metrics {name: (R, E)}, trajectory rows
        (R, T, K) of recorded epochs, order (R, E, N); then flush and fsync them, so a checkpoint
        written after this can refer to them. `seconds`: the chunk's wall time."""
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
                row = (first - self.cfg.epochs_equilibrate) * n // self.cfg.stride
                self.trajectory[:, row : row + trajectory.shape[1]] = trajectory
            if order is not None:
                self.order[:, first * n : (first + num_epochs) * n] = order.reshape(order.shape[0], -1)
            for arr in (self.trajectory, self.order):
                if arr is not None:
                    arr.flush()
                    with open(arr.filename, "rb+") as f:
                        os.fsync(f.fileno())
            write_json(self.out / METRICS, m)

        self._io(write)
        self.epoch = first + num_epochs

    def checkpoint(self, state) -> None:
        """checkpoint.npz: `state` (any pytree) after `self.epoch` epochs, with the metrics so far."""
        user = dict(epochs_done=self.epoch, metrics=self.metrics)
        self._io(save_checkpoint, self.out, state, user)
        self.checkpointed = self.epoch

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
    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise RunDirError(f"{out}: no {CHECKPOINT} to resume from")
    return path


def load_checkpoint(out: Path, template) -> tuple[Any, int, dict]:
    """(state restored into `template`'s structure, finished epochs, metrics) from DIR/checkpoint.npz."""
    path = require_checkpoint(out)
    state, user = checkpoint.read(path, template, name=str(path))
    return state, int(user["epochs_done"]), user["metrics"]


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
    return tuple(TrackedWeight(**t) for t in json.loads(_require(Path(run) / TRACKED).read_text()))


def load_trajectory(run: str | Path) -> np.ndarray:
    """trajectory.npy memory-mapped read-only: float32 (R, T, K)."""
    return np.load(_require(Path(run) / TRAJECTORY), mmap_mode="r")


class TrajectoryReader:
    """trajectory.npy read in chunks of rows with explicit reads, not a memory map: a memory map's
    pages stay resident once touched (a 6 GB trajectory would hold 6 GB), this holds one chunk.

    Supports `.shape`, `.dtype`, `.ndim` and `reader[:, t0:t1, :]` -> (R, t1 - t0, K) ndarray.
    """

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError("Fortran-ordered arrays are not supported")
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

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
                f.seek(self.offset + (r * steps + t0) * k * item)
                out[r] = np.fromfile(f, self.dtype, rows * k).reshape(rows, k)
        return out


def open_trajectory(run: str | Path) -> TrajectoryReader:
    """trajectory.npy as a TrajectoryReader (bounded memory, for streaming analysis)."""
    return TrajectoryReader(_require(Path(run) / TRAJECTORY))


def load_params(run: str | Path, which: str = "final") -> dict[str, np.ndarray]:
    """params_{init,final}.npz as {"w1": (R, 784, 700), "b1": (R, 700), ...}."""
    path = _require(Path(run) / (PARAMS_FINAL if which == "final" else PARAMS_INIT))
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_metrics(run: str | Path) -> dict:
    return json.loads(_require(Path(run) / METRICS).read_text())


def load_order(run: str | Path) -> np.ndarray:
    return np.load(_require(Path(run) / ORDER), mmap_mode="r")
