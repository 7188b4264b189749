"""The MLP of the paper as pure functions: init, apply to ONE example, and the loss; and the one
interface through which the trainer, the steps and the run directory see ANY model.

Parameters are a tuple of `Dense(w, b)`, one per layer, with w of shape (fan_in, fan_out) and
b of shape (fan_out,): for the paper's 784-700-476-10 network, w1: (784, 700), w2: (700, 476),
w3: (476, 10). Hidden layers use ReLU, the output layer is linear (DEFAULT).
Batches, seeds and sweeps come from `jax.vmap` over these functions.

A flax Module (ModelConfig.arch other than "mlp"; socjax.flaxnet) is the general path. Whatever the
model, code outside this module and flaxnet uses only the model-generic functions below, which take
the ModelConfig: `init`, `forward(cfg)` (the pure apply), `decay_mask`, `named` / `unnamed` (the
run directory's names: w1, b1, ... or flax paths such as Dense_0/kernel), `kernels` (the weights,
by path and shape, in model order) and `tracked_values` (TrackedWeight: a path and an index).
"""

from __future__ import annotations

from typing import NamedTuple

import re
from typing import Callable

import jax
import jax.numpy as jnp

import numpy as np

from socjax.config import ModelConfig, RunConfig, TrackedWeight, check_tracking, mlp_kernels


class Dense(NamedTuple):
    """One fully connected layer: out = in @ w + b. w: (fan_in, fan_out), b: (fan_out,)."""

    w: jax.Array
    b: jax.Array


Params = tuple[Dense, ...]


def init(key: jax.Array, cfg: ModelConfig) -> Params:
    """Draw parameters for `cfg.sizes` (a flax model: its module's init, socjax.flaxnet).

    "torch" (DEFAULT): PyTorch's nn.Linear default, w and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    "glorot": w ~ U(-sqrt(6/(fan_in+fan_out)), +...), b = 0.
    """
    if cfg.is_flax:
        from socjax import flaxnet

        return flaxnet.init(key, cfg)
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


def forward(cfg: ModelConfig) -> Callable:
    """(params, x) -> output for one flat example x: `apply` for the paper's MLP, the flax
    module's apply otherwise (socjax.flaxnet.forward)."""
    if not cfg.is_flax:
        return apply
    from socjax import flaxnet

    return flaxnet.forward(cfg)


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
    """sum of squared weights (and biases when decay_biases); the L2 term is (l2/2) * this. Any
    model's parameters: a bias is a leaf named b<i> or "bias"."""
    return sum(jnp.sum(v**2) for k, v in named(params).items() if decay_biases or not _is_bias(k))


def _is_bias(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == "bias" or (path.startswith("b") and path[1:].isdigit())


def loss(params: Params, x: jax.Array, label: jax.Array, l2: jax.Array, cfg: ModelConfig):
    """The full objective for one example: eq. (10) + (l2/2) * sum(w^2). Returns a scalar.

    The trainer does not differentiate this: it differentiates `data_loss` and applies the decay
    l2*w through optax.add_decayed_weights, which is the same gradient (tests/test_sgd.py) without
    a pass over every weight to form the penalty's value.
    """
    return data_loss(forward(cfg)(params, x), label, cfg.loss) + 0.5 * l2 * l2_penalty(
        params, cfg.decay_biases
    )


def tracked_values(params, tracked: tuple[TrackedWeight, ...]) -> jax.Array:
    """Values of the tracked weights: (K,) float32, in the order of `tracked` (one gather per path)."""
    leaves = named(params)
    paths = [t.path for t in tracked]
    values = jnp.zeros((len(tracked),), jnp.float32)
    for path in dict.fromkeys(paths):
        sel = np.array([i for i, p in enumerate(paths) if p == path], int)
        index = tuple(np.array([tracked[i].index[d] for i in sel], int) for d in range(len(tracked[sel[0]].index)))
        values = values.at[sel].set(leaves[path][index])
    return values


def decay_mask(cfg: ModelConfig):
    """Where L2 acts: every weight, and biases when cfg.decay_biases. A pytree of bools for the
    paper's MLP; for a flax model a function of the parameters giving one (optax takes either)."""
    if cfg.is_flax:
        return lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: cfg.decay_biases or not _is_bias(_path_name(path)), params)
    return tuple(Dense(True, cfg.decay_biases) for _ in range(cfg.num_layers))


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def named(params) -> dict[str, jax.Array]:
    """Every parameter by its run-directory name: {"w1", "b1", ...} for the paper's MLP (1-based
    layers), {"Dense_0/kernel", "Dense_0/bias", ...} (flax paths joined by "/") for a flax model.
    Works on any tree of the parameters' structure (statistics, masks), with or without a run axis."""
    if isinstance(params, tuple):
        out = {}
        for i, layer in enumerate(params, start=1):
            out[f"w{i}"] = layer.w
            out[f"b{i}"] = layer.b
        return out
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def unnamed(arrays: dict, cfg: ModelConfig):
    """Inverse of `named`: the parameter tree of `cfg`'s model from its named arrays."""
    if not cfg.is_flax:
        return tuple(Dense(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(1, cfg.num_layers + 1))
    template = jax.eval_shape(lambda: init(jax.random.key(0), cfg))
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [arrays[_path_name(p)] for p, _ in paths])


def kernels(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(path, shape) of the model's weights in model order: w1 ... wL of the paper's MLP, every
    leaf named "kernel" of a flax model, its module names in natural order (Dense_2 before
    Dense_10), so the last is the output layer of a model built in order."""
    if not cfg.is_flax:
        return mlp_kernels(cfg)
    shapes = named(jax.eval_shape(lambda: init(jax.random.key(0), cfg)))
    found = [(k, tuple(v.shape)) for k, v in shapes.items() if k.rsplit("/", 1)[-1] == "kernel"]
    # flax names a module's layers Dense_0, Dense_1, ...; jax orders dict keys as strings, which
    # puts Dense_10 before Dense_2: order by the numbers in the names instead (natural order)
    natural = lambda path: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]
    return sorted(found, key=lambda kv: natural(kv[0]))


def check(cfg: RunConfig) -> None:
    """What can be checked only with the model built (a flax model): that it builds and maps one
    example to the classes, and the tracked weights against its kernels. ConfigError, one line."""
    if cfg.model.is_flax:
        from socjax import flaxnet

        flaxnet.check(cfg.model)
        check_tracking(cfg, kernels(cfg.model))


def to_named(params: Params) -> dict[str, jax.Array]:
    """{"w1": ..., "b1": ..., ...}: the names used in the run directory (1-based layers)."""
    return named(params)


def from_named(named_arrays: dict, num_layers: int) -> Params:
    """Inverse of `to_named` for the paper's MLP."""
    return tuple(Dense(named_arrays[f"w{i}"], named_arrays[f"b{i}"]) for i in range(1, num_layers + 1))
