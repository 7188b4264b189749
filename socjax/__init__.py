"""socjax: self-organized criticality in neural networks (Katsnelson, Vanchurin, Westerhout,
arXiv:2107.03402), reimplemented as pure JAX functions.

Modules, upstream to downstream: config (static config, presets, the table of flags), data (MNIST
sources), model (MLP, loss), step (the SGD step seam and its reference implementation), train (the
compiled per-example SGD scan, vmapped over runs), weight_stats, checkpoint (pytree files), rundir
(the run-directory format), runner (host loop), analysis/ and analyze (run directory ->
analysis.json), results (`load_run`: a run's results for Python), plots, report, prune (which weights
matter: the Discussion's test), toy/ (Section 2), cli.

`import socjax` is cheap (no JAX); each module is imported on first access, e.g. `socjax.rundir`.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("socjax")
except metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
    __version__ = "unknown"

_MODULES = ("analysis", "analyze", "checkpoint", "cli", "config", "data", "model", "plots", "prune", "report",
            "results", "rundir", "runner", "step", "toy", "train", "weight_stats")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"socjax.{name}")
    if name == "load_run":  # socjax.load_run(DIR): a run directory's results (socjax.results)
        return importlib.import_module("socjax.results").load_run
    raise AttributeError(f"module 'socjax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES, "load_run"])
