"""The SGD step seam: the contract every step implementation meets, and how the trainer finds one.

A step takes ONE example, or one minibatch, and returns the run's next parameters and optimizer
state:

    out = step(params, opt_state, x, label, hyper, cfg, opt)      -> StepOutput

    params     model.Params before the step; opt_state: its optax state (`make_optimizer`)
    x, label   (784,) float32 and () int32: the example; or (B, 784) and (B,): a minibatch, whose
               loss is the mean of its examples' losses
    hyper      the run's traced settings (`Hyper`: lr, l2; vmapped over runs). The trainer only
               passes it through, so a step may take a richer NamedTuple (e.g. with a fixed 0/1
               pruning mask per weight matrix, applied after every update) without any change to
               the scan that calls it
    cfg        ModelConfig (static)
    opt        OptimizerConfig (static; default the paper's plain SGD)
    out        StepOutput: new params and opt_state; loss (the data loss of eq. (10), no L2) and
               correct (argmax == label; for a minibatch the share of its examples), both measured
               before the update; grads, the data-loss gradients, exactly zero where that gradient
               is (for SGD, where the update is pure weight decay; for --weight-stats)

The trainer (socjax.train) drives an implementation as a `Stepper`: four pure functions that move
one run into the implementation's own form at the start of an epoch, step it, read the tracked
weights from it, and move it back to ordinary parameters at the end of the epoch. A step with the
contract above is a Stepper whose form is the parameters themselves (`params_stepper`); the native
CPU step (socjax.native) keeps its own. It selects the Stepper by name, `TrainSpec.step`, from the
registry `socjax.config.STEPS` (name -> "module:function" of a factory
`(cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig) -> Stepper`, imported on first use;
one that also takes `zero_of=tracked` records the zero-gradient flags, see `Stepper.zero`): "xla" is `xla_step`
below, the reference every other implementation is tested against and the path for GPU/TPU.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from socjax import model, weight_stats
from socjax.config import (AUTO_STEP, MASKED_STEPS, SGD, STEPS, ConfigError, ModelConfig, OptimizerConfig, RunConfig,
                           TrackedWeight)


class Hyper(NamedTuple):
    """Traced hyperparameters of one run (vmapped for sweeps). lr: (), l2: () float32."""

    lr: jax.Array
    l2: jax.Array


class StepOutput(NamedTuple):
    """What a step returns; see the module docstring. loss: () float32, correct: () bool (one
    example) or () float32 (a minibatch's share)."""

    params: model.Params
    opt_state: optax.OptState
    loss: jax.Array
    correct: jax.Array
    grads: model.Params


Step = Callable[..., StepOutput]


class Stepper(NamedTuple):
    """A step implementation as the trainer drives it through one epoch of one run.

    enter(params, opt_state, stats, hyper) -> carry    the run in the implementation's own form (hyper:
        the run's, for what a step needs once per epoch, e.g. a MaskedHyper's mask in its layout)
    step(carry, x, label, hyper) -> (carry, loss, correct)    one step (the contract above);
        with `accumulate`, it also adds the step to the --weight-stats statistics
    tracked(carry, tracked) -> (K,) float32     the values of the tracked weights
    leave(carry) -> (params, opt_state, stats)  back to ordinary parameters (and WeightStats)
    """

    enter: Callable
    step: Callable
    tracked: Callable
    leave: Callable
    zero: Callable | None = None  # zero(carry) -> (carry, (K,) bool), see below; None: not recorded

    # zero, where a Stepper has it (params_stepper given `zero_of`): whether each tracked weight's
    # data-loss gradient was exactly 0 at every step since the last call (or the epoch's start), and
    # the carry with that record reset. The trainer calls it right after `tracked`, so the flag of a
    # trajectory row says whether the increment ending there had a zero gradient throughout.


def params_stepper(step: Step, cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig = SGD,
                   zero_of: tuple[TrackedWeight, ...] | None = None) -> Stepper:
    """The Stepper of a `step` with the contract above: the carry is (params, opt_state, stats), and
    with `accumulate` every step updates `stats` (socjax.weight_stats). With `zero_of` (the tracked
    weights) the carry also holds their zero-gradient record, and the Stepper has `zero`."""

    def enter(params, opt_state, stats, hyper):
        if zero_of is None:
            return params, opt_state, stats
        return params, opt_state, stats, jnp.ones((len(zero_of),), bool)

    def one(carry, x, label, hyper):
        params, opt_state, stats = carry[:3]
        out = step(params, opt_state, x, label, hyper, cfg, opt)
        if accumulate:
            stats = weight_stats.update(stats, params, out.params, out.grads)
        if zero_of is None:
            return (out.params, out.opt_state, stats), out.loss, out.correct
        zero = carry[3] & (model.tracked_values(out.grads, zero_of) == 0)
        return (out.params, out.opt_state, stats, zero), out.loss, out.correct

    def tracked(carry, weights: tuple[TrackedWeight, ...]):
        return model.tracked_values(carry[0], weights)

    def zero(carry):
        return (*carry[:3], jnp.ones_like(carry[3])), carry[3]

    return Stepper(enter, one, tracked, lambda carry: carry[:3], None if zero_of is None else zero)


def make_optimizer(hyper: Hyper, cfg: ModelConfig, opt: OptimizerConfig = SGD) -> optax.GradientTransformation:
    """The L2 gradient l2 * w added to the data-loss gradient (l2 masked per `cfg`), then `opt`:

        sgd       updates = -lr * (grad + l2 * w): identical in exact arithmetic to SGD on the loss
                  with (l2/2) sum(w^2) added (test_sgd.py), the paper's rule
        momentum  optax.sgd(lr, momentum)                  nesterov  the same with nesterov=True
        adam      optax.adam(lr, b1, b2, eps)              adamw     optax.adamw(lr, b1, b2, eps,
                  weight_decay), its decoupled decay masked like L2

    Only the optimizer's state (moments, counts) lives in opt_state; lr and l2 come from `hyper` at
    every step, so any Hyper builds the same initial state.
    """
    tail = {
        "sgd": lambda: optax.sgd(hyper.lr),
        "momentum": lambda: optax.sgd(hyper.lr, momentum=opt.momentum),
        "nesterov": lambda: optax.sgd(hyper.lr, momentum=opt.momentum, nesterov=True),
        "adam": lambda: optax.adam(hyper.lr, b1=opt.b1, b2=opt.b2, eps=opt.eps),
        "adamw": lambda: optax.adamw(hyper.lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                                     mask=model.decay_mask(cfg)),
    }[opt.name]()
    return optax.chain(optax.add_decayed_weights(hyper.l2, mask=model.decay_mask(cfg)), tail)


def xla_step(params, opt_state, x, label, hyper: Hyper, cfg: ModelConfig, opt: OptimizerConfig = SGD) -> StepOutput:
    """The reference step: autodiff of eq. (10) on one example (x of one dimension) or of its mean
    over a minibatch (x of two), then `make_optimizer`'s update."""

    apply = model.forward(cfg)

    def objective(p):
        if x.ndim == 1:
            out = apply(p, x)
            return model.data_loss(out, label, cfg.loss), jnp.argmax(out) == label
        out = jax.vmap(apply, in_axes=(None, 0))(p, x)
        losses = jax.vmap(model.data_loss, in_axes=(0, 0, None))(out, label, cfg.loss)
        return jnp.mean(losses), jnp.mean(jnp.argmax(out, axis=-1) == label)

    (loss, correct), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = make_optimizer(hyper, cfg, opt).update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return StepOutput(new, opt_state, loss, correct, grads)


def xla_stepper(cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig = SGD,
                zero_of: tuple[TrackedWeight, ...] | None = None) -> Stepper:
    """The registry's "xla": `xla_step` as a Stepper (with `zero`, given the tracked weights)."""
    return params_stepper(xla_step, cfg, accumulate, opt, zero_of)


class MaskedHyper(NamedTuple):
    """Hyperparameters of a pruned run: lr, l2 as in `Hyper`; mask: model.Params of 0/1 float32
    (1 keeps the element), applied after every update, so a pruned element stays exactly 0."""

    lr: jax.Array
    l2: jax.Array
    mask: model.Params


def masked(step: Step) -> Step:
    """`step` for a pruned network: the same update, then every element multiplied by hyper.mask
    (a MaskedHyper). Pruned elements are 0 before and after; the others move as under `step`."""

    def one(params, opt_state, x, label, hyper: MaskedHyper, cfg: ModelConfig, opt: OptimizerConfig = SGD):
        out = step(params, opt_state, x, label, Hyper(hyper.lr, hyper.l2), cfg, opt)
        return out._replace(params=jax.tree.map(jnp.multiply, out.params, hyper.mask))

    return one


def masked_xla_stepper(cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig = SGD) -> Stepper:
    """The registry's "masked-xla": `masked(xla_step)` as a Stepper (takes MaskedHyper)."""
    return params_stepper(masked(xla_step), cfg, accumulate, opt)


MASKED_PREFIX = "masked-"


def resolve(name: str) -> Callable[[ModelConfig, bool, OptimizerConfig], Stepper]:
    """The Stepper factory registered as `name` in config.STEPS ("module:function", or a callable),
    or as "masked-<step>" in config.MASKED_STEPS."""
    if name.startswith(MASKED_PREFIX) and name[len(MASKED_PREFIX):] in MASKED_STEPS:
        target = MASKED_STEPS[name[len(MASKED_PREFIX):]]
    elif name in STEPS:
        target = STEPS[name]
    else:
        raise ConfigError(f"unknown step {name!r}; choose {' or '.join(STEPS)}")
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def native_unavailable(cfg: RunConfig) -> str | None:
    """Why the native step (socjax.native) cannot train `cfg` here, in one line; None if it can.
    Builds and registers the kernel on first use (seconds, then cached)."""
    backend = jax.default_backend()
    if backend != "cpu":
        return f"the backend is {backend}; the native step runs on the CPU"
    if cfg.model.is_flax:
        return f"the native step trains the paper's pure-function MLP; --model {cfg.model.arch} runs on xla"
    if cfg.optimizer.name != "sgd":
        return f"the native step is the paper's plain SGD; --optimizer {cfg.optimizer.name} runs on xla"
    if cfg.batch_size != 1:
        return f"the native step takes one example per step; --batch-size {cfg.batch_size} runs on xla"
    big = [(lr, l2) for _, lr, l2 in cfg.runs() if lr * l2 >= 1]
    if big:
        return f"the native step needs lr * l2 < 1, got lr {big[0][0]:g} and l2 {big[0][1]:g}"
    from socjax.native import build

    return build.unavailable()


def choose(cfg: RunConfig) -> tuple[RunConfig, str | None]:
    """`cfg` with step "auto" resolved: native when it can train cfg here, else xla. Returns the
    config and, when auto chose xla, a one-line note saying why. Raises ConfigError when cfg names
    the native step and it cannot run here."""
    if cfg.step not in ("native", AUTO_STEP):
        return cfg, None
    why = native_unavailable(cfg)
    if cfg.step == "native":
        if why:
            raise ConfigError(f"--step native: {why}")
        return cfg, None
    if why:
        return dataclasses.replace(cfg, step="xla"), f"step: xla ({why})"
    return dataclasses.replace(cfg, step="native"), None
