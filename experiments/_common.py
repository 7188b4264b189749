"""Shared argument handling for the per-figure scripts: a run directory and an output path."""

from __future__ import annotations

import argparse
from pathlib import Path

from socjax import analyze


def parse(doc: str, default_name: str, data_dir: bool = False):
    """(run, output path, analyze.load_inputs(run) = (info, tracked, trajectory)[, data_dir]) from the command line."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory from `socjax train` (or `socjax reproduce`)")
    p.add_argument("--out", help=f"PNG to write (default RUN/{default_name})")
    if data_dir:
        p.add_argument("--data-dir", help="MNIST IDX files, if not the run's own data source")
    args = p.parse_args()
    run = Path(args.run)
    out = (run, Path(args.out) if args.out else run / default_name, analyze.load_inputs(run))
    return out + (args.data_dir,) if data_dir else out
