"""Pruning by a per-weight criterion: the paper's Discussion turned into a test of which weights matter.

The Discussion (shared/PAPER.md) says a weight's fluctuation amplitude marks how vital it is, so
the most fluctuating weights could be dropped first. Here the weights into the hidden layers
(`hidden_layers`: by role, every weight matrix but the output layer's; w1 and w2 of the paper's
784-700-476-10, while the output layer w3, 0.5% of the weights, and every bias are kept) are
ranked by a criterion, the first fraction `sparsity` of the ranking is set to exactly 0, and the network's
test loss and accuracy are measured (a) at once and (b) after `finetune_epochs` epochs of SGD with
the mask held fixed, through the trainer's step seam (step.MaskedHyper, step "masked-<step>").

Criteria, each a priority per weight (larger is pruned first; equal priorities in flat-index order):
  amplitude           largest non-decay amplitude first: the paper's ordering
  amplitude_smallest  smallest non-decay amplitude first: the opposite, so the data say which way
  magnitude           smallest |w| first: the standard baseline
  snr                 smallest |w| / amplitude first: variational pruning's signal-to-noise, and what
                      the paper's argument reduces to if both |w| and amplitude matter
  random              uniformly random, one ranking per draw

The amplitude is the standard deviation of the weight's non-decay increments over the recorded
phase (weight_stats.npz, nondecay_var): the pure weight-decay increments -lr*l2*w are left out, as
they measure |w|. A weight with no non-decay step (a zero gradient at every recorded step: its
pixel is blank in every training image, or its neuron never fires) has amplitude 0, and |w| / 0 =
inf: it is pruned last by "amplitude" and "snr", first by "amplitude_smallest". prune.json records
each layer's share of them (`no_nondecay_share`): above that sparsity, those two criteria keep
only such weights.

Scope (DEFAULT "layer"): each hidden layer loses the same fraction, ranked within the layer, so the
criteria are compared within a layer rather than by the layers' different scales; "global" ranks
all hidden layers together.

A sweep is pruned per group of settings (`analysis.groups`, as the analysis groups it): each
group's seeds give its curves and its claims, never pooled across settings. prune.json holds the
shared settings and "groups"; one written before groups (no "groups") is one group (`rundir.prune_groups`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from socjax import model, report, rundir, train
from socjax.analysis import vitality
from socjax.analysis.groups import across_seeds
from socjax.config import MASKED_STEPS, MAX_EPOCHS, SGD, ConfigError, ModelConfig, OptimizerConfig
from socjax.data import Dataset, decode, load_raw
from socjax.step import MASKED_PREFIX, Hyper, MaskedHyper, make_optimizer, native_unavailable

CRITERIA = ("amplitude", "amplitude_smallest", "magnitude", "snr", "random")
PAPER_CRITERION = "amplitude"
SCOPES = ("layer", "global")
SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
RANDOM_DRAWS = 5
MAX_DRAWS = 1000  # random rankings per seed: each costs one evaluation per sparsity (and a fine-tune)
MAX_SPARSITIES = 1000  # points of the curve: each costs one evaluation per ranking (and a fine-tune)
MAX_BATCH = 256  # masked copies fine-tuned at once: each holds the network's parameters, mask and gradients
FINETUNE_EPOCHS = 1


def hidden_layers(cfg: ModelConfig) -> tuple[int, ...]:
    """The layers (1-based weight matrices) pruned: those into a hidden layer, every one but the
    output layer's. (1, 2) for the paper's 784-700-476-10; (1,) for one hidden layer."""
    return tuple(range(1, cfg.num_layers))


def amplitude(stats: dict[str, np.ndarray], layer: int) -> np.ndarray:
    """Non-decay amplitude of every weight of `layer` (1-based) from weight_stats.npz's arrays:
    sqrt(nondecay_var), (R, fan_in, fan_out); 0 where the weight had no non-decay step."""
    key = f"nondecay_var_w{layer}"
    if key not in stats:
        raise ConfigError("weight_stats.npz has no non-decay moments (written by an older socjax): rerun with "
                          "--weight-stats")
    return np.where(stats[f"nondecay_count_w{layer}"] > 0, np.sqrt(np.maximum(stats[key], 0.0)), 0.0)


def priority(criterion: str, w: np.ndarray, amp: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The pruning priority of each weight (same shape as w): larger is pruned first."""
    if criterion == "amplitude":
        return amp.astype(np.float64)
    if criterion == "amplitude_smallest":
        return -amp.astype(np.float64)
    if criterion == "magnitude":
        return -np.abs(w).astype(np.float64)
    if criterion == "snr":
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(amp > 0, np.abs(w) / np.where(amp > 0, amp, 1.0), np.inf)
        return -snr
    if criterion == "random":
        if rng is None:
            raise ValueError("the random criterion needs a generator")
        return rng.random(w.shape)
    raise ConfigError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")


def prune_ranks(priorities: list[np.ndarray], scope: str) -> list[np.ndarray]:
    """Each weight's position in the pruning order (0 is pruned first), one int array per layer of
    `priorities` (one run's layers): within its layer ("layer") or over all of them ("global").
    Equal priorities go in flat-index order (layer by layer for "global")."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    if scope == "layer":
        out = []
        for p in priorities:
            rank = np.empty(p.size, np.int64)
            rank[np.argsort(-p.ravel(), kind="stable")] = np.arange(p.size)
            out.append(rank.reshape(p.shape))
        return out
    flat = np.concatenate([p.ravel() for p in priorities])
    rank = np.empty(flat.size, np.int64)
    rank[np.argsort(-flat, kind="stable")] = np.arange(flat.size)
    bounds = np.cumsum([0] + [p.size for p in priorities])
    return [rank[a:b].reshape(p.shape) for a, b, p in zip(bounds[:-1], bounds[1:], priorities)]


def keep_masks(ranks: list[np.ndarray], sparsity: float, scope: str) -> list[np.ndarray]:
    """0/1 float32 masks (1 keeps) removing round(sparsity * n) weights: n per layer ("layer") or
    in total ("global"), those of smallest rank."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope == "layer":
        return [(r >= round(sparsity * r.size)).astype(np.float32) for r in ranks]
    k = round(sparsity * sum(r.size for r in ranks))
    return [(r >= k).astype(np.float32) for r in ranks]


def full_mask(cfg: ModelConfig, layer_masks: dict[int, np.ndarray]) -> model.Params:
    """A Params-shaped mask: the given weight masks by layer (1-based), ones everywhere else."""
    return tuple(model.Dense(jnp.asarray(layer_masks[l]) if l in layer_masks else jnp.ones((a, b), jnp.float32),
                             jnp.ones((b,), jnp.float32))
                 for l, (a, b) in enumerate(zip(cfg.sizes[:-1], cfg.sizes[1:]), start=1))


def apply_mask(params: model.Params, mask: model.Params) -> model.Params:
    return jax.tree.map(jnp.multiply, params, mask)


@jax.jit(static_argnums=4)
def _evaluate(params, mask, x, y, cfg):
    return train.evaluate(apply_mask(params, mask), x, y, cfg)


def evaluate(params: model.Params, mask: model.Params, x, y, cfg: ModelConfig) -> tuple[float, float]:
    """(mean data loss, accuracy) of the masked network on x (M, 784), y (M,): train.evaluate."""
    masked_loss, acc = _evaluate(params, mask, x, y, cfg)
    return float(masked_loss), float(acc)


@functools.lru_cache(maxsize=8)
def _train_chunk(spec: train.TrainSpec, epochs: int):
    return train.make_train_chunk(spec, epochs)  # compiled once per spec, epochs and batch shape


class Finetuned(NamedTuple):
    """After fine-tuning V masked copies of one run: params, model.Params stacked (V, ...);
    test_loss, test_acc (V,) at the end of the last epoch; pruned_nonzero (V,) pruned elements that
    are not exactly 0 (0 by construction); finite (V,) bool."""

    params: model.Params
    test_loss: np.ndarray
    test_acc: np.ndarray
    pruned_nonzero: np.ndarray
    finite: np.ndarray


def finetune(params: model.Params, masks: list[model.Params], key: jax.Array, epoch: int, lr: float, l2: float,
             data: Dataset, cfg: ModelConfig, step: str = "xla", epochs: int = FINETUNE_EPOCHS,
             opt: OptimizerConfig = SGD, batch_size: int = 1) -> Finetuned:
    """`epochs` epochs of training of each masked copy of one run's `params`, masks held fixed, by
    the trainer (train.make_train_chunk) with the step "masked-<step>", the run's optimizer `opt`
    (from a fresh optimizer state: a run keeps its moments only in its checkpoint) and batch size.
    The copies share the run's example order: key is the run's order key and `epoch` the first
    epoch's number."""
    v = len(masks)
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)
    mask = stack(masks)
    start = jax.vmap(apply_mask, in_axes=(None, 0))(params, mask)
    opt_state = jax.vmap(make_optimizer(Hyper(1.0, 0.0), cfg, opt).init)(start)
    state = train.TrainState(start, opt_state, jnp.stack([key] * v), jnp.full((v,), epoch, jnp.int32), None)
    hyper = MaskedHyper(jnp.full((v,), lr, jnp.float32), jnp.full((v,), l2, jnp.float32), mask)
    spec = train.TrainSpec(cfg, step=MASKED_PREFIX + step, optimizer=opt, batch_size=batch_size)
    state, out = _train_chunk(spec, epochs)(state, hyper, data)
    pruned_nonzero = sum(jnp.sum((m == 0) & (p != 0), axis=tuple(range(1, p.ndim)))
                         for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(state.params)))
    return Finetuned(state.params, np.asarray(out.metrics.test_loss[:, -1]), np.asarray(out.metrics.test_acc[:, -1]),
                     np.asarray(pruned_nonzero), np.asarray(out.finite))


# --- the prune command: one trained run in, prune.json out ---------------------------------------

MODES = ("none", "finetuned")
AREA_MARGIN = 0.01  # "comparable": the sparsity-averaged accuracy is at most 1 point below
RULES = {
    "beats_random": ("the paper's criterion (largest non-decay amplitude first) beats random pruning: the paired "
                     "difference of accuracy averaged over the sparsity grid, across seeds, has a 95% t interval "
                     "above 0"),
    "comparable_to_magnitude": (f"the paper's criterion is comparable to or better than magnitude pruning: the "
                                f"same paired difference against magnitude has a 95% t interval whose lower end "
                                f"is above -{AREA_MARGIN:g} (one accuracy point)"),
}


class PruneError(ConfigError):
    """A run that cannot be pruned (no weight statistics, no final parameters, no configuration)."""


def choose_step(name: str, cfg) -> str:
    """The masked step to fine-tune with: `name` ("xla", "native") or "auto" (native when the
    masked native step is registered and can train `cfg` here, else xla)."""
    if name != "auto":
        if name not in MASKED_STEPS:
            raise PruneError(f"unknown masked step {name!r}; choose auto or {' or '.join(MASKED_STEPS)}")
        why = native_unavailable(cfg) if name == "native" else None
        if why:
            raise PruneError(f"--step native: {why}")
        return name
    return "native" if "native" in MASKED_STEPS and native_unavailable(cfg) is None else "xla"


def rankings(w: dict[int, np.ndarray], amp: dict[int, np.ndarray], draws: int, scope: str,
             seed: int) -> list[tuple[str, int, list[np.ndarray]]]:
    """[(criterion, draw, prune ranks per pruned layer, in order of layer)] of one run: every
    criterion once, random `draws` times (generator seeded by (seed, draw)). w, amp: {layer: array}."""
    out = []
    for c in CRITERIA:
        for d in range(draws if c == "random" else 1):
            rng = np.random.default_rng([seed, d])
            pr = [priority(c, w[l], amp[l], rng) for l in sorted(w)]
            out.append((c, d, prune_ranks(pr, scope)))
    return out


def _curve_summary(values: np.ndarray) -> dict:
    """values (R, D, S): per sparsity, the mean over draws per run, then across runs (groups.across_seeds)."""
    per_run = np.nanmean(values, axis=1)  # (R, S)
    return dict(per_run=per_run.tolist(), across=[across_seeds(per_run[:, s]) for s in range(per_run.shape[1])])


def claims(result: dict) -> list[dict]:
    """The Discussion's pruning claims from one group's curves (prune.json's group entry): per mode,
    paired differences of the sparsity-averaged accuracy over the group's runs (see RULES)."""
    out = []
    for mode in [m for m in MODES if m in result["curves"][PAPER_CRITERION]]:
        area = {c: np.nanmean(np.nanmean(np.asarray(result["curves"][c][mode]["test_acc"], np.float64), axis=1), axis=1)
                for c in CRITERIA}  # (R,) accuracy averaged over draws, then over the sparsity grid
        for key, other in (("beats_random", "random"), ("comparable_to_magnitude", "magnitude")):
            diff = across_seeds(area[PAPER_CRITERION] - area[other])
            ci = diff["ci95"]
            holds = None if ci is None else bool(ci[0] > 0 if key == "beats_random" else ci[0] > -AREA_MARGIN)
            out.append(dict(key=key, mode=mode, rule=RULES[key], difference=diff, holds=holds,
                            area={c: area[c].tolist() for c in CRITERIA}))
    return out


def check_out(run: Path, out: Path) -> None:
    """Refuse, in one line, an output directory prune must not replace: the run directory itself (or
    one above it), another run, or a directory holding anything but an earlier prune's files."""
    run_r, out_r = run.resolve(), out.resolve()
    if out_r == run_r or out_r in run_r.parents:
        raise PruneError(f"--out {out}: is the run directory {run} (or holds it); prune writes {rundir.PRUNE_JSON}, "
                         f"{rundir.PRUNE_FIGURE} and {rundir.REPORT} into a directory of its own (default "
                         f"{run / rundir.PRUNE_DIR})")
    if out.exists() and not out.is_dir():
        raise PruneError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if (out / rundir.CONFIG).exists():
            raise PruneError(f"--out {out}: holds a run; choose a directory of its own for the prune outputs")
        if not (out / rundir.PRUNE_JSON).exists():
            raise PruneError(f"--out {out}: not empty and not an earlier prune output (no {rundir.PRUNE_JSON}); "
                             "choose another")


def _analysis_for_correlation(run: Path) -> tuple[dict | None, str | None]:
    """(analysis.json, None) when the run's analysis is this run's and of this socjax's schema,
    else (None, why the correlation is not tested)."""
    from socjax import results

    try:
        loaded = results.load_run(run)
    except (rundir.RunDirError, ValueError) as e:  # ValueError: a malformed metrics.json beside it
        return None, f"the run's analysis is not usable ({e})"
    if loaded.stale:
        return None, loaded.stale
    if loaded.analysis is None or not loaded.analysis.get("per_weight"):
        return None, "the run has no per-weight fits: run `socjax analyze` first"
    return loaded.analysis, None


def prune_run(run, out=None, *, sparsities=SPARSITIES, draws: int = RANDOM_DRAWS, scope: str = "layer",
              finetune_epochs: int = FINETUNE_EPOCHS, step: str = "auto", data_dir: str | None = None,
              batch: int = 4, progress: bool = True) -> dict:
    """The pruning test (and the correlation claim) of one trained run, per group of settings;
    writes OUT/prune.json, OUT/prune.png (one per group in a sweep) and OUT/report.md as a unit
    (OUT defaults to RUN/prune) and returns prune.json's dict. finetune_epochs 0 skips the
    fine-tuned curve. Holds the run's lock; stops at a signal between evaluations (`interrupt.poll`),
    leaving OUT as it was."""
    from socjax import interrupt

    run = Path(run)
    out = run / rundir.PRUNE_DIR if out is None else Path(out)
    if not (run / rundir.CONFIG).exists():
        raise PruneError(f"{run}: not a run directory (no {rundir.CONFIG})")
    check_out(run, out)
    with rundir.RunLock(run, create=False, command="prune"), \
            interrupt.kept(f"{out} is unchanged" if out.exists() else "nothing was written"):
        result = _prune(run, out, sparsities, draws, scope, finetune_epochs, step, data_dir, batch, progress)

        def fill(tmp: Path) -> None:
            from socjax import plots  # matplotlib: only when there is something to draw

            rundir.write_json(tmp / rundir.PRUNE_JSON, result)
            for name, group in zip(rundir.prune_figures(result), result["groups"]):
                plots.prune_figure(result, group, tmp / name)
            report.write_prune(tmp, result)

        rundir.replace_dir(out, fill)
        analysis = rundir.load_analysis(run) if (run / rundir.REPORT).exists() else None
        if out.resolve() == (run / rundir.PRUNE_DIR).resolve() and analysis is not None \
                and result["analysis_schema"] is not None:
            ages = rundir.load_ages(run)  # the run's own report.md gains the Discussion's rows
            report.write(run, dict(analysis, ages=ages) if ages else analysis)
    return result


def _prune(run: Path, out: Path, sparsities, draws, scope, finetune_epochs, step, data_dir, batch, progress) -> dict:
    from tqdm.auto import tqdm

    from socjax import interrupt
    from socjax.analysis import groups as grouping

    info = rundir.read_info(run)
    cfg = info.config
    if cfg is None:
        raise PruneError(f"{run}: config.json has no model configuration")
    why = rundir.not_final(run)
    if why:
        raise PruneError(why)
    sparsities = tuple(float(s) for s in sparsities)
    if not sparsities or any(not 0.0 <= s < 1.0 for s in sparsities) or list(sparsities) != sorted(set(sparsities)):
        raise PruneError(f"sparsities must increase within [0, 1), got {sparsities}")
    if not 1 <= draws <= MAX_DRAWS:
        raise PruneError(f"--draws must be in 1..{MAX_DRAWS:,}, got {draws:,}")
    if len(sparsities) > MAX_SPARSITIES:
        raise PruneError(f"--sparsities: {len(sparsities):,} fractions; at most {MAX_SPARSITIES:,}")
    if finetune_epochs < 0 or not 1 <= batch <= MAX_BATCH:
        raise PruneError(f"--batch must be in 1..{MAX_BATCH} (got {batch:,}), --finetune-epochs at least 0 "
                         f"(got {finetune_epochs:,})")
    if cfg.epochs + finetune_epochs > MAX_EPOCHS:  # the fine-tune continues the run's epoch counter (int32)
        raise PruneError(f"--finetune-epochs {finetune_epochs:,}: the run's {cfg.epochs:,} epochs and the fine-tune "
                         f"may total at most {MAX_EPOCHS:,} (the epoch counter is int32)")
    layers = hidden_layers(cfg.model)
    if not layers:
        raise PruneError(f"{run}: the network has no hidden layer to prune")
    state = rundir.prune_state(run)
    stats = rundir.load_weight_stats(run, cfg)
    named = rundir.load_params(run, "final")
    num_runs = named["w1"].shape[0]
    amps = {l: amplitude(stats, l) for l in layers}
    step_name = choose_step(step, cfg) if finetune_epochs else None
    analysis, no_fits = _analysis_for_correlation(run)
    raw, source = load_raw(cfg.dataset, data_dir or cfg.data_dir, cfg.teacher)
    ds = jax.device_put(decode(raw, cfg.pixel_scale, cfg.train_limit, cfg.random_labels))
    settings = list(cfg.runs())  # (seed, lr, l2) of each run, in the order of the run axis
    keys = train.init_runs([seed for seed, _, _ in settings], cfg.model).key  # each run's example-order key
    names = [(c, d) for c in CRITERIA for d in range(draws if c == "random" else 1)]
    modes = MODES if finetune_epochs else MODES[:1]
    curves = {c: {m: {k: np.full((num_runs, draws if c == "random" else 1, len(sparsities)), np.nan)
                      for k in ("test_acc", "test_loss")} for m in modes} for c in CRITERIA}
    checks = [dict(pruned_nonzero=0, nonfinite=0) for _ in range(num_runs)]
    total = num_runs * len(names) * len(sparsities) * (2 if finetune_epochs else 1)
    with tqdm(total=total, desc="prune", unit="net", disable=not progress, dynamic_ncols=True) as bar:
        for r in range(num_runs):
            params = model.from_named({k: v[r] for k, v in named.items()}, cfg.model.num_layers)
            w = {l: named[f"w{l}"][r] for l in layers}
            ranked = rankings(w, {l: amps[l][r] for l in layers}, draws, scope, seed=int(settings[r][0]))
            pending, dense = [], []  # (criterion, draw, sparsity index, mask) to fine-tune; at sparsity 0
            for c, d, ranks in ranked:
                for si, s in enumerate(sparsities):
                    mask = full_mask(cfg.model, dict(zip(layers, keep_masks(ranks, s, scope))))
                    loss_, acc = evaluate(params, mask, ds.test_x, ds.test_y, cfg.model)
                    curves[c]["none"]["test_loss"][r, d, si], curves[c]["none"]["test_acc"][r, d, si] = loss_, acc
                    if finetune_epochs:
                        (pending if s > 0 else dense).append((c, d, si, mask))
                    bar.update()
                    interrupt.poll("prune")
            if not finetune_epochs:
                continue
            _, lr, l2 = settings[r]
            # sparsity 0 keeps every weight, whatever the criterion: one fine-tune serves them all
            jobs = [(dense[:1], dense)] if dense else []
            jobs += [(pending[i:i + batch], pending[i:i + batch]) for i in range(0, len(pending), batch)]
            for group, served in jobs:
                res = finetune(params, [p[3] for p in group], keys[r], cfg.epochs, lr, l2, ds, cfg.model,
                               step_name, finetune_epochs, cfg.optimizer, cfg.batch_size)
                checks[r]["pruned_nonzero"] += int(res.pruned_nonzero.sum())
                checks[r]["nonfinite"] += int((~res.finite).sum())
                for j, (c, d, si, _) in enumerate(served):
                    k = min(j, len(group) - 1)  # every served entry of the dense job reads its one result
                    curves[c]["finetuned"]["test_loss"][r, d, si] = res.test_loss[k]
                    curves[c]["finetuned"]["test_acc"][r, d, si] = res.test_acc[k]
                bar.update(len(served))
                interrupt.poll("prune")
    groups, _ = grouping.group_runs(info.runs, num_runs)
    entries = []
    for g in groups:
        idx = list(g.runs)
        entry = dict(
            group=g.index, label=g.label, settings=g.settings, run_indices=idx,
            runs=[dict(seed=settings[r][0], lr=settings[r][1], l2=settings[r][2]) for r in idx],
            # amplitude 0: kept last by "amplitude" and "snr"; above this sparsity they keep only such weights
            no_nondecay_share={f"w{l}": float(np.mean(amps[l][idx] == 0)) for l in layers},
            finetune_checks={k: sum(checks[r][k] for r in idx) for k in ("pruned_nonzero", "nonfinite")},
            curves={c: {m: {k: v[idx].tolist() for k, v in d.items()} for m, d in mds.items()}
                    for c, mds in curves.items()},
        )
        entry["summary"] = {c: {m: {k: _curve_summary(np.asarray(v, np.float64)) for k, v in d.items()}
                                for m, d in mds.items()} for c, mds in entry["curves"].items()}
        entry["claims"] = claims(entry)
        if analysis is None:
            entry["correlation"] = dict(holds=None, note=no_fits)
        else:
            members = [e for e in analysis["per_weight"] if e.get("run") in set(idx)]
            entry["correlation"] = vitality.correlations(members, stats, named)
        entries.append(entry)
    ft_checks = {k: sum(c[k] for c in checks) for k in ("pruned_nonzero", "nonfinite")}
    return dict(
        run=str(run), data_source=source, state=state,
        analysis_schema=None if analysis is None else analysis.get("schema_version"),
        scope=scope, sparsities=list(sparsities), criteria=list(CRITERIA),
        paper_criterion=PAPER_CRITERION, random_draws=draws, pruned_layers=[f"w{l}" for l in layers],
        output_layer=f"w{cfg.model.num_layers}",
        weights_ranked=int(sum(named[f"w{l}"][0].size for l in layers)),
        amplitude="std of the non-decay increments over the recorded phase (weight_stats.npz)",
        finetune=dict(epochs=finetune_epochs, step=None if step_name is None else MASKED_PREFIX + step_name,
                      first_epoch=cfg.epochs, **ft_checks),
        runs=[dict(seed=s, lr=lr, l2=l2) for s, lr, l2 in settings],
        groups=entries,
    )
