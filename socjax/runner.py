"""The host loop: load data, compile, run chunks of epochs on the device, write the run directory.

This is the thin boundary between Python and the compiled trainer. Each chunk is dispatched before
the previous chunk's outputs are copied to the host and written, so disk I/O overlaps compute.
After every chunk, metrics.json is rewritten atomically and the trajectory rows are flushed, so an
interrupted run keeps every finished epoch.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from socjax import data, model, rundir, train
from socjax.config import RunConfig, validate


def chunk_plan(cfg: RunConfig) -> list[tuple[bool, int]]:
    """[(record, num_epochs), ...] covering equilibration then recording, in chunk_epochs pieces."""
    plan = []
    for record, total in ((False, cfg.epochs_equilibrate), (True, cfg.epochs_record)):
        while total > 0:
            e = min(cfg.chunk_epochs, total)
            plan.append((record, e))
            total -= e
    return plan


def run(cfg: RunConfig, out: str | Path, progress: bool = True) -> Path:
    """Train every run of `cfg` and write the run directory `out`. Returns its path.

    Raises ConfigError (or a subclass) for bad input before anything is compiled or written.
    """
    validate(cfg)
    rundir.check_new(out)
    raw, source = data.load_raw(cfg.dataset, cfg.data_dir)
    dataset = data.decode(raw, cfg.pixel_scale, cfg.train_limit)
    n = dataset.train_x.shape[0]
    validate(cfg, n)

    tracked = cfg.track_weights or train.select_tracked(cfg.model.sizes, cfg.track, cfg.track_seed)
    runs = cfg.runs()
    num_runs, num_tracked = len(runs), len(tracked)
    steps = cfg.epochs_record * n // cfg.stride
    layout = dict(
        first_step=cfg.epochs_equilibrate * n + cfg.stride,
        stride=cfg.stride,
        steps=steps,
        steps_per_epoch=n,
        num_train=n,
        num_test=int(dataset.test_x.shape[0]),
        num_runs=num_runs,
    )

    out = rundir.create(out)
    rundir.write_config(out, cfg, layout, source)
    rundir.write_tracked(out, tracked)

    state = train.init_runs([s for s, _, _ in runs], cfg.model)
    hyper = train.Hyper(
        jnp.asarray([lr for _, lr, _ in runs], jnp.float32),
        jnp.asarray([l2 for _, _, l2 in runs], jnp.float32),
    )
    rundir.write_params(out / rundir.PARAMS_INIT, model.to_named(jax.device_get(state.params)))
    trajectory = rundir.open_array(out / rundir.TRAJECTORY, np.float32, (num_runs, steps, num_tracked))
    order = (
        rundir.open_array(out / rundir.ORDER, np.int32, (num_runs, cfg.epochs * n))
        if cfg.save_order
        else None
    )
    metrics: dict[str, list] = {k: [] for k in ("epoch", *train.EpochMetrics._fields)}
    device_data = jax.device_put(dataset)

    compiled = {}
    bar = _progress(cfg.epochs, progress)
    bar.set_description("compiling")  # the first chunk's steps/s includes compilation
    epoch, t_last = 0, time.perf_counter()

    def write(first_epoch: int, record: bool, num_epochs: int, result: train.ChunkOutput):
        nonlocal t_last
        result = jax.device_get(result)
        for e in range(num_epochs):
            metrics["epoch"].append(first_epoch + e + 1)
            for k in train.EpochMetrics._fields:
                metrics[k].append([float(v) for v in getattr(result.metrics, k)[:, e]])
        if record and num_tracked:
            row = (first_epoch - cfg.epochs_equilibrate) * n // cfg.stride
            trajectory[:, row : row + result.trajectory.shape[1]] = result.trajectory
            trajectory.flush()
        if order is not None:
            order[:, first_epoch * n : (first_epoch + num_epochs) * n] = result.order.reshape(num_runs, -1)
            order.flush()
        rundir.write_json(out / rundir.METRICS, metrics)
        now = time.perf_counter()
        bar.set_description("training")
        bar.update(num_epochs)
        bar.set_postfix(
            steps_per_s=f"{num_runs * num_epochs * n / (now - t_last):,.0f}",
            test_loss=f"{np.mean(metrics['test_loss'][-1]):.4f}",
            test_acc=f"{np.mean(metrics['test_acc'][-1]):.4f}",
        )
        t_last = now

    pending = None
    for record, num_epochs in chunk_plan(cfg):
        key = (record, num_epochs)
        if key not in compiled:
            spec = train.TrainSpec(cfg.model, tracked, cfg.stride, record, cfg.save_order)
            compiled[key] = train.make_train_chunk(spec, num_epochs)
        state, result = compiled[key](state, hyper, device_data)
        if pending is not None:
            write(*pending)
        pending = (epoch, record, num_epochs, result)
        epoch += num_epochs
    write(*pending)
    bar.close()

    rundir.write_params(out / rundir.PARAMS_FINAL, model.to_named(jax.device_get(state.params)))
    return out


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", disable=not enabled, dynamic_ncols=True)
