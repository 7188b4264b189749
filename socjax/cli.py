"""`socjax` command line (also `python -m socjax`): parses, then calls the library.

The training flags come from one table, `socjax.config.FLAGS`; `config.build` turns them into a
RunConfig, and resume refuses exactly the ones given (`config.resume_conflicts`). Nothing here
imports JAX until the input is known to be good, so `--help` and bad flags answer at once.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path

import socjax
from socjax import config
from socjax.config import ConfigError, ToyParams, finite_positive, positive_int

DESCRIPTION = """\
socjax: per-example SGD on MNIST with a 784-700-476-10 MLP, as in "Self-organized criticality in
neural networks" (Katsnelson, Vanchurin, Westerhout, arXiv:2107.03402), compiled with JAX."""

TRAIN_EPILOG = """\
presets (flags override them):
  smoke   2,000 embedded examples, 1 + 2 epochs: for tests (train 9 s, reproduce 32 s)
  quick   10,000 embedded examples, 30 epochs to equilibrate + 3 recorded (reproduce about 1 min)
  paper   full MNIST, 3000 epochs to equilibrate + 200 recorded, the paper's protocol (1.76 h of
          training for two seeds with the native step, one run)
times: measured on a 2-core AMD EPYC CPU without GPU (smoke, quick: medians of three whole commands)
runs: every combination of the seeds, --lr values and --l2 values is one run; all runs train at
once (vmapped) and every saved array has a leading run axis, in config.json's "runs" order.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `socjax: error: ... (see --help)`, exit status 2."""

    def error(self, message):
        self.exit(2, f"socjax: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="socjax", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"socjax {socjax.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train the MLP by per-example SGD and record weight trajectories",
        description="Train the paper's MLP by per-example SGD and write a run directory.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_args(t)
    g = t.add_argument_group(
        "several processes", "one sweep over many processes and hosts (jax.distributed): each process runs this same "
        "command and trains its own block of the runs into DIR/shards/{i}; under srun or mpirun no flag is needed "
        "(the launcher's environment says it all), else give all three, or use socjax launch")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, where JAX's coordination service "
                   "listens")
    g.add_argument("--num-processes", type=positive_int, metavar="N", help="processes in the job")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    g.add_argument("--heartbeat-seconds", type=positive_int, default=None, metavar="S",
                   help="a process silent this long is lost, and the others stop after their chunk in flight, "
                        "keeping their checkpoints (default 30)")

    la = sub.add_parser(
        "launch",
        help="run socjax train as a job of N local processes (a coordinator on 127.0.0.1)",
        description="Start N local processes of `socjax train ...` as one job (jax.distributed, a coordinator on "
                    "127.0.0.1 and a free port), forward SIGINT and SIGTERM to them, and exit with the worst of "
                    "their exit statuses. E.g. socjax launch --processes 2 -- train --preset smoke --seeds 4 --out runs/s",
    )
    la.add_argument("--processes", type=positive_int, required=True, metavar="N", help="processes to start")
    la.add_argument("--cpus-per-process", type=positive_int, metavar="K",
                    help="pin process i to cores [i K, (i + 1) K) of the launcher's (default: no pinning)")
    la.add_argument("job", nargs=argparse.REMAINDER, metavar="-- train ...", help="the socjax command each process runs")

    a = sub.add_parser(
        "analyze",
        help="analyse a run directory: analysis.json, analysis.npz, the figures and report.md",
        description="Analyse a run directory: fits of the increments and spectra of the recorded "
                    "weights, neuron distributions, per group of runs (a setting) and across seeds; writes "
                    "DIR/analysis.json, DIR/analysis.npz, the figures and DIR/report.md.",
    )
    a.add_argument("run", metavar="DIR", nargs="?", help="run directory (from socjax train)")
    a.add_argument("--merge", metavar="DIR", nargs="+",
                   help="instead of DIR: analyse these run directories of one protocol (e.g. a job array's, a seed "
                        "each) as one sweep, in --out (which links to them); only their seeds may differ")
    a.add_argument("--out", help="with --merge: the directory the merged sweep and its analysis are written to")
    _add_analysis_args(a)

    pl = sub.add_parser(
        "plot",
        help="redraw every figure of an analysed run directory (from analysis.json/.npz, in seconds)",
        description="Redraw the figures of a run directory, or of a published copy of one, from what "
                    "`socjax analyze` and `socjax prune` saved (analysis.json and analysis.npz of the run and of "
                    "each window, ages.json, prune.json), without reading the trajectory. A figure that cannot "
                    "be drawn is named, with why, in one line; the exit status is 1 when one was not drawn for "
                    "want of a file, or nothing was drawn.",
    )
    pl.add_argument("run", metavar="DIR", help="run directory analysed by socjax analyze")

    pr = sub.add_parser(
        "prune",
        help="which weights matter: prune a run by fluctuation amplitude, magnitude, random, ... and compare",
        description="The paper's Discussion as a test, on a finished run trained with --weight-stats: rank "
                    "the hidden-layer weights by each criterion, remove the first fraction, and measure test "
                    "accuracy and loss without retraining and after fine-tuning with the mask fixed; with "
                    "the run's per-weight fits (socjax analyze), the rank correlation of range width and "
                    "amplitude; per group of settings in a sweep. Writes OUT/prune.json, OUT/prune.png (one per "
                    "group) and OUT/report.md.",
    )
    pr.add_argument("run", metavar="DIR", help="finished run directory with weight_stats.npz (socjax train --weight-stats)")
    pr.add_argument("--out", help="directory to write: new, empty or an earlier prune output, not a run directory "
                                   "(default DIR/prune)")
    pr.add_argument("--sparsities", type=_fractions, default=None,
                    help="fractions of the hidden-layer weights to remove, comma-separated, increasing, in [0, 1), "
                         "at most 1000 (default 0,0.1,...,0.9,0.95,0.98)")
    pr.add_argument("--draws", type=positive_int, default=5, help="random rankings per seed, at most 1000 (default 5)")
    pr.add_argument("--scope", choices=["layer", "global"], default="layer",
                    help="layer: each hidden layer loses the same fraction, ranked within it (default); "
                         "global: all hidden layers ranked together (w1 and w2 of the paper's net)")
    pr.add_argument("--finetune-epochs", type=int, default=1,
                    help="epochs of SGD with the mask fixed for the second curve; 0 skips it (default 1)")
    pr.add_argument("--step", choices=["auto", "xla", "native"], default="auto",
                    help="masked step for fine-tuning (default auto: native on the CPU when it builds)")
    pr.add_argument("--batch", type=positive_int, default=4,
                    help="masked networks fine-tuned at once, vmapped, at most 256 (default 4)")
    pr.add_argument("--data-dir", help="MNIST IDX files, if not the run's own data source")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")

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
    y.add_argument("--chains", type=positive_int, default=4000, help="independent chains (default 4000)")
    y.add_argument("--steps", type=positive_int, default=100_000, help="steps per chain, a multiple of 4 (default 100000)")
    y.add_argument("--dt", type=float, default=1e-5, help="Langevin time step (default 1e-5)")
    y.add_argument("--eta", type=float, default=1e-5, help="SGD learning rate of the learning picture (default 1e-5)")
    y.add_argument("--seed", type=int, default=0,
                   help="seed of the random keys of the chains and samplers, 0..4294967295 (default 0)")
    y.add_argument("--sweep", metavar="FIELD=V1,V2,...",
                   help="instead of one parameter set: Langevin chains for each value of one parameter in "
                        "one vmapped call, with the exponent fitted for each; writes DIR/sweep.json and "
                        "DIR/sweep.png (e.g. --sweep alpha=1.2,1.5,2,3)")
    return p


def _add_analysis_args(a: argparse.ArgumentParser, data_dir: bool = True) -> None:
    a.add_argument("--segment", type=positive_int,
                   help="Welch segment length in recorded steps (default: largest power of 2 <= steps/4, at most 2**18)")
    a.add_argument("--window", choices=["hann", "boxcar"], default="hann", help="Welch window (default hann)")
    a.add_argument("--neuron-layer", metavar="LAYER",
                   help="the hidden layer of Fig. 1, named by its weight: w1, w2, ... for the paper's MLP, a flax "
                        "module's path (Dense_1, Conv_0) for a flax model; a convolution's neurons are its channels "
                        "(default: the second hidden layer, else the first)")
    if data_dir:
        a.add_argument("--data-dir", help="MNIST IDX files for Fig. 1, if not the run's own data source")
    if not any(o.dest == "no_progress" for o in a._actions):
        a.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--out", help="run directory to create; must not hold a run (required unless --resume)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run in DIR from its checkpoint; takes no other "
                        "configuration flag except a longer --epochs (the extra epochs are recorded)")
    t.add_argument("--checkpoint-epochs", type=positive_int,
                   help="checkpoint after every N epochs (default: every 10 minutes and at the end)")
    t.add_argument("--checkpoint-minutes", type=finite_positive, default=10.0,
                   help="checkpoint at least this often, in minutes (default 10)")
    for flag in config.FLAGS:
        t.add_argument(flag.option, dest=flag.dest, help=flag.help, **flag.arg)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace) -> config.RunConfig:
    """The RunConfig a `train` or `reproduce` command line asks for: a new run's, or with --resume
    the recorded one (extended by a longer --epochs). Refuses other configuration flags on resume."""
    given = {f.dest: getattr(args, f.dest) for f in config.FLAGS}
    _check_out(args.out)
    if args.resume:
        refused = config.resume_conflicts(given) + (["--out"] if args.out is not None else [])
        if refused:
            raise ConfigError(f"--resume continues a run with its own configuration; remove {', '.join(sorted(refused))} "
                              "(only a longer --epochs is allowed)")
        from socjax import runner

        return runner.resume_config(args.resume, args.epochs)
    if args.out is None:
        raise ConfigError("--out is required (or --resume DIR)")
    return config.build(**given)


def _fractions(text: str) -> tuple[float, ...]:
    """argparse type of --sparsities: comma-separated fractions, increasing, in [0, 1)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if any(not 0.0 <= v < 1.0 for v in values) or list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"fractions must increase within [0, 1): {text!r}")
    return values


def _prune(args) -> None:
    from socjax import rundir

    run = Path(args.run)
    if not (run / rundir.CONFIG).exists():
        raise ConfigError(f"{run}: not a run directory (no {rundir.CONFIG})")
    why = rundir.not_final(run)
    if why:
        raise ConfigError(why)
    if not 0 <= args.finetune_epochs <= config.MAX_EPOCHS:
        raise ConfigError(f"--finetune-epochs must be in 0..{config.MAX_EPOCHS:,}, got {args.finetune_epochs:,}")
    _check_out(args.out)
    if args.out is not None:
        _check_writable(Path(args.out))
    from socjax import prune, report  # imports jax: only once the input is known to be good

    prune.check_out(run, Path(args.out) if args.out is not None else run / rundir.PRUNE_DIR)

    extra = {} if args.sparsities is None else dict(sparsities=args.sparsities)
    result = prune.prune_run(run, args.out, draws=args.draws, scope=args.scope, finetune_epochs=args.finetune_epochs,
                             step=args.step, data_dir=args.data_dir, batch=args.batch, progress=not args.no_progress,
                             **extra)
    out = Path(args.out) if args.out else run / rundir.PRUNE_DIR
    print(f"wrote {out / rundir.PRUNE_JSON}, {', '.join(rundir.prune_figures(result))} and {rundir.REPORT}")
    mark = {True: "yes", False: "no", None: "not tested"}
    groups = rundir.prune_groups(result)
    for group in groups:
        if len(groups) > 1:
            print(f" {group['label']} (seeds {', '.join(str(r['seed']) for r in group['runs'])}):")
        for row in report.prune_claim_rows(group):
            print(f"  {row['claim']}: {mark[row['holds']]} ({row['measured']}; 95% {row['interval']})")


def _check_out(out: str | None) -> None:
    if out is not None and not out.strip():
        raise ConfigError("--out is empty; name a directory")


def _check_writable(out: Path) -> None:
    """Refuse, in one line, an output directory that is a file or whose nearest existing directory
    cannot take a file (read-only, or a file system such as /proc), before anything is computed."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    existing = next(p for p in (out, *out.resolve().parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write in {existing} ({e.strerror or e})") from None


def _analyze(run, args, data_dir):
    from socjax import analyze, rundir

    result = analyze.analyze(run, data_dir=data_dir, segment=args.segment, window=args.window,
                             progress=not args.no_progress, neuron_layer=args.neuron_layer)
    path = Path(run) / rundir.REPORT
    if "groups" in result:
        print(f"wrote {Path(run) / analyze.ANALYSIS}, {analyze.ARRAYS}, the figures and {path}")
    if "ages" in result:
        ages = [r["age"] for r in result["ages"]["groups"][0]["rows"]]
        print(f"wrote the analysis of the recordings at ages {', '.join(map(str, ages))} (windows/age*/), "
              f"{rundir.AGES}, {rundir.AGES_FIGURE} and {path}")
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


def _toy(args) -> None:
    from socjax.toy import experiment

    _check_out(args.out)
    _check_writable(Path(args.out))  # before minutes of simulation, not after
    params = ToyParams(*(getattr(args, f) for f in ToyParams._fields))
    settings = dict(chains=args.chains, steps=args.steps, dt=args.dt, eta=args.eta, seed=args.seed)
    if args.sweep:
        lines = experiment.write_sweep(Path(args.out), params, args.sweep, **settings)
    else:
        lines = experiment.write_run(Path(args.out), params, **settings)
    print("\n".join(lines))


# what an interruption leaves, per command (train and reproduce say it themselves)
KEPT = {"analyze": "the previous analysis is unchanged", "prune": "the previous prune output is unchanged",
        "plot": "the figures drawn so far are complete, the others unchanged", "toy": "nothing was written"}


def entry() -> int:
    """The console script and `python -m socjax`: `main` with SIGINT and SIGTERM ignored outside it.
    main's StopSignal takes them over once the arguments are parsed (milliseconds) and restores
    "ignored" when it returns, so a signal after the work is complete and said cannot kill the
    interpreter mid-exit with a status that says otherwise (it would, with the default handlers)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from socjax.cache import enable_compilation_cache
    from socjax.interrupt import Interrupted, StopSignal

    # before JAX is imported, for every command: a Ctrl-C from now on is never lost, and never
    # raised inside JAX (the work stops where it polls, and says what it left)
    with StopSignal() as stop:
        stop.kept = KEPT.get(args.command, "nothing was written")
        enable_compilation_cache()  # before anything compiles: a second run of the same shapes loads its programs
        try:
            code = _command(args, stop)
        except ConfigError as e:
            if not getattr(e, "quiet", False):  # a process of a job that another's error stopped: that one says it
                print(f"socjax: error: {e}", file=sys.stderr)
            return 2
        except Interrupted as e:
            print(f"socjax: {e}", file=sys.stderr)
            return 130
        if stop.requested:  # the signal came after the last point where the work could stop: it is complete
            print(f"socjax: stopped by {stop.name} after {args.command} had finished its outputs", file=sys.stderr)
            return 130
        return code


def _command(args, stop) -> int:
    if args.command == "launch":
        from socjax import launch

        job = args.job[1:] if args.job[:1] == ["--"] else args.job
        return launch.launch(job, args.processes, stop, args.cpus_per_process)
    if args.command == "train" and _several_processes(args):
        return _train_processes(args, stop)
    if args.command == "reproduce" and _launched():
        raise ConfigError("reproduce runs in one process; under a cluster launcher, train (its processes share the "
                          "sweep), then socjax analyze DIR")
    if args.command in ("train", "reproduce"):
        from socjax.interrupt import Interrupted

        stop.check()
        cfg = train_config(args)
        from socjax import runner  # imports jax: only once the input is known to be good

        try:
            out = runner.run(cfg, args.resume or args.out, progress=not args.no_progress,
                             resume=bool(args.resume), checkpoint_epochs=args.checkpoint_epochs,
                             checkpoint_minutes=args.checkpoint_minutes, stop=stop)
        except runner.Diverged as e:
            print(f"socjax: error: {e}", file=sys.stderr)
            return 3
        print(f"wrote {out}")
        if args.command == "reproduce":
            if stop.requested:
                raise Interrupted(f"stopped by {stop.name} after training; the run in {out} is complete, not analysed")
            stop.kept = KEPT["analyze"]
            _analyze(out, args, data_dir=None)
    elif args.command == "analyze":
        _analyze(_merged(args) if args.merge else _one_run(args), args, data_dir=args.data_dir)
    elif args.command == "plot":
        return _plot(args.run)
    elif args.command == "prune":
        _prune(args)
    elif args.command == "toy":
        _toy(args)
    return 0


def _one_run(args) -> str:
    if args.run is None:
        raise ConfigError("name the run directory to analyse (or --merge DIR... --out OUT)")
    if args.out is not None:
        raise ConfigError("--out goes with --merge; a run's analysis is written into the run directory")
    return args.run


def _merged(args) -> Path:
    """--merge DIR... --out OUT: the run directories as one sweep in OUT (`rundir.merge`)."""
    from socjax import rundir

    if args.run is not None:
        raise ConfigError(f"give either a run directory ({args.run}) or --merge DIR..., not both")
    if args.out is None:
        raise ConfigError("--merge needs --out OUT, the directory to write the merged sweep's analysis to")
    _check_out(args.out)
    return rundir.merge(args.merge, args.out)


def _launched() -> bool:
    from socjax import distributed  # no JAX

    return distributed.launched_processes() > 1


def _several_processes(args) -> bool:
    """Whether this train command is one process of a job of several: the three flags, or a
    cluster launcher's environment (socjax.distributed.launched_processes)."""
    from socjax import distributed  # no JAX

    return distributed.check_flags(args.coordinator, args.num_processes, args.process_id) or _launched()


def _train_processes(args, stop) -> int:
    """This process's part of a sweep trained by several (socjax.distributed). Process 0 says what
    was written, and which other processes did not finish; the others say only their own errors."""
    from socjax import distributed

    stop.check()
    cfg = train_config(args)
    heartbeat = args.heartbeat_seconds or distributed.HEARTBEAT_SECONDS
    group = distributed.initialize(args.coordinator, args.num_processes, args.process_id, heartbeat)
    from socjax import runner

    try:
        out, problems = distributed.train(cfg, args.resume or args.out, group, progress=not args.no_progress,
                                          resume=bool(args.resume), stop=stop, checkpoint_epochs=args.checkpoint_epochs,
                                          checkpoint_minutes=args.checkpoint_minutes)
    except runner.Diverged as e:
        print(f"socjax: error: process {group.index}: {e}", file=sys.stderr)
        return 3
    if group.index:
        return 0
    for line in problems:
        print(f"socjax: {line}", file=sys.stderr)
    if problems:
        print(f"socjax: {out} is not complete: rerun the same command with train --resume {out}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({group.count} processes)")
    return 0


def _plot(path: str) -> int:
    from socjax import rundir

    run = Path(path)
    if not run.is_dir():
        raise ConfigError(f"{run}: run directory not found")
    with rundir.RunLock(run, create=False, command="plot"):  # nothing redrawn while another process writes
        from socjax import plots

        drawn = plots.redraw(run)
    for p in drawn.written:
        print(f"wrote {p}")
    for line in drawn.not_drawn:
        print(f"socjax: {line}", file=sys.stderr)
    return 1 if drawn.missing or not drawn.written else 0  # never a silent success that drew less than asked


if __name__ == "__main__":
    sys.exit(main())
