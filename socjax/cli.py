"""`socjax` command line (also `python -m socjax`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from socjax.config import PRESETS, ConfigError, ToyParams, TrackedWeight, validate, with_overrides

DESCRIPTION = """\
socjax: per-example SGD on MNIST with a 784-700-476-10 MLP, as in "Self-organized criticality in
neural networks" (Katsnelson, Vanchurin, Westerhout, arXiv:2107.03402), compiled with JAX."""

TRAIN_EPILOG = """\
presets (flags override them):
  smoke   2,000 embedded examples, 1 + 2 epochs: seconds, for tests
  quick   10,000 embedded examples, 30 epochs to equilibrate + 3 recorded: minutes on a CPU
  paper   full MNIST, 3000 epochs to equilibrate + 200 recorded (the paper's protocol)
runs: every combination of the seeds, --lr values and --l2 values is one run; all runs train at
once (vmapped) and every saved array has a leading run axis, in config.json's "runs" order.
"""


def _tracked_weight(text: str) -> TrackedWeight:
    try:
        layer, row, col = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER:ROW:COL, got {text!r}") from None
    return TrackedWeight(layer, row, col)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `socjax: error: ... (see --help)`, exit status 2."""

    def error(self, message):
        self.exit(2, f"socjax: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="socjax", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train the MLP by per-example SGD and record weight trajectories",
        description="Train the paper's MLP by per-example SGD and write a run directory.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_args(t)

    a = sub.add_parser(
        "analyze",
        help="analyse a run directory: analysis.json and the four figures",
        description="Analyse a run directory: fits of the increments and spectra of the recorded "
                    "weights, neuron distributions; writes DIR/analysis.json, DIR/fig1..4 and DIR/report.md.",
    )
    a.add_argument("run", metavar="DIR", help="run directory (from socjax train)")
    _add_analysis_args(a)

    r = sub.add_parser(
        "reproduce",
        help="train, analyse and write report.md: the whole reproduction in one command",
        description="Train (as socjax train), analyse (as socjax analyze) and write DIR/report.md, "
                    "the paper's claims against this run's numbers.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_args(r)
    _add_analysis_args(r, data_dir=False)

    y = sub.add_parser(
        "toy",
        help="the toy model of Section 2: analytic learning equilibrium against simulations",
        description="The one-neuron, one-weight toy model of Section 2: eq. (6) against Langevin "
                    "dynamics on F and against the SGD learning picture; writes DIR/toy.json and DIR/toy.png.",
    )
    # let "--lx -1e-3" read as a negative number, as "--lx -0.001" already does
    y._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    y.add_argument("--out", required=True, help="directory to write (created; toy.json must not exist)")
    defaults = ToyParams()
    for name in defaults._fields:
        what = ("the quartic term kx (x-xb)^4/4 added to H; > 0 is needed for lx <= 0 (the frustrated regime)"
                if name == "kx" else f"{name} of eqs. (2)-(6)")
        y.add_argument(f"--{name}", type=float, default=getattr(defaults, name),
                       help=f"{what} (default {getattr(defaults, name):g})")
    y.add_argument("--chains", type=_positive_int, default=4000, help="independent chains (default 4000)")
    y.add_argument("--steps", type=_positive_int, default=100_000, help="steps per chain, a multiple of 4 (default 100000)")
    y.add_argument("--dt", type=float, default=1e-5, help="Langevin time step (default 1e-5)")
    y.add_argument("--eta", type=float, default=1e-5, help="SGD learning rate of the learning picture (default 1e-5)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--sweep", metavar="FIELD=V1,V2,...",
                   help="instead of one parameter set: Langevin chains for each value of one parameter in "
                        "one vmapped call, with the exponent fitted for each; writes DIR/sweep.json and "
                        "DIR/sweep.png (e.g. --sweep alpha=1.2,1.5,2,3)")
    return p


def _add_analysis_args(a: argparse.ArgumentParser, data_dir: bool = True) -> None:
    a.add_argument("--segment", type=_positive_int,
                   help="Welch segment length in recorded steps (default: largest power of 2 <= steps/8, at most 2**18)")
    a.add_argument("--window", choices=["hann", "boxcar"], default="hann", help="Welch window (default hann)")
    if data_dir:
        a.add_argument("--data-dir", help="MNIST IDX files for Fig. 1, if not the run's own data source")
    if not any(o.dest == "no_progress" for o in a._actions):
        a.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="starting configuration (default: quick)")
    t.add_argument("--out", help="run directory to create; must not hold a run (required unless --resume)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run in DIR from its checkpoint; takes no other "
                        "configuration flag except a longer --epochs (the extra epochs are recorded)")
    t.add_argument("--checkpoint-epochs", type=_positive_int,
                   help="checkpoint after every N epochs (default: every 10 minutes and at the end)")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="checkpoint at least this often, in minutes (default 10)")
    t.add_argument("--epochs", type=_positive_int,
                   help="total epochs (equilibration + recorded); default from the preset")
    t.add_argument("--record-epochs", type=int,
                   help="how many of the last epochs record trajectories (default: the preset's, "
                        "at most --epochs)")
    t.add_argument("--seeds", type=_positive_int, default=1, help="number of seeds (default 1)")
    t.add_argument("--seed", type=int, default=0, help="first seed; seeds are SEED..SEED+N-1 (default 0)")
    t.add_argument("--lr", type=float, nargs="+", help="learning rate(s); several values sweep (default 2e-3)")
    t.add_argument("--l2", type=float, nargs="+", help="L2 coefficient(s); several values sweep (default 5e-4)")
    t.add_argument("--track", type=int, help="number of weights to record, half from w1, half from w2 (default 16)")
    t.add_argument("--track-weights", type=_tracked_weight, nargs="+", metavar="L:R:C",
                   help="record these weights instead: layer (1-based), row, column of w (fan_in, fan_out)")
    t.add_argument("--stride", type=_positive_int,
                   help="record every K-th step; must divide the steps per epoch (default 1)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--data-dir", help="directory with the four MNIST IDX .gz files (checked by SHA-256)")
    src.add_argument("--dataset", choices=["mnist", "mnist-mini"],
                     help="mnist: full MNIST via tensorflow-datasets (downloads once); mnist-mini: the "
                          "embedded 10,000/2,000 subset (default from the preset)")
    t.add_argument("--train-limit", type=_positive_int, help="use only the first N training examples")
    t.add_argument("--hidden", type=_positive_int, nargs="+", help="hidden layer widths (default 700 476)")
    t.add_argument("--loss", choices=["mse", "xent"], help="mse: eq. (10), the default; xent: cross-entropy")
    t.add_argument("--init", choices=["torch", "glorot"], help="parameter init (default torch)")
    t.add_argument("--chunk-epochs", type=_positive_int,
                   help="epochs per compiled call; results are written after each (default 1)")
    t.add_argument("--save-order", action="store_true", help="write order.npy, the example of every step")
    t.add_argument("--weight-stats", action="store_true",
                   help="accumulate, for every weight and bias, running statistics of its increments over "
                        "the recorded epochs (mean, variance, mean |dw|, pure-decay fraction; per-layer "
                        "histograms of |dw|) and write weight_stats.npz")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


# flags that set the configuration: refused with --resume (a resumed run keeps its own)
CONFIG_FLAGS = ("record_epochs", "lr", "l2", "track", "track_weights", "stride", "data_dir", "dataset",
                "train_limit", "hidden", "loss", "init", "chunk_epochs", "out")


def resume_args_check(args: argparse.Namespace) -> None:
    """Refuse configuration flags given with --resume, naming them."""
    given = [f for f in CONFIG_FLAGS if getattr(args, f, None) not in (None, False)]
    given += [f for f, default in (("seeds", 1), ("seed", 0), ("preset", "quick")) if getattr(args, f) != default]
    for flag in ("save_order", "weight_stats"):
        if getattr(args, flag):
            given.append(flag)
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise ConfigError(f"--resume continues a run with its own configuration; remove {flags} "
                          "(only a longer --epochs is allowed)")


def train_config(args: argparse.Namespace):
    """The RunConfig a `train` command line asks for (validated)."""
    if args.out is None:
        raise ConfigError("--out is required (or --resume DIR)")
    base = PRESETS[args.preset]
    if args.epochs is not None:
        record = base.epochs_record if args.record_epochs is None else args.record_epochs
        if args.record_epochs is None:
            record = min(record, args.epochs)
        if not 0 <= record <= args.epochs:
            raise ConfigError(f"--record-epochs must be in 0..{args.epochs}, got {record}")
        equilibrate = args.epochs - record
    elif args.record_epochs is not None:
        equilibrate, record = base.epochs_equilibrate, args.record_epochs
    else:
        equilibrate, record = base.epochs_equilibrate, base.epochs_record
    cfg = with_overrides(
        base,
        epochs_equilibrate=equilibrate,
        epochs_record=record,
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        lr=tuple(args.lr) if args.lr else None,
        l2=tuple(args.l2) if args.l2 else None,
        track=args.track,
        track_weights=tuple(args.track_weights) if args.track_weights else None,
        stride=args.stride,
        data_dir=args.data_dir,
        dataset=args.dataset,
        train_limit=args.train_limit,
        sizes=(base.model.sizes[0], *args.hidden, base.model.sizes[-1]) if args.hidden else None,
        loss=args.loss,
        init=args.init,
        chunk_epochs=args.chunk_epochs,
        save_order=args.save_order or None,
        weight_stats=args.weight_stats or None,
    )
    if args.data_dir is not None:
        cfg = with_overrides(cfg, dataset="mnist")
    validate(cfg)
    return cfg


def _analyze(run, args, data_dir):
    from socjax import analyze, report

    result = analyze.analyze(run, data_dir=data_dir, segment=args.segment, window=args.window,
                             progress=not args.no_progress)
    path = report.write(run, result)
    print(f"wrote {Path(run) / analyze.ANALYSIS}, the figures and {path}")
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


def _toy(args) -> None:
    from socjax import rundir, toy

    params = toy.ToyParams(*(getattr(args, f) for f in toy.ToyParams._fields))
    try:
        toy.validate(params)
        toy.check_steps(params, args.dt, args.eta)
    except toy.ToyError as e:
        raise ConfigError(str(e)) from None
    if args.steps % 4:
        raise ConfigError(f"--steps must be a multiple of 4, got {args.steps}")
    out = Path(args.out)
    if args.sweep:
        return _toy_sweep(args, params, out)
    if (out / "toy.json").exists():
        raise ConfigError(f"{out}: already holds toy.json; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    result, samples = toy.run(params, args.chains, args.steps, args.dt, args.eta, args.seed)
    rundir.write_json(out / "toy.json", result)
    toy.figure(out / "toy.png", result, samples, params)
    lang = result["langevin"]
    print(f"wrote {out / 'toy.json'} and {out / 'toy.png'}: Langevin vs eq. (6) KS p = {lang['p_value']:.3g}; "
          f"exponent {lang['powerlaw'].get('exponent', float('nan')):.3f} +- {lang['powerlaw'].get('stderr', float('nan')):.3f} "
          f"(the same fit on exact draws of eq. (6): {lang['powerlaw_exact_draws'].get('exponent', float('nan')):.3f}; "
          f"alpha/beta = {params.alpha / params.beta:g}); "
          f"SGD drift max |z| = {result['sgd']['drift']['max_abs_z']:.2f}")


def _toy_sweep(args, params, out: Path) -> None:
    from socjax import rundir, toy

    field, _, text = args.sweep.partition("=")
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--sweep {args.sweep!r}: expected FIELD=V1,V2,... with numbers") from None
    try:
        toy.sweep_params(params, field, values, args.dt, args.eta)
    except toy.ToyError as e:
        raise ConfigError(str(e)) from None
    if (out / "sweep.json").exists():
        raise ConfigError(f"{out}: already holds sweep.json; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    result = toy.sweep(params, field, values, args.chains, args.steps, args.dt, args.seed)
    rundir.write_json(out / "sweep.json", result)
    toy.sweep_figure(out / "sweep.png", result)
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    for r in result["rows"]:
        fit, ref = r["powerlaw"], r["powerlaw_exact_draws"]
        print(f"  {field} = {r['value']:g}: KS p = {r['p_value']:.3g}; exponent "
              f"{fit.get('exponent', float('nan')):.3f} +- {fit.get('stderr', float('nan')):.3f} (exact draws "
              f"{ref.get('exponent', float('nan')):.3f}; alpha/beta = {r['analytic']['exponent']:g})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "reproduce"):
            from socjax import runner  # imports jax: only once the input is known to be good

            if args.resume:
                resume_args_check(args)
                cfg = runner.resume_config(args.resume, args.epochs)
                target = args.resume
            else:
                cfg = train_config(args)
                target = args.out
            try:
                out = runner.run(cfg, target, progress=not args.no_progress, resume=bool(args.resume),
                                 checkpoint_epochs=args.checkpoint_epochs,
                                 checkpoint_minutes=args.checkpoint_minutes)
            except runner.Interrupted as e:
                print(f"socjax: {e}", file=sys.stderr)
                return 130
            except runner.Diverged as e:
                print(f"socjax: error: {e}", file=sys.stderr)
                return 3
            print(f"wrote {out}")
            if args.command == "reproduce":
                _analyze(out, args, data_dir=None)
        elif args.command == "analyze":
            _analyze(args.run, args, data_dir=args.data_dir)
        elif args.command == "toy":
            _toy(args)
    except ConfigError as e:
        print(f"socjax: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
