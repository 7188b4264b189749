"""Neuron-state distributions p(x|q) of a frozen network (the paper's Fig. 1).

For a hidden layer (the paper's Fig. 1 uses layer 2), the pre-activation z and the output relu(z)
of every neuron over a set of images. A layer is named by its weight: "w2" for the paper's MLP
(its hidden layer 2), a flax module's path ("Dense_1", "Conv_0") for a flax model, whose
pre-activation is that module's output, read through flax's intermediates. A convolution's
neurons are its channels, each sampled at every position of every image (at most MAX_SAMPLES
rows, drawn at random with a fixed seed). `layers(cfg)` lists the hidden layers (every weight
layer but the output's) and `default_layer(cfg)` picks the second, else the first. With ReLU the output piles up at exactly 0
for every negative z, so bimodality is judged on the pre-activation z (the report says so).

Two bimodality measures per neuron, both on z:
- modes: local maxima of a Gaussian kernel density estimate (Silverman's bandwidth, 512 grid
  points over the data's range) that reach at least 10% of the highest maximum; bimodal when >= 2.
- Sarle's coefficient b = (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3))), g the skewness and k the
  excess kurtosis; b > 5/9 (the value of a uniform density) suggests bimodality.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from socjax import model

MAX_SAMPLES = 20_000  # rows of z per neuron (a convolution's positions x images are subsampled to it)
SARLE_THRESHOLD = 5.0 / 9.0
GRID_POINTS = 512
MODE_FLOOR = 0.1


def layers(cfg) -> list[str]:
    """The hidden layers of `cfg`'s model by name: every weight layer but the last (the output)."""
    names = [path.removesuffix("/kernel") for path, _ in model.kernels(cfg)]
    return names[:-1]


def default_layer(cfg) -> str | None:
    """The second hidden layer where there is one (the paper's), else the first; None for none."""
    hidden = layers(cfg)
    return hidden[1] if len(hidden) >= 2 else (hidden[0] if hidden else None)


def preactivations(params, x: jax.Array, layer, cfg=None) -> jax.Array:
    """z of a hidden layer for images x: (M, D) -> (M, neurons), or (M * positions, channels) for a
    convolution. layer: 1-based (or "wL") for the paper's MLP; a module path for a flax model (cfg)."""
    if cfg is None or not cfg.is_flax:
        depth = int(str(layer).removeprefix("w"))
        return jax.vmap(model.hidden, in_axes=(None, 0, None))(params, x, depth)
    from socjax import flaxnet

    net = flaxnet.module(cfg)

    def one(xi):
        keep = lambda m, name: name == "__call__" and "/".join(m.path) == layer
        _, state = net.apply({"params": params}, xi.reshape(cfg.input_shape), capture_intermediates=keep,
                             mutable=["intermediates"])
        node = state["intermediates"]
        for part in layer.split("/"):
            node = node[part]
        z = node["__call__"][0]
        return z.reshape(-1, z.shape[-1])

    z = jax.vmap(one)(x)
    return z.reshape(-1, z.shape[-1])


@jax.jit
def kde_modes(z: jax.Array):
    """Per neuron (columns of z: (M, N)): number of modes of a Gaussian KDE, the KDE grid (N, G)
    and density (N, G)."""
    m = z.shape[0]
    lo, hi = z.min(0), z.max(0)
    span = jnp.maximum(hi - lo, 1e-12)
    grid = lo[:, None] + span[:, None] * jnp.linspace(-0.05, 1.05, GRID_POINTS)[None, :]
    sd = z.std(0)
    iqr = jnp.percentile(z, 75, axis=0) - jnp.percentile(z, 25, axis=0)
    bw = 0.9 * jnp.minimum(sd, jnp.where(iqr > 0, iqr / 1.34, sd)) * m ** (-0.2)
    bw = jnp.maximum(bw, 1e-3 * span)

    def density(col, g, h):
        return jnp.mean(jnp.exp(-0.5 * ((g[:, None] - col[None, :]) / h) ** 2), axis=1) / (h * jnp.sqrt(2 * jnp.pi))

    dens = jax.vmap(density, in_axes=(1, 0, 0))(z, grid, bw)
    peak = (dens[:, 1:-1] > dens[:, :-2]) & (dens[:, 1:-1] >= dens[:, 2:])
    tall = dens[:, 1:-1] >= MODE_FLOOR * dens.max(1, keepdims=True)
    return jnp.sum(peak & tall, axis=1), grid, dens


def sarle(z: np.ndarray) -> np.ndarray:
    """Sarle's bimodality coefficient per column of z: (M, N) -> (N,)."""
    z = np.asarray(z, np.float64)
    n = z.shape[0]
    c = z - z.mean(0)
    m2 = (c**2).mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (c**3).mean(0) / m2**1.5
        k = (c**4).mean(0) / m2**2 - 3.0
        return (g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def analyze(params, x: np.ndarray, layer=2, cfg=None) -> tuple[dict, np.ndarray, tuple]:
    """Bimodality of every neuron of a hidden `layer` (see `preactivations`) over images x (M, D).

    Returns (summary dict for analysis.json, z (M, N), (modes, kde grid, kde density))."""
    z = np.asarray(jax.jit(partial(preactivations, layer=layer, cfg=cfg))(params, jnp.asarray(x)))
    if z.shape[0] > MAX_SAMPLES:  # a convolution: positions x images
        z = z[np.sort(np.random.default_rng(0).choice(z.shape[0], MAX_SAMPLES, replace=False))]
    modes, grid, dens = (np.asarray(a) for a in kde_modes(z))
    b = sarle(np.asarray(z))
    dead = np.asarray(z).max(0) <= 0
    summary = dict(
        layer=layer if isinstance(layer, int) else str(layer),
        images=int(x.shape[0]),
        samples=int(z.shape[0]),
        neurons=int(z.shape[1]),
        plotted_quantity="pre-activation z (output = relu(z))",
        fraction_bimodal_kde=float(np.mean(modes >= 2)),
        fraction_bimodal_sarle=float(np.mean(b > SARLE_THRESHOLD)),
        fraction_never_active=float(np.mean(dead)),
        kde_rule=f"Gaussian KDE, Silverman bandwidth, modes >= {MODE_FLOOR:.0%} of the highest",
        sarle_threshold=SARLE_THRESHOLD,
    )
    return summary, np.asarray(z), (modes, grid, dens, b)
