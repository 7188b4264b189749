"""The native SGD step (sgd.cc) as the trainer drives it: the run in the kernel's own form.

Within an epoch a run is carried as `Carry`: every layer's weights W = s * V, with V padded and
flattened into one buffer (the last layer transposed), the biases likewise, and each layer's scale
s as a float32 pair hi + lo (the kernel works in double). `enter` builds it from ordinary
parameters with s = 1; `leave` folds the scales back (and, with --weight-stats, merges the epoch's
sums into the run's WeightStats). At every epoch boundary the state is ordinary parameters and
statistics, so checkpoints, resume and analysis are the same for every step.

The kernel's contract is socjax.step's (one example, same update, same loss and correct), exact up
to float32 rounding; tests/test_native.py checks it against a float64 replay and the XLA step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from socjax import model, weight_stats
from socjax.config import LOSSES, SGD, ConfigError, ModelConfig, OptimizerConfig, TrackedWeight
from socjax.native import build
from socjax.step import Stepper

LANES = 16  # sgd.cc's kLanes: stored rows are padded to a multiple of 16 floats (64 bytes)
# sgd.cc's Row: the rows of StatsCarry.acc
SQ, ABS, LIVE_SUM, LIVE_SQ, LIVE_ABS = range(5)
ACC_ROWS = 5


def padded(n: int) -> int:
    return -(-n // LANES) * LANES


class Layout(NamedTuple):
    """Where layer l lives in the flat buffers: weights[w_at[l]:], rows of `row[l]` floats (the
    last layer transposed), biases[b_at[l]:]. Mirrors `Layout` in sgd.cc."""

    sizes: tuple[int, ...]
    row: tuple[int, ...]
    w_at: tuple[int, ...]
    b_at: tuple[int, ...]
    w_size: int
    b_size: int

    @staticmethod
    def of(sizes: tuple[int, ...]) -> "Layout":
        layers = len(sizes) - 1
        row, w_at, b_at, w, b = [], [], [], 0, 0
        for l in range(layers):
            last = l == layers - 1
            row.append(padded(sizes[l]) if last else padded(sizes[l + 1]))
            w_at.append(w)
            b_at.append(b)
            w += (sizes[l + 1] if last else sizes[l]) * row[-1]
            b += padded(sizes[l + 1])
        return Layout(tuple(sizes), tuple(row), tuple(w_at), tuple(b_at), w, b)

    def stored_index(self, t: TrackedWeight) -> int:
        """Flat index of w{t.layer}[t.row, t.col] in the weights buffer."""
        l = t.layer - 1
        if l == len(self.sizes) - 2:
            return self.w_at[l] + t.col * self.row[l] + t.row
        return self.w_at[l] + t.row * self.row[l] + t.col


class Carry(NamedTuple):
    """One run in the kernel's form. weights: (layout.w_size,), biases: (layout.b_size,),
    scales: (layers, 2) float32 (hi, lo) of each layer's s; opt_state rides along; stats is the
    run's WeightStats (or None), or while accumulating a StatsCarry; mask: for a pruned network
    (masked_stepper), the (weights, biases)-shaped 0/1 buffers of step.MaskedHyper's mask, else None."""

    weights: jax.Array
    biases: jax.Array
    scales: jax.Array
    opt_state: optax.OptState
    stats: "weight_stats.WeightStats | StatsCarry | None"
    mask: tuple[jax.Array, jax.Array] | None = None


def to_stored(params: model.Params, layout: Layout):
    """(weights, biases) buffers of ordinary parameters, with scale 1."""
    ws, bs = [], []
    last = len(params) - 1
    for l, layer in enumerate(params):
        w = layer.w.T if l == last else layer.w
        ws.append(jnp.pad(w, ((0, 0), (0, layout.row[l] - w.shape[1]))).ravel())
        bs.append(jnp.pad(layer.b, (0, padded(layer.b.shape[0]) - layer.b.shape[0])))
    return jnp.concatenate(ws), jnp.concatenate(bs)


def unstack_weights(flat, layout: Layout) -> list[jax.Array]:
    """The per-layer (fan_in, fan_out) arrays of a weights-shaped buffer (stored values, or any
    per-weight quantity in the same layout): unpadded, the last layer transposed back."""
    sizes, layers = layout.sizes, len(layout.sizes) - 1
    out = []
    for l in range(layers):
        last = l == layers - 1
        rows, cols = (sizes[l + 1], sizes[l]) if last else (sizes[l], sizes[l + 1])
        v = flat[layout.w_at[l]: layout.w_at[l] + rows * layout.row[l]].reshape(rows, layout.row[l])[:, :cols]
        out.append(v.T if last else v)
    return out


def unstack_biases(flat, layout: Layout) -> list[jax.Array]:
    """The per-layer (fan_out,) arrays of a biases-shaped buffer, unpadded."""
    return [flat[at: at + n] for at, n in zip(layout.b_at, layout.sizes[1:])]


def from_stored(weights, biases, scales, layout: Layout, decay_biases: bool) -> model.Params:
    """Ordinary parameters from the stored form: W = (hi + lo) * V, unpadded, the last layer
    transposed back; biases share their layer's scale when they decay."""
    out = []
    for l, (v, vb) in enumerate(zip(unstack_weights(weights, layout), unstack_biases(biases, layout))):
        hi, lo = scales[l, 0], scales[l, 1]
        out.append(model.Dense(v * hi + v * lo, vb * hi + vb * lo if decay_biases else vb))
    return tuple(out)


class StatsCarry(NamedTuple):
    """--weight-stats within an epoch, in the kernel's form (sgd.cc explains the sums):
    acc: (ACC_ROWS, w_size + b_size) sums of dw^2 and |dw| (the weights' telescoped), and of dw, dw^2
    and |dw| over the touched steps only (rows SQ, ABS, LIVE_SUM, LIVE_SQ, LIVE_ABS); touched:
    (w_size + b_size,) int32 steps with a nonzero gradient; prefix: (layers, 4) the decay prefix sums
    P1, P2 as (hi, lo) pairs; hist: (layers, NUM_BINS + 2) int32; steps: () int32 steps taken;
    start: the parameters at the epoch's start; total: the WeightStats of the epochs before."""

    acc: jax.Array
    touched: jax.Array
    prefix: jax.Array
    hist: jax.Array
    steps: jax.Array
    start: model.Params
    total: weight_stats.WeightStats


def _call(target: str, buffers, x, label, lr, l2, *inputs, **attrs):
    """The kernel `target` on (x, label, lr, l2, *buffers, *inputs), updating `buffers` in place
    (aliased); `inputs` are read only. Returns (*buffers, loss, correct). Vmapped calls pass every
    run at once (runs go to threads)."""
    like = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    call = jax.ffi.ffi_call(target, (*map(like, buffers), scalar, scalar), vmap_method="broadcast_all",
                            input_output_aliases={4 + i: i for i in range(len(buffers))})
    return call(x, label.astype(jnp.int32), lr, l2, *buffers, *inputs, **attrs)


def sgd_step(weights, biases, scales, x, label, lr, l2, *, sizes, loss: str, decay_biases: bool, mask=None):
    """One call of the kernel: the new (weights, biases, scales), the loss and correct (0/1). mask:
    None, or (weights-shaped, biases-shaped) 0/1 buffers multiplying every update (a pruned network)."""
    settings = dict(sizes=np.asarray(sizes, np.int64), loss=np.int64(LOSSES.index(loss)),
                    decay_biases=np.int64(decay_biases))
    no_mask = (jnp.zeros((0,), jnp.float32),) * 2  # empty buffers: the kernel applies no mask
    return _call("socjax_sgd_step", (weights, biases, scales), x, label, lr, l2, *(mask or no_mask), **settings)


def sgd_step_stats(weights, biases, scales, stats: StatsCarry, x, label, lr, l2, *, sizes, loss: str,
                   decay_biases: bool):
    """sgd_step that also adds the step to `stats`: (weights, biases, scales, stats, loss, correct)."""
    weights, biases, scales, acc, touched, prefix, hist, loss_, correct = _call(
        "socjax_sgd_step_stats", (weights, biases, scales, stats.acc, stats.touched, stats.prefix, stats.hist),
        x, label, lr, l2, sizes=np.asarray(sizes, np.int64), loss=np.int64(LOSSES.index(loss)),
        decay_biases=np.int64(decay_biases), octave_lo=np.int64(weight_stats.OCTAVES[0]),
        per_octave=np.int64(weight_stats.BINS_PER_OCTAVE), num_bins=np.int64(weight_stats.NUM_BINS))
    stats = stats._replace(acc=acc, touched=touched, prefix=prefix, hist=hist, steps=stats.steps + 1)
    return weights, biases, scales, stats, loss_, correct


def merge_stats(stats: StatsCarry, end: model.Params, weights, layout: Layout) -> weight_stats.WeightStats:
    """The epoch's sums merged into the running WeightStats (Chan et al.'s pairwise update).

    Per element, over the epoch's n steps: sum dw = end - start; sum dw^2 and sum |dw| close each
    weight's pending decay (+ V^2 P2, + |V| P1); pure-decay steps = n - touched; the non-decay
    moments from the touched steps' own sums, merged over each element's own count.
    """
    total, n_b = stats.total, stats.steps.astype(jnp.float32)
    w_size = layout.w_size
    v = unstack_weights(weights, layout)
    p1 = stats.prefix[:, 0] + stats.prefix[:, 1]
    p2 = stats.prefix[:, 2] + stats.prefix[:, 3]
    sq = [s + vl * vl * p2[l] for l, (s, vl) in enumerate(zip(unstack_weights(stats.acc[SQ, :w_size], layout), v))]
    ab = [s + jnp.abs(vl) * p1[l] for l, (s, vl) in enumerate(zip(unstack_weights(stats.acc[ABS, :w_size], layout), v))]
    as_params = lambda ws, bs: tuple(model.Dense(w, b) for w, b in zip(ws, bs))
    unstack = lambda flat: as_params(unstack_weights(flat[:w_size], layout), unstack_biases(flat[w_size:], layout))
    sq = as_params(sq, unstack_biases(stats.acc[SQ, w_size:], layout))
    ab = as_params(ab, unstack_biases(stats.acc[ABS, w_size:], layout))
    touched = unstack(stats.touched)
    n = total.count + n_b
    tree = jax.tree.map
    mean_b = tree(lambda stop, start: (stop - start) / n_b, end, stats.start)
    m2_b = tree(lambda s2, m: jnp.maximum(s2 - n_b * m * m, 0.0), sq, mean_b)
    delta = tree(jnp.subtract, mean_b, total.mean)
    mean = tree(lambda m, d: m + d * (n_b / n), total.mean, delta)
    m2 = tree(lambda a, b, d: a + b + d * d * (total.count * n_b / n), total.m2, m2_b, delta)
    mean_abs = tree(lambda a, s: a + (s - n_b * a) / n, total.mean_abs, ab)
    decay = tree(lambda d, t: d + (stats.steps - t), total.decay, touched)
    hist = tuple(h + stats.hist[l] for l, h in enumerate(total.hist))
    # the non-decay moments: the same pairwise update with each element's own counts
    n_a = tree(lambda d: total.count - d.astype(jnp.float32), total.decay)
    t_b = tree(lambda t: t.astype(jnp.float32), touched)
    n_live = tree(lambda a, b: jnp.maximum(a + b, 1.0), n_a, t_b)
    lmean_b = tree(lambda s, t: s / jnp.maximum(t, 1.0), unstack(stats.acc[LIVE_SUM]), t_b)
    lm2_b = tree(lambda s2, m, t: jnp.maximum(s2 - t * m * m, 0.0), unstack(stats.acc[LIVE_SQ]), lmean_b, t_b)
    ldelta = tree(lambda m_b, m_a, t: jnp.where(t > 0, m_b - m_a, 0.0), lmean_b, total.live_mean, t_b)
    live_mean = tree(lambda m, d, t, c: m + d * (t / c), total.live_mean, ldelta, t_b, n_live)
    live_m2 = tree(lambda a, b, d, na, t, c: a + b + d * d * (na * t / c), total.live_m2, lm2_b, ldelta, n_a, t_b, n_live)
    live_mean_abs = tree(lambda a, s, t, c: a + (s - t * a) / c, total.live_mean_abs, unstack(stats.acc[LIVE_ABS]),
                         t_b, n_live)
    return weight_stats.WeightStats(n, mean, m2, mean_abs, decay, hist, live_mean, live_m2, live_mean_abs)


def stepper(cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig = SGD, masked: bool = False) -> Stepper:
    """The native step for the model `cfg` (socjax.step.Stepper); with `accumulate`, every step also
    adds to the --weight-stats statistics, merged into the run's WeightStats at the end of the epoch;
    with `masked`, the step of a pruned network (hyper is a step.MaskedHyper; see masked_stepper).
    Registers the kernel (BuildError if it cannot be built here)."""
    if masked and accumulate:
        raise ConfigError("the masked native step does not accumulate --weight-stats")
    if opt.name != "sgd":
        raise ConfigError(f"the native step is the paper's plain SGD, not {opt.name}")
    build.load()
    layout = Layout.of(cfg.sizes)
    layers = len(cfg.sizes) - 1

    settings = dict(sizes=cfg.sizes, loss=cfg.loss, decay_biases=cfg.decay_biases)

    def enter(params, opt_state, stats, hyper):
        weights, biases = to_stored(params, layout)
        mask = to_stored(hyper.mask, layout) if masked else None
        scales = jnp.tile(jnp.array([1.0, 0.0], jnp.float32), (layers, 1))
        if accumulate:
            size = layout.w_size + layout.b_size
            stats = StatsCarry(jnp.zeros((ACC_ROWS, size), jnp.float32), jnp.zeros((size,), jnp.int32),
                               jnp.zeros((layers, 4), jnp.float32),
                               jnp.zeros((layers, weight_stats.NUM_BINS + 2), jnp.int32),
                               jnp.zeros((), jnp.int32), params, stats)
        return Carry(weights, biases, scales, opt_state, stats, mask)

    def step(carry: Carry, x, label, hyper):
        if accumulate:
            weights, biases, scales, stats, loss, correct = sgd_step_stats(
                carry.weights, carry.biases, carry.scales, carry.stats, x, label, hyper.lr, hyper.l2, **settings)
            carry = carry._replace(stats=stats)
        else:
            weights, biases, scales, loss, correct = sgd_step(
                carry.weights, carry.biases, carry.scales, x, label, hyper.lr, hyper.l2, mask=carry.mask, **settings)
        return carry._replace(weights=weights, biases=biases, scales=scales), loss, correct > 0

    def tracked(carry: Carry, weights: tuple[TrackedWeight, ...]):
        idx = np.array([layout.stored_index(t) for t in weights], np.int64)
        layer = np.array([t.layer - 1 for t in weights], np.int64)
        v = carry.weights[idx]
        return v * carry.scales[layer, 0] + v * carry.scales[layer, 1]

    def leave(carry: Carry):
        params = from_stored(carry.weights, carry.biases, carry.scales, layout, cfg.decay_biases)
        stats = merge_stats(carry.stats, params, carry.weights, layout) if accumulate else carry.stats
        return params, carry.opt_state, stats

    return Stepper(enter, step, tracked, leave)


def masked_stepper(cfg: ModelConfig, accumulate: bool, opt: OptimizerConfig = SGD) -> Stepper:
    """The registry's "masked-native" (config.MASKED_STEPS): the native step of a pruned network.
    hyper is a step.MaskedHyper; its mask is laid out as the kernel's buffers once per epoch, and
    the kernel multiplies every update by it, so pruned elements (0 on entry) stay exactly 0."""
    return stepper(cfg, accumulate, opt, masked=True)
