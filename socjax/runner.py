"""The host loop: load data, compile, run chunks of epochs on the device, write the run directory.

This is the thin boundary between Python and the compiled trainer. Each chunk is dispatched before
the previous chunk's outputs are copied to the host and written, so disk I/O overlaps compute.
After every chunk, metrics.json is rewritten atomically and the trajectory rows are flushed, so an
interrupted run keeps every finished epoch.

Long runs: a checkpoint (socjax.checkpoint) is written every `checkpoint_epochs` epochs or
`checkpoint_minutes` minutes, whichever comes first, and after the last chunk; `resume=True`
continues from it, bitwise identically to a run that was never interrupted. SIGINT and SIGTERM
stop the run after the chunk in flight, with a checkpoint. A non-finite loss or parameter stops
the run at the end of its chunk, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from socjax import checkpoint, data, model, rundir, train, weight_stats
from socjax.config import ConfigError, RunConfig, validate


class Interrupted(Exception):
    """The run stopped on SIGINT/SIGTERM after writing a checkpoint; str() says how to resume."""


class Diverged(Exception):
    """A run's loss or parameters became non-finite; str() names the epoch and the run."""


def chunk_plan(cfg: RunConfig, start_epoch: int = 0) -> list[tuple[bool, int]]:
    """[(record, num_epochs), ...] from `start_epoch` on: equilibration then recording, in
    chunk_epochs pieces. Chunking does not change results (the example order is per global epoch)."""
    plan = []
    epoch = start_epoch
    for record, end in ((False, cfg.epochs_equilibrate), (True, cfg.epochs)):
        while epoch < end:
            e = min(cfg.chunk_epochs, end - epoch)
            plan.append((record, e))
            epoch += e
    return plan


def _layout(cfg: RunConfig, n: int, num_test: int, num_runs: int) -> dict:
    return dict(first_step=cfg.epochs_equilibrate * n + cfg.stride, stride=cfg.stride,
                steps=cfg.epochs_record * n // cfg.stride, steps_per_epoch=n, num_train=n,
                num_test=num_test, num_runs=num_runs)


def _load_data(cfg: RunConfig):
    raw, source = data.load_raw(cfg.dataset, cfg.data_dir)
    dataset = data.decode(raw, cfg.pixel_scale, cfg.train_limit)
    validate(cfg, dataset.train_x.shape[0])
    return dataset, source


def resume_config(out: str | Path, epochs: int | None = None) -> RunConfig:
    """The configuration of the run in `out`, with a longer total of `epochs` if given (the extra
    epochs are recorded). Refuses anything else."""
    out = Path(out)
    if not (out / checkpoint.CHECKPOINT).exists():
        raise ConfigError(f"{out}: no {checkpoint.CHECKPOINT} to resume from")
    cfg = RunConfig.from_json(rundir.load_config(out)["config"])
    if epochs is not None:
        if epochs < cfg.epochs:
            raise ConfigError(f"--epochs {epochs} is shorter than the run's {cfg.epochs}; resume can only extend a run")
        cfg = dataclasses.replace(cfg, epochs_record=cfg.epochs_record + epochs - cfg.epochs)
    return cfg


def run(cfg: RunConfig, out: str | Path, progress: bool = True, resume: bool = False,
        checkpoint_epochs: int | None = None, checkpoint_minutes: float = 10.0) -> Path:
    """Train every run of `cfg` and write the run directory `out`. Returns its path.

    resume: continue the run in `out` from its checkpoint (cfg from `resume_config`).
    checkpoint_epochs: checkpoint after every this many epochs (default: only by time and at the end).
    Raises ConfigError (or a subclass) for bad input before anything is compiled or written,
    Interrupted on SIGINT/SIGTERM and Diverged on non-finite values, each after saving what it can.
    """
    validate(cfg)
    out = Path(out)
    if not resume:
        rundir.check_new(out)
    dataset, source = _load_data(cfg)
    n = dataset.train_x.shape[0]
    tracked = cfg.track_weights or train.select_tracked(cfg.model.sizes, cfg.track, cfg.track_seed)
    runs = cfg.runs()
    num_runs, num_tracked = len(runs), len(tracked)
    layout = _layout(cfg, n, int(dataset.test_x.shape[0]), num_runs)
    hyper = train.Hyper(jnp.asarray([lr for _, lr, _ in runs], jnp.float32),
                        jnp.asarray([l2 for _, _, l2 in runs], jnp.float32))

    if resume:
        host, epoch, metrics = checkpoint.load(out, cfg.model, num_runs)
        state = jax.device_put(host)
        trajectory = _reopen(out / rundir.TRAJECTORY, (num_runs, layout["steps"], num_tracked))
        order = _reopen(out / rundir.ORDER, (num_runs, cfg.epochs * n)) if cfg.save_order else None
        rundir.write_config(out, cfg, layout, source)  # a longer --epochs changes the layout
    else:
        out = rundir.create(out)
        rundir.write_config(out, cfg, layout, source)
        rundir.write_tracked(out, tracked)
        state = train.init_runs([s for s, _, _ in runs], cfg.model)
        rundir.write_params(out / rundir.PARAMS_INIT, model.to_named(jax.device_get(state.params)))
        trajectory = rundir.open_array(out / rundir.TRAJECTORY, np.float32, (num_runs, layout["steps"], num_tracked))
        order = (rundir.open_array(out / rundir.ORDER, np.int32, (num_runs, cfg.epochs * n))
                 if cfg.save_order else None)
        epoch, metrics = 0, {k: [] for k in ("epoch", *train.EpochMetrics._fields)}

    state = _shard(state)
    device_data = jax.device_put(dataset)
    compiled = {}
    bar = _progress(cfg.epochs, progress, initial=epoch)
    bar.set_description("compiling")  # the first chunk's steps/s includes compilation
    t_last = time.perf_counter()
    last_checkpoint = (epoch, time.monotonic())
    stop = _StopSignal()

    def write(first_epoch: int, record: bool, num_epochs: int, result: train.ChunkOutput, ckpt):
        nonlocal t_last, last_checkpoint
        result = jax.device_get(result)
        for e in range(num_epochs):
            metrics["epoch"].append(first_epoch + e + 1)
            for k in train.EpochMetrics._fields:
                metrics[k].append([float(v) for v in getattr(result.metrics, k)[:, e]])
        if record and num_tracked:
            row = (first_epoch - cfg.epochs_equilibrate) * n // cfg.stride
            trajectory[:, row : row + result.trajectory.shape[1]] = result.trajectory
        if order is not None:
            order[:, first_epoch * n : (first_epoch + num_epochs) * n] = result.order.reshape(num_runs, -1)
        _durable(out, trajectory, order, metrics)
        bad = np.flatnonzero(~np.asarray(result.finite))
        if bad.size:
            raise Diverged(
                f"non-finite loss or parameters in epochs {first_epoch + 1}-{first_epoch + num_epochs} of run(s) "
                + ", ".join(f"{r} (seed {runs[r][0]}, lr {runs[r][1]:g}, l2 {runs[r][2]:g})" for r in bad)
                + f"; the last good checkpoint (epoch {last_checkpoint[0]}) is kept in {out}"
            )
        if ckpt is not None:
            _io(lambda: checkpoint.save(out, ckpt, first_epoch + num_epochs, metrics), out, last_checkpoint[0])
            last_checkpoint = (first_epoch + num_epochs, time.monotonic())
        now = time.perf_counter()
        bar.set_description("training")
        bar.update(num_epochs)
        bar.set_postfix(
            steps_per_s=f"{num_runs * num_epochs * n / (now - t_last):,.0f}",
            test_loss=f"{np.nanmean(metrics['test_loss'][-1]):.4f}",
            test_acc=f"{np.nanmean(metrics['test_acc'][-1]):.4f}",
        )
        t_last = now

    def save_final():
        _io(lambda: rundir.write_params(out / rundir.PARAMS_FINAL, model.to_named(jax.device_get(state.params))),
            out, last_checkpoint[0])

    pending = None
    plan = chunk_plan(cfg, epoch)
    try:
        with stop:
            for i, (record, num_epochs) in enumerate(plan):
                if record and cfg.weight_stats and state.stats is None:
                    state = state._replace(stats=jax.vmap(weight_stats.init)(state.params))
                key = (record, num_epochs)
                if key not in compiled:
                    spec = train.TrainSpec(cfg.model, tracked, cfg.stride, record, cfg.save_order,
                                           weight_stats=cfg.weight_stats)
                    compiled[key] = train.make_train_chunk(spec, num_epochs)
                state, result = compiled[key](state, hyper, device_data)
                epoch += num_epochs
                due = (i == len(plan) - 1 or stop.requested
                       or (checkpoint_epochs is not None and epoch - last_checkpoint[0] >= checkpoint_epochs)
                       or time.monotonic() - last_checkpoint[1] >= 60 * checkpoint_minutes)
                # a host copy now: the next call donates (overwrites) this state's buffers
                ckpt = checkpoint.host_state(state) if due else None
                if pending is not None:
                    write(*pending)
                pending = (epoch - num_epochs, record, num_epochs, result, ckpt)
                if stop.requested:
                    break
            if pending is not None:
                write(*pending)
    except Diverged:
        save_final()
        raise
    finally:
        bar.close()
    if stop.requested and epoch < cfg.epochs:
        raise Interrupted(f"stopped by {stop.name} after epoch {epoch} of {cfg.epochs}, checkpoint written; "
                          f"continue with: socjax train --resume {out}")
    save_final()
    if state.stats is not None:
        _io(lambda: rundir.write_params(out / rundir.WEIGHT_STATS, weight_stats.to_arrays(jax.device_get(state.stats))),
            out, last_checkpoint[0])
    return out


def _durable(out: Path, trajectory, order, metrics) -> None:
    """Flush the chunk's rows and metrics to disk (fsync) before any checkpoint refers to them."""
    def write():
        for arr in (trajectory, order):
            if arr is not None:
                arr.flush()
                with open(arr.filename, "rb+") as f:
                    os.fsync(f.fileno())
        rundir.write_json(out / rundir.METRICS, metrics)
    _io(write, out, None)


def _io(fn, out: Path, last_epoch: int | None):
    """Run a write; turn an OSError (disk full, read-only) into one line naming what is intact."""
    try:
        return fn()
    except OSError as e:
        kept = "" if last_epoch is None else f"; the last checkpoint (epoch {last_epoch}) is intact"
        raise rundir.RunDirError(f"{out}: cannot write ({e.strerror or e}){kept}") from None


def _reopen(path: Path, shape) -> np.memmap:
    """A run's .npy (runs, steps, ...) reopened for writing; grown along the steps axis (copied
    into a larger file, then renamed over it) when --epochs extends the run."""
    old = np.load(path, mmap_mode="r")
    if old.shape == tuple(shape):
        del old
        return np.load(path, mmap_mode="r+")
    if old.shape[0] != shape[0] or old.shape[2:] != tuple(shape[2:]) or old.shape[1] > shape[1]:
        raise ConfigError(f"{path}: shape {old.shape} cannot grow to {tuple(shape)}")
    tmp = path.with_name(f".{path.name}.grow")
    new = rundir.open_array(tmp, old.dtype, shape)
    step = 1 << 20
    for t0 in range(0, old.shape[1], step):
        t1 = min(t0 + step, old.shape[1])
        new[:, t0:t1] = old[:, t0:t1]
    new.flush()
    del old, new
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r+")


def _shard(state: train.TrainState) -> train.TrainState:
    """With several devices, put the runs axis of the state across them (a 'seeds' mesh axis);
    the vmapped trainer then runs each device's runs there. Unchanged on one device or when the
    number of runs does not divide evenly."""
    devices = jax.devices()
    num_runs = jax.tree.leaves(state.params)[0].shape[0]
    if len(devices) < 2 or num_runs % len(devices):
        return jax.device_put(state)
    mesh = jax.sharding.Mesh(np.array(devices), ("seeds",))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    return jax.device_put(state, spec)


class _StopSignal:
    """While active, SIGINT/SIGTERM set `requested` instead of killing the process."""

    def __init__(self):
        self.requested, self.name, self._old = False, None, {}

    def _handler(self, signum, frame):
        self.requested, self.name = True, signal.Signals(signum).name

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _progress(total: int, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", disable=not enabled, dynamic_ncols=True)
