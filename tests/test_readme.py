"""Every fenced Python block of README.md runs as written, so the README cannot drift from the code.

The blocks run in a directory laid out as a user's clone after the quick start: the repository's
published results under experiments/ and a run of one's own at runs/quick (here a small one).
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO

BLOCKS = re.findall(r"^```python\n(.*?)^```$", (REPO / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_readme_python_block_runs(block, analysed, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "quick").symlink_to(analysed)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(BLOCKS[block], f"README.md python block {block + 1}", "exec"), namespace)
    plt.close("all")
    if "out" in namespace:  # the training block: its comment states the shapes
        assert namespace["out"].trajectory.shape == (4, 2000, 16) and namespace["out"].metrics.test_loss.shape == (4, 1)
