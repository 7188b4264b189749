"""Any flax.linen Module as a socjax model, beside the paper's pure-function MLP (socjax.model).

`ModelConfig.arch` names the module:

    "flax-mlp"         `MLP`: Dense layers of the widths cfg.sizes[1:], cfg.activation between them
                       (relu or tanh), initialised as cfg.init says (the pure MLP's rules)
    "cnn"              `CNN`, LeNet-like: Conv(8, 5x5) -> act -> 2x2 average pool -> Conv(16, 5x5) ->
                       act -> 2x2 average pool -> flatten -> a Dense + act per hidden width of
                       cfg.sizes[1:-1] -> Dense(cfg.sizes[-1])
    "MODULE:FUNCTION"  FUNCTION() of the Python module MODULE (imported like any import: from the
                       working directory or sys.path) returns a flax.linen.Module; a researcher's own
                       model, trained without editing socjax

A module maps ONE example of shape cfg.input_shape (H, W, C) to cfg.sizes[-1] outputs: the trainer
works per example and makes batches with vmap (flax's Dense and Conv take unbatched inputs). The
data stay flat (N, H*W*C) on the device; `forward` reshapes each example for the module.

Parameters are the module's "params" collection, a nested dict. A parameter is named by its path
joined with "/" (e.g. "Dense_0/kernel", "Conv_1/bias"): the names of params_*.npz and of tracked
weights. Kernels (leaves named "kernel") are the weights: L2 acts on every parameter but biases
(and on biases too with decay_biases), as for the pure MLP.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from socjax.config import ConfigError, ModelConfig

ZOO = ("flax-mlp", "cnn")
ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh}


def _kernel_init(init: str):
    """The pure MLP's weight rule `init` for a kernel of any shape (fan-in: all but the last axis)."""
    if init == "glorot":
        return nn.initializers.glorot_uniform()

    def torch_uniform(key, shape, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return torch_uniform


def _bias_init(init: str, fan_in: int):
    if init == "glorot":
        return nn.initializers.zeros_init()
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class MLP(nn.Module):
    """The flax twin of the pure-function MLP: Dense_i(x) = x @ kernel + bias, activation between."""

    widths: Sequence[int]
    activation: str = "relu"
    init_rule: str = "torch"  # ModelConfig.init (a Module's own `init` is its initialiser)

    @nn.compact
    def __call__(self, x):
        h = x.reshape(-1)
        for i, width in enumerate(self.widths):
            h = nn.Dense(width, kernel_init=_kernel_init(self.init_rule), bias_init=_bias_init(self.init_rule, h.shape[-1]))(h)
            if i < len(self.widths) - 1:
                h = ACTIVATIONS[self.activation](h)
        return h


class CNN(nn.Module):
    """LeNet-like: two 5x5 convolutions (8 and 16 channels, SAME padding) each followed by the
    activation and a 2x2 average pool, then a Dense head of the `hidden` widths and `classes`."""

    hidden: Sequence[int]
    classes: int
    activation: str = "relu"
    init_rule: str = "torch"  # ModelConfig.init (a Module's own `init` is its initialiser)

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        h = x
        for channels in (8, 16):
            h = nn.Conv(channels, (5, 5), padding="SAME", kernel_init=_kernel_init(self.init_rule),
                        bias_init=_bias_init(self.init_rule, 25 * h.shape[-1]))(h)
            h = nn.avg_pool(act(h), (2, 2), strides=(2, 2))
        h = h.reshape(-1)
        widths = (*self.hidden, self.classes)
        for i, width in enumerate(widths):
            h = nn.Dense(width, kernel_init=_kernel_init(self.init_rule), bias_init=_bias_init(self.init_rule, h.shape[-1]))(h)
            if i < len(widths) - 1:
                h = act(h)
        return h


@functools.lru_cache(maxsize=32)
def module(cfg: ModelConfig) -> nn.Module:
    """The flax Module `cfg.arch` names (see the module docstring); ConfigError, one line, when a
    user's MODULE:FUNCTION does not import, is not callable, or does not return a Module."""
    if cfg.arch == "flax-mlp":
        return MLP(tuple(cfg.sizes[1:]), cfg.activation, cfg.init)
    if cfg.arch == "cnn":
        return CNN(tuple(cfg.sizes[1:-1]), cfg.sizes[-1], cfg.activation, cfg.init)
    name, _, attr = cfg.arch.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` would: the working directory's modules import
        sys.path.append(os.getcwd())
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # a user's file: any error while importing it is theirs to see, in one line
        raise ConfigError(f"--model {cfg.arch}: cannot import {name} ({type(e).__name__}: {e})".replace("\n", " "))
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ConfigError(f"--model {cfg.arch}: {name} has no function {attr}")
    try:
        net = fn()
    except Exception as e:
        raise ConfigError(f"--model {cfg.arch}: {attr}() failed ({type(e).__name__}: {e})".replace("\n", " "))
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--model {cfg.arch}: {attr}() returned a {type(net).__name__}, not a flax.linen.Module")
    return net


def init(key: jax.Array, cfg: ModelConfig):
    """The module's "params" for one example of cfg.input_shape."""
    return module(cfg).init(key, jnp.zeros(cfg.input_shape, jnp.float32))["params"]


def forward(cfg: ModelConfig) -> Callable:
    """(params, x) -> outputs for one flat example x of prod(cfg.input_shape) values."""
    net = module(cfg)

    def apply(params, x):
        return net.apply({"params": params}, x.reshape(cfg.input_shape))

    return apply


def check(cfg: ModelConfig) -> None:
    """Build the module and trace one example abstractly (nothing is computed): ConfigError, one
    line, when it cannot be built or initialised, or its output is not (cfg.sizes[-1],)."""
    try:
        params = jax.eval_shape(lambda: init(jax.random.key(0), cfg))
        out = jax.eval_shape(forward(cfg), params, jax.ShapeDtypeStruct((math.prod(cfg.input_shape),), jnp.float32))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--model {cfg.arch}: cannot initialise it on one example of shape {cfg.input_shape} "
                          f"({type(e).__name__}: {e})".replace("\n", " "))
    if out.shape != (cfg.sizes[-1],):
        raise ConfigError(f"--model {cfg.arch}: maps one example to shape {out.shape}, not the "
                          f"({cfg.sizes[-1]},) outputs of the {cfg.sizes[-1]} classes")
