"""Run configuration: frozen, hashable dataclasses, the presets, and input validation.

Everything that fixes a shape or a loop length lives here as static config. Values one may sweep
(seed, learning rate, L2) are listed here too, but the trainer receives them as traced arrays, one
entry per run, so that runs are a `vmap` axis (see `socjax.train.Hyper`).

Defaults are the paper's protocol (../shared/PAPER.md, Section 5). Where the paper is silent the
choice is marked DEFAULT in the field's comment.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal, NamedTuple

INPUT_SIZE = 784
NUM_CLASSES = 10

LossName = Literal["mse", "xent"]
InitName = Literal["torch", "glorot"]
DatasetName = Literal["mnist", "mnist-mini"]


class ConfigError(ValueError):
    """Invalid user input; the message is one line, suitable for a CLI error."""


@dataclass(frozen=True)
class ModelConfig:
    """The MLP and its loss.

    sizes: layer widths from input to output; the paper's is (784, 700, 476, 10).
    loss: "mse" is the boundary loss of eq. (10), 1/2 sum_k (out_k - onehot_k)^2;
        "xent" is softmax cross-entropy (an option, not the paper's).
    init: "torch" is PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
        biases (DEFAULT); "glorot" is Glorot-uniform weights and zero biases.
    decay_biases: L2 acts on biases too (DEFAULT True, as PyTorch's SGD weight_decay does).
    """

    sizes: tuple[int, ...] = (INPUT_SIZE, 700, 476, NUM_CLASSES)
    loss: LossName = "mse"
    init: InitName = "torch"
    decay_biases: bool = True

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1


@dataclass(frozen=True)
class TrackedWeight:
    """One recorded weight: w{layer}[row, col], layer 1-based, w of shape (fan_in, fan_out)."""

    layer: int
    row: int
    col: int


@dataclass(frozen=True)
class RunConfig:
    """A whole training job: one model, one dataset, and the runs (seed x lr x l2) trained at once.

    Training is `epochs_equilibrate` epochs without recording, then `epochs_record` epochs during
    which the tracked weights are recorded after every `stride`-th SGD step.
    """

    model: ModelConfig = ModelConfig()
    dataset: DatasetName = "mnist-mini"
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training examples (smoke tests)
    pixel_scale: float = 255.0  # DEFAULT: pixels / 255, so blank pixels stay exactly 0
    epochs_equilibrate: int = 0
    epochs_record: int = 1
    stride: int = 1
    track: int = 16  # number of weights chosen at random, half from layer 1, half from layer 2
    track_weights: tuple[TrackedWeight, ...] = ()  # explicit choice; overrides `track`
    track_seed: int = 0  # DEFAULT: which weights are tracked does not depend on the run seeds
    seeds: tuple[int, ...] = (0,)
    lr: tuple[float, ...] = (2e-3,)
    l2: tuple[float, ...] = (5e-4,)
    chunk_epochs: int = 1  # epochs per compiled call; the host writes results between calls
    save_order: bool = False
    weight_stats: bool = False  # running statistics of every weight's increments while recording
    preset: str = "custom"

    @property
    def epochs(self) -> int:
        return self.epochs_equilibrate + self.epochs_record

    def runs(self) -> list[tuple[int, float, float]]:
        """(seed, lr, l2) of every run, in the order of the leading axis of every saved array."""
        return list(itertools.product(self.seeds, self.lr, self.l2))

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["runs"] = [dict(seed=s, lr=lr, l2=l2) for s, lr, l2 in self.runs()]
        return d

    @staticmethod
    def from_json(d: dict) -> "RunConfig":
        d = {k: v for k, v in d.items() if k != "runs"}
        d["model"] = ModelConfig(**{**d["model"], "sizes": tuple(d["model"]["sizes"])})
        d["track_weights"] = tuple(TrackedWeight(**t) for t in d["track_weights"])
        for k in ("seeds", "lr", "l2"):
            d[k] = tuple(d[k])
        return RunConfig(**d)


class ToyParams(NamedTuple):
    """lx, lq, g, xb, qb of eq. (2); beta: inverse temperature of x; alpha: of the learning equilibrium;
    kx: a quartic term kx (x-xb)^4/4 added to H (not in the paper; 0 = the paper's model), which
    keeps p(x|q) normalizable where g (q-qb)^2 + lx <= 0 (the frustrated regime, lx < 0)."""

    lx: float = 1e-4
    lq: float = 0.5
    g: float = 1.0
    xb: float = 0.0
    qb: float = 0.0
    beta: float = 1.0
    alpha: float = 1.5
    kx: float = 0.0


PRESETS: dict[str, RunConfig] = {
    # Seconds: the paper's network on 2,000 embedded examples, 1 + 2 epochs (4,000 recorded steps:
    # enough for a spectrum with 512-step segments). For tests and CI.
    "smoke": RunConfig(
        dataset="mnist-mini", train_limit=2000, epochs_equilibrate=1, epochs_record=2, preset="smoke"
    ),
    # A few minutes on a 2-core CPU: the 10,000 embedded examples. The increment distribution and
    # spectrum take shape within a few epochs; bimodal layer-2 neurons need many more steps, so
    # this preset spends most of its budget equilibrating (30 epochs = 300,000 steps).
    "quick": RunConfig(
        dataset="mnist-mini", epochs_equilibrate=30, epochs_record=3, preset="quick"
    ),
    # The paper's protocol: full MNIST, 3000 epochs to equilibrium, then 200 recorded epochs.
    "paper": RunConfig(
        dataset="mnist", epochs_equilibrate=3000, epochs_record=200, preset="paper"
    ),
}


def validate(cfg: RunConfig, num_train: int | None = None) -> None:
    """Raise ConfigError (one line) for anything that would fail later; call before compiling.

    num_train: the number of training examples, when already known (checks stride and limits).
    """
    m = cfg.model
    if len(m.sizes) < 2 or any((not isinstance(s, int)) or s <= 0 for s in m.sizes):
        raise ConfigError(f"layer sizes must be positive integers, got {m.sizes}")
    if m.sizes[0] != INPUT_SIZE or m.sizes[-1] != NUM_CLASSES:
        raise ConfigError(
            f"layer sizes must start at {INPUT_SIZE} (MNIST pixels) and end at {NUM_CLASSES} "
            f"(classes), got {m.sizes}"
        )
    if m.loss not in ("mse", "xent"):
        raise ConfigError(f"unknown loss {m.loss!r}; choose mse or xent")
    if m.init not in ("torch", "glorot"):
        raise ConfigError(f"unknown init {m.init!r}; choose torch or glorot")
    if cfg.dataset not in ("mnist", "mnist-mini"):
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose mnist or mnist-mini")
    if not cfg.seeds or not cfg.lr or not cfg.l2:
        raise ConfigError("seeds, lr and l2 each need at least one value")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds must be distinct, got {cfg.seeds}")
    for lr in cfg.lr:
        if not lr > 0:
            raise ConfigError(f"learning rate must be positive, got {lr}")
    for l2 in cfg.l2:
        if not l2 >= 0:
            raise ConfigError(f"l2 must be non-negative, got {l2}")
    if cfg.epochs_equilibrate < 0 or cfg.epochs_record < 0 or cfg.epochs < 1:
        raise ConfigError(
            f"need epochs_equilibrate >= 0, epochs_record >= 0 and at least one epoch, got "
            f"{cfg.epochs_equilibrate} and {cfg.epochs_record}"
        )
    if cfg.stride < 1:
        raise ConfigError(f"stride must be >= 1, got {cfg.stride}")
    if cfg.chunk_epochs < 1:
        raise ConfigError(f"chunk_epochs must be >= 1, got {cfg.chunk_epochs}")
    if cfg.train_limit is not None and cfg.train_limit < 1:
        raise ConfigError(f"train_limit must be >= 1, got {cfg.train_limit}")
    if not cfg.pixel_scale > 0:
        raise ConfigError(f"pixel_scale must be positive, got {cfg.pixel_scale}")
    if cfg.track_weights:
        for t in cfg.track_weights:
            if not 1 <= t.layer <= m.num_layers:
                raise ConfigError(f"tracked weight {t}: layer must be in 1..{m.num_layers}")
            fan_in, fan_out = m.sizes[t.layer - 1], m.sizes[t.layer]
            if not (0 <= t.row < fan_in and 0 <= t.col < fan_out):
                raise ConfigError(
                    f"tracked weight {t}: w{t.layer} has shape ({fan_in}, {fan_out})"
                )
    elif cfg.track < 0:
        raise ConfigError(f"track must be >= 0, got {cfg.track}")
    elif cfg.track > 0 and m.num_layers < 2:
        raise ConfigError("random tracking draws from layers 1 and 2; the model has one layer")
    if num_train is not None:
        n = min(num_train, cfg.train_limit or num_train)
        if n % cfg.stride:
            raise ConfigError(
                f"stride {cfg.stride} must divide the number of steps per epoch ({n})"
            )


def with_overrides(cfg: RunConfig, **kw) -> RunConfig:
    """cfg with the given fields replaced; None values are ignored (unset CLI flags)."""
    kw = {k: v for k, v in kw.items() if v is not None}
    model_kw = {k: kw.pop(k) for k in ("sizes", "loss", "init", "decay_biases") if k in kw}
    if model_kw:
        kw["model"] = dataclasses.replace(cfg.model, **model_kw)
    return dataclasses.replace(cfg, **kw)


__all__ = [
    "ConfigError",
    "ModelConfig",
    "PRESETS",
    "RunConfig",
    "ToyParams",
    "TrackedWeight",
    "validate",
    "with_overrides",
]
