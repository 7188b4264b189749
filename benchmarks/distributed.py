"""One machine's cores as one process or as several (`socjax launch`): seed-steps/s of the paper's
network (784-700-476-10, per-example SGD, --step auto) trained on the embedded subset or, with
--data-dir, on full MNIST as the paper's protocol does (an epoch of 60,000 steps and one test
evaluation), for each layout of processes x runs.

    python benchmarks/distributed.py [--epochs 60] [--cases 1x2 2x1 2x2] [--hidden 700 476]
                                     [--train-limit N] [--data-dir MNIST_DIR] [--out FILE]

A case PxR is a job of P processes training R runs each (P R in all); with P > 1 each process is
pinned to its own cores (--cpus-per-process, the machine's cores / P), with P = 1 the process has
them all. The rate is the runs' steps over the training wall time: of each process the sum of its
chunks' wall times (metrics.json's timing, compilation and start-up excluded), of the job the
slowest process's. The whole command's wall time (start-up, compilation and writing included) is
reported beside it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_stream import machine, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def case(processes: int, each: int, epochs: int, base: Path, extra: list[str]) -> dict:
    runs = processes * each
    out = base / f"p{processes}r{each}"
    train = ["train", "--seeds", str(runs), "--epochs", str(epochs), "--record-epochs", "1", "--track", "4",
             "--no-progress", "--out", str(out), *extra]
    if processes == 1:
        cmd = [sys.executable, "-m", "socjax", *train]
    else:
        cores = len(os.sched_getaffinity(0)) // processes  # 0: fewer cores than processes, none pinned
        pin = ["--cpus-per-process", str(cores)] if cores else []
        cmd = [sys.executable, "-m", "socjax", "launch", "--processes", str(processes), *pin, "--", *train]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {res.stderr[-2000:]}")
    sys.path.insert(0, str(REPO))
    from socjax import rundir

    shards = rundir.shard_dirs(out) or [out]
    steps = rundir.read_info(out).layout["steps_per_epoch"] * epochs
    seconds = [sum(rundir.load_metrics(d)["timing"]["chunk_seconds"]) for d in shards]
    per = [len(rundir.read_info(d).runs) for d in shards]
    return dict(processes=processes, runs=runs, runs_per_process=per, epochs=epochs, steps_per_run=steps,
                step=rundir.read_info(shards[0]).config.step, train_seconds=seconds,
                seed_steps_per_s=runs * steps / max(seconds), command_seconds=wall)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=60, help="epochs per run (default 60)")
    p.add_argument("--cases", nargs="+", default=["1x2", "2x1", "2x2"], help="PROCESSESxRUNS, runs per process (default 1x2 2x1 2x2)")
    p.add_argument("--out", help="JSON file (default benchmarks/results/distributed-<host>.json)")
    p.add_argument("--hidden", nargs="+", default=["700", "476"], help="hidden sizes (default the paper's 700 476)")
    p.add_argument("--train-limit", type=int, default=None, help="training examples (default all)")
    p.add_argument("--data-dir", help="full MNIST's IDX files: the paper's data and epochs of 60,000 steps (default the "
                                      "embedded subset, 2,000)")
    args = p.parse_args()
    data = ["--preset", "paper", "--data-dir", args.data_dir] if args.data_dir else ["--preset", "smoke"]
    extra = [*data, "--hidden", *args.hidden] + (["--train-limit", str(args.train_limit)] if args.train_limit else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.cases:
            processes, each = (int(v) for v in c.split("x"))
            rows.append(case(processes, each, args.epochs, Path(tmp), extra))
            r = rows[-1]
            print(f"{processes} process(es) x {each} run(s) each: {r['seed_steps_per_s']:,.0f} seed-steps/s "
                  f"(train {max(r['train_seconds']):.1f} s, command {r['command_seconds']:.1f} s, step {r['step']})")
    write_result("distributed", dict(machine=machine(), network="-".join(["784", *args.hidden, "10"]),
                                     data=("MNIST" if args.data_dir else "embedded subset") +
                                     f", {rows[0]['steps_per_run'] // args.epochs:,} examples", cases=rows),
                 args.out)


if __name__ == "__main__":
    main()
