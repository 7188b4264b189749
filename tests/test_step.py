"""The step seam: a step plugged in through the registry runs through the whole CLI path, and a
step with its own per-run inputs (a pruning mask) fits without any change to the scan."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import config, data, rundir, step, train
from socjax.config import ModelConfig, TrackedWeight

from test_cli import main

TRACED = []


def wrapped_xla_step(params, opt_state, x, label, hyper, cfg, opt):
    """The reference step behind a wrapper that notes each time it is traced."""
    TRACED.append(cfg)
    return step.xla_step(params, opt_state, x, label, hyper, cfg, opt)


def test_a_registered_step_runs_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(config.STEPS, "wrapped", lambda cfg, acc, opt: step.params_stepper(wrapped_xla_step, cfg, acc, opt))
    args = ["train", "--preset", "smoke", "--epochs", "2", "--record-epochs", "1", "--no-progress"]
    TRACED.clear()
    assert main([*args, "--step", "wrapped", "--out", str(tmp_path / "wrapped")]) == 0
    assert TRACED  # the trainer called the registered function
    assert main([*args, "--step", "xla", "--out", str(tmp_path / "xla")]) == 0
    assert rundir.read_info(tmp_path / "wrapped").config.step == "wrapped"
    assert rundir.read_info(tmp_path / "xla").config.step == "xla"
    a, b = rundir.load_params(tmp_path / "wrapped"), rundir.load_params(tmp_path / "xla")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(rundir.load_trajectory(tmp_path / "wrapped"), rundir.load_trajectory(tmp_path / "xla"))
    # resume takes the recorded step: extend the wrapped run by an epoch through the same registry
    TRACED.clear()
    assert main(["train", "--resume", str(tmp_path / "wrapped"), "--epochs", "3", "--no-progress"]) == 0
    assert TRACED
    # an unknown name is one line, before anything is compiled
    capsys.readouterr()
    assert main([*args, "--step", "nonesuch", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'nonesuch'" in capsys.readouterr().err


class MaskedHyper(NamedTuple):
    """A richer per-run input: lr, l2, and a fixed 0/1 mask per parameter (vmapped like lr)."""

    lr: jax.Array
    l2: jax.Array
    mask: tuple


def masked_step(params, opt_state, x, label, hyper, cfg, opt=config.SGD):
    """The reference step, then the mask applied to the new parameters: pruned weights stay 0."""
    out = step.xla_step(params, opt_state, x, label, hyper, cfg, opt)
    return out._replace(params=jax.tree.map(lambda p, m: p * m, out.params, hyper.mask))


def test_a_masked_step_fits_the_seam(mini, monkeypatch):
    """Two runs with different masks in one vmapped call, against a Python loop of single steps."""
    monkeypatch.setitem(config.STEPS, "masked", lambda cfg, acc, opt: step.params_stepper(masked_step, cfg, acc, opt))
    cfg = ModelConfig(sizes=(784, 32, 16, 10))
    ds = jax.device_put(data.Dataset(mini.train_x[:60], mini.train_y[:60], mini.test_x[:20], mini.test_y[:20]))
    state = train.init_runs([0, 1], cfg)
    rng = np.random.default_rng(9)  # run 0 keeps about half of every matrix, run 1 about 90%
    keep = np.array([0.5, 0.9])
    masks = jax.tree.map(lambda p: jnp.asarray(rng.random(p.shape) < keep.reshape((2,) + (1,) * (p.ndim - 1)),
                                               jnp.float32), state.params)
    state = state._replace(params=jax.tree.map(jnp.multiply, state.params, masks))
    hyper = MaskedHyper(jnp.full((2,), 2e-3), jnp.full((2,), 5e-4), masks)
    spec = train.TrainSpec(cfg, (TrackedWeight.mlp(1, 150, 3),), 1, True, step="masked")
    start = jax.device_get(state)
    out_state, _ = train.make_train_chunk(spec, 1)(state, hyper, ds)
    one_step = jax.jit(masked_step, static_argnums=5)
    for r in range(2):
        one = lambda tree: jax.tree.map(lambda a: a[r], tree)
        params, opt = one(start.params), one(start.opt_state)
        h = MaskedHyper(jnp.float32(2e-3), jnp.float32(5e-4), one(masks))
        for i in np.asarray(train.epoch_order(one(start).key, jnp.int32(0), 60)):
            params, opt = one_step(params, opt, ds.train_x[i], ds.train_y[i], h, cfg)[:2]
        for a, b, m in zip(jax.tree.leaves(one(out_state.params)), jax.tree.leaves(params), jax.tree.leaves(one(masks))):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
            assert np.all(np.asarray(a)[np.asarray(m) == 0] == 0)  # pruned weights never come back


def test_unknown_step_name_is_refused():
    with pytest.raises(config.ConfigError, match="unknown step 'nonesuch'"):
        config.build("smoke", step="nonesuch")
