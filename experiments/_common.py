"""Shared argument handling for the per-figure scripts: a run directory, a group and an output path."""

from __future__ import annotations

import argparse
from pathlib import Path

import socjax
from socjax import analyze


def parse(doc: str, default_name: str, data_dir: bool = False):
    """(the loaded run (socjax.load_run), group index, output path) from the command line; a run
    that has not been analysed is analysed first (socjax.analyze.analyze, without figures)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory from `socjax train` (or `socjax reproduce`)")
    p.add_argument("--group", type=int, default=0, help="which group of runs (a setting of a sweep; default 0)")
    p.add_argument("--out", help=f"PNG to write (default RUN/{default_name})")
    if data_dir:
        p.add_argument("--data-dir", help="MNIST IDX files, if not the run's own data source")
    args = p.parse_args()
    run = socjax.load_run(args.run)
    if run.analysis is None:
        analyze.analyze(args.run, data_dir=getattr(args, "data_dir", None), figures=False)
        run = socjax.load_run(args.run)
    return run, args.group, Path(args.out) if args.out else Path(args.run) / default_name
