"""What long-run features cost, as a percentage of step time, through the real host loop.

Each configuration trains the paper's network on the first --examples embedded examples through
`socjax.runner.run` (writing a real run directory). The marginal cost of an epoch is
(time of a run of --epochs epochs - time of a 1-epoch run) / (--epochs - 1), so compilation and
start-up cancel. Rounds interleave the configurations.

  baseline       no recording (all epochs equilibrate)
  record-64      every epoch recorded, --track (64) tracked weights at stride 1, trajectory written to
                 disk chunk by chunk while the next chunk computes
  record+ckpt    the same with an (atomic, fsynced) checkpoint after every epoch
  weight-stats   record-64 plus --weight-stats (running statistics of all 887k weights per step)

    python benchmarks/long_runs.py [--examples 5000] [--epochs 4] [--rounds 2] [--seeds 1] [--track 64]
                                   [--step auto]

experiments/vitality.py's configuration: --seeds 3 --track 256 --only record-64 weight-stats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from socjax import runner
from socjax.config import RunConfig

CONFIGS = {
    "baseline": dict(record=False),
    "record-64": dict(record=True),
    "record+ckpt": dict(record=True, checkpoint_epochs=1),
    "weight-stats": dict(record=True, weight_stats=True),
}


def timed_run(name: str, epochs: int, examples: int, tmp: Path, seeds: int = 1, track: int = 64,
              step: str = "auto") -> float:
    c = CONFIGS[name]
    cfg = RunConfig(dataset="mnist-mini", train_limit=examples, track=track, seeds=tuple(range(seeds)), step=step,
                    epochs_equilibrate=0 if c["record"] else epochs, epochs_record=epochs if c["record"] else 0,
                    weight_stats=c.get("weight_stats", False))
    out = tmp / f"{name}-{epochs}"
    t = time.perf_counter()
    runner.run(cfg, out, progress=False, checkpoint_epochs=c.get("checkpoint_epochs"),
               checkpoint_minutes=1e9)
    elapsed = time.perf_counter() - t
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    p.add_argument("--weight-stats-epochs", type=int, default=2, help="epochs of the longer weight-stats run")
    p.add_argument("--seeds", type=int, default=1, help="runs trained at once (vmapped)")
    p.add_argument("--track", type=int, default=64, help="tracked weights of the recording configurations")
    p.add_argument("--step", default="auto", help="the SGD step (auto, xla, native)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/long_runs-<host>.json)")
    args = p.parse_args()
    per_epoch: dict[str, list[float]] = {k: [] for k in args.only}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.rounds):
            for name in args.only:
                epochs = args.weight_stats_epochs if name == "weight-stats" else args.epochs
                setting = dict(seeds=args.seeds, track=args.track, step=args.step)
                long_run = timed_run(name, epochs, args.examples, tmp, **setting)
                short_run = timed_run(name, 1, args.examples, tmp, **setting)
                per_epoch[name].append((long_run - short_run) / (epochs - 1))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    base = statistics.median(per_epoch["baseline"]) if "baseline" in per_epoch else None
    rows = []
    print(f"\n{args.examples} steps per epoch, median over {args.rounds} rounds")
    print(f"{'config':<14}{'s/epoch':>9}{'us/step':>9}{'vs baseline':>13}")
    for name, ts in per_epoch.items():
        med = statistics.median(ts)
        rel = f"{100 * (med / base - 1):+.1f}%" if base else "-"
        print(f"{name:<14}{med:>9.2f}{1e6 * med / args.examples:>9.0f}{rel:>13}")
        rows.append(dict(config=name, seconds_per_epoch=ts, median=med, us_per_step=1e6 * med / args.examples,
                         vs_baseline=(med / base - 1) if base else None))
    import jax

    result = dict(machine=dict(host=platform.node(), cores=os.cpu_count()), backend=jax.default_backend(),
                  jax=jax.__version__, args=vars(args), rows=rows)
    out = Path(args.out or Path(__file__).parent / "results" / f"long_runs-{platform.node()}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
