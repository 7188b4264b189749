"""Nothing changes for the paper's case: with default flags (SGD, batch 1, the pure-function MLP,
MNIST) a run's trajectory, metrics, checkpoint, final parameters and --weight-stats equal, bit for
bit, those of the runs made before optimizers, minibatches and models were added
(tests/golden/paper_case.py made the digests), on both step implementations."""

from __future__ import annotations

import json

import jax
import pytest

from golden import paper_case


def test_default_flags_reproduce_the_stored_runs_bit_for_bit(tmp_path):
    stored = json.loads(paper_case.GOLDEN.read_text())
    if stored["jax"] != jax.__version__ or stored["cpu"] != paper_case.cpu_features():
        pytest.skip(f"the digests were made with jax {stored['jax']} on a CPU with {stored['cpu']}; this is jax "
                    f"{jax.__version__} on {paper_case.cpu_features()}, whose float32 rounding may differ")
    assert stored["flags"] == paper_case.FLAGS
    made = paper_case.make(tmp_path)
    for step in paper_case.STEPS:
        assert made[step].keys() == stored["runs"][step].keys(), step
        differ = [k for k in made[step] if made[step][k] != stored["runs"][step][k]]
        assert not differ, f"{step}: {differ}"
    # the two steps are different computations: digests that agree between them would mean the
    # comparison sees neither
    assert made["xla"]["trajectory"] != made["native"]["trajectory"]
