"""The compiled scan trainer against a Python loop of single steps, and vmapped runs against
separate runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import data, model, train
from socjax.config import ModelConfig, TrackedWeight
from socjax.step import xla_step

CFG = ModelConfig()
TRACKED = (TrackedWeight.mlp(1, 300, 5), TrackedWeight.mlp(2, 10, 400), TrackedWeight.mlp(1, 0, 0), TrackedWeight.mlp(3, 7, 3))


@pytest.fixture(scope="module")
def small(mini):
    """200 training and 100 test examples of the embedded subset, on the device."""
    return jax.device_put(data.Dataset(mini.train_x[:200], mini.train_y[:200], mini.test_x[:100], mini.test_y[:100]))


def assert_same(a, b):
    """Bitwise equal on CPU (measured); on GPU/TPU the batched kernels of vmap may round
    differently, so there the bound is float32 rounding accumulated over the steps."""
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def hyper_of(lrs, l2s):
    return train.Hyper(jnp.asarray(lrs, jnp.float32), jnp.asarray(l2s, jnp.float32))


def run_chunk(ds, seeds, lrs, l2s, num_epochs, stride=5, record=True):
    spec = train.TrainSpec(CFG, TRACKED, stride, record, save_order=True)
    state = train.init_runs(seeds, CFG)
    return train.make_train_chunk(spec, num_epochs)(state, hyper_of(lrs, l2s), ds)


def test_scan_equals_python_loop_of_single_steps(small):
    """Same order, same steps: the scan's parameters, trajectory and metrics equal a Python loop."""
    stride, epochs = 5, 2
    state, out = run_chunk(small, [3], [2e-3], [5e-4], epochs, stride)

    ref = train.init_state(jax.random.key(3), CFG)
    hyper = train.Hyper(jnp.float32(2e-3), jnp.float32(5e-4))
    step = jax.jit(lambda p, o, x, y: xla_step(p, o, x, y, hyper, CFG)[:4])
    params, opt_state = ref.params, ref.opt_state
    n = small.train_x.shape[0]
    trajectory, losses = [], []
    for e in range(epochs):
        order = np.asarray(train.epoch_order(ref.key, jnp.int32(e), n))
        np.testing.assert_array_equal(order, out.order[0, e])
        for t, i in enumerate(order):
            params, opt_state, loss, _ = step(params, opt_state, small.train_x[i], small.train_y[i])
            losses.append(float(loss))
            if (t + 1) % stride == 0:
                trajectory.append([float(params[w.layer - 1].w[w.row, w.col]) for w in TRACKED])
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        assert_same(a[0], b)
    assert_same(out.trajectory[0], np.array(trajectory, np.float32))
    np.testing.assert_allclose(out.metrics.train_loss[0], np.array(losses).reshape(epochs, n).mean(1), rtol=1e-5)
    test_loss, test_acc = train.evaluate(params, small.test_x, small.test_y, CFG)
    np.testing.assert_allclose(out.metrics.test_loss[0, -1], test_loss, rtol=1e-5)
    np.testing.assert_allclose(out.metrics.test_acc[0, -1], test_acc)
    assert int(state.epoch[0]) == epochs


def test_chunks_compose(small):
    """Two chunks of one epoch equal one chunk of two epochs (the per-epoch order is global)."""
    spec = train.TrainSpec(CFG, TRACKED, 5, True)
    hyper = hyper_of([2e-3], [5e-4])
    s2, out2 = train.make_train_chunk(spec, 2)(train.init_runs([1], CFG), hyper, small)
    one = train.make_train_chunk(spec, 1)
    s1, a = one(train.init_runs([1], CFG), hyper, small)
    s1, b = one(s1, hyper, small)
    for x, y in zip(jax.tree.leaves(s2.params), jax.tree.leaves(s1.params)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(out2.trajectory, np.concatenate([a.trajectory, b.trajectory], axis=1))


def test_vmapped_runs_equal_separate_runs(small):
    """Seeds and an lr/l2 sweep in one vmapped call equal each run alone."""
    seeds, lrs, l2s = [0, 1, 0], [2e-3, 2e-3, 1e-3], [5e-4, 5e-4, 0.0]
    state, out = run_chunk(small, seeds, lrs, l2s, 1)
    for r, (s, lr, l2) in enumerate(zip(seeds, lrs, l2s)):
        state_r, out_r = run_chunk(small, [s], [lr], [l2], 1)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_r.params)):
            assert_same(a[r], b[0])
        assert_same(out.trajectory[r], out_r.trajectory[0])
        np.testing.assert_array_equal(out.order[r], out_r.order[0])
    # the sweep is real: runs 0 and 2 share seed and order but not lr, and end elsewhere
    assert not np.allclose(state.params[0].w[0], state.params[0].w[2])


def test_same_seed_is_bitwise_reproducible(small):
    s1, o1 = run_chunk(small, [5, 6], [2e-3] * 2, [5e-4] * 2, 1)
    s2, o2 = run_chunk(small, [5, 6], [2e-3] * 2, [5e-4] * 2, 1)
    for a, b in zip(jax.tree.leaves((s1.params, o1)), jax.tree.leaves((s2.params, o2))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(s1.params[0].w[0], s1.params[0].w[1])  # different seeds differ


@pytest.mark.parametrize("model_name, optimizer", [("mlp", "sgd"), ("flax-mlp", "adam")])
def test_initial_states_built_seed_by_seed_equal_one_jit_of_the_vmapped_init(model_name, optimizer):
    """init_runs draws seed by seed, op by op (each draw its own compiled program, shared by every
    configuration); one jit of the vmapped init_state over the seeds' keys, how it was built
    before, gives the same state bit for bit: keys, weight statistics, optimizer moments."""
    from socjax import config

    cfg = config.build(preset="smoke", hidden=(16, 12), model=model_name, optimizer=optimizer)
    seeds = (0, 1, 2**32 - 1)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    vmapped = jax.jit(jax.vmap(train.init_state, in_axes=(0, None, None, None)), static_argnums=(1, 2, 3))
    stats = model_name == "mlp"  # --weight-stats covers the pure-function MLP
    want = vmapped(keys, cfg.model, stats, cfg.optimizer)
    got = train.init_runs(seeds, cfg.model, stats, cfg.optimizer)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert (got.stats is not None) == stats and got.key.dtype == want.key.dtype
    raw = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(raw(a), raw(b))


def test_epoch_order_is_a_fresh_permutation_each_epoch():
    key = jax.random.key(0)
    orders = [np.asarray(train.epoch_order(key, jnp.int32(e), 1000)) for e in range(3)]
    for o in orders:
        np.testing.assert_array_equal(np.sort(o), np.arange(1000))
    assert not np.array_equal(orders[0], orders[1])


def test_tracked_values_index_the_right_weights():
    params = train.init_state(jax.random.key(0), CFG).params
    got = model.tracked_values(params, TRACKED)
    want = [params[t.layer - 1].w[t.row, t.col] for t in TRACKED]
    np.testing.assert_array_equal(got, np.array(want))


def test_select_tracked_draws_half_from_each_layer():
    tracked = train.select_tracked(CFG, 16, seed=0)
    assert len(set(tracked)) == 16
    assert sum(t.layer == 1 for t in tracked) == 8 and sum(t.layer == 2 for t in tracked) == 8
    for t in tracked:
        assert 0 <= t.row < CFG.sizes[t.layer - 1] and 0 <= t.col < CFG.sizes[t.layer]
    assert train.select_tracked(CFG, 16, seed=0) == tracked
    assert train.select_tracked(CFG, 16, seed=1) != tracked


def test_training_reduces_test_loss(small):
    state, out = run_chunk(small, [0], [2e-3], [5e-4], 3, record=False)
    assert out.trajectory is None
    loss = np.asarray(out.metrics.test_loss[0])
    assert loss[-1] < loss[0]
