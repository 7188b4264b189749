"""The paper's case with default flags, reduced to SHA-256 digests of everything a run writes that
its numbers depend on: the trajectory, the per-epoch metrics, every leaf of the checkpoint, the
final parameters and --weight-stats. `paper_case.json` holds the digests of runs made by socjax
0.3.0 (commit ba50b3d, before optimizers, minibatches and models were added), one per step
implementation; tests/test_paper_case.py trains the same runs with today's code and compares.

XLA's CPU code and the native kernel's (-march=native) may round differently on another jax
version or CPU: the file records the jax version and the CPU's vector extensions it was made
with, and the test says so and skips where they differ.

    python tests/golden/paper_case.py     # rewrite paper_case.json (only when a change is meant
                                          # to alter the paper's numbers, and say so in the commit)
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "paper_case.json"
# default flags but for the data size: the paper's 784-700-476-10 on 400 embedded images, one epoch
# of equilibration and two recorded, every weight's statistics
FLAGS = ["--preset", "smoke", "--train-limit", "400", "--epochs", "3", "--record-epochs", "2", "--weight-stats",
         "--no-progress"]
STEPS = ("xla", "native")


def digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def cpu_features() -> str:
    """The CPU's vector extensions (what -march=native and XLA's CPU backend compile for)."""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        return platform.machine()
    return " ".join(sorted(f for f in flags.split(":")[1].split() if f.startswith(("avx", "fma", "sse4"))))


def digests(run: Path) -> dict[str, str]:
    """name -> digest of every array of the run that its numbers depend on (not timings)."""
    out = {"trajectory": digest(np.load(run / "trajectory.npy"))}
    metrics = json.loads((run / "metrics.json").read_text())
    for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc"):
        out[f"metrics.{k}"] = digest(np.asarray(metrics[k], np.float64))
    for name in ("checkpoint.npz", "params_final.npz", "weight_stats.npz"):
        with np.load(run / name) as z:
            out.update({f"{name}:{k}": digest(z[k]) for k in sorted(z.files) if k != "__meta__"})
    return out


def make(tmp: Path) -> dict[str, dict[str, str]]:
    """Train the paper's case once per step into tmp and digest each run."""
    sys.path.insert(0, str(HERE.parent))
    from test_cli import main

    out = {}
    for step in STEPS:
        run = tmp / step
        assert main(["train", *FLAGS, "--step", step, "--out", str(run)]) == 0
        out[step] = digests(run)
    return out


if __name__ == "__main__":
    import tempfile

    import jax

    with tempfile.TemporaryDirectory() as tmp:
        runs = make(Path(tmp))
    GOLDEN.write_text(json.dumps(dict(jax=jax.__version__, cpu=cpu_features(), flags=FLAGS, runs=runs), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
