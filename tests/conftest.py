"""Shared fixtures. Tests are offline: real MNIST comes from ../shared/data/mnist."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest

# Strict numerics, as in equinox's test config: implicit rank promotion is an error.
jax.config.update("jax_numpy_rank_promotion", "raise")
# The persistent compilation cache, as the command line uses it: the suite's own processes and the
# subprocesses it starts load each other's compiled programs (SOCJAX_COMPILE_CACHE=0 turns it off)
from socjax.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("SOCJAX_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST not found at {MNIST_DIR}; set SOCJAX_MNIST_DIR")
    return MNIST_DIR


def float64_params(seed: int, cfg):
    """model.init(key(seed), cfg) cast to float64; call inside jax.enable_x64(True)."""
    import jax.numpy as jnp

    from socjax import model

    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init(jax.random.key(seed), cfg))


@pytest.fixture(scope="session")
def mini():
    """The embedded subset, decoded: a socjax.data.Dataset."""
    from socjax import data

    return data.decode(data.load_embedded())


def _build_analysed(run: Path) -> None:
    from test_cli import main

    assert main(["train", "--preset", "smoke", "--out", str(run), "--hidden", "16", "12", "--train-limit", "400",
                 "--seeds", "2", "--epochs", "16", "--record-epochs", "6", "--record-windows", "2", "--window-epochs",
                 "6", "--weight-stats", "--track", "4", "--no-progress"]) == 0
    assert main(["analyze", str(run), "--no-progress"]) == 0
    for out in ([], ["--out", str(run / "prune_global"), "--scope", "global"]):
        assert main(["prune", str(run), "--sparsities", "0,0.5", "--draws", "1", "--finetune-epochs", "0",
                     "--no-progress", *out]) == 0


@pytest.fixture(scope="session")
def analysed(tmp_path_factory, worker_id):
    """A small run (784-16-12-10 on 400 images) with a recording window and --weight-stats, analysed
    and pruned twice (the default prune/ and a second output directory), as the experiments
    publish theirs. Built once for the whole suite: the first worker process to need it builds it
    in the workers' shared temporary directory while it holds a lock (pytest-xdist's recipe), and
    every process gets its own copy, so a test in one process never sees another's use of it
    (its files name the shared directory as the run's path)."""
    import fcntl
    import shutil

    mine = tmp_path_factory.mktemp("analysed") / "run"
    if worker_id == "master":  # -n 0: one process, nothing to share
        _build_analysed(mine)
        return mine
    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    shared, done = root / "analysed" / "run", root / "analysed" / "done"
    with open(root / "analysed.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process ends
        if not done.exists():
            shutil.rmtree(shared.parent, ignore_errors=True)  # what a worker that failed left
            shared.parent.mkdir()
            _build_analysed(shared)
            done.touch()
    return Path(shutil.copytree(shared, mine))
