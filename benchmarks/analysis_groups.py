"""What grouping costs: `socjax analyze` of one trajectory read as an 8-run sweep against the same
trajectory read as one setting (one group of 8 seeds, a single pooled analysis).

Writes a float32 trajectory (runs, steps, weights) = (8, 200,000, 16) of heavy-tailed random walks
(benchmarks/analysis_stream.py's generator), then times the whole analysis (no figures), each in
a fresh child process, with config.json listing the runs as
    one       8 seeds of one setting: one group (pooled over all 8 runs) plus the 8 runs
    sweep8    8 values of l2, one seed each: 8 groups of one run
    sweep4x2  4 values of l2 x 2 seeds: 4 groups of 2 runs, with intervals across seeds
and, with --baseline-src, the one-setting analysis by another socjax checkout (e.g. the release
before groups: one pooled fit, no per-run fits). Rounds are interleaved; the median is reported.
The passes over the data are shared by every grouping, so the extra cost is the extra fits.
Each child uses the persistent compilation cache as the command line does (SOCJAX_COMPILE_CACHE=0:
off), so from the second child on compiling is not part of what a layout costs.

    python benchmarks/analysis_groups.py [--steps 200000] [--rounds 2] [--only one sweep8 ...]
                                         [--baseline-src /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_stream import machine, write_result, write_trajectory  # noqa: E402

CHILD = r"""
import sys, time
try:  # the command line's set-up; a checkout from before the compilation cache has none
    from socjax.cache import enable_compilation_cache
    enable_compilation_cache()
except ImportError:
    pass
from socjax import analyze
t = time.perf_counter()
analyze.analyze(sys.argv[1], progress=False, figures=False)
print(time.perf_counter() - t)
"""

REPO = Path(__file__).resolve().parents[1]


def layouts(runs: int) -> dict[str, list[dict]]:
    l2s = [0.0, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
    half = runs // 2
    return {
        "one": [dict(seed=r, lr=2e-3, l2=5e-4) for r in range(runs)],
        f"sweep{runs}": [dict(seed=0, lr=2e-3, l2=l2s[r % len(l2s)]) for r in range(runs)],
        f"sweep{half}x2": [dict(seed=s, lr=2e-3, l2=l2s[j]) for s in range(2) for j in range(half)],
    }


def time_child(run: Path, src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True, env=env)
    if res.returncode:
        sys.exit(res.stderr)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--weights", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--baseline-src", help="another socjax checkout to time on the one-setting layout")
    p.add_argument("--dir", default="/tmp/socjax-groups")
    p.add_argument("--only", nargs="+", metavar="LAYOUT",
                   help="time only these layouts (one is always timed: the ratios are to it); default all")
    p.add_argument("--out", help="JSON path (default benchmarks/results/analysis_groups-<host>.json)")
    args = p.parse_args()
    chosen = layouts(args.runs)
    if args.only:
        unknown = sorted(set(args.only) - set(chosen))
        if unknown:
            p.error(f"--only: no layout {unknown[0]!r} with --runs {args.runs} (layouts: {', '.join(chosen)})")
        chosen = {k: v for k, v in chosen.items() if k == "one" or k in args.only}
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    first = base / "one"
    write_trajectory(first, args.runs, args.steps, args.weights)
    cases = {}
    for name, runs in chosen.items():
        run = base / name
        if run != first:
            run.mkdir(parents=True)
            for f in ("trajectory.npy", "tracked.json"):
                os.link(first / f, run / f)
        (run / "config.json").write_text(json.dumps(dict(trajectory=dict(stride=1, first_step=1), config=dict(runs=runs))))
        cases[name] = (run, REPO)
    if args.baseline_src:
        cases["one, baseline"] = (first, Path(args.baseline_src).resolve())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, (run, src) in cases.items():
            times[name].append(time_child(run, src))
            print(f"round {r + 1}: {name:<16}{times[name][-1]:8.1f} s", flush=True)
    med = {name: float(np.median(v)) for name, v in times.items()}
    ref = med["one"]
    print(f"\n{'layout':<16}{'groups':>7}{'median s':>10}{'vs one':>8}")
    groups = {"one": 1, f"sweep{args.runs}": args.runs, f"sweep{args.runs // 2}x2": args.runs // 2, "one, baseline": 1}
    for name, t in med.items():
        print(f"{name:<16}{groups[name]:>7}{t:>10.1f}{t / ref:>8.2f}")
    result = dict(machine=machine(),
                  shape=[args.runs, args.steps, args.weights], rounds=args.rounds, seconds=times, median_s=med,
                  ratio_to_one={k: v / ref for k, v in med.items()})
    write_result("analysis_groups", result, args.out)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
