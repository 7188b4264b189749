"""Run configuration: frozen, hashable dataclasses, the presets, the table of flags, validation.

Everything that fixes a shape or a loop length lives here as static config. Values one may sweep
(seed, learning rate, L2) are listed here too, but the trainer receives them as traced arrays, one
entry per run, so that runs are a `vmap` axis (see `socjax.step.Hyper`).

The one entry point: `build(preset, **overrides)` starts from a preset, applies the overrides named
in `FLAGS` (the CLI parses exactly these, and `resume_conflicts` refuses exactly these on resume)
and returns a `RunConfig`. A `RunConfig` validates itself when constructed, so one that exists is
valid; `check_data` adds the one check that needs the data (stride against the epoch length).
Every choice list (LOSSES, INITS, DATASETS, OPTIMIZERS, STEPS) is declared once here.

Defaults are the paper's protocol (../shared/PAPER.md, Section 5). Where the paper is silent the
choice is marked DEFAULT in the field's comment.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

INPUT_SIZE = 784
NUM_CLASSES = 10

LossName = Literal["mse", "xent"]
InitName = Literal["torch", "glorot"]
# The data sets socjax reads itself; any other name is a tensorflow-datasets image-classification set
# (fashion_mnist, kmnist, emnist/digits, cifar10, ...; socjax.data.tfds).
DatasetName = Literal["mnist", "mnist-mini", "digits", "teacher"]
OptimizerName = Literal["sgd", "momentum", "nesterov", "adam", "adamw"]
LOSSES: tuple[str, ...] = typing.get_args(LossName)
OPTIMIZERS: tuple[str, ...] = typing.get_args(OptimizerName)
INITS: tuple[str, ...] = typing.get_args(InitName)
DATASETS: tuple[str, ...] = typing.get_args(DatasetName)

# The SGD step implementations (socjax.step): name -> "module:function" of a Stepper factory,
# imported only when a run selects it. A new implementation adds its own module and one line here.
STEPS: dict[str, str] = {
    "xla": "socjax.step:xla_stepper",
    "native": "socjax.native.step:stepper",
}
# The same implementations for a pruned network (socjax.prune): each takes step.MaskedHyper, a fixed
# 0/1 mask per parameter carried with lr and l2, and keeps pruned weights at exactly 0. They are not
# training choices (a run has no mask), so they are named "masked-<step>" and kept out of STEPS.
MASKED_STEPS: dict[str, str] = {
    "xla": "socjax.step:masked_xla_stepper",
    "native": "socjax.native.step:masked_stepper",
}
# "auto" is not a step: the runner resolves it to "native" or "xla" (socjax.step.choose) before a run
# starts, and config.json records the one that ran.
AUTO_STEP = "auto"


class _StepChoices:
    """"auto" and the registered steps, read from STEPS at each use (so a step registered later counts)."""

    def __contains__(self, name) -> bool:
        return name == AUTO_STEP or name in STEPS

    def __iter__(self):
        return iter((AUTO_STEP, *STEPS))


STEP_CHOICES = _StepChoices()


MAX_EPOCHS = 2**31 - 1  # TrainState.epoch is an int32
SEED_LIMIT = 2**32  # seeds are 0 <= s < 2**32: what jax.random.key takes without wrapping around


class ConfigError(ValueError):
    """Invalid user input; the message is one line, suitable for a CLI error."""


def check_seed(what: str, seed) -> None:
    """A seed must be an integer in 0 <= s < 2**32 (a larger one would silently wrap to another)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{what} must be an integer in 0..{SEED_LIMIT - 1}, got {seed!r}")


def _choose(what: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose {' or '.join(choices)}")


MODEL_ZOO = ("mlp", "flax-mlp", "cnn")  # --model: these, or MODULE:FUNCTION (socjax.flaxnet)
ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True)
class ModelConfig:
    """The network and its loss.

    arch: "mlp" is the paper's MLP as pure functions (socjax.model; DEFAULT); "flax-mlp" the same
        network as a flax Module, "cnn" a LeNet-like flax CNN, "MODULE:FUNCTION" a user's function
        returning a flax Module (socjax.flaxnet). The native step trains only "mlp".
    sizes: layer widths from input to output; the paper's is (784, 700, 476, 10). For the cnn the
        inner widths are its dense head's; a user's module reads only the last (the classes).
    input_shape: one example's shape (H, W, C), whose product is sizes[0]; the MLPs flatten it.
    activation: of the flax zoo's hidden layers, "relu" (DEFAULT, the paper's) or "tanh"; the
        pure MLP is ReLU.
    loss: "mse" is the boundary loss of eq. (10), 1/2 sum_k (out_k - onehot_k)^2;
        "xent" is softmax cross-entropy (an option, not the paper's).
    init: "torch" is PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
        biases (DEFAULT); "glorot" is Glorot-uniform weights and zero biases. A user's module
        initialises itself.
    decay_biases: L2 acts on biases too (DEFAULT True, as PyTorch's SGD weight_decay does).
    """

    sizes: tuple[int, ...] = (INPUT_SIZE, 700, 476, NUM_CLASSES)
    loss: LossName = "mse"
    init: InitName = "torch"
    decay_biases: bool = True
    arch: str = "mlp"
    activation: str = "relu"
    input_shape: tuple[int, ...] = (28, 28, 1)

    def __post_init__(self):
        if len(self.sizes) < 2 or any((not isinstance(s, int)) or s <= 0 for s in self.sizes):
            raise ConfigError(f"layer sizes must be positive integers, got {self.sizes}")
        if self.sizes[0] != math.prod(self.input_shape) or self.sizes[-1] < 2:
            raise ConfigError(
                f"layer sizes must start at {math.prod(self.input_shape)} (pixels of {self.input_shape}) and end "
                f"at the number of classes (at least 2), got {self.sizes}"
            )
        _choose("loss", self.loss, LOSSES)
        _choose("init", self.init, INITS)
        _choose("activation", self.activation, ACTIVATIONS)
        if self.arch not in MODEL_ZOO and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.arch):
            raise ConfigError(f"unknown model {self.arch!r}; choose {' or '.join(MODEL_ZOO)}, or MODULE:FUNCTION "
                              "(a function returning a flax.linen.Module)")
        if self.arch == "mlp" and self.activation != "relu":
            raise ConfigError(f"the paper's MLP (--model mlp) is ReLU; --activation {self.activation} needs --model "
                              "flax-mlp or cnn")

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def describe(self) -> str:
        """One line: the network and its loss, e.g. "mlp 784-700-476-10 (mse loss)"."""
        sizes = "-".join(map(str, self.sizes))
        net = {"mlp": f"mlp {sizes}", "flax-mlp": f"flax-mlp {sizes}, {self.activation}",
               "cnn": f"cnn (conv 8, 16 channels; dense {'-'.join(map(str, self.sizes[1:]))}), {self.activation}"}
        return f"{net.get(self.arch, f'{self.arch} (a user module)')}, {self.loss} loss"

    @property
    def is_flax(self) -> bool:
        """Whether the network is a flax Module (socjax.flaxnet) rather than the pure MLP."""
        return self.arch != "mlp"


TFDS_NAME = r"[a-z][a-z0-9_]*(/[a-z0-9_]+)?(:[0-9.]+)?"  # a tfds name: name[/config][:version]


@dataclass(frozen=True)
class TeacherConfig:
    """The synthetic teacher-student data set (--dataset teacher; socjax.data.teacher): Gaussian
    inputs of `dim` values labelled by a random teacher MLP dim -> hidden (tanh) -> classes drawn
    from `seed`; `train` and `test` examples. DEFAULTs: 100 -> 100 -> 10, 10,000 / 2,000, seed 0."""

    dim: int = 100
    hidden: int = 100
    classes: int = 10
    train: int = 10_000
    test: int = 2_000
    seed: int = 0

    def __post_init__(self):
        for k in ("dim", "hidden", "train", "test"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"teacher {k} must be an integer >= 1, got {v!r}")
        if not 2 <= self.classes <= 256:
            raise ConfigError(f"teacher classes must be in 2..256, got {self.classes}")
        check_seed("teacher seed", self.seed)


# Which OptimizerConfig fields each optimizer reads; the CLI refuses a setting its optimizer ignores.
OPTIMIZER_SETTINGS: dict[str, tuple[str, ...]] = {
    "sgd": (), "momentum": ("momentum",), "nesterov": ("momentum",), "adam": ("b1", "b2", "eps"),
    "adamw": ("b1", "b2", "eps", "weight_decay"),
}


@dataclass(frozen=True)
class OptimizerConfig:
    """The optax optimizer that turns each step's gradient into an update (socjax.step.make_optimizer).

    The gradient it receives is always that of the loss with the paper's L2 term, dL/dw + l2 * w
    (l2 from RunConfig.l2, traced per run), so `--l2` means the same for every optimizer.
    name: "sgd" (the paper's: w -= lr * g), "momentum" and "nesterov" (optax.sgd with `momentum`),
        "adam" (optax.adam with b1, b2, eps), "adamw" (optax.adamw: adam plus the decoupled decay
        lr * weight_decay * w, on the same parameters as L2).
    The defaults of the settings are optax's (DEFAULT momentum 0.9, which optax leaves unset).
    """

    name: OptimizerName = "sgd"
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-4

    def __post_init__(self):
        _choose("optimizer", self.name, OPTIMIZERS)
        for what, v in (("momentum", self.momentum), ("b1", self.b1), ("b2", self.b2)):
            if not 0 <= v < 1:
                raise ConfigError(f"{what} must be in [0, 1), got {v}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ConfigError(f"eps must be positive and finite, got {self.eps}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be non-negative and finite, got {self.weight_decay}")

    def settings(self) -> dict[str, float]:
        """The settings this optimizer reads, by name (empty for sgd)."""
        return {k: getattr(self, k) for k in OPTIMIZER_SETTINGS[self.name]}

    def describe(self) -> str:
        """One line: the name and the settings it reads, e.g. "adam (b1 0.9, b2 0.999, eps 1e-08)"."""
        kv = ", ".join(f"{k} {v:g}" for k, v in self.settings().items())
        return f"{self.name} ({kv})" if kv else self.name


SGD = OptimizerConfig()


@dataclass(frozen=True, order=False)
class TrackedWeight:
    """One recorded weight: element `index` of the parameter named `path`, written PATH:I,J,...

    Paths are the run directory's parameter names: "w1", "w2", ... for the paper's MLP (w of shape
    (fan_in, fan_out), so w1:130,420 is w1[130, 420]); "Dense_0/kernel", "Conv_1/kernel", ... for a
    flax model (socjax.flaxnet). `mlp(layer, row, col)` is the old LAYER:ROW:COL form."""

    path: str
    index: tuple[int, ...]

    @staticmethod
    def mlp(layer: int, row: int, col: int) -> "TrackedWeight":
        return TrackedWeight(f"w{layer}", (row, col))

    @property
    def layer(self) -> int:
        """The 1-based layer of a weight of the paper's MLP (w{layer}); ValueError for another path."""
        m = re.fullmatch(r"w(\d+)", self.path)
        if m is None or len(self.index) != 2:
            raise ValueError(f"{self} is not a weight of the paper's MLP")
        return int(m.group(1))

    @property
    def row(self) -> int:
        return self.index[0]

    @property
    def col(self) -> int:
        return self.index[-1]

    def __str__(self) -> str:
        return f"{self.path}:{','.join(map(str, self.index))}"

    def to_json(self) -> dict:
        return dict(path=self.path, index=list(self.index))

    @staticmethod
    def from_json(d: dict) -> "TrackedWeight":
        """Either form: {"path", "index"}, or {"layer", "row", "col"} of runs made before paths."""
        if "path" in d:
            return TrackedWeight(str(d["path"]), tuple(int(i) for i in d["index"]))
        return TrackedWeight.mlp(int(d["layer"]), int(d["row"]), int(d["col"]))


@dataclass(frozen=True)
class RunConfig:
    """A whole training job: one model, one dataset, and the runs (seed x lr x l2) trained at once.

    Training is `epochs_equilibrate` epochs without recording, then `epochs_record` epochs during
    which the tracked weights are recorded after every `stride`-th SGD step. Constructing one
    validates it (ConfigError, one line).
    """

    model: ModelConfig = ModelConfig()
    dataset: str = "mnist-mini"  # DATASETS or a tensorflow-datasets name
    teacher: TeacherConfig = TeacherConfig()  # read only with dataset "teacher"
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training examples (smoke tests)
    pixel_scale: float = 255.0  # DEFAULT: pixels / 255, so blank pixels stay exactly 0
    # The random-labels control (Zhang et al. 2017): the training labels (after train_limit) replaced
    # by a fixed random permutation of themselves drawn from this seed, the same for every run; the
    # test labels stay true. None: the true labels.
    random_labels: int | None = None
    epochs_equilibrate: int = 0
    epochs_record: int = 1
    stride: int = 1
    track: int = 16  # number of weights chosen at random, half from layer 1, half from layer 2
    track_weights: tuple[TrackedWeight, ...] = ()  # explicit choice; overrides `track`
    track_seed: int = 0  # DEFAULT: which weights are tracked does not depend on the run seeds
    seeds: tuple[int, ...] = (0,)
    lr: tuple[float, ...] = (2e-3,)
    l2: tuple[float, ...] = (5e-4,)
    optimizer: OptimizerConfig = SGD  # the paper's plain SGD
    batch_size: int = 1  # examples per step (the paper's: 1); an epoch is floor(N / batch_size) steps
    step: str = AUTO_STEP  # the SGD step implementation, a key of STEPS, or "auto" until resolved
    chunk_epochs: int = 1  # epochs per compiled call; the host writes results between calls
    # Recording windows: `window_epochs` epochs recorded from each age in `record_windows` (epochs
    # trained before the window opens), besides the final recording. A window lies wholly in
    # equilibration or wholly in the final recording (then its rows are the final recording's first).
    record_windows: tuple[int, ...] = ()
    window_epochs: int = 2
    save_order: bool = False
    weight_stats: bool = False  # running statistics of every weight's increments while recording
    preset: str = "custom"
    # one process's part of a sweep trained by several (socjax.distributed): runs()[start:stop] of
    # the whole sweep's runs; None: every run
    shard: tuple[int, int] | None = None

    def __post_init__(self):
        _validate(self)

    @property
    def epochs(self) -> int:
        return self.epochs_equilibrate + self.epochs_record

    def recorded(self) -> list[tuple[int, int]]:
        """The recorded epochs as disjoint, increasing [start, end) intervals (0-based epochs): the
        windows in equilibration, then the final recording (which holds any window inside it)."""
        spans = [(a, a + self.window_epochs) for a in self.record_windows if a < self.epochs_equilibrate]
        if self.epochs_record:
            spans.append((self.epochs_equilibrate, self.epochs))
        return spans

    def recorded_before(self, epoch: int) -> int:
        """How many recorded epochs precede global epoch `epoch` (0-based): its first trajectory row
        is this times steps_per_epoch // stride."""
        return sum(max(0, min(end, epoch) - start) for start, end in self.recorded())

    def runs(self) -> list[tuple[int, float, float]]:
        """(seed, lr, l2) of every run, in the order of the leading axis of every saved array (a
        shard: its own runs of the sweep's, in the sweep's order)."""
        runs = list(itertools.product(self.seeds, self.lr, self.l2))
        return runs if self.shard is None else runs[self.shard[0] : self.shard[1]]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["runs"] = [dict(seed=s, lr=lr, l2=l2) for s, lr, l2 in self.runs()]
        return d

    @staticmethod
    def from_json(d: dict) -> "RunConfig":
        d = {k: v for k, v in d.items() if k != "runs"}
        d["model"] = ModelConfig(**{**d["model"], "sizes": tuple(d["model"]["sizes"]),
                                    **({"input_shape": tuple(d["model"]["input_shape"])}
                                       if "input_shape" in d["model"] else {})})
        if "optimizer" in d:  # absent from runs made before optimizers were added: plain SGD
            d["optimizer"] = OptimizerConfig(**d["optimizer"])
        if "teacher" in d:
            d["teacher"] = TeacherConfig(**d["teacher"])
        d["track_weights"] = tuple(TrackedWeight.from_json(t) for t in d["track_weights"])
        for k in ("seeds", "lr", "l2", "record_windows"):
            if k in d:
                d[k] = tuple(d[k])
        if d.get("shard") is not None:
            d["shard"] = tuple(d["shard"])
        return RunConfig(**d)


def _validate(cfg: RunConfig) -> None:
    """Raise ConfigError (one line) for anything that would fail later. The model checks itself."""
    m = cfg.model
    _check_dataset(cfg.dataset)
    _choose("step", cfg.step, tuple(STEP_CHOICES))
    if not cfg.seeds or not cfg.lr or not cfg.l2:
        raise ConfigError("seeds, lr and l2 each need at least one value")
    if cfg.shard is not None:
        total = len(cfg.seeds) * len(cfg.lr) * len(cfg.l2)
        start, stop = cfg.shard
        if not 0 <= start < stop <= total:
            raise ConfigError(f"shard must be runs [start, stop) with 0 <= start < stop <= {total}, got {cfg.shard}")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds must be distinct, got {cfg.seeds}")
    for seed in cfg.seeds:
        check_seed("seed", seed)
    check_seed("track_seed", cfg.track_seed)
    for lr in cfg.lr:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"learning rate must be positive and finite, got {lr}")
    for l2 in cfg.l2:
        if not (l2 >= 0 and math.isfinite(l2)):
            raise ConfigError(f"l2 must be non-negative and finite, got {l2}")
    if cfg.epochs_equilibrate < 0 or cfg.epochs_record < 0 or cfg.epochs < 1:
        raise ConfigError(
            f"need epochs_equilibrate >= 0, epochs_record >= 0 and at least one epoch, got "
            f"{cfg.epochs_equilibrate} and {cfg.epochs_record}"
        )
    if cfg.stride < 1:
        raise ConfigError(f"stride must be >= 1, got {cfg.stride}")
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {cfg.batch_size!r}")
    if cfg.chunk_epochs < 1:
        raise ConfigError(f"chunk_epochs must be >= 1, got {cfg.chunk_epochs}")
    _validate_windows(cfg)
    if cfg.weight_stats and m.is_flax:
        raise ConfigError(f"--weight-stats covers the paper's pure-function MLP (--model mlp), not --model {m.arch}")
    if cfg.train_limit is not None and cfg.train_limit < 1:
        raise ConfigError(f"train_limit must be >= 1, got {cfg.train_limit}")
    if cfg.random_labels is not None:
        check_seed("random_labels", cfg.random_labels)
    if not (cfg.pixel_scale > 0 and math.isfinite(cfg.pixel_scale)):
        raise ConfigError(f"pixel_scale must be positive and finite, got {cfg.pixel_scale}")
    if cfg.epochs > MAX_EPOCHS:
        raise ConfigError(f"at most {MAX_EPOCHS:,} epochs (the epoch counter is int32), got {cfg.epochs:,}")
    if not m.is_flax:  # a flax model's parameters are known once it is built (socjax.model.check)
        check_tracking(cfg, mlp_kernels(m))


def mlp_kernels(m: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(path, shape) of the pure MLP's weight matrices, w1 ... wL."""
    return [(f"w{l}", (m.sizes[l - 1], m.sizes[l])) for l in range(1, m.num_layers + 1)]


def check_tracking(cfg: RunConfig, kernels: list[tuple[str, tuple[int, ...]]]) -> None:
    """--track-weights name existing elements, once each; --track draws (half from each of the first
    two kernels, `socjax.train.select_tracked`) fit in them. kernels: (path, shape) in model order."""
    if cfg.track_weights:
        if len(set(cfg.track_weights)) != len(cfg.track_weights):
            dup = next(t for t in cfg.track_weights if cfg.track_weights.count(t) > 1)
            raise ConfigError(f"tracked weight {dup} is given twice")
        shapes = dict(kernels)
        for t in cfg.track_weights:
            if t.path not in shapes:
                raise ConfigError(f"tracked weight {t}: the model has no weight {t.path!r}; its weights are "
                                  f"{', '.join(shapes)}")
            shape = shapes[t.path]
            if len(t.index) != len(shape) or not all(0 <= i < n for i, n in zip(t.index, shape)):
                raise ConfigError(f"tracked weight {t}: {t.path} has shape {shape}")
    elif cfg.track < 0:
        raise ConfigError(f"track must be >= 0, got {cfg.track}")
    elif cfg.track > 0 and len(kernels) < 2:
        raise ConfigError("random tracking draws from the first two weight layers; the model has one")
    elif cfg.track > 0:
        sizes = [math.prod(shape) for _, shape in kernels[:2]]
        for (path, _), size, count in zip(kernels, sizes, (cfg.track // 2, cfg.track - cfg.track // 2)):
            if count > size:
                raise ConfigError(f"--track {cfg.track} draws {count} weights from {path}, which has {size}; "
                                  f"at most {2 * min(sizes)}")


def _check_dataset(name: str) -> None:
    if name not in DATASETS and not (isinstance(name, str) and re.fullmatch(TFDS_NAME, name)):
        raise ConfigError(f"unknown dataset {name!r}; choose {' or '.join(DATASETS)}, or the name of a "
                          "tensorflow-datasets image-classification set (e.g. fashion_mnist, cifar10)")


def _validate_windows(cfg: RunConfig) -> None:
    """Windows: ages increasing, non-negative, not overlapping, each ending by the run's end and
    lying wholly in equilibration or wholly in the final recording."""
    ages, w = cfg.record_windows, cfg.window_epochs
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise ConfigError(f"window_epochs must be an integer >= 1, got {w!r}")
    if not ages:
        return
    if any(isinstance(a, bool) or not isinstance(a, int) or a < 0 for a in ages):
        raise ConfigError(f"window ages must be integers >= 0 (epochs trained before the window), got {list(ages)}")
    if list(ages) != sorted(set(ages)):
        raise ConfigError(f"window ages must be distinct and increasing, got {list(ages)}")
    for a, b in zip(ages, ages[1:]):
        if a + w > b:
            raise ConfigError(f"the windows at ages {a} and {b} overlap ({w} epochs each); give ages at least "
                              f"{w} apart or fewer --window-epochs")
    eq = cfg.epochs_equilibrate
    for a in ages:
        if a + w > cfg.epochs:
            raise ConfigError(f"the window at age {a} ends at epoch {a + w}, after the run's {cfg.epochs} epochs")
        if a < eq < a + w:
            raise ConfigError(f"the window at age {a} ({w} epochs) straddles the start of the final recording "
                              f"(epoch {eq}); a window lies wholly before it or wholly inside it")


def steps_per_epoch(cfg: RunConfig, num_train: int) -> int:
    """SGD steps per epoch for a training set of num_train examples (train_limit applied): each step
    takes batch_size examples of the epoch's shuffled order, and the last num_train % batch_size
    examples of that order sit the epoch out (other ones every epoch, as the order is reshuffled)."""
    return min(num_train, cfg.train_limit or num_train) // cfg.batch_size


def check_data(cfg: RunConfig, num_train: int) -> None:
    """The checks that need the data: train_limit within the training set, a batch no larger than
    it, and the recording stride dividing the steps per epoch."""
    if cfg.train_limit is not None and cfg.train_limit > num_train:
        raise ConfigError(f"train_limit {cfg.train_limit} exceeds the {num_train:,} training examples of "
                          f"{cfg.dataset}")
    examples = min(num_train, cfg.train_limit or num_train)
    if cfg.batch_size > examples:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {examples:,} training examples")
    n = steps_per_epoch(cfg, num_train)
    if n % cfg.stride:
        raise ConfigError(f"stride {cfg.stride} must divide the number of steps per epoch ({n})")


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


DEFAULT_PRESET = "quick"


# --- the flags of `socjax train`: one table, from which the CLI, `build` and resume derive ------


def _number(text: str, kind: type, what: str):
    """text as int or float, or the argparse error naming what was expected."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def finite_positive(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    v = _number(text, float, "a number")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def seed_int(text: str) -> int:
    """A seed, 0 <= s < 2**32 (argparse type)."""
    v = _number(text, int, "an integer")
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in 0..{SEED_LIMIT - 1}, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    v = _number(text, int, "an integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def ages(text: str) -> tuple[int, ...]:
    """Comma-separated ages in epochs, each >= 0, e.g. 1,3,10 (argparse type)."""
    out = tuple(_number(a.strip(), int, "comma-separated integers") for a in text.split(","))
    if any(a < 0 for a in out):
        raise argparse.ArgumentTypeError(f"ages must be >= 0, got {text}")
    return out


def tracked_weight(text: str) -> TrackedWeight:
    """PATH:I,J,... (e.g. w1:130,420 or Dense_0/kernel:130,420), or the paper MLP's LAYER:ROW:COL
    (argparse type)."""
    if re.fullmatch(r"\d+:\d+:\d+", text):
        return TrackedWeight.mlp(*(int(v) for v in text.split(":")))
    path, _, index = text.rpartition(":")
    if path:
        try:
            return TrackedWeight(path, tuple(int(i) for i in index.split(",")))
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"expected PATH:I,J,... or LAYER:ROW:COL, got {text!r}")


@dataclass(frozen=True)
class Flag:
    """One configuration flag of `socjax train`: `--dest-with-dashes`, parsed with `argparse`
    keywords `arg`, setting the RunConfig field `field` ("model.X" for a ModelConfig field), or,
    with field None, interpreted by `build` (preset, epochs, record_epochs, seeds, seed, hidden).
    Every flag's value is None when not given, so `build` and resume can tell what was given."""

    dest: str
    help: str
    field: str | None = None
    arg: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")


_CONST = dict(action="store_const", const=True)
FLAGS: tuple[Flag, ...] = (
    Flag("preset", f"starting configuration (default: {DEFAULT_PRESET})", arg=dict(choices=tuple(PRESETS))),
    Flag("epochs", "total epochs (equilibration + recorded); default from the preset", arg=dict(type=positive_int)),
    Flag("record_epochs", "how many of the last epochs record trajectories (default: the preset's, at most "
         "--epochs)", arg=dict(type=int)),
    Flag("seeds", "number of seeds (default 1)", arg=dict(type=positive_int)),
    Flag("seed", "first seed; seeds are SEED..SEED+N-1, each in 0..2**32-1 (default 0)", arg=dict(type=seed_int)),
    Flag("lr", "learning rate(s); several values sweep (default 2e-3)", "lr", dict(type=float, nargs="+")),
    Flag("l2", "L2 coefficient(s); several values sweep (default 5e-4)", "l2", dict(type=float, nargs="+")),
    Flag("track", "number of weights to record, drawn uniformly: half from the first weight layer (w1, or a flax "
         "model's first kernel), half from the second (default 16)", "track", dict(type=int)),
    Flag("track_weights", "record these weights instead: parameter path and index, e.g. w1:130,420 or "
         "Conv_1/kernel:2,2,0,5; the paper MLP's LAYER:ROW:COL (1:130:420) too", "track_weights",
         dict(type=tracked_weight, nargs="+", metavar="PATH:I,J")),
    Flag("track_seed", "seed of the random choice of tracked weights, the same for every run (default 0)",
         "track_seed", dict(type=seed_int)),
    Flag("stride", "record every K-th step; must divide the steps per epoch (default 1)", "stride",
         dict(type=positive_int)),
    Flag("batch_size", "examples per SGD step (default 1, the paper's); an epoch is floor(N / B) steps of the "
         "shuffled order, the remaining N mod B examples sit that epoch out", "batch_size", dict(type=positive_int)),
    Flag("optimizer", "how gradients become updates (optax): sgd (the paper's, default), momentum, nesterov, adam "
         "or adamw; the gradient always includes the L2 term of --l2", "optimizer.name", dict(choices=OPTIMIZERS)),
    Flag("momentum", "momentum of --optimizer momentum or nesterov (default 0.9)", "optimizer.momentum",
         dict(type=float)),
    Flag("b1", "adam's and adamw's first-moment decay (default 0.9)", "optimizer.b1", dict(type=float)),
    Flag("b2", "adam's and adamw's second-moment decay (default 0.999)", "optimizer.b2", dict(type=float)),
    Flag("eps", "adam's and adamw's epsilon (default 1e-8)", "optimizer.eps", dict(type=float)),
    Flag("weight_decay", "adamw's decoupled weight decay, on the parameters L2 acts on (default 1e-4)",
         "optimizer.weight_decay", dict(type=float)),
    Flag("data_dir", "directory with the four MNIST IDX .gz files (checked by SHA-256); implies --dataset mnist",
         "data_dir"),
    Flag("dataset", "mnist: full MNIST via tensorflow-datasets (downloads once); mnist-mini: the embedded "
         "10,000/2,000 subset (default from the preset); digits: scikit-learn's 1,797 8x8 digits (no download); "
         "teacher: Gaussian inputs labelled by a random teacher MLP; or any tensorflow-datasets image-classification "
         "set by name (fashion_mnist, kmnist, emnist/digits, cifar10, ...)", "dataset", dict(metavar="NAME")),
    Flag("teacher_dim", "--dataset teacher: input dimension (default 100)", "teacher.dim", dict(type=positive_int)),
    Flag("teacher_seed", "--dataset teacher: seed of the teacher and its inputs (default 0)", "teacher.seed",
         dict(type=seed_int)),
    Flag("train_limit", "use only the first N training examples", "train_limit", dict(type=positive_int)),
    Flag("random_labels", "the random-labels control: train on the training labels permuted at random by this seed "
         "(the same permutation for every run; test labels stay true; default: the true labels)", "random_labels",
         dict(type=seed_int, metavar="SEED")),
    Flag("pixel_scale", "pixels are divided by this (default 255: blank pixels stay exactly 0)", "pixel_scale",
         dict(type=finite_positive)),
    Flag("model", "the network: mlp (the paper's, as pure functions; default), flax-mlp (the same as a flax Module), "
         "cnn (LeNet-like flax CNN), or MODULE:FUNCTION, a function returning a flax.linen.Module", "model.arch",
         dict(metavar="MODEL")),
    Flag("activation", "hidden activation of flax-mlp and cnn: relu (default) or tanh", "model.activation",
         dict(choices=ACTIVATIONS)),
    Flag("hidden", "hidden layer widths (default 700 476; the cnn's dense head)", arg=dict(type=positive_int, nargs="+")),
    Flag("loss", "mse: eq. (10), the default; xent: cross-entropy", "model.loss", dict(choices=LOSSES)),
    Flag("init", "parameter init (default torch: PyTorch's nn.Linear)", "model.init", dict(choices=INITS)),
    Flag("decay_biases", "L2 on biases too (default: yes, as PyTorch's weight_decay)", "model.decay_biases",
         dict(action=argparse.BooleanOptionalAction)),
    Flag("step", "SGD step implementation: xla (autodiff, any backend), native (C++ kernel, CPU) or auto: native "
         "when the backend is the CPU and the kernel builds, else xla (default auto)", "step",
         dict(choices=STEP_CHOICES)),
    Flag("chunk_epochs", "epochs per compiled call; results are written after each (default 1)", "chunk_epochs",
         dict(type=positive_int)),
    Flag("record_windows", "also record --window-epochs epochs from each of these ages (epochs trained before "
         "the window), e.g. 1,3,10,30,100,300,1000,3000; each window is analysed on its own (default: none)",
         "record_windows", dict(type=ages, metavar="AGES")),
    Flag("window_epochs", "epochs recorded in each window (default 2)", "window_epochs", dict(type=positive_int)),
    Flag("save_order", "write order.npy, the example of every step", "save_order", _CONST),
    Flag("weight_stats", "accumulate, for every weight and bias, running statistics of its increments over the "
         "recorded epochs (mean, variance, mean |dw|, pure-decay fraction; per-layer histograms of |dw|) and "
         "write weight_stats.npz", "weight_stats", _CONST),
)
FLAG_DESTS = tuple(f.dest for f in FLAGS)


def _epochs(base: RunConfig, epochs: int | None, record_epochs: int | None) -> tuple[int, int]:
    """(equilibrate, record) from a total and a recorded count, either given or the preset's."""
    if epochs is None:
        return base.epochs_equilibrate, base.epochs_record if record_epochs is None else record_epochs
    record = min(base.epochs_record, epochs) if record_epochs is None else record_epochs
    if not 0 <= record <= epochs:
        raise ConfigError(f"--record-epochs must be in 0..{epochs}, got {record}")
    return epochs - record, record


def build(preset: str | None = None, **given) -> RunConfig:
    """The RunConfig of a preset with overrides: keywords are FLAGS' dests; None means not given.

    Lists become tuples; --hidden sets the inner layer widths; --data-dir implies the mnist dataset.
    Raises ConfigError (one line) for an unknown preset or an invalid result."""
    unknown = set(given) - set(FLAG_DESTS)
    if unknown:
        raise TypeError(f"build() got unknown settings {sorted(unknown)}")
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}
    preset = preset or DEFAULT_PRESET
    _choose("preset", preset, tuple(PRESETS))
    base = PRESETS[preset]
    equilibrate, record = _epochs(base, given.pop("epochs", None), given.pop("record_epochs", None))
    first, count = given.pop("seed", 0), given.pop("seeds", 1)
    top: dict[str, Any] = dict(epochs_equilibrate=equilibrate, epochs_record=record,
                               seeds=tuple(range(first, first + count)))
    model: dict[str, Any] = {}
    optimizer: dict[str, Any] = {}
    teacher: dict[str, Any] = {}
    hidden = given.pop("hidden", base.model.sizes[1:-1])
    if "data_dir" in given:
        if "dataset" in given:
            raise ConfigError("--data-dir reads full MNIST from IDX files; give it or --dataset, not both")
        top["dataset"] = "mnist"
    fields = {f.dest: f.field for f in FLAGS}
    for dest, value in given.items():
        section, _, name = fields[dest].rpartition(".")
        {"model": model, "optimizer": optimizer, "teacher": teacher}.get(section, top)[name] = value
    if teacher:
        if top.get("dataset", base.dataset) != "teacher":
            raise ConfigError(f"{', '.join('--teacher-' + k for k in teacher)} applies to --dataset teacher")
        top["teacher"] = dataclasses.replace(base.teacher, **teacher)
    # the model's input and classes are the data's (a tensorflow-datasets name is looked up: seconds)
    from socjax.data import shape_of

    _check_dataset(top.get("dataset", base.dataset))
    shape, classes = shape_of(top.get("dataset", base.dataset), top.get("teacher", base.teacher))
    model.update(input_shape=shape, sizes=(math.prod(shape), *hidden, classes))
    top["model"] = dataclasses.replace(base.model, **model)
    if optimizer:
        top["optimizer"] = dataclasses.replace(base.optimizer, **optimizer)
        name = top["optimizer"].name
        ignored = [f"--{k.replace('_', '-')}" for k in optimizer if k != "name" and k not in OPTIMIZER_SETTINGS[name]]
        if ignored:
            uses = OPTIMIZER_SETTINGS[name]
            raise ConfigError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to --optimizer "
                              f"{name}" + (f" (it reads {', '.join('--' + k.replace('_', '-') for k in uses)})"
                                           if uses else ""))
    return dataclasses.replace(base, **top)


def resume_conflicts(given: dict[str, Any]) -> list[str]:
    """The configuration flags (as `--option`) that a resume must refuse: every flag given, except a
    longer --epochs. `given`: dest -> value, None when not given."""
    return sorted(f.option for f in FLAGS if f.dest != "epochs" and given.get(f.dest) is not None)


def extend(cfg: RunConfig, epochs: int | None) -> RunConfig:
    """cfg with a total of `epochs` (the extra epochs are recorded); None keeps it. Never shorter."""
    if epochs is None:
        return cfg
    if epochs < cfg.epochs:
        raise ConfigError(f"--epochs {epochs} is shorter than the run's {cfg.epochs}; resume can only extend a run")
    return dataclasses.replace(cfg, epochs_record=cfg.epochs_record + epochs - cfg.epochs)


__all__ = [
    "DATASETS", "TeacherConfig", "FLAGS", "INITS", "LOSSES", "MASKED_STEPS", "OPTIMIZERS", "OptimizerConfig", "SGD", "PRESETS", "STEPS", "STEP_CHOICES", "ConfigError", "Flag",
    "ModelConfig", "RunConfig", "ToyParams", "TrackedWeight", "build", "check_data", "extend", "resume_conflicts",
    "steps_per_epoch",
]
