"""Checkpoints: any state pytree round-trips against an eval_shape template, a new field needs no
code in socjax.checkpoint, and a file of another format or shape is refused in one line."""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import checkpoint, data, rundir, train
from socjax.config import ModelConfig, TrackedWeight

from test_cli import main

CFG = ModelConfig(sizes=(784, 32, 16, 10))


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(x, y)
        assert np.asarray(x).dtype == np.asarray(y).dtype


def test_train_state_with_statistics_round_trips(mini, tmp_path):
    """A trained state (parameters, optax state, typed key, epoch, --weight-stats accumulators)
    restores bitwise, and training on from it equals training on from the original."""
    ds = jax.device_put(data.Dataset(mini.train_x[:50], mini.train_y[:50], mini.test_x[:20], mini.test_y[:20]))
    hyper = train.Hyper(jnp.full((2,), 2e-3), jnp.full((2,), 5e-4))
    spec = train.TrainSpec(CFG, (TrackedWeight.mlp(1, 150, 3),), 1, True, weight_stats=True)
    chunk = train.make_train_chunk(spec, 1)
    state, _ = chunk(train.init_runs([0, 1], CFG, with_stats=True), hyper, ds)
    rundir.save_checkpoint(tmp_path, state, {"epochs_done": 1, "metrics": {"epoch": [1]}})
    template = jax.eval_shape(lambda: train.init_runs([0, 1], CFG, with_stats=True))
    loaded, epochs, metrics = rundir.load_checkpoint(tmp_path, template)
    assert epochs == 1 and metrics == {"epoch": [1]}
    assert_same_tree(jax.device_get(jax.tree.map(jnp.copy, state)), loaded)
    assert loaded.stats.count.shape == (2,) and float(loaded.stats.count[0]) == 50
    a, _ = chunk(jax.device_put(loaded), hyper, ds)
    b, _ = chunk(state, hyper, ds)
    assert_same_tree(jax.device_get(a), jax.device_get(b))


class ExtendedState(NamedTuple):
    """A TrainState with two more fields, as a later feature would add them."""

    params: tuple
    opt_state: tuple
    key: jax.Array
    epoch: jax.Array
    stats: object
    mask: tuple
    visits: jax.Array


def extended(seed: int) -> ExtendedState:
    s = train.init_state(jax.random.key(seed), CFG)
    rng = np.random.default_rng(seed)
    mask = jax.tree.map(lambda p: jnp.asarray(rng.random(p.shape) > 0.5, jnp.float32), s.params)
    return ExtendedState(*s, mask=mask, visits=jnp.arange(7, dtype=jnp.int32) * seed)


def test_a_state_with_extra_fields_round_trips_without_changes(tmp_path):
    state = extended(3)
    path = tmp_path / "ext.npz"
    with open(path, "wb") as f:
        checkpoint.save(f, state, {"note": "extra fields"})
    loaded, user = checkpoint.read(path, jax.eval_shape(lambda: extended(0)))
    assert user == {"note": "extra fields"} and isinstance(loaded, ExtendedState)
    assert_same_tree(jax.device_get(state), loaded)
    meta = checkpoint.read_meta(path)
    assert meta["format"] == checkpoint.FORMAT and ".visits" in meta["paths"]
    # a template of another structure (the plain TrainState) is refused, naming the fields
    with pytest.raises(checkpoint.CheckpointError, match=r"holds state fields .*\.visits.*, this run expects"):
        checkpoint.read(path, jax.eval_shape(lambda: train.init_state(jax.random.key(0), CFG)))
    # ...and so is one whose shapes differ
    wider = ModelConfig(sizes=(784, 33, 16, 10))
    with pytest.raises(checkpoint.CheckpointError, match=r"\.params\[0\]\.w is float32\[784, 32\], this run expects "
                                                          r"float32\[784, 33\]"):
        checkpoint.read(path, jax.eval_shape(
            lambda: extended(0)._replace(params=train.init_state(jax.random.key(0), wider).params)))


def old_format_checkpoint(path, state, epochs_done, metrics):
    """A checkpoint as socjax 0.1.0 wrote it: named parameters, opt_i, raw key, epoch counters."""
    arrays = {k: np.asarray(v) for k, v in train.model.to_named(state.params).items()}
    for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
        arrays[f"opt_{i}"] = np.asarray(leaf)
    arrays["key"] = np.asarray(jax.random.key_data(state.key))
    arrays["epoch"] = np.asarray(state.epoch)
    arrays["epochs_done"] = np.asarray(epochs_done)
    arrays["metrics"] = np.asarray(json.dumps(metrics))
    np.savez(path, **arrays)


def test_an_old_format_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "2", "--record-epochs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    template = jax.eval_shape(lambda: train.init_runs([0], ModelConfig()))
    state, epochs, metrics = rundir.load_checkpoint(out, template)
    old_format_checkpoint(out / rundir.CHECKPOINT, state, epochs, metrics)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("socjax: error:")
    import socjax

    assert "format 1 (socjax 0.1.0)" in err and f"format 2 (socjax {socjax.__version__}, jax {jax.__version__})" in err
