"""What the analysis costs as the number of tracked weights grows: `socjax analyze` (no figures) on
synthetic runs of 16, 256 and 4,096 weights x 100,000 steps, time and peak memory, for this
checkout and, with --baseline-src, another one (e.g. the release before the batched fits).

Each size is one run of heavy-tailed random walks (benchmarks/analysis_stream.py's generator)
analysed in a fresh child process, which reports its wall time and its own peak resident memory
(VmHWM). This checkout is timed twice per size: "cold", with the persistent compilation cache off
(SOCJAX_COMPILE_CACHE=0, every program compiled in the process), and "warm", a second process
with the cache filled by a first one (the command line's default: what a second `socjax analyze`
of the same shapes costs). The warm case's cache is a fresh temporary directory unless --cache
names one (the test suite passes its own, already filled, so the smoke test compiles nothing); a
named cache is filled once, by the first size's first process, and serves every later size as it
is (a shape the smaller sizes never used is compiled inside the timed process: the larger sizes'
warm times are an upper bound). The baseline is timed cold. A case that runs past --budget-s is
stopped and listed under "skipped" with that bound (so a slow baseline at 4,096 weights does not
take the afternoon).

    python benchmarks/analysis_scale.py [--weights 16 256 4096] [--steps 100000] [--cases before cold warm]
                                        [--baseline-src /path/to/old/checkout] [--budget-s 1800]
                                        [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_stream import machine, write_result, write_trajectory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, re, sys, time
t = time.perf_counter()
try:  # the command line's set-up; a checkout from before the compilation cache has none
    from socjax.cache import enable_compilation_cache
    enable_compilation_cache()
except ImportError:
    pass
from socjax import analyze
analyze.analyze(sys.argv[1], progress=False, figures=False)
seconds = time.perf_counter() - t
hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps(dict(seconds=seconds, peak_rss_gb=hwm_kb * 1024 / 1e9)))
"""


def child(run: Path, src: Path, env: dict, timeout: float | None = None) -> dict | None:
    """The child's report, or None when it ran past `timeout` seconds (and was stopped)."""
    try:
        res = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(src), **env}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode:
        sys.exit(f"analysis of {run} by {src} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=int, nargs="+", default=[16, 256, 4096])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--baseline-src", help="another socjax checkout to time cold beside this one")
    p.add_argument("--budget-s", type=float, default=1800.0,
                   help="stop a case that runs longer than this, and list it as skipped (default 1800)")
    p.add_argument("--cases", nargs="+", choices=["before", "cold", "warm"], default=["before", "cold", "warm"],
                   help="which cases to time (default all; before needs --baseline-src)")
    p.add_argument("--dir", default="/tmp/socjax-scale")
    p.add_argument("--cache", help="the warm case's cache directory, kept (default: a fresh temporary one)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/analysis_scale-<host>.json)")
    args = p.parse_args()
    if any(w < 1 for w in args.weights) or args.steps < 1000:
        p.error("--weights must be positive and --steps at least 1000")
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    cases = [(name, REPO, mode) for name, mode in (("after, cold", "off"), ("after, warm", "warm"))
             if mode.replace("off", "cold") in args.cases]
    if args.baseline_src and "before" in args.cases:
        cases.insert(0, ("before, cold", Path(args.baseline_src).resolve(), "off"))
    rows, skipped = [], []
    for weights in args.weights:
        run = base / f"w{weights}"
        gen = write_trajectory(run, 1, args.steps, weights)
        print(f"{weights} weights x {args.steps} steps written in {gen:.0f} s", flush=True)
        for name, src, mode in cases:
            with tempfile.TemporaryDirectory() as fresh:
                cache = args.cache if args.cache and mode == "warm" else fresh
                env = {"SOCJAX_CACHE": cache, "SOCJAX_COMPILE_CACHE": "0" if mode == "off" else "1"}
                if mode == "warm" and not (args.cache and weights != args.weights[0]):
                    child(run, src, env)  # fills the cache
                r = child(run, src, env, timeout=args.budget_s)
            if r is None:
                skipped.append(dict(weights=weights, case=name, stopped_after_s=args.budget_s))
                print(f"  {name:<14} stopped after {args.budget_s:.0f} s (--budget-s)", flush=True)
                continue
            rows.append(dict(weights=weights, steps=args.steps, case=name, **r))
            print(f"  {name:<14}{r['seconds']:9.1f} s{r['peak_rss_gb']:8.2f} GB", flush=True)
        shutil.rmtree(run)
    by = {(r["case"], r["weights"]): r["seconds"] for r in rows}
    print(f"\n{'weights':>8}" + "".join(f"{name:>16}" for name, _, _ in cases) + f"{'s/weight':>10}")
    for weights in args.weights:
        cells = "".join(f"{by[(name, weights)]:>14.1f} s" if (name, weights) in by else f"{'-':>16}"
                        for name, _, _ in cases)
        warm = by.get(("after, warm", weights))
        print(f"{weights:>8}{cells}{warm / weights if warm else float('nan'):>10.2f}")
    ratios = {}
    if len(args.weights) > 1:
        lo = min(args.weights)
        for name, _, _ in cases:
            if (name, lo) in by:
                ratios[name] = {str(w): by[(name, w)] / by[(name, lo)] for w in args.weights if (name, w) in by}
        print(f"cost relative to {lo} weights: {json.dumps(ratios)}")
    result = dict(machine=machine(),
                  backend="cpu", steps=args.steps, rows=rows, skipped=skipped, ratio_to_smallest=ratios,
                  baseline_src=args.baseline_src, date=time.strftime("%Y-%m-%d"))
    write_result("analysis_scale", result, args.out)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
