"""How the picture depends on weight decay: the quick preset (10,000 embedded images, 30 epochs to
equilibrate + 3 recorded) for l2 in {0, 1e-4, 5e-4, 2e-3} x 3 seeds, all 12 runs in one vmapped
call, then the analysis per l2 with intervals across seeds.

    python experiments/sweep_l2.py --out runs/sweep_l2 [--l2 0 1e-4 5e-4 2e-3] [--seeds 3] [-- TRAIN FLAGS]

The paper fixes l2 = 5e-4 without saying why; this shows whether the peak of pure weight-decay
steps, the |dw| model, the spectra and the neurons depend on it. (With l2 = 0 a "pure decay" step
is one whose gradient is exactly zero, w(t+1) = w(t): the same rule with lr l2 = 0.)

Writes into --out what `socjax reproduce` does: report.md with the sweep table (one row per l2)
and a claims table per l2, sweep.png (each headline number against l2, error bars = 95% t
intervals over the seeds), the four figures per l2, analysis.json and analysis.npz. Rerunning it
continues an interrupted run (--resume) and only re-analyses a finished one. About 2 minutes of
training and 2 of analysis on 2 CPU cores (the README's table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from socjax import rundir
from socjax.cli import main as socjax


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (created, or continued if it holds this sweep)")
    p.add_argument("--l2", type=float, nargs="+", default=[0.0, 1e-4, 5e-4, 2e-3], help="l2 values (default 0 1e-4 5e-4 2e-3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per l2 (default 3)")
    p.add_argument("train", nargs="*", help="further `socjax train` flags, after --")
    args = p.parse_args(argv)
    out = Path(args.out)
    progress = rundir.read_progress(out) if out.is_dir() else None
    if progress is None:
        return socjax(["reproduce", "--preset", "quick", "--l2", *map(str, args.l2), "--seeds", str(args.seeds),
                       "--out", str(out), *args.train])
    cfg = rundir.read_info(out).config
    if cfg is None or list(cfg.l2) != args.l2 or len(cfg.seeds) != args.seeds:
        sys.exit(f"sweep_l2: {out} holds another run (l2 {None if cfg is None else list(cfg.l2)}, "
                 f"{None if cfg is None else len(cfg.seeds)} seeds); choose another --out")
    if progress["epochs_done"] < progress["epochs"]:
        print(f"continuing {out} from epoch {progress['epochs_done']} of {progress['epochs']}")
        return socjax(["reproduce", "--resume", str(out)])
    print(f"{out} holds a finished run: analysing it")
    return socjax(["analyze", str(out)])


if __name__ == "__main__":
    sys.exit(main())
