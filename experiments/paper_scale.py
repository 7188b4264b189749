"""The paper's protocol at full scale, with recording windows: how each claim changes with age.

    python experiments/paper_scale.py --out runs/paper_scale --data-dir MNIST_IDX_DIR [--seeds 2]

Full MNIST (60,000 training images), the paper's settings (784-700-476-10, lr 2e-3, l2 5e-4, MSE
loss), 3000 epochs to equilibrium and 200 recorded epochs (1.92e8 SGD steps per seed), plus
2-epoch recording windows at ages 1, 3, 10, 30, 100, 300, 1000 and 3000 epochs (the last is the
first two epochs of the final recording, so every age is measured over the same length). The
step is `--step auto`: the native CPU kernel where it builds, else XLA.

Rerunning the same command continues an interrupted run from its checkpoint (SIGINT or SIGTERM
stops it after the epoch in flight, with a checkpoint); a finished run is only analysed again.
`--analyze-only` analyses what is written so far (the windows that are complete, with the age
table) without training. `--publish DIR` then copies what is small into DIR (`socjax.rundir.publish`:
config, metrics, tracked weights, the final recording's and each window's analysis.json,
analysis.npz, figures and report, the age table and figure), so that `socjax plot DIR` redraws
every figure there: not the trajectory, the parameters or the checkpoint. Extra arguments after
`--` go to `socjax train` on a new run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from socjax import rundir
from socjax.cli import main as socjax

WINDOWS = "1,3,10,30,100,300,1000,3000"
WINDOW_EPOCHS = 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (created, or continued if it holds this run)")
    p.add_argument("--data-dir", help="directory with the four MNIST IDX .gz files (default: tensorflow-datasets)")
    p.add_argument("--seeds", type=int, default=2, help="seeds (default 2)")
    p.add_argument("--windows", default=WINDOWS, help=f"ages of the recording windows (default {WINDOWS})")
    p.add_argument("--analyze-only", action="store_true", help="analyse what is written so far; do not train")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--publish", metavar="DIR", help="copy the small results of the analysed run into DIR, and stop")
    p.add_argument("train", nargs="*", help="further `socjax train` flags for a new run, after --")
    args = p.parse_args(argv)
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    progress = rundir.read_progress(out) if out.is_dir() else None
    if args.publish:
        return publish(out, Path(args.publish))
    if args.analyze_only:
        if progress is None:
            sys.exit(f"paper_scale: {out} holds no run to analyse")
        return socjax(["analyze", str(out), *quiet])
    if progress is None:
        data = ["--data-dir", args.data_dir] if args.data_dir else ["--dataset", "mnist"]
        return socjax(["reproduce", "--preset", "paper", "--seeds", str(args.seeds), *data,
                       "--record-windows", args.windows, "--window-epochs", str(WINDOW_EPOCHS),
                       "--out", str(out), *quiet, *args.train])
    cfg = rundir.read_info(out).config
    if cfg is None or cfg.preset != "paper" or len(cfg.seeds) != args.seeds:
        sys.exit(f"paper_scale: {out} holds another run; choose another --out")
    if progress["epochs_done"] < progress["epochs"]:
        print(f"continuing {out} from epoch {progress['epochs_done']} of {progress['epochs']}")
        return socjax(["reproduce", "--resume", str(out), *quiet])
    print(f"{out} holds a finished run: analysing it")
    return socjax(["analyze", str(out), *quiet])


def publish(run: Path, dest: Path) -> int:
    """Copy the small results of the analysed run `run` into `dest` (`rundir.publish`)."""
    if rundir.load_ages(run) is None:
        sys.exit(f"paper_scale: {run} has no age table; analyse it first (--analyze-only)")
    try:
        files = rundir.publish(run, dest)
    except rundir.RunDirError as e:
        sys.exit(f"paper_scale: {e}")
    print(f"copied {len(files)} files of {run} into {dest} (the trajectory, parameters and checkpoint stay behind)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
