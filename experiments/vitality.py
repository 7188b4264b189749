"""The paper's Discussion as an experiment: do fluctuations tell which connections matter?

    python experiments/vitality.py --out runs/vitality --data-dir MNIST_IDX_DIR [--seeds 3] [-- TRAIN FLAGS]

Trains the paper's network on full MNIST (784-700-476-10, lr 2e-3, l2 5e-4, MSE loss) for
EPOCHS epochs, the last RECORD_EPOCHS recorded with `--weight-stats` (every weight's increment
statistics, non-decay moments included) and TRACK weights (half from w1, half from w2) at every
step; analyses it (`socjax analyze`: the per-weight fits whose scale-invariant range width the
correlation claim needs); then `socjax prune` writes OUT/prune/ (prune.json, prune.png,
report.md): the rank correlation of range width and amplitude, and pruning by each criterion at
sparsities 0-98% without retraining and after one epoch of fine-tuning with the mask fixed.

Why these defaults: after 100 epochs the test accuracy is 98.7% (experiments/results/paper_scale:
98.74% and 98.68% at epoch 100, 98.82% and 98.84% at 3200), the paper's regime to within 0.15
points, for 1/30 of the paper's training. Ten recorded epochs give each tracked weight 600,000
increments (about 60,000 non-decay ones), enough for its own fit. 256 tracked weights per seed:
each per-weight fit takes about a second here, and the trajectory is 600,000 x 256 x 4 bytes =
0.6 GB per seed; streaming per-weight histograms would save the disk but not the fits.

Rerunning the same command continues an interrupted run, analyses a finished one that has no
analysis, and prunes an analysed one. `--publish DIR` copies the small results into DIR
(`socjax.rundir.publish`: config, metrics, tracked weights, analysis.json, analysis.npz, the
figures and report, every prune output directory), so that `socjax plot DIR` redraws every figure
there: not the trajectory, the parameters, the weight statistics or the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from socjax import rundir
from socjax.cli import main as socjax

EPOCHS, RECORD_EPOCHS, TRACK, SEEDS = 110, 10, 256, 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (created, or continued if it holds this run)")
    p.add_argument("--data-dir", help="directory with the four MNIST IDX .gz files (default: tensorflow-datasets)")
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds, at least 3 (default {SEEDS})")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"total epochs (default {EPOCHS})")
    p.add_argument("--record-epochs", type=int, default=RECORD_EPOCHS,
                   help=f"recorded epochs, with --weight-stats (default {RECORD_EPOCHS})")
    p.add_argument("--track", type=int, default=TRACK, help=f"tracked weights per seed (default {TRACK})")
    p.add_argument("--draws", type=int, default=5, help="random pruning rankings per seed (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--publish", metavar="DIR", help="copy the small results of the pruned run into DIR, and stop")
    p.add_argument("train", nargs="*", help="further `socjax train` flags for a new run, after --")
    args = p.parse_args(argv)
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    if args.publish:
        return publish(out, Path(args.publish))
    if args.seeds < 3:
        sys.exit("vitality: at least 3 seeds, so that every claim has an interval across seeds")
    progress = rundir.read_progress(out) if out.is_dir() else None
    if progress is None:
        data = ["--data-dir", args.data_dir] if args.data_dir else ["--dataset", "mnist"]
        status = socjax(["train", "--preset", "paper", "--seeds", str(args.seeds), "--epochs", str(args.epochs),
                         "--record-epochs", str(args.record_epochs), "--track", str(args.track), "--weight-stats",
                         *data, "--out", str(out), *quiet, *args.train])
    elif progress["epochs_done"] < progress["epochs"]:
        print(f"continuing {out} from epoch {progress['epochs_done']} of {progress['epochs']}")
        status = socjax(["train", "--resume", str(out), *quiet])
    else:
        status = 0
    if status:
        return status
    if rundir.load_analysis(out) is None:
        status = socjax(["analyze", str(out), *quiet])
        if status:
            return status
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    return socjax(["prune", str(out), "--draws", str(args.draws), *data, *quiet])


def publish(run: Path, dest: Path) -> int:
    """Copy the small results of the pruned run `run` into `dest` (`rundir.publish`), laid out as in
    the run directory, so report.md's links hold."""
    if not (run / rundir.PRUNE_DIR / rundir.PRUNE_JSON).exists():
        sys.exit(f"vitality: {run} has not been pruned; run the experiment first")
    try:
        files = rundir.publish(run, dest)
    except rundir.RunDirError as e:
        sys.exit(f"vitality: {e}")
    print(f"copied {len(files)} files of {run} into {dest} (the trajectory, parameters, weight statistics and "
          "checkpoint stay behind)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
