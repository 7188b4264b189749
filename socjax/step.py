"""The SGD step seam: the contract every step implementation meets, and how the trainer finds one.

A step takes ONE example and returns the run's next parameters and optimizer state:

    out = step(params, opt_state, x, label, hyper, cfg)      -> StepOutput

    params     model.Params before the step; opt_state: its optax state
    x, label   (784,) float32 and () int32: the example
    hyper      the run's traced settings (`Hyper`: lr, l2; vmapped over runs). The trainer only
               passes it through, so a step may take a richer NamedTuple (e.g. with a fixed 0/1
               pruning mask per weight matrix, applied after every update) without any change to
               the scan that calls it
    cfg        ModelConfig (static)
    out        StepOutput: new params and opt_state; loss (the data loss of eq. (10), no L2) and
               correct (argmax == label), both measured before the update; grads, the data-loss
               gradients, exactly zero where the update is pure weight decay (for --weight-stats)

The trainer (socjax.train) selects the implementation by name, `TrainSpec.step`, from the
registry `socjax.config.STEPS` (name -> "module:function", imported on first use): "xla" is
`xla_step` below, the reference every other implementation is tested against and the path for
GPU/TPU.
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from socjax import model
from socjax.config import STEPS, ConfigError, ModelConfig


class Hyper(NamedTuple):
    """Traced hyperparameters of one run (vmapped for sweeps). lr: (), l2: () float32."""

    lr: jax.Array
    l2: jax.Array


class StepOutput(NamedTuple):
    """What a step returns; see the module docstring. loss: () float32, correct: () bool."""

    params: model.Params
    opt_state: optax.OptState
    loss: jax.Array
    correct: jax.Array
    grads: model.Params


Step = Callable[..., StepOutput]


def make_optimizer(hyper: Hyper, cfg: ModelConfig) -> optax.GradientTransformation:
    """Plain SGD with decoupled L2: updates = -lr * (grad + l2 * w), l2 masked per `cfg`.

    Identical in exact arithmetic to SGD on the loss with (l2/2) sum(w^2) added (test_sgd.py).
    """
    return optax.chain(
        optax.add_decayed_weights(hyper.l2, mask=model.decay_mask(cfg)),
        optax.sgd(hyper.lr),
    )


def xla_step(params, opt_state, x, label, hyper: Hyper, cfg: ModelConfig) -> StepOutput:
    """The reference step: autodiff of eq. (10) on one example, then `make_optimizer`'s update."""

    def objective(p):
        out = model.apply(p, x)
        return model.data_loss(out, label, cfg.loss), out

    (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = make_optimizer(hyper, cfg).update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return StepOutput(new, opt_state, loss, jnp.argmax(out) == label, grads)


def resolve(name: str) -> Step:
    """The step function registered as `name` in config.STEPS ("module:function", or a callable)."""
    if name not in STEPS:
        raise ConfigError(f"unknown step {name!r}; choose {' or '.join(STEPS)}")
    target = STEPS[name]
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
