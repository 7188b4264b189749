"""--weight-stats against the same statistics computed from a full trajectory of a small run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import data, model, train, weight_stats
from socjax.native import build
from socjax.config import ModelConfig, TrackedWeight
from socjax.step import xla_step

CFG = ModelConfig(sizes=(784, 32, 16, 10))
# every weight of layer 3 (so its whole histogram can be recomputed), and some of layers 1 and 2
TRACKED = tuple(TrackedWeight.mlp(3, r, c) for r in range(16) for c in range(10)) + tuple(
    TrackedWeight.mlp(1, r, c) for r, c in ((150, 3), (400, 7), (10, 0), (600, 31), (300, 12))) + (
    TrackedWeight.mlp(2, 5, 5), TrackedWeight.mlp(2, 20, 9))


@pytest.mark.parametrize("step", ["xla", pytest.param("native", marks=pytest.mark.skipif(
    build.unavailable() is not None, reason="native step unavailable"))])
def test_weight_stats_equal_statistics_of_the_full_trajectory(mini, step):
    """For either step: the statistics equal those of the tracked weights' full trajectories.
    The native step computes them lazily (only touched weights each step, decay in closed form)."""
    ds = jax.device_put(data.Dataset(mini.train_x[:400], mini.train_y[:400], mini.test_x[:100], mini.test_y[:100]))
    hyper = train.Hyper(jnp.full((1,), 2e-3), jnp.full((1,), 5e-4))
    state = train.init_runs([0], CFG)
    state = state._replace(stats=jax.vmap(weight_stats.init)(state.params))
    start = np.asarray(jax.vmap(lambda p: model.tracked_values(p, TRACKED))(state.params))
    fn = train.make_train_chunk(train.TrainSpec(CFG, TRACKED, 1, True, weight_stats=True, step=step), 1)
    trajectory = [start]
    for _ in range(2):  # two chunks: the statistics carry across chunk boundaries
        state, out = fn(state, hyper, ds)
        trajectory.append(np.asarray(out.trajectory[0]))
    w = np.concatenate(trajectory, axis=0)  # (1 + 800, K)
    dw = np.diff(w, axis=0)  # float32, as the trainer computes new - old
    got = weight_stats.to_arrays(jax.device_get(state.stats))
    assert got["count"][0] == 800
    d64 = dw.astype(np.float64)
    idx = lambda name, t: (0, t.row, t.col)
    # the native step's dw is exact, the trajectory's is rounded: a pure-decay increment of a weight
    # of 0.03 is 3e-8, about 10 ulp of the weight, so its |dw| differs by up to a tenth; and the trajectory's variance holds the
    # rounding noise of its values, about ulp(w)^2, which the native statistics do not
    abs_rtol = 1e-4 if step == "xla" else 1e-3
    for k, t in enumerate(TRACKED):
        var_atol = 1e-20 if step == "xla" else 2 * float(np.spacing(np.max(np.abs(w[:, k])))) ** 2
        np.testing.assert_allclose(got[f"mean_w{t.layer}"][idx("", t)], d64[:, k].mean(), rtol=1e-3, atol=1e-12)
        np.testing.assert_allclose(got[f"var_w{t.layer}"][idx("", t)], d64[:, k].var(), rtol=1e-3, atol=var_atol)
        np.testing.assert_allclose(got[f"mean_abs_w{t.layer}"][idx("", t)], np.abs(d64[:, k]).mean(), rtol=abs_rtol,
                                   atol=1e-12)
    # pure decay: exactly the steps with a zero gradient, counted by replaying the same order
    state0 = train.init_state(jax.random.key(0), CFG)
    step = jax.jit(lambda p, o, x, y: xla_step(p, o, x, y, train.Hyper(jnp.float32(2e-3), jnp.float32(5e-4)), CFG))
    p, o = state0.params, state0.opt_state
    zero_steps = []  # (800, K): the gradient of weight k at step t is exactly zero
    for e in range(2):
        for i in np.asarray(train.epoch_order(state0.key, jnp.int32(e), 400)):
            p, o, _, _, g = step(p, o, ds.train_x[i], ds.train_y[i])
            zero_steps.append(np.asarray(model.tracked_values(g, TRACKED)) == 0)
    zero_steps = np.array(zero_steps)
    zero = zero_steps.sum(0)
    # the trajectory's rounding rule can only add steps whose gradient is below float32 resolution
    decay = np.abs(w[1:].astype(np.float64) - w[:-1] * (1 - 2e-3 * 5e-4)) <= 2 * np.spacing(np.abs(w[:-1])).astype(np.float64)
    for k, t in enumerate(TRACKED):
        counted = round(got[f"decay_fraction_w{t.layer}"][idx("", t)] * 800)
        assert counted == zero[k] <= decay[:, k].sum()
    # the non-decay moments: over exactly the steps whose gradient was not zero
    for k, t in enumerate(TRACKED):
        live = d64[~zero_steps[:, k], k]
        assert got[f"nondecay_count_w{t.layer}"][idx("", t)] == live.size
        if live.size == 0:
            continue
        # native: each rounded trajectory dw is off by up to ulp(w), which moves a mean by up to ulp and
        # a variance by up to 2 std ulp (seen: 0.2% on a layer-3 weight with 11 non-decay steps)
        ulp = float(np.spacing(np.max(np.abs(w[:, k]))))
        var_atol = 1e-20 if step == "xla" else 2 * live.std() * ulp + 2 * ulp**2
        np.testing.assert_allclose(got[f"nondecay_mean_w{t.layer}"][idx("", t)], live.mean(), rtol=1e-3,
                                   atol=1e-12 if step == "xla" else ulp)
        np.testing.assert_allclose(got[f"nondecay_var_w{t.layer}"][idx("", t)], live.var(), rtol=1e-3, atol=var_atol)
        np.testing.assert_allclose(got[f"nondecay_mean_abs_w{t.layer}"][idx("", t)], np.abs(live).mean(),
                                   rtol=abs_rtol, atol=1e-12 if step == "xla" else ulp)
    assert any(0 < np.sum(~zero_steps[:, k]) < 800 for k in range(len(TRACKED)))  # both kinds of step occur
    # layer 3's histogram, recomputed from its 160 trajectories with the same binning
    layer3 = [k for k, t in enumerate(TRACKED) if t.layer == 3]
    x = np.abs(dw[:, layer3])[~zero_steps[:, layer3] & (dw[:, layer3] != 0)]
    slots = np.asarray(weight_stats._bin(jnp.asarray(x, jnp.float32)))
    want = np.bincount(slots, minlength=weight_stats.NUM_BINS + 2)
    if step == "xla":
        np.testing.assert_array_equal(got["hist_w3"][0], want)
    else:
        # the kernel bins its exact dw, the trajectory's is a difference of rounded values: a few cross
        # an edge, and a few below the resolution of w are 0 there (not counted) but not here
        # (measured: 56,870 counted against 56,838, 0.06%; 648 counts in other bins, 1.1%)
        got3 = got["hist_w3"][0]
        assert abs(got3.sum() - want.sum()) <= 1e-3 * want.sum() and np.abs(got3 - want).sum() <= 0.02 * want.sum()
    # the bins are the documented edges
    e = weight_stats.edges()
    inside = (slots > 0) & (slots <= weight_stats.NUM_BINS)
    assert np.all((x[inside] >= e[slots[inside] - 1]) & (x[inside] < e[slots[inside]]))
