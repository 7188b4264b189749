"""The model against NumPy float64 and float64 finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from socjax import model
from socjax.config import ModelConfig

from conftest import float64_params

PAPER = ModelConfig()


def numpy_forward(params, x):
    """Reference forward pass in float64: returns output and the ReLU inputs."""
    h = np.asarray(x, np.float64)
    zs = []
    for i, (w, b) in enumerate(params):
        z = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        zs.append(z)
        h = np.maximum(z, 0) if i < len(params) - 1 else z
    return h, zs


def test_init_is_torch_default_uniform():
    params = model.init(jax.random.key(0), PAPER)
    assert [p.w.shape for p in params] == [(784, 700), (700, 476), (476, 10)]
    assert [p.b.shape for p in params] == [(700,), (476,), (10,)]
    for layer, fan_in in zip(params, PAPER.sizes[:-1]):
        bound = 1 / np.sqrt(fan_in)
        for a in (np.asarray(layer.w).ravel(), np.asarray(layer.b)):
            assert a.dtype == np.float32
            assert np.all(np.abs(a) <= bound)
            # Kolmogorov-Smirnov against U(-bound, bound): the draw is uniform on the right range
            assert stats.kstest(a, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


def test_glorot_init_option():
    cfg = ModelConfig(init="glorot")
    params = model.init(jax.random.key(1), cfg)
    w = np.asarray(params[0].w).ravel()
    bound = np.sqrt(6 / (784 + 700))
    assert stats.kstest(w, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    assert np.all(np.asarray(params[0].b) == 0)


def test_apply_and_loss_match_numpy(mini):
    params = model.init(jax.random.key(2), PAPER)
    l2 = 5e-4
    for i in range(5):
        x, y = mini.train_x[i], int(mini.train_y[i])
        out_ref, _ = numpy_forward(params, x)
        out = model.apply(params, jnp.asarray(x))
        np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)
        target = np.eye(10)[y]
        penalty = sum(np.sum(np.asarray(p.w, np.float64) ** 2) + np.sum(np.asarray(p.b, np.float64) ** 2) for p in params)
        ref = 0.5 * np.sum((out_ref - target) ** 2) + 0.5 * l2 * penalty  # eq. (10) + L2
        got = model.loss(params, jnp.asarray(x), jnp.int32(y), jnp.float32(l2), PAPER)
        np.testing.assert_allclose(got, ref, rtol=1e-5)
        xent_ref = -(out_ref[y] - np.log(np.sum(np.exp(out_ref))))
        np.testing.assert_allclose(model.data_loss(out, jnp.int32(y), "xent"), xent_ref, rtol=1e-5)


def test_l2_without_biases():
    params = model.init(jax.random.key(3), PAPER)
    only_w = sum(float(np.sum(np.asarray(p.w, np.float64) ** 2)) for p in params)
    np.testing.assert_allclose(model.l2_penalty(params, decay_biases=False), only_w, rtol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("decay_biases", [True, False])
def test_gradient_matches_float64_finite_differences(mini, loss, decay_biases):
    cfg = ModelConfig(loss=loss, decay_biases=decay_biases)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params = float64_params(4, cfg)
        x = jnp.asarray(mini.train_x[7], jnp.float64)
        y = jnp.int32(mini.train_y[7])
        l2 = jnp.float64(5e-4)
        f = jax.jit(lambda p: model.loss(p, x, y, l2, cfg))
        grads = jax.grad(lambda p: model.loss(p, x, y, l2, cfg))(params)
        leaves, treedef = jax.tree.flatten(params)
        g_leaves = jax.tree.leaves(grads)
        h = 1e-6
        for li, (leaf, g) in enumerate(zip(leaves, g_leaves)):
            flat = np.asarray(leaf).ravel()
            # a few random coordinates, plus the one with the largest gradient (never all-zero)
            idx = list(rng.choice(flat.size, 4, replace=False)) + [int(np.argmax(np.abs(np.asarray(g))))]
            for j in idx:
                def shifted(d):
                    new = flat.copy()
                    new[j] += d
                    ls = list(leaves)
                    ls[li] = jnp.asarray(new.reshape(leaf.shape))
                    return float(f(jax.tree.unflatten(treedef, ls)))
                fd = (shifted(h) - shifted(-h)) / (2 * h)
                np.testing.assert_allclose(np.asarray(g).ravel()[j], fd, rtol=1e-5, atol=1e-9)


def test_hidden_is_the_pre_activation_of_the_numpy_forward_pass(mini):
    params = model.init(jax.random.key(5), PAPER)
    x = mini.train_x[11]
    _, zs = numpy_forward(params, x)
    for layer in (1, 2):
        np.testing.assert_allclose(model.hidden(params, jnp.asarray(x), layer), zs[layer - 1], rtol=1e-5, atol=1e-5)
    for bad in (0, 3):
        with pytest.raises(ValueError, match="not a hidden layer"):
            model.hidden(params, jnp.asarray(x), bad)

