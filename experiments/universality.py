"""Is it universal? The paper's claims across models, optimizers, batch sizes and data sets, beside
the peers' estimators and the null models, one cell (setting) per run directory.

    python experiments/universality.py --out runs/universality [--cells NAME,...]
    python experiments/universality.py --out runs/universality --analyze-only

Every cell is a `socjax reproduce` run of 3 seeds (all vmapped in one process), with recording
windows at several ages so that its age table shows whether the measures have stopped moving by
the final recording. Cells run one after another; rerunning the command continues the cell in
progress from its checkpoint (SIGINT or SIGTERM stops it after the epoch in flight) and skips the
finished ones. `--analyze-only` analyses every cell again (after a change to the analysis) without
training. `--tiny` trains each cell for 3 epochs on 500 examples (a check that every cell runs,
not a result).

The cells and why each is as it is are in CELLS; `--list` prints them. All but the paper's own
run use the embedded 10,000-image MNIST subset (`mnist-mini`) or the data set named, so that the
variants differ from the same-data baseline `paper-mini` in one thing each. Where a setting
needs a learning rate the peers or the paper do not fix, the choice and its reason are in the
cell's `why`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from socjax import rundir
from socjax.cli import main as socjax

SEEDS = 3
TRACK = 32  # weights per run: half from the first weight layer, half from the second


@dataclass(frozen=True)
class Cell:
    """One setting: `socjax reproduce` flags (beyond seeds and tracking), its length in epochs
    (`epochs` in all, the last `record` recorded), its recording windows (`window_epochs` epochs
    from each age in `ages`), and why it is set as it is."""

    name: str
    what: str
    flags: tuple[str, ...]
    epochs: int
    record: int
    ages: tuple[int, ...]
    window_epochs: int
    why: str = ""

    def train_flags(self) -> list[str]:
        return [*self.flags, "--seeds", str(SEEDS), "--track", str(TRACK), "--epochs", str(self.epochs),
                "--record-epochs", str(self.record), "--record-windows", ",".join(map(str, self.ages)),
                "--window-epochs", str(self.window_epochs)]

    def tiny(self) -> "Cell":
        """The cell at its smallest: 3 epochs of the first 500 training examples (2,000 for a batch
        above 1, so an epoch still has steps), one window at age 0, the last epoch recorded."""
        batch = "--batch-size" in self.flags
        return dataclasses.replace(self, flags=(*self.flags, "--train-limit", "2048" if batch else "500"), epochs=3,
                                   record=1, ages=(0,), window_epochs=1)


MINI = ("--dataset", "mnist-mini")
PAPER_SGD = ("--lr", "2e-3", "--l2", "5e-4")  # the paper's network (784-700-476-10, MSE) is the default
XENT_NO_L2 = ("--loss", "xent", "--l2", "0")
BATCH1 = dict(epochs=104, record=4, ages=(1, 3, 10, 30), window_epochs=2)  # 10,000 steps an epoch

CELLS: tuple[Cell, ...] = (
    Cell("paper-mini", "the paper's network and protocol on the 10,000-image subset", (*MINI, *PAPER_SGD), **BATCH1,
         why="the same-data baseline every variant below differs from in one thing"),
    Cell("random-labels", "paper-mini trained on randomly permuted training labels", (*MINI, *PAPER_SGD,
         "--random-labels", "0"), **BATCH1, why="control: learning without structure to learn"),
    Cell("teacher", "the paper's protocol on the synthetic teacher task (100-dim Gaussian inputs)",
         ("--dataset", "teacher", *PAPER_SGD), **BATCH1, why="a synthetic data set"),
    Cell("no-learning", "the teacher task with lr 1e-6, 2,000x below the paper's", ("--dataset", "teacher", "--lr",
         "1e-6", "--l2", "5e-4"), **BATCH1,
         why="control: the same noise source at a step so small the weights never leave their initial basin"),
    Cell("digits", "the paper's protocol on scikit-learn's 1,797 8x8 digits", ("--dataset", "digits", *PAPER_SGD),
         epochs=610, record=10, ages=(10, 30, 100, 300), window_epochs=10,
         why="a second real data set; 10-epoch windows hold 17,970 steps as paper-mini's 2 hold 20,000"),
    Cell("batch-512", "the paper's network at batch 512, lr 2e-3 x sqrt(512) = 0.0453",
         (*MINI, "--batch-size", "512", "--lr", "0.0453", "--l2", "5e-4", "--chunk-epochs", "50"),
         epochs=600, record=100, ages=(50, 150, 300), window_epochs=50,
         why="Panigrahi et al.'s Gaussian regime; the square-root rule keeps each step's noise variance "
             "lr^2 var(g)/B equal to the paper's (19 steps an epoch, so windows of 50 epochs)"),
    Cell("momentum", "the paper's network with momentum 0.9, lr 2e-4", (*MINI, "--optimizer", "momentum",
         "--momentum", "0.9", "--lr", "2e-4", "--l2", "5e-4"), epochs=34, record=4, ages=(1, 3, 10), window_epochs=2,
         why="lr / (1 - momentum) = 2e-3 keeps the long-run step of the paper's SGD"),
    Cell("adam", "the paper's network with Adam, lr 1e-4", (*MINI, "--optimizer", "adam", "--lr", "1e-4", "--l2",
         "5e-4"), epochs=34, record=4, ages=(1, 3, 10), window_epochs=2,
         why="Adam moves every weight by about lr a step; 1e-4, a tenth of the usual 1e-3, for single examples"),
    Cell("cnn", "a LeNet-like CNN (conv 8, 16; dense 128) with the paper's protocol", (*MINI, "--model", "cnn",
         "--hidden", "128", *PAPER_SGD), epochs=22, record=2, ages=(1, 3, 10), window_epochs=2,
         why="another architecture; batch 1 through XLA is the slowest cell, so it is the shortest"),
    Cell("zhang-tang", "Zhang & Tang: MLP 784-128-10, SGD, batch 64, lr 0.1 and 0.01, no L2, cross-entropy",
         (*MINI, "--hidden", "128", "--batch-size", "64", "--lr", "0.1", "0.01", *XENT_NO_L2, "--chunk-epochs",
          "10"), epochs=320, record=20, ages=(10, 30, 100), window_epochs=10,
         why="their setting; 156 steps an epoch, so 10-epoch windows"),
    Cell("gurbuzbalaban-b1", "Gurbuzbalaban et al.: 3 hidden layers of 128, batch 1, lr 1e-3, 1e-2, 1e-1",
         (*MINI, "--hidden", "128", "128", "128", "--lr", "1e-3", "1e-2", "1e-1", *XENT_NO_L2), epochs=34, record=4,
         ages=(1, 3, 10), window_epochs=2, why="their setting, lr/B from 1e-3 to 0.1"),
    Cell("gurbuzbalaban-b10", "Gurbuzbalaban et al.: 3 hidden layers of 128, batch 10, lr 1e-3, 1e-2, 1e-1",
         (*MINI, "--hidden", "128", "128", "128", "--batch-size", "10", "--lr", "1e-3", "1e-2", "1e-1", *XENT_NO_L2,
          "--chunk-epochs", "5"), epochs=110, record=10, ages=(10, 30), window_epochs=10,
         why="their setting, lr/B from 1e-4 to 1e-2; 1,000 steps an epoch, so 10-epoch windows"),
)
CELL_NAMES = tuple(c.name for c in CELLS)


def _cells(names: str | None) -> list[Cell]:
    if not names:
        return list(CELLS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in CELL_NAMES]
    if unknown:
        sys.exit(f"universality: unknown cell {unknown[0]!r}; choose from {', '.join(CELL_NAMES)}")
    return [c for c in CELLS if c.name in wanted]


def state(run: Path) -> str:
    """"new", "training" (a checkpointed run not finished) or "done" (trained and analysed)."""
    progress = rundir.read_progress(run) if run.is_dir() else None
    if progress is None:
        return "new"
    if progress["epochs_done"] < progress["epochs"]:
        return "training"
    return "done" if (run / rundir.ANALYSIS).exists() else "trained"


def run_cell(cell: Cell, out: Path, quiet: list[str]) -> int:
    """Train and analyse one cell in out/NAME, continuing it where it stopped."""
    run = out / cell.name
    s = state(run)
    if s == "done":
        print(f"universality: {cell.name}: done")
        return 0
    t0 = time.time()
    if s == "new":
        print(f"universality: {cell.name}: {cell.what}", flush=True)
        rc = socjax(["reproduce", *cell.train_flags(), "--out", str(run), *quiet])
    elif s == "training":
        print(f"universality: {cell.name}: continuing from its checkpoint", flush=True)
        rc = socjax(["reproduce", "--resume", str(run), *quiet])
    else:
        rc = socjax(["analyze", str(run), *quiet])
    print(f"universality: {cell.name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="directory of the cells' run directories (created, or continued)")
    p.add_argument("--cells", help=f"comma-separated cells to run (default all: {', '.join(CELL_NAMES)})")
    p.add_argument("--list", action="store_true", help="print the cells and stop")
    p.add_argument("--analyze-only", action="store_true", help="analyse every trained cell again; do not train")
    p.add_argument("--tiny", action="store_true", help="3 epochs on 500 examples per cell: a check, not a result")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.list:
        for c in CELLS:
            print(f"{c.name:18s} {c.what}\n{'':18s} {c.epochs} epochs, windows at {','.join(map(str, c.ages))} "
                  f"({c.window_epochs} each), last {c.record} recorded; {c.why}")
        return 0
    if not args.out:
        p.error("--out is required (unless --list)")
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    cells = [c.tiny() if args.tiny else c for c in _cells(args.cells)]
    worst = 0
    for cell in cells:
        if args.analyze_only:
            if state(out / cell.name) in ("done", "trained"):
                worst = max(worst, socjax(["analyze", str(out / cell.name), *quiet]))
            continue
        rc = run_cell(cell, out, quiet)
        if rc in (130, 143):  # stopped by a signal with a checkpoint: rerun to continue
            return rc
        worst = max(worst, rc)
    return worst


if __name__ == "__main__":
    sys.exit(main())
