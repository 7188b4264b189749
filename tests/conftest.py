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


@pytest.fixture(scope="session")
def analysed(tmp_path_factory):
    """A small run (784-16-12-10 on 400 images) with a recording window and --weight-stats, analysed
    and pruned twice (the default prune/ and a second output directory), as the experiments
    publish theirs."""
    from test_cli import main

    run = tmp_path_factory.mktemp("analysed") / "run"
    assert main(["train", "--preset", "smoke", "--out", str(run), "--hidden", "16", "12", "--train-limit", "400",
                 "--seeds", "2", "--epochs", "16", "--record-epochs", "6", "--record-windows", "2", "--window-epochs",
                 "6", "--weight-stats", "--track", "4", "--no-progress"]) == 0
    assert main(["analyze", str(run), "--no-progress"]) == 0
    for out in ([], ["--out", str(run / "prune_global"), "--scope", "global"]):
        assert main(["prune", str(run), "--sparsities", "0,0.5", "--draws", "1", "--finetune-epochs", "0",
                     "--no-progress", *out]) == 0
    return run
