"""The native SGD step (sgd.cc) as the trainer drives it: the run in the kernel's own form.

Within an epoch a run is carried as `Carry`: every layer's weights W = s * V, with V padded and
flattened into one buffer (the last layer transposed), the biases likewise, and each layer's scale
s as a float32 pair hi + lo (the kernel works in double). `enter` builds it from ordinary
parameters with s = 1; `leave` folds the scales back. At every epoch boundary the state is ordinary
parameters, so checkpoints, resume and analysis are the same for every step.

The kernel's contract is socjax.step's (one example, same update, same loss and correct), exact up
to float32 rounding; tests/test_native.py checks it against a float64 replay and the XLA step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from socjax import model
from socjax.config import LOSSES, ModelConfig, TrackedWeight
from socjax.native import build
from socjax.step import Stepper

LANES = 16  # floats per SIMD vector in sgd.cc: stored rows are padded to a multiple of this


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
    scales: (layers, 2) float32 (hi, lo) of each layer's s; opt_state and stats ride along."""

    weights: jax.Array
    biases: jax.Array
    scales: jax.Array
    opt_state: optax.OptState
    stats: object


def to_stored(params: model.Params, layout: Layout):
    """(weights, biases) buffers of ordinary parameters, with scale 1."""
    ws, bs = [], []
    last = len(params) - 1
    for l, layer in enumerate(params):
        w = layer.w.T if l == last else layer.w
        ws.append(jnp.pad(w, ((0, 0), (0, layout.row[l] - w.shape[1]))).ravel())
        bs.append(jnp.pad(layer.b, (0, padded(layer.b.shape[0]) - layer.b.shape[0])))
    return jnp.concatenate(ws), jnp.concatenate(bs)


def from_stored(weights, biases, scales, layout: Layout, decay_biases: bool) -> model.Params:
    """Ordinary parameters from the stored form: W = (hi + lo) * V, unpadded, the last layer
    transposed back."""
    sizes, layers = layout.sizes, len(layout.sizes) - 1
    out = []
    for l in range(layers):
        last = l == layers - 1
        rows, cols = (sizes[l + 1], sizes[l]) if last else (sizes[l], sizes[l + 1])
        v = weights[layout.w_at[l]: layout.w_at[l] + rows * layout.row[l]].reshape(rows, layout.row[l])[:, :cols]
        w = v * scales[l, 0] + v * scales[l, 1]
        vb = biases[layout.b_at[l]: layout.b_at[l] + sizes[l + 1]]
        b = vb * scales[l, 0] + vb * scales[l, 1] if decay_biases else vb
        out.append(model.Dense(w.T if last else w, b))
    return tuple(out)


def sgd_step(weights, biases, scales, x, label, lr, l2, *, sizes, loss: str, decay_biases: bool):
    """One call of the kernel: the new (weights, biases, scales), the loss and correct (0/1).
    Vmapped calls pass every run to the kernel at once (one thread per run)."""
    f32 = lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    call = jax.ffi.ffi_call(build.TARGET, (f32(weights), f32(biases), f32(scales), scalar, scalar),
                            vmap_method="broadcast_all", input_output_aliases={4: 0, 5: 1, 6: 2})
    return call(x, label.astype(jnp.int32), lr, l2, weights, biases, scales,
                sizes=np.asarray(sizes, np.int64), loss=np.int64(LOSSES.index(loss)),
                decay_biases=np.int64(decay_biases))


def stepper(cfg: ModelConfig, accumulate: bool) -> Stepper:
    """The native step for the model `cfg` (socjax.step.Stepper). Registers the kernel (BuildError
    if it cannot be built here)."""
    if accumulate:
        raise NotImplementedError("--weight-stats with the native step")
    build.load()
    layout = Layout.of(cfg.sizes)
    layers = len(cfg.sizes) - 1

    def enter(params, opt_state, stats):
        weights, biases = to_stored(params, layout)
        scales = jnp.tile(jnp.array([1.0, 0.0], jnp.float32), (layers, 1))
        return Carry(weights, biases, scales, opt_state, stats)

    def step(carry: Carry, x, label, hyper):
        weights, biases, scales, loss, correct = sgd_step(
            carry.weights, carry.biases, carry.scales, x, label, hyper.lr, hyper.l2,
            sizes=cfg.sizes, loss=cfg.loss, decay_biases=cfg.decay_biases)
        return carry._replace(weights=weights, biases=biases, scales=scales), loss, correct > 0

    def tracked(carry: Carry, weights: tuple[TrackedWeight, ...]):
        idx = np.array([layout.stored_index(t) for t in weights], np.int64)
        layer = np.array([t.layer - 1 for t in weights], np.int64)
        v = carry.weights[idx]
        return v * carry.scales[layer, 0] + v * carry.scales[layer, 1]

    def leave(carry: Carry):
        params = from_stored(carry.weights, carry.biases, carry.scales, layout, cfg.decay_biases)
        return params, carry.opt_state, carry.stats

    return Stepper(enter, step, tracked, leave)
