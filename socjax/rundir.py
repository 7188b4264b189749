"""The run directory: the one place that reads and writes its files.

    config.json         resolved RunConfig (+ "runs": seed/lr/l2 of each run), the recording layout
                        ("trajectory": first_step, stride, steps), socjax/jax versions, backend, device
    tracked.json        [{"layer": 1-based, "row": r, "col": c}, ...]: column k of trajectory.npy
    params_init.npz     w1, b1, w2, b2, w3, b3, each with a leading run axis: w1 (R, 784, 700)
    params_final.npz    same, after the last epoch (written once training ends)
    trajectory.npy      float32 (R, T, K): tracked weight k of run r after global SGD step
                        first_step + t * stride (steps counted from 1); a preallocated .npy,
                        filled chunk by chunk, opened with np.load(..., mmap_mode="r")
    metrics.json        {"epoch": [...], "train_loss": [[R] per epoch], ...}, rewritten after
                        every chunk (atomically), so a crash keeps every finished epoch
    order.npy           (with --save-order) int32 (R, steps): example index of each SGD step
    weight_stats.npz    (with --weight-stats) running statistics of every weight's increments
                        over the recorded phase (see socjax.weight_stats)
    checkpoint.npz      the state to resume from (see socjax.checkpoint)

Anything downstream (analysis, plots) reads a run through `load_*` here and nothing else.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from socjax.config import ConfigError, RunConfig, TrackedWeight

CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL = "config.json", "tracked.json", "params_init.npz", "params_final.npz"
TRAJECTORY, METRICS, ORDER = "trajectory.npy", "metrics.json", "order.npy"
WEIGHT_STATS = "weight_stats.npz"
RUN_FILES = (CONFIG, TRACKED, PARAMS_INIT, PARAMS_FINAL, TRAJECTORY, METRICS, ORDER, WEIGHT_STATS)


class RunDirError(ConfigError):
    """A run directory that cannot be created or read."""


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


def create(out: str | Path) -> Path:
    out = check_new(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{out}: cannot create ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise RunDirError(f"{out}: not writable")
    return out


def write_json(path: Path, obj) -> None:
    """Write JSON atomically: a temporary file in the same directory, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def write_config(out: Path, cfg: RunConfig, layout: dict, data_source: str) -> None:
    write_json(
        out / CONFIG,
        dict(config=cfg.to_json(), trajectory=layout, data_source=data_source, environment=environment()),
    )


def write_tracked(out: Path, tracked: tuple[TrackedWeight, ...]) -> None:
    write_json(out / TRACKED, [dict(layer=t.layer, row=t.row, col=t.col) for t in tracked])


def write_params(path: Path, named: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in named.items()})
    os.replace(tmp, path)


def open_array(path: Path, dtype, shape) -> np.memmap:
    """A preallocated .npy on disk, opened for writing chunk by chunk (np.load mmap-compatible)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


# --- reading -------------------------------------------------------------------------------------


def _require(path: Path) -> Path:
    if not path.exists():
        raise RunDirError(f"{path}: missing from the run directory")
    return path


def load_config(run: str | Path) -> dict:
    """config.json as a dict; `RunConfig.from_json(d["config"])` gives the RunConfig."""
    try:
        return json.loads(_require(Path(run) / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{Path(run) / CONFIG}: malformed JSON ({e})") from None


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
