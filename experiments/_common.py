"""Shared argument handling for the per-figure scripts: a run directory, a group and an output path;
one-line exits for a run that cannot be loaded and a figure that cannot be drawn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import socjax
from socjax import analyze, plots
from socjax.config import ConfigError


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
    try:
        run = socjax.load_run(args.run)
        if run.analysis is None:
            analyze.analyze(args.run, data_dir=getattr(args, "data_dir", None), figures=False)
            run = socjax.load_run(args.run)
        run.group(args.group)
    except ConfigError as e:  # every run-directory, analysis and results error is one
        sys.exit(f"{p.prog}: {e}")
    return run, args.group, Path(args.out) if args.out else Path(args.run) / default_name


def draw(figure, run, group: int, out: Path) -> None:
    """plots.FIGURE(run, group, path=out), or exit with its one line of why it cannot be drawn."""
    try:
        figure(run, group, path=out)
    except plots.NotDrawn as e:
        sys.exit(f"{Path(sys.argv[0]).name}: {out} not drawn: {e.why}")
