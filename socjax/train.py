"""Per-example SGD as one compiled `lax.scan`, vmapped over runs (seeds and hyperparameter sweeps).

The contract, for one run:

    state, out = train_chunk(state, hyper, data, spec=..., num_epochs=E)

runs E epochs. Epoch e (global, counted in `state.epoch`) visits the training examples in the order
`permutation(fold_in(state.key, e), N)`, one step per example (the paper's, batch_size 1):

    w <- w - lr * (dL/dw + l2 * w)          L = eq. (10) on one example; l2 on weights (and biases)

or, with `spec.batch_size` B > 1, one step per B consecutive examples of that order (L their mean
loss; floor(N / B) steps, the last N mod B examples of the order sit the epoch out), and with
`spec.optimizer` another optax rule fed the same gradient dL/dw + l2 * w (socjax.step.make_optimizer).

Each step is `socjax.step`'s contract, implemented by the Stepper named in `spec.step`; a run
enters the Stepper's form at the start of every epoch and leaves it at the end, so between epochs
(and chunks) the state is ordinary parameters whatever the step.
`out.trajectory[t, k]` is tracked weight k after step (t + 1) * stride of the chunk (steps, not
examples, as everywhere: `stride` and the recorded layout count steps), and
`out.metrics` holds per-epoch train loss/accuracy (mean over the epoch's steps, each taken before
its update, so no extra pass is spent) and test loss/accuracy (frozen parameters, end of epoch).

`make_train_chunk` returns this function jitted and vmapped over runs: every leaf of `state` and
`hyper` gains a leading run axis; `data` is shared and passed as an argument (never closed over).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from socjax import model, weight_stats
from socjax.config import SGD, ModelConfig, OptimizerConfig, TrackedWeight
from socjax.data import Dataset
from socjax.step import Hyper, make_optimizer
from socjax.step import resolve as resolve_step


class TrainState(NamedTuple):
    """What a run carries between steps and chunks.

    params: model.Params; opt_state: optax state of `make_optimizer`;
    key: typed PRNG key for the example order; epoch: () int32, epochs completed;
    stats: weight_stats.WeightStats with --weight-stats (zeros until the recording phase
        accumulates into it), else None.

    Checkpoints save and restore this pytree generically (socjax.checkpoint), so a new field
    needs no change there.
    """

    params: model.Params
    opt_state: optax.OptState
    key: jax.Array
    epoch: jax.Array
    stats: weight_stats.WeightStats | None = None


class EpochMetrics(NamedTuple):
    """Per epoch, each (E,) float32: train loss/accuracy (running, over the epoch's SGD steps) and
    test loss/accuracy (frozen parameters at the end of the epoch). Loss is the data loss, no L2."""

    train_loss: jax.Array
    train_acc: jax.Array
    test_loss: jax.Array
    test_acc: jax.Array


class ChunkOutput(NamedTuple):
    """metrics: EpochMetrics of (E,); trajectory: (E * S // stride, K) float32 for S steps per epoch,
    or None when not recording; order: (E, S * batch_size) int32, the examples of every step in
    the order they were taken, or None unless save_order;
    finite: () bool, every parameter and every step's loss in the chunk is finite; zero_grad:
    (E * S // stride, ceil(K / 8)) uint8, with spec.zero_grad, row t's flags packed (np.packbits):
    tracked weight k's data-loss gradient was exactly 0 at every step of the increment ending at
    trajectory row t; else None."""

    metrics: EpochMetrics
    trajectory: jax.Array | None
    order: jax.Array | None
    finite: jax.Array
    zero_grad: jax.Array | None = None


@dataclass(frozen=True)
class TrainSpec:
    """Static (hashable) part of training: anything that fixes a shape or a loop length."""

    model: ModelConfig
    tracked: tuple[TrackedWeight, ...] = ()
    stride: int = 1
    record: bool = False
    save_order: bool = False
    weight_stats: bool = False  # accumulate state.stats at every step (recording phase)
    step: str = "xla"  # the step implementation: a key of config.STEPS (see socjax.step.Stepper)
    optimizer: OptimizerConfig = SGD
    batch_size: int = 1
    zero_grad: bool = False  # with record: each row's zero-gradient flags (the step must support it)


def init_state(key: jax.Array, cfg: ModelConfig, with_stats: bool = False, opt: OptimizerConfig = SGD) -> TrainState:
    """A run's initial state from its root key (typed, from jax.random.key(seed)); with_stats adds
    zeroed --weight-stats accumulators; opt_state is `opt`'s (empty for sgd, moments for the others)."""
    init_key, order_key = jax.random.split(key)
    params = model.init(init_key, cfg)
    # optimizer states hold no hyperparameters (make_optimizer), so any Hyper builds the same state.
    opt_state = make_optimizer(Hyper(1.0, 0.0), cfg, opt).init(params)
    stats = weight_stats.init(params) if with_stats else None
    return TrainState(params, opt_state, order_key, jnp.zeros((), jnp.int32), stats)


def init_runs(seeds, cfg: ModelConfig, with_stats: bool = False, opt: OptimizerConfig = SGD) -> TrainState:
    """Initial states of several runs, stacked on a leading axis: one per seed in `seeds`.

    Built one seed at a time, op by op (not one jit of the vmapped `init_state`): each of
    jax.random's draws is then its own compiled program per shape, which every configuration,
    number of seeds and process shares through the compilation cache, where a jit of the whole
    state compiled for about 1.7 s per configuration and seed count (the draws inlined). The
    numbers are the same bit for bit (tests/test_train.py)."""
    states = [init_state(jax.random.key(jnp.uint32(seed)), cfg, with_stats, opt) for seed in seeds]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def epoch_order(key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """The example order of a global epoch: (n,) int32, a permutation of 0..n-1."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def evaluate(params: model.Params, x: jax.Array, y: jax.Array, cfg: ModelConfig):
    """Mean data loss and accuracy over a set: x (M, 784), y (M,). Returns two () float32.

    Vmapped over runs, each run is evaluated on its own (`sequential_vmap`: a loop over the runs,
    not one batched product), so a run's test metrics do not depend on which runs share its
    program: vmapped with 4 runs, XLA's CPU products of the whole test set round differently than
    with 2 (a sweep sharded over processes or devices would differ in the last bit)."""

    @jax.custom_batching.sequential_vmap
    def one(params, x, y):
        out = jax.vmap(model.forward(cfg), in_axes=(None, 0))(params, x)
        losses = jax.vmap(model.data_loss, in_axes=(0, 0, None))(out, y, cfg.loss)
        return jnp.mean(losses), jnp.mean(jnp.argmax(out, axis=-1) == y)

    return one(params, x, y)


@jax.custom_batching.sequential_vmap
def _means(loss, correct):
    """The epoch's mean train loss and accuracy over its steps, run by run when vmapped (as in
    `evaluate`: a reduction batched over 4 runs rounds differently than over 2)."""
    return jnp.mean(loss), jnp.mean(correct)


def train_chunk(state: TrainState, hyper: Hyper, data: Dataset, *, spec: TrainSpec, num_epochs: int):
    """Run `num_epochs` epochs of one run. See the module docstring for the contract."""
    n, b = data.train_x.shape[0], spec.batch_size
    steps = n // b  # steps per epoch
    if steps < 1 or steps % spec.stride:
        raise ValueError(f"stride {spec.stride} must divide the steps per epoch {steps} ({n} examples, batch {b})")
    cfg = spec.model
    flags = spec.record and spec.zero_grad
    stepper = resolve_step(spec.step)(cfg, spec.weight_stats and spec.record, spec.optimizer,
                                      **({"zero_of": spec.tracked} if flags else {}))

    def step(carry, i):
        carry, loss, correct = stepper.step(carry, data.train_x[i], data.train_y[i], hyper)
        return carry, (loss, correct)

    def block(carry, idx):  # idx: (stride,) or (stride, b) example indices; records after the last step
        carry, stats = jax.lax.scan(step, carry, idx)
        tracked = stepper.tracked(carry, spec.tracked) if spec.record else None
        zero = None
        if flags:
            carry, zero = stepper.zero(carry)
            zero = jnp.packbits(zero)  # ceil(K / 8) bytes, weight k at bit 7 - k % 8 of byte k // 8
        return carry, (stats, (tracked, zero))

    def epoch(state: TrainState, _):
        order = epoch_order(state.key, state.epoch, n)
        if b > 1:
            order = order[: steps * b]
        carry = stepper.enter(state.params, state.opt_state, state.stats, hyper)
        blocks = order.reshape(steps // spec.stride, spec.stride, *((b,) if b > 1 else ()))
        carry, ((loss, correct), (tracked, zero)) = jax.lax.scan(block, carry, blocks)
        params, opt_state, stats = stepper.leave(carry)
        test_loss, test_acc = evaluate(params, data.test_x, data.test_y, cfg)
        metrics = EpochMetrics(*_means(loss, correct), test_loss, test_acc)
        state = TrainState(params, opt_state, state.key, state.epoch + 1, stats)
        return state, (metrics, tracked, zero, order if spec.save_order else None)

    state, (metrics, tracked, zero, order) = jax.lax.scan(epoch, state, None, length=num_epochs)
    if tracked is not None:
        tracked = tracked.reshape(num_epochs * (steps // spec.stride), -1)
    if zero is not None:
        zero = zero.reshape(num_epochs * (steps // spec.stride), -1)
    # the mean train loss is NaN/inf if any step's loss was; one pass over the parameters per chunk
    finite = jnp.all(jnp.isfinite(metrics.train_loss)) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(state.params)])
    )
    return state, ChunkOutput(metrics, tracked, order, finite, zero)


def make_train_chunk(spec: TrainSpec, num_epochs: int):
    """`train_chunk` jitted and vmapped over runs: (state[R], hyper[R], data) -> (state[R], out[R]).

    The input state's buffers are donated (updated in place); do not reuse them after the call.
    """

    def chunk(state, hyper, data):
        return train_chunk(state, hyper, data, spec=spec, num_epochs=num_epochs)

    return jax.jit(jax.vmap(chunk, in_axes=(0, 0, None)), donate_argnums=0)


def select_tracked(cfg: ModelConfig, count: int, seed: int) -> tuple[TrackedWeight, ...]:
    """`count` distinct weights drawn uniformly at random: count // 2 from the model's first kernel
    (w1 of the paper's MLP), the rest from its second (w2) (DEFAULT: an even split, so both layers
    are represented). Sorted by kernel, then index."""
    first_two = model.kernels(cfg)[:2]
    keys = jax.random.split(jax.random.key(seed))
    out = []
    for (path, shape), k, c in zip(first_two, keys, (count // 2, count - count // 2)):
        flat = np.asarray(jax.random.choice(k, int(np.prod(shape)), (c,), replace=False))
        out += [TrackedWeight(path, tuple(int(i) for i in idx)) for idx in zip(*np.unravel_index(flat, shape))]
    order = {path: i for i, (path, _) in enumerate(first_two)}
    return tuple(sorted(out, key=lambda t: (order[t.path], t.index)))
