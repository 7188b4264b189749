"""Running statistics of the increments dw of EVERY weight and bias, accumulated in the scan carry.

Per parameter element, over the recorded phase (`socjax train --weight-stats`):
  count   () steps accumulated (the same for every element)
  mean    running mean of dw (Welford)
  m2      running sum of squared deviations of dw (Welford): var = m2 / count
  mean_abs  running mean of |dw|
  decay   number of steps whose update was pure weight decay: the gradient of this element was
          exactly zero (blank pixel or inactive neuron), known exactly inside the step
  live_mean, live_m2, live_mean_abs   the same three moments over the element's NON-decay steps
          only (its own count, count - decay): the fluctuation amplitude the paper's Discussion means,
          free of the decay increments -lr*l2*w, which scale with |w|
and per layer, a histogram of |dw| of the layer's weights on quarter-octave bins, edges 2**(k/4)
from 2**-50 (9e-16) to 2**0 (under/overflow in two extra slots), counting only non-decay steps.
The bin comes from the float's exponent bits and three comparisons of its mantissa with 2**(1/4),
2**(1/2), 2**(3/4): exact, and several times cheaper per step than a logarithm.

Written as weight_stats.npz: mean_w1, var_w1, mean_abs_w1, decay_fraction_w1, nondecay_count_w1,
nondecay_mean_w1, nondecay_var_w1, nondecay_mean_abs_w1, ..., hist_w1 (bins+2), hist_edges, count;
each with a leading run axis. Memory: eight copies of the parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from socjax import model

OCTAVES = (-50, 0)  # bins cover [2**-50, 2**0)
BINS_PER_OCTAVE = 4
NUM_BINS = (OCTAVES[1] - OCTAVES[0]) * BINS_PER_OCTAVE


def edges() -> np.ndarray:
    """(NUM_BINS + 1,) bin edges: 2**(k/4) for k from -200 to 0."""
    return 2.0 ** (np.arange(OCTAVES[0] * BINS_PER_OCTAVE, OCTAVES[1] * BINS_PER_OCTAVE + 1) / BINS_PER_OCTAVE)


class WeightStats(NamedTuple):
    """count: () float32; mean, m2, mean_abs: Params-shaped float32; decay: Params-shaped int32;
    hist: one (NUM_BINS + 2,) int32 per layer: [under, bins..., over] of weight |dw|;
    live_mean, live_m2, live_mean_abs: Params-shaped float32, over each element's count - decay
    non-decay steps."""

    count: jax.Array
    mean: model.Params
    m2: model.Params
    mean_abs: model.Params
    decay: model.Params
    hist: tuple[jax.Array, ...]
    live_mean: model.Params
    live_m2: model.Params
    live_mean_abs: model.Params


def init(params: model.Params) -> WeightStats:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return WeightStats(
        jnp.zeros((), jnp.float32), zeros, zeros, zeros,
        jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.int32), params),
        tuple(jnp.zeros((NUM_BINS + 2,), jnp.int32) for _ in params),
        zeros, zeros, zeros,
    )


def _bin(x):
    """Histogram slot of float32 x > 0 (normal): 0 underflow, 1..NUM_BINS the bins, NUM_BINS + 1 overflow."""
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    octave = (bits >> 23) - 127  # floor(log2 x)
    mantissa = jax.lax.bitcast_convert_type((bits & 0x7FFFFF) | 0x3F800000, jnp.float32)  # in [1, 2)
    quarter = sum((mantissa >= np.float32(2 ** (q / 4))).astype(jnp.int32) for q in (1, 2, 3))
    pos = (octave - OCTAVES[0]) * BINS_PER_OCTAVE + quarter
    return jnp.clip(pos, -1, NUM_BINS) + 1


def update(stats: WeightStats, old: model.Params, new: model.Params, grads: model.Params) -> WeightStats:
    """Add one step: dw = new - old, pure decay where the gradient is exactly zero."""
    n = stats.count + 1
    dw = jax.tree.map(lambda a, b: a - b, new, old)
    delta = jax.tree.map(lambda d, m: d - m, dw, stats.mean)
    mean = jax.tree.map(lambda m, dl: m + dl / n, stats.mean, delta)
    m2 = jax.tree.map(lambda s, dl, d, m: s + dl * (d - m), stats.m2, delta, dw, mean)
    mean_abs = jax.tree.map(lambda m, d: m + (jnp.abs(d) - m) / n, stats.mean_abs, dw)
    decay = jax.tree.map(lambda c, g: c + (g == 0).astype(jnp.int32), stats.decay, grads)
    hist = []
    for h, layer_dw, layer_g in zip(stats.hist, dw, grads):
        x = jnp.abs(layer_dw.w).ravel()
        live = (layer_g.w.ravel() != 0) & (x > 0)
        slot = jnp.where(live, _bin(jnp.where(live, x, 1.0)), NUM_BINS + 2)
        hist.append(h + jax.ops.segment_sum(jnp.ones_like(slot), slot, NUM_BINS + 3)[:-1])
    # Welford over the non-decay steps only: each element has its own count, n - decay
    live = jax.tree.map(lambda g: g != 0, grads)
    n_live = jax.tree.map(lambda c: jnp.maximum(n - c.astype(jnp.float32), 1.0), decay)
    delta = jax.tree.map(lambda d, m: d - m, dw, stats.live_mean)
    live_mean = jax.tree.map(lambda m, dl, k, c: jnp.where(k, m + dl / c, m), stats.live_mean, delta, live, n_live)
    live_m2 = jax.tree.map(lambda s, dl, d, m, k: jnp.where(k, s + dl * (d - m), s),
                           stats.live_m2, delta, dw, live_mean, live)
    live_mean_abs = jax.tree.map(lambda m, d, k, c: jnp.where(k, m + (jnp.abs(d) - m) / c, m),
                                 stats.live_mean_abs, dw, live, n_live)
    return WeightStats(n, mean, m2, mean_abs, decay, tuple(hist), live_mean, live_m2, live_mean_abs)


def to_arrays(stats: WeightStats) -> dict[str, np.ndarray]:
    """The contents of weight_stats.npz from a host copy of stacked (runs, ...) statistics."""
    count = np.asarray(stats.count)
    out = {"count": count, "hist_edges": edges()}
    shape = lambda a: count.reshape(count.shape + (1,) * (np.ndim(a) - count.ndim))
    for name, tree in (("mean", stats.mean), ("mean_abs", stats.mean_abs)):
        for k, v in model.to_named(tree).items():
            out[f"{name}_{k}"] = np.asarray(v)
    for k, v in model.to_named(stats.m2).items():
        out[f"var_{k}"] = np.asarray(v) / np.maximum(shape(v), 1)
    for k, v in model.to_named(stats.decay).items():
        out[f"decay_fraction_{k}"] = np.asarray(v) / np.maximum(shape(v), 1)
        out[f"nondecay_count_{k}"] = (shape(v) - np.asarray(v)).astype(np.int64)
    for name, tree in (("nondecay_mean", stats.live_mean), ("nondecay_mean_abs", stats.live_mean_abs)):
        for k, v in model.to_named(tree).items():
            out[f"{name}_{k}"] = np.asarray(v)
    for k, v in model.to_named(stats.live_m2).items():
        out[f"nondecay_var_{k}"] = np.asarray(v) / np.maximum(out[f"nondecay_count_{k}"], 1)
    for i, h in enumerate(stats.hist, start=1):
        out[f"hist_w{i}"] = np.asarray(h)
    return out
