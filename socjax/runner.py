"""The host loop: plan -> compile -> dispatch -> write -> progress, around the compiled trainer.

`run(cfg, out)` has two phases.

Start-up writes nothing a run depends on: it resolves `--step auto` (socjax.step.choose), locks
the directory (rundir.RunLock), loads the data, builds (or, on resume, reads and checks) the
state, plans the chunks of epochs (equilibration, then recording) and compiles each distinct
chunk once ahead of time (timed). A failure or a SIGINT/SIGTERM here ends with one line and
leaves no run directory (a new run: what was made is removed) or the run directory as it was (a
resume).

Training then sets up the directory (a checkpoint at epoch 0 comes last, so a directory that has
one is resumable) and dispatches the chunks one after another. Chunk i + 1 is dispatched before
chunk i's outputs are copied to the host and written (socjax.rundir.RunWriter), so disk I/O
overlaps compute; every finished epoch is on disk and counted in progress.json.

Long runs: a checkpoint is written every `checkpoint_epochs` epochs or `checkpoint_minutes`
minutes, whichever comes first, and after the last chunk written; `resume=True` continues from
it, bitwise identically to a run that was never interrupted, after checking that config.json and
tracked.json are what the checkpoint was written with. SIGINT and SIGTERM stop the run after the
chunk in flight, which is written and checkpointed (Interrupted). A non-finite loss or parameter
stops the run at the end of its chunk, keeping the last good checkpoint and writing every run's
final parameters (Diverged). A failed write is one RunDirError line (socjax.rundir).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from socjax import config, data, model, rundir, step, train, weight_stats
from socjax.config import RunConfig
from socjax.interrupt import Interrupted, StopSignal

__all__ = ["Chunk", "Diverged", "Interrupted", "chunk_plan", "chunks", "resume_config", "run"]


class Diverged(Exception):
    """A run's loss or parameters became non-finite; str() names the epoch and the run."""


class Chunk(NamedTuple):
    """One compiled call: `epochs` epochs, recording or not; stats: accumulating --weight-stats
    (the final recording only, not the windows before it)."""

    record: bool
    epochs: int
    stats: bool = False


def chunk_plan(cfg: RunConfig, start_epoch: int = 0) -> list[tuple[Chunk, int]]:
    """The chunks from `start_epoch` on, as (chunk, how many in a row): each stretch of epochs
    that records alike (unrecorded, a window, the final recording) in chunk_epochs pieces, so a
    chunk never crosses a window's edge, even inside the final recording (at most two entries per
    stretch, however many epochs).
    Chunking does not change results (the example order is per global epoch)."""
    recorded = cfg.recorded()
    # a window inside the final recording records with it, but its end still ends a chunk: the
    # parameters there are saved (params_age{A}.npz)
    windows = [(a, a + cfg.window_epochs) for a in cfg.record_windows]
    edges = sorted({0, cfg.epochs, *(e for span in recorded + windows for e in span)})
    plan = []
    for begin, end in zip(edges, edges[1:]):
        begin = max(begin, start_epoch)
        if begin >= end:
            continue
        record = any(a <= begin < b for a, b in recorded)
        stats = record and cfg.weight_stats and begin >= cfg.epochs_equilibrate
        full, rest = divmod(end - begin, cfg.chunk_epochs)
        plan += [(Chunk(record, cfg.chunk_epochs, stats), full)] if full else []
        plan += [(Chunk(record, rest, stats), 1)] if rest else []
    return plan


def chunks(plan: list[tuple[Chunk, int]]) -> Iterator[Chunk]:
    """The chunks of a plan, one by one."""
    for chunk, count in plan:
        for _ in range(count):
            yield chunk


def resume_config(out: str | Path, epochs: int | None = None) -> RunConfig:
    """The configuration of the run in `out`, extended to `epochs` in total if given (a sharded
    run's: the whole sweep's; each shard's checkpoint is checked when it is resumed)."""
    if rundir.read_shards(out) is None:
        rundir.require_checkpoint(out)  # before reading anything else, as load_checkpoint will
    cfg = rundir.read_info(out).config
    if cfg is None:
        raise rundir.RunDirError(f"{out}: config.json holds no run configuration to resume")
    return config.extend(cfg, epochs)


def run(cfg: RunConfig, out: str | Path, progress: bool = True, resume: bool = False,
        checkpoint_epochs: int | None = None, checkpoint_minutes: float = 10.0, stop: StopSignal | None = None,
        ready: Callable[["_StartUp"], None] | None = None, resume_hint: str | None = None) -> Path:
    """Train every run of `cfg` and write the run directory `out`. Returns its path.

    resume: continue the run in `out` from its checkpoint (cfg from `resume_config`).
    checkpoint_epochs: checkpoint after every this many epochs (default: only by time and at the end).
    stop: an active StopSignal (the CLI starts one before it imports JAX); default: one of its own.
    ready(start): called once start-up is done (data, state, compiled chunks), before anything is
    written; an exception from it ends the start-up as any other (socjax.distributed: the processes
    of a sharded run meet there). resume_hint: how to continue the run, for the messages (default
    "socjax train --resume OUT").
    Raises ConfigError (or a subclass) for bad input before anything is written (RunDirError for a
    directory another process is writing, a changed config.json, too little disk space),
    Interrupted on SIGINT/SIGTERM and Diverged on non-finite values, each after saving what it can.
    """
    out = Path(out)
    hint = resume_hint or f"socjax train --resume {out}"
    if not (checkpoint_minutes > 0 and math.isfinite(checkpoint_minutes)):
        raise config.ConfigError(f"checkpoint_minutes must be positive and finite, got {checkpoint_minutes}")
    if not resume:
        rundir.check_new(out)
    elif (shards := rundir.read_shards(out)) is not None and cfg.shard is None:
        raise rundir.RunDirError(f"{out}: trained by {len(shards)} processes ({rundir.SHARDS}/); resume it with as many: "
                                 f"socjax launch --processes {len(shards)} -- train --resume {out}")
    with contextlib.nullcontext(stop) if stop is not None else StopSignal() as stop:
        if resume:
            stop.kept = f"the run in {out} is unchanged; continue with: {hint}"
        lock = bar = None
        try:
            stop.check()
            model.check(cfg)  # a flax model: builds, maps an example to the classes, has the tracked weights
            cfg, note = step.choose(cfg)  # "auto" -> native or xla; may build the kernel (seconds, once)
            stop.check()
            lock = rundir.RunLock(out, create=not resume)
            start = _start_up(cfg, out, resume, stop)
            if note:  # once the input is known good, so that an error stays one line
                print(f"socjax: {note}", file=sys.stderr)
            bar = _Progress(cfg.epochs, start.epoch, start.steps_per_epoch, progress)  # says "compiling"
            t = time.perf_counter()
            compiled = {}
            for c, _ in start.plan:
                compiled[c] = _compile(cfg, start, c)
                stop.check()
            compile_seconds = time.perf_counter() - t
            if ready is not None:
                ready(start)
            writer = start.open_writer()  # a signal from here on stops the run after the chunk in flight
        except BaseException:
            if bar is not None:
                bar.close()
            if lock is not None:
                lock.release() if resume else lock.discard()
            raise
        try:
            writer.compiled(compile_seconds)
            with bar:
                _train(cfg, writer, start, compiled, stop, bar, checkpoint_epochs, checkpoint_minutes, hint)
        finally:
            lock.release()
    return out


class _StartUp(NamedTuple):
    """What start-up prepared; none of it is on disk yet."""

    state: train.TrainState  # on the device(s), sharded
    hyper: train.Hyper
    dataset: data.Dataset  # on the device
    tracked: tuple
    epoch: int  # epochs already done (a resume's checkpoint)
    plan: list[tuple[Chunk, int]]
    steps_per_epoch: int  # over all runs, for the progress bar
    zero_grad: bool  # record the zero-gradient flags (rundir.layout's "zero_grad")
    open_writer: Callable[[], rundir.RunWriter]  # creates, or reopens, the run directory
    cfg: RunConfig  # the configuration trained, its step resolved
    layout: dict  # config.json's "trajectory" section (`rundir.layout`)
    source: str  # the data source, as config.json names it


def _start_up(cfg: RunConfig, out: Path, resume: bool, stop: StopSignal) -> _StartUp:
    if resume:
        rundir.check_binding(out, cfg)
    with stop.at_once():  # NumPy only: safe to interrupt anywhere (a long tfds download, say)
        dataset, source = _load_data(cfg)
    layout = rundir.layout(cfg, dataset.train_x.shape[0], int(dataset.test_x.shape[0]))
    if resume:  # the flags are recorded from a run's start or not at all (runs made before them)
        layout["zero_grad"] = bool(rundir.read_info(out).layout.get("zero_grad"))
    seeds = [s for s, _, _ in cfg.runs()]
    if resume:
        tracked = rundir.load_tracked(out)
        template = jax.eval_shape(lambda: train.init_runs(seeds, cfg.model, cfg.weight_stats, cfg.optimizer))
        state, epoch, metrics = rundir.load_checkpoint(out, template)
        rundir.check_resumable(out, cfg, layout, len(tracked))
        if epoch >= cfg.epochs and (out / rundir.PARAMS_FINAL).exists():
            raise rundir.RunDirError(f"{out}: the run is complete ({epoch} of {cfg.epochs} epochs); to extend it, "
                                     "give a longer --epochs")
    else:
        tracked = cfg.track_weights or train.select_tracked(cfg.model, cfg.track, cfg.track_seed)
        state, epoch = train.init_runs(seeds, cfg.model, cfg.weight_stats, cfg.optimizer), 0
    rundir.check_space(out, cfg, layout, len(tracked))
    stop.check()
    state, hyper, device_data = _shard(state), _hyper(cfg), jax.device_put(dataset)
    if resume:
        open_writer = lambda: rundir.RunWriter.reopen(out, cfg, layout, source, tracked, epoch, metrics)
    else:
        open_writer = lambda: rundir.RunWriter.create(out, cfg, layout, source, tracked, _named(state.params), state)
    return _StartUp(state, hyper, device_data, tuple(tracked), epoch, chunk_plan(cfg, epoch),
                    len(seeds) * layout["steps_per_epoch"], layout["zero_grad"],
                    open_writer, cfg, layout, source)


def _train(cfg: RunConfig, writer: rundir.RunWriter, start: _StartUp, compiled: dict,
           stop: StopSignal, bar: "_Progress", checkpoint_epochs: int | None, checkpoint_minutes: float,
           hint: str) -> None:
    """Dispatch the planned chunks, write each, checkpoint when due and at the end; then finish."""
    state = start.state
    total = sum(count for _, count in start.plan)
    bar.start()
    clock = _CheckpointClock(checkpoint_epochs, checkpoint_minutes)
    pending, epoch = None, writer.epoch
    window_ends = {age + cfg.window_epochs: age for age in cfg.record_windows}
    # a signal while the directory was set up stops the run before its first chunk
    for i, chunk in enumerate(() if stop.requested else chunks(start.plan)):
        state, result = compiled[chunk](state, start.hyper, start.dataset)
        epoch += chunk.epochs
        # device copies now (asynchronous): the next call donates this state's buffers
        snapshot = window = None
        if i < total - 1 and clock.due(epoch, writer):
            snapshot = jax.tree.map(jnp.copy, state)
        if epoch in window_ends:  # chunks end at every window's edge (chunk_plan)
            window = (window_ends[epoch], jax.tree.map(jnp.copy, state.params))
        if pending is not None:
            _write(writer, *pending, state, bar)
        pending = (chunk, result, snapshot, window)
        if stop.requested:
            break
    if pending is not None:
        # the last chunk dispatched: its state is not donated again, and it is always checkpointed,
        # whether the plan ended or a signal came (even while the previous chunk was being written)
        chunk, result, _, window = pending
        _write(writer, chunk, result, state, window, state, bar)
    if stop.requested and writer.epoch < cfg.epochs:
        raise Interrupted(f"stopped by {stop.name} after epoch {writer.epoch} of {cfg.epochs}; checkpoint written "
                          f"at epoch {writer.checkpointed}; continue with: {hint}")
    stats = None if state.stats is None else weight_stats.to_arrays(jax.device_get(state.stats))
    writer.finish(_named(state.params), stats)


def _write(writer: rundir.RunWriter, chunk: Chunk, result: train.ChunkOutput, snapshot, window, latest,
           bar) -> None:
    """Copy a finished chunk to the host and write it; stop on divergence; write the parameters of
    a window that ended with it (window: (age, params)); checkpoint if due."""
    result = jax.device_get(result)  # waits for the chunk: its wall time ends here
    seconds = bar.chunk_done()
    first = writer.epoch
    writer.append(result.metrics._asdict(), result.trajectory if chunk.record else None, result.order, seconds,
                  result.zero_grad if chunk.record else None)
    bad = np.flatnonzero(~np.asarray(result.finite))
    if bad.size:
        runs = writer.cfg.runs()
        writer.finish(_named(latest.params))
        raise Diverged(
            f"non-finite loss or parameters in epochs {first + 1}-{first + chunk.epochs} of run(s) "
            + ", ".join(f"{r} (seed {runs[r][0]}, lr {runs[r][1]:g}, l2 {runs[r][2]:g})" for r in bad)
            + f"; the last good checkpoint (epoch {writer.checkpointed}) is kept in {writer.out}"
        )
    if window is not None:
        writer.window_end(window[0], _named(window[1]))
    if snapshot is not None:
        writer.checkpoint(snapshot)
    bar.show(writer)


def _load_data(cfg: RunConfig):
    raw, source = data.load_raw(cfg.dataset, cfg.data_dir, cfg.teacher)
    m = cfg.model
    if (tuple(raw.image_shape), raw.num_classes) != (tuple(m.input_shape), m.sizes[-1]):
        raise config.ConfigError(f"{source}: {'x'.join(map(str, raw.image_shape))} images of {raw.num_classes} "
                                 f"classes, but the model takes {'x'.join(map(str, m.input_shape))} inputs and "
                                 f"{m.sizes[-1]} classes (config.json edited?)")
    dataset = data.decode(raw, cfg.pixel_scale, cfg.train_limit, cfg.random_labels)
    config.check_data(cfg, dataset.train_x.shape[0])
    if cfg.random_labels is not None:
        source += f", training labels permuted at random (seed {cfg.random_labels})"
    return dataset, source


def _hyper(cfg: RunConfig) -> train.Hyper:
    runs = cfg.runs()
    return train.Hyper(jnp.asarray([lr for _, lr, _ in runs], jnp.float32),
                       jnp.asarray([l2 for _, _, l2 in runs], jnp.float32))


def _named(params) -> dict[str, np.ndarray]:
    return model.named(jax.device_get(params))


def _compile(cfg: RunConfig, start: _StartUp, chunk: Chunk):
    """The chunk's program, compiled ahead of time for these exact inputs (shapes and shardings)."""
    spec = train.TrainSpec(cfg.model, start.tracked, cfg.stride, chunk.record, cfg.save_order,
                           weight_stats=chunk.stats, step=cfg.step, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                           zero_grad=bool(start.zero_grad and start.tracked))
    return train.make_train_chunk(spec, chunk.epochs).lower(start.state, start.hyper, start.dataset).compile()


def _shard(state: train.TrainState) -> train.TrainState:
    """With several devices, put the runs axis of the state across them (a 'seeds' mesh axis);
    the vmapped trainer then runs each device's runs there. Unchanged on one device or when the
    number of runs does not divide evenly."""
    devices = jax.local_devices()  # this process's: under jax.distributed, jax.devices() holds every process's
    num_runs = jax.tree.leaves(state.params)[0].shape[0]
    if len(devices) < 2 or num_runs % len(devices):
        return jax.device_put(state)
    mesh = jax.sharding.Mesh(np.array(devices), ("seeds",))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    return jax.device_put(state, spec)


class _CheckpointClock:
    """Whether a checkpoint is due after a chunk: every `epochs` epochs or `minutes` minutes since
    the last one written, whichever comes first."""

    def __init__(self, epochs: int | None, minutes: float):
        self.epochs, self.seconds = epochs, 60 * minutes
        self.last_epoch, self.last_time = None, time.monotonic()

    def due(self, epoch: int, writer: rundir.RunWriter) -> bool:
        if writer.checkpointed != self.last_epoch:  # one was written since we last looked
            self.last_epoch, self.last_time = writer.checkpointed, time.monotonic()
        return ((self.epochs is not None and epoch - writer.checkpointed >= self.epochs)
                or time.monotonic() - self.last_time >= self.seconds)


class _Progress:
    """The progress bar (epochs, steps/s, test loss and accuracy) and the chunks' wall times.

    A chunk's wall time runs from the previous chunk's end (or the first dispatch, after
    compilation) to its own end, as seen when its outputs reach the host; the steps/s shown is the
    mean over every chunk since compilation, so it settles instead of jumping."""

    def __init__(self, total: int, initial: int, steps_per_epoch: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="epoch", disable=not enabled, dynamic_ncols=True)
        self.bar.set_description("compiling")
        self.steps_per_epoch, self.initial = steps_per_epoch, initial
        self.t0 = self.last = None

    def start(self) -> None:
        self.bar.set_description("training")
        self.t0 = self.last = time.perf_counter()

    def chunk_done(self) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds

    def show(self, writer: rundir.RunWriter) -> None:
        self.bar.update(writer.epoch - self.bar.n)
        steps = (writer.epoch - self.initial) * self.steps_per_epoch
        m = writer.metrics
        self.bar.set_postfix(steps_per_s=f"{steps / max(self.last - self.t0, 1e-9):,.0f}",
                             test_loss=f"{np.nanmean(m['test_loss'][-1]):.4f}",
                             test_acc=f"{np.nanmean(m['test_acc'][-1]):.4f}")

    def __enter__(self):
        return self

    def close(self) -> None:
        self.bar.close()

    def __exit__(self, *exc):
        self.close()
        return False
