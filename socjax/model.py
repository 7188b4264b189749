"""The MLP of the paper as pure functions: init, apply to ONE example, and the loss.

Parameters are a tuple of `Dense(w, b)`, one per layer, with w of shape (fan_in, fan_out) and
b of shape (fan_out,): for the paper's 784-700-476-10 network, w1: (784, 700), w2: (700, 476),
w3: (476, 10). Hidden layers use ReLU, the output layer is linear (DEFAULT).
Batches, seeds and sweeps come from `jax.vmap` over these functions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import numpy as np

from socjax.config import ModelConfig, TrackedWeight


class Dense(NamedTuple):
    """One fully connected layer: out = in @ w + b. w: (fan_in, fan_out), b: (fan_out,)."""

    w: jax.Array
    b: jax.Array


Params = tuple[Dense, ...]


def init(key: jax.Array, cfg: ModelConfig) -> Params:
    """Draw parameters for `cfg.sizes`.

    "torch" (DEFAULT): PyTorch's nn.Linear default, w and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    "glorot": w ~ U(-sqrt(6/(fan_in+fan_out)), +...), b = 0.
    """
    layers = []
    keys = jax.random.split(key, cfg.num_layers)
    for k, fan_in, fan_out in zip(keys, cfg.sizes[:-1], cfg.sizes[1:]):
        w_key, b_key = jax.random.split(k)
        if cfg.init == "torch":
            bound = 1.0 / jnp.sqrt(fan_in)
            w = jax.random.uniform(w_key, (fan_in, fan_out), jnp.float32, -bound, bound)
            b = jax.random.uniform(b_key, (fan_out,), jnp.float32, -bound, bound)
        elif cfg.init == "glorot":
            bound = jnp.sqrt(6.0 / (fan_in + fan_out))
            w = jax.random.uniform(w_key, (fan_in, fan_out), jnp.float32, -bound, bound)
            b = jnp.zeros((fan_out,), jnp.float32)
        else:
            raise ValueError(f"unknown init {cfg.init!r}")
        layers.append(Dense(w, b))
    return tuple(layers)


def _forward(params: Params, x: jax.Array, depth: int) -> jax.Array:
    """Pre-activation of layer `depth` (1-based): the first depth - 1 layers with ReLU, then one affine map."""
    h = x
    for layer in params[: depth - 1]:
        h = jax.nn.relu(h @ layer.w + layer.b)
    last = params[depth - 1]
    return h @ last.w + last.b


def apply(params: Params, x: jax.Array) -> jax.Array:
    """Network output for one example: x (784,) -> (10,). ReLU hidden layers, linear output."""
    return _forward(params, x, len(params))


def hidden(params: Params, x: jax.Array, layer: int) -> jax.Array:
    """Pre-activation z of hidden layer `layer` (1-based) for one example: x (784,) -> (width,).
    The layer's output (the neuron state) is relu(z)."""
    if not 1 <= layer < len(params):
        raise ValueError(f"layer {layer} is not a hidden layer of a {len(params)}-layer network")
    return _forward(params, x, layer)


def data_loss(out: jax.Array, label: jax.Array, loss: str) -> jax.Array:
    """Per-example loss from the network output out: (10,) and an integer label.

    "mse": the boundary loss of eq. (10), H = 1/2 sum_k (out_k - onehot(label)_k)^2.
    "xent": softmax cross-entropy.
    """
    if loss == "mse":
        target = jax.nn.one_hot(label, out.shape[-1], dtype=out.dtype)
        return 0.5 * jnp.sum((out - target) ** 2)
    if loss == "xent":
        return -jax.nn.log_softmax(out)[label]
    raise ValueError(f"unknown loss {loss!r}")


def l2_penalty(params: Params, decay_biases: bool) -> jax.Array:
    """sum of squared weights (and biases when decay_biases); the L2 term is (l2/2) * this."""
    total = sum(jnp.sum(layer.w**2) for layer in params)
    if decay_biases:
        total = total + sum(jnp.sum(layer.b**2) for layer in params)
    return total


def loss(params: Params, x: jax.Array, label: jax.Array, l2: jax.Array, cfg: ModelConfig):
    """The full objective for one example: eq. (10) + (l2/2) * sum(w^2). Returns a scalar.

    The trainer does not differentiate this: it differentiates `data_loss` and applies the decay
    l2*w through optax.add_decayed_weights, which is the same gradient (tests/test_sgd.py) without
    a pass over every weight to form the penalty's value.
    """
    return data_loss(apply(params, x), label, cfg.loss) + 0.5 * l2 * l2_penalty(
        params, cfg.decay_biases
    )


def tracked_values(params: Params, tracked: tuple[TrackedWeight, ...]) -> jax.Array:
    """Values of the tracked weights: (K,) float32, in the order of `tracked` (one gather per layer)."""
    layers = np.array([t.layer for t in tracked], int)
    rows = np.array([t.row for t in tracked], int)
    cols = np.array([t.col for t in tracked], int)
    values = jnp.zeros((len(tracked),), jnp.float32)
    for layer in np.unique(layers):
        sel = np.flatnonzero(layers == layer)
        values = values.at[sel].set(params[layer - 1].w[rows[sel], cols[sel]])
    return values


def decay_mask(cfg: ModelConfig) -> Params:
    """Pytree of bools, True where L2 acts: every weight, and biases when cfg.decay_biases."""
    return tuple(Dense(True, cfg.decay_biases) for _ in range(cfg.num_layers))


def to_named(params: Params) -> dict[str, jax.Array]:
    """{"w1": ..., "b1": ..., ...}: the names used in the run directory (1-based layers)."""
    out = {}
    for i, layer in enumerate(params, start=1):
        out[f"w{i}"] = layer.w
        out[f"b{i}"] = layer.b
    return out


def from_named(named: dict, num_layers: int) -> Params:
    """Inverse of `to_named`."""
    return tuple(Dense(named[f"w{i}"], named[f"b{i}"]) for i in range(1, num_layers + 1))
