"""Checkpoints of a training run: everything needed to continue it bitwise identically.

DIR/checkpoint.npz holds, for every run (leading axis): the parameters (w1, b1, ...), the optax
state's leaves, the order key's raw data, the epoch counter and the --weight-stats accumulators; plus the number of finished
epochs and the metrics so far. The trajectory and order files are not copied: a checkpoint
taken after epoch E is written only once their rows up to epoch E are flushed and fsynced, and
rows after E are recomputed (identically) on resume.

Writing is atomic: a temporary file in the same directory, fsync, rename, fsync of the directory.
A crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
(orbax-checkpoint does the same for sharded pytrees across hosts; for a few MB per run on one
host a single .npz with the same write protocol is as safe and has no extra dependency.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from socjax import model, train, weight_stats
from socjax.config import ModelConfig

CHECKPOINT = "checkpoint.npz"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(out: Path, state: train.TrainState, epochs_done: int, metrics: dict) -> None:
    """Write DIR/checkpoint.npz atomically from a host copy of the (stacked) state."""
    arrays = {k: np.asarray(v) for k, v in model.to_named(state.params).items()}
    for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
        arrays[f"opt_{i}"] = np.asarray(leaf)
    if state.stats is not None:
        for i, leaf in enumerate(jax.tree.leaves(state.stats)):
            arrays[f"stats_{i}"] = np.asarray(leaf)
    arrays["key"] = np.asarray(state.key)
    arrays["epoch"] = np.asarray(state.epoch)
    arrays["epochs_done"] = np.asarray(epochs_done)
    arrays["metrics"] = np.asarray(json.dumps(metrics))
    tmp = out / f".{CHECKPOINT}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / CHECKPOINT)
    fsync_dir(out)


def host_state(state: train.TrainState) -> train.TrainState:
    """A host (NumPy) copy of a device state, with the typed key as raw key data."""
    return jax.device_get(state._replace(key=jax.random.key_data(state.key)))


def load(out: Path, cfg: ModelConfig, num_runs: int) -> tuple[train.TrainState, int, dict]:
    """(state on the host with a typed key, finished epochs, metrics) from DIR/checkpoint.npz."""
    with np.load(out / CHECKPOINT) as z:
        named = {k: z[k] for k in z.files if k[0] in "wb" and k[1:].isdigit()}
        params = model.from_named(named, cfg.num_layers)
        # only the tree structure is needed: trace the initialisation, do not run it
        template = jax.eval_shape(lambda: train.init_runs(list(range(num_runs)), cfg)).opt_state
        leaves = [z[f"opt_{i}"] for i in range(len(jax.tree.leaves(template)))]
        opt_state = jax.tree.unflatten(jax.tree.structure(template), leaves)
        key = jax.random.wrap_key_data(z["key"])
        stats = None
        if "stats_0" in z.files:
            structure = jax.tree.structure(weight_stats.init(params))
            stats = jax.tree.unflatten(structure, [z[f"stats_{i}"] for i in range(structure.num_leaves)])
        state = train.TrainState(params, opt_state, key, z["epoch"], stats)
        return state, int(z["epochs_done"]), json.loads(str(z["metrics"]))
