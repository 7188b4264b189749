"""One SGD step against a hand-written NumPy step; decoupled decay against L2 in the loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from socjax import model, train
from socjax.config import ModelConfig
from socjax.step import make_optimizer, xla_step

from conftest import float64_params


def numpy_sgd_step(params, x, y, lr, l2, decay_biases=True):
    """Manual backprop of eq. (10) through ReLU layers, then w -= lr * (grad + l2 * w), float64."""
    ws = [np.asarray(p.w, np.float64) for p in params]
    bs = [np.asarray(p.b, np.float64) for p in params]
    hs, zs = [np.asarray(x, np.float64)], []
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = hs[-1] @ w + b
        zs.append(z)
        hs.append(np.maximum(z, 0) if i < len(ws) - 1 else z)
    delta = hs[-1] - np.eye(10)[y]
    new = [None] * len(ws)
    for i in reversed(range(len(ws))):
        gw, gb = np.outer(hs[i], delta), delta
        if i > 0:
            delta = (ws[i] @ delta) * (zs[i - 1] > 0)
        new[i] = (ws[i] - lr * (gw + l2 * ws[i]), bs[i] - lr * (gb + (l2 * bs[i] if decay_biases else 0)))
    return new


@pytest.mark.parametrize("decay_biases", [True, False])
def test_sgd_step_matches_numpy(mini, decay_biases):
    cfg = ModelConfig(decay_biases=decay_biases)
    lr, l2 = 2e-3, 5e-4
    with jax.enable_x64(True):
        params = float64_params(0, cfg)
        opt_state = make_optimizer(train.Hyper(lr, l2), cfg).init(params)
        for i in range(3):  # a few examples: pixels, labels and ReLU patterns differ
            x, y = mini.train_x[i], int(mini.train_y[i])
            ref = numpy_sgd_step(params, x, y, lr, l2, decay_biases)
            new, _, loss, _ = xla_step(
                params, opt_state, jnp.asarray(x, jnp.float64), jnp.int32(y),
                train.Hyper(jnp.float64(lr), jnp.float64(l2)), cfg,
            )[:4]
            for layer_old, layer_new, (w_ref, b_ref) in zip(params, new, ref):
                # compare the updates themselves, not only the new values, at float64 precision
                np.testing.assert_allclose(layer_new.w - layer_old.w, w_ref - layer_old.w, rtol=1e-9, atol=1e-18)
                np.testing.assert_allclose(layer_new.b - layer_old.b, b_ref - layer_old.b, rtol=1e-9, atol=1e-18)
            params = new


def test_sgd_step_float32_close_to_float64(mini):
    cfg = ModelConfig()
    params = model.init(jax.random.key(1), cfg)
    hyper = train.Hyper(jnp.float32(2e-3), jnp.float32(5e-4))
    opt_state = make_optimizer(hyper, cfg).init(params)
    x, y = mini.train_x[3], int(mini.train_y[3])
    new, _, _, _ = xla_step(params, opt_state, jnp.asarray(x), jnp.int32(y), hyper, cfg)[:4]
    ref = numpy_sgd_step(params, x, y, 2e-3, 5e-4)
    for layer_new, (w_ref, b_ref) in zip(new, ref):
        np.testing.assert_allclose(layer_new.w, w_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layer_new.b, b_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("decay_biases", [True, False])
def test_decayed_weights_equal_l2_in_loss(mini, decay_biases):
    """optax.add_decayed_weights + sgd on eq. (10) == plain optax.sgd on eq. (10) + (l2/2)|w|^2."""
    cfg = ModelConfig(decay_biases=decay_biases)
    lr, l2 = 2e-3, 5e-4
    with jax.enable_x64(True):
        p_decay = float64_params(2, cfg)
        p_loss = p_decay
        hyper = train.Hyper(jnp.float64(lr), jnp.float64(l2))
        opt = make_optimizer(hyper, cfg)
        s_decay = opt.init(p_decay)
        plain = optax.sgd(lr)
        s_loss = plain.init(p_loss)
        for i in range(5):
            x, y = jnp.asarray(mini.train_x[i], jnp.float64), jnp.int32(mini.train_y[i])
            p_decay, s_decay, _, _ = xla_step(p_decay, s_decay, x, y, hyper, cfg)[:4]
            g = jax.grad(model.loss)(p_loss, x, y, jnp.float64(l2), cfg)
            u, s_loss = plain.update(g, s_loss)
            p_loss = optax.apply_updates(p_loss, u)
        for a, b in zip(jax.tree.leaves(p_decay), jax.tree.leaves(p_loss)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
