"""Streaming analysis of a paper-sized trajectory: time and peak memory.

Writes a float32 trajectory of (runs, steps, weights) = (8, 1.2e7, 16) to disk (6.1 GB, the
paper's 200 recorded epochs x 60,000 steps for 8 seeds; heavy-tailed random walks), then times
`socjax analyze` on it (no figures) in a child process and reports that process's peak resident
memory (its VmHWM), which the streaming design keeps bounded (target: below 4 GB). The child
uses the persistent compilation cache as the command line does (SOCJAX_COMPILE_CACHE=0: off).

    python benchmarks/analysis_stream.py [--steps 12000000] [--runs 8] [--weights 16] [--dir /tmp/socjax-stream]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, re, sys, time
from socjax.cache import enable_compilation_cache
enable_compilation_cache()  # as the command line does: a second run of the same shapes compiles nothing
from socjax import analyze
from socjax.analysis import increments
t = time.perf_counter()
from socjax import rundir
run = __import__("pathlib").Path(sys.argv[1])
info, tracked, written = analyze.load_inputs(run)
traj = rundir.open_trajectory(run, written)
lr, l2 = analyze.decay_rates(info)
stride = info.stride
t0 = time.perf_counter()
inc, _ = increments.pooled_summary(increments.stream(traj, lr, l2, stride))
t1 = time.perf_counter()
sp = analyze.spectra_pass(traj, stride, None, "hann", [])
spec, _ = analyze.spectrum_summary(sp, range(traj.shape[0] * traj.shape[2]))
t2 = time.perf_counter()
hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps(dict(increments_s=t1 - t0, spectrum_s=t2 - t1, total_s=t2 - t, peak_rss_gb=hwm_kb * 1024 / 1e9,
                      exponent=inc["powerlaw"]["exponent"] if inc.get("powerlaw") else None,
                      a_high=spec.get("a_high", {}).get("value"), segment=spec.get("segment"))))
"""


def write_trajectory(run: Path, runs: int, steps: int, weights: int, seed: int = 0) -> float:
    run.mkdir(parents=True, exist_ok=True)
    traj = np.lib.format.open_memmap(run / "trajectory.npy", mode="w+", dtype=np.float32, shape=(runs, steps, weights))
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for r in range(runs):
        level = np.full(weights, 0.05)
        for t0 in range(0, steps, 1 << 21):
            n = min(1 << 21, steps - t0)
            jumps = rng.standard_normal((n, weights), dtype=np.float32) * rng.exponential(1e-5, (n, 1)).astype(np.float32)
            walk = level + np.cumsum(jumps, axis=0, dtype=np.float64)
            traj[r, t0 : t0 + n] = walk
            level = walk[-1]
    traj.flush()
    (run / "tracked.json").write_text(json.dumps([dict(layer=1, row=k, col=0) for k in range(weights)]))
    (run / "config.json").write_text(json.dumps(dict(
        trajectory=dict(stride=1, first_step=1),
        config=dict(runs=[dict(seed=r, lr=2e-3, l2=5e-4) for r in range(runs)]))))
    return time.perf_counter() - t


def machine() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), host=platform.node())


def write_result(stem: str, result: dict, out: str | None) -> None:
    """The benchmark's JSON at `out`, default benchmarks/results/<stem>-<host>.json."""
    path = Path(out or Path(__file__).parent / "results" / f"{stem}-{platform.node()}.json")
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--steps", type=int, default=12_000_000)
    p.add_argument("--weights", type=int, default=16)
    p.add_argument("--dir", default="/tmp/socjax-stream")
    p.add_argument("--keep", action="store_true", help="keep the trajectory file")
    p.add_argument("--out", help="JSON path (default benchmarks/results/analysis-<host>.json)")
    args = p.parse_args()
    run = Path(args.dir)
    size_gb = args.runs * args.steps * args.weights * 4 / 1e9
    print(f"writing {size_gb:.1f} GB trajectory to {run} ...", flush=True)
    gen_s = write_trajectory(run, args.runs, args.steps, args.weights)
    print(f"written in {gen_s:.0f} s; analysing in a child process ...", flush=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True, env=env)
    if res.returncode:
        sys.exit(res.stderr)
    child = json.loads(res.stdout.strip().splitlines()[-1])
    # The child's own high-water mark (VmHWM): getrusage(RUSAGE_CHILDREN) would include the RSS
    # this parent had when it forked (Linux carries it across exec), here the generator's pages.
    peak_gb = child.pop("peak_rss_gb")
    values = args.runs * args.steps * args.weights
    result = dict(
        machine=machine(),
        shape=[args.runs, args.steps, args.weights], file_gb=size_gb, peak_rss_gb=peak_gb,
        values_per_s=values / child["total_s"], **child,
    )
    print(f"\ntrajectory {tuple(result['shape'])} float32, {size_gb:.1f} GB on disk")
    print(f"{'pass':<12}{'seconds':>10}{'M values/s':>12}")
    for name in ("increments", "spectrum", "total"):
        print(f"{name:<12}{child[name + '_s']:>10.1f}{values / child[name + '_s'] / 1e6:>12.1f}")
    print(f"peak resident memory of the analysis process: {peak_gb:.2f} GB")
    write_result("analysis", result, args.out)
    if not args.keep:
        shutil.rmtree(run)


if __name__ == "__main__":
    main()
