"""The newer commands under bad input: prune and plot refuse in one line (`socjax: error: ...`,
exit 2) naming what is wrong, before anything is computed or written; never a traceback or a hang.
Toy parameters that overflow are rows of tests/test_cli.py's toy table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO
from socjax import rundir
from test_cli import refused


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def empty(path):
    path.write_bytes(b"")


def reshaped(path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["nondecay_var_w1"] = arrays["nondecay_var_w1"][:, :10]
    np.savez(path, **arrays)


@pytest.fixture
def copy(analysed, tmp_path):
    """A copy of the session's small analysed run, to damage."""
    return shutil.copytree(analysed, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))


DAMAGED = "weight_stats.npz: damaged"


@pytest.mark.parametrize("damage, args, message", [
    (truncate, [], f"{DAMAGED} (not a readable .npz archive"),
    (random_bytes, [], f"{DAMAGED} (not a readable .npz archive"),
    (empty, [], f"{DAMAGED} (not a readable .npz archive"),
    (reshaped, [], f"{DAMAGED} (nondecay_var_w1 has shape (2, 10, 16), the run's w1 is (2, 784, 16)); the statistics "
                   "are gathered during training"),
    (None, ["--finetune-epochs", "2147483648"], "--finetune-epochs must be in 0..2,147,483,647, got 2,147,483,648"),
    (None, ["--finetune-epochs", "99999999999"], "--finetune-epochs must be in 0..2,147,483,647, got 99,999,999,999"),
    (None, ["--finetune-epochs", "2147483640"], "--finetune-epochs 2,147,483,640: the run's 16 epochs and the "
                                                "fine-tune may total at most 2,147,483,647"),
    (None, ["--draws", "99999999999999999999"], "--draws must be in 1..1,000, got 99,999,999,999,999,999,999"),
    (None, ["--batch", "99999999999"], "--batch must be in 1..256 (got 99,999,999,999)"),
    (None, ["--sparsities", ",".join(f"{i / 2000:g}" for i in range(1001))], "--sparsities: 1,001 fractions; at most 1,000"),
    (None, ["--out", ""], "--out is empty; name a directory"),
    (None, ["--out", "/proc/socjax-prune"], "--out /proc/socjax-prune: cannot write in /proc"),
])
def test_prune_refuses_in_one_line(damage, args, message, copy, capsys):
    before = {p: p.read_bytes() for p in (copy / rundir.PRUNE_DIR).iterdir()}
    if damage is not None:
        damage(copy / rundir.WEIGHT_STATS)
    refused(["prune", str(copy), "--no-progress", *args], message, capsys)
    assert {p: p.read_bytes() for p in (copy / rundir.PRUNE_DIR).iterdir()} == before


def test_prune_out_naming_a_file_is_refused(copy, capsys):
    target = copy / "a_file"
    target.write_text("")
    refused(["prune", str(copy), "--out", str(target)], f"--out {target}: exists and is not a directory", capsys)
    refused(["prune", str(copy), "--out", str(target / "sub")], f"--out {target / 'sub'}: cannot write in {target}",
            capsys)


def another_runs_analysis(run):
    shutil.copy(REPO / "experiments" / "results" / "sweep_l2" / rundir.ANALYSIS, run / rundir.ANALYSIS)


def minimal_dict(run):
    (run / rundir.ANALYSIS).write_text(json.dumps({"schema_version": 2}))


def json_list(run):
    (run / rundir.ANALYSIS).write_text("[1, 2]")


def missing_array(run):
    with np.load(run / rundir.ARRAYS) as z:
        arrays = {k: z[k] for k in z.files if k != "g0/hist_offsets"}
    np.savez(run / rundir.ARRAYS, **arrays)


@pytest.mark.parametrize("damage, message", [
    (lambda r: truncate(r / rundir.ARRAYS), "analysis.npz: damaged (not a readable .npz archive: BadZipFile)"),
    (lambda r: random_bytes(r / rundir.ARRAYS), "analysis.npz: damaged (not a readable .npz archive"),
    (lambda r: empty(r / rundir.ARRAYS), "analysis.npz: damaged (not a readable .npz archive: EOFError)"),
    (missing_array, "analysis.npz: damaged (g0/hist_offsets is missing)"),
    (lambda r: random_bytes(r / rundir.ANALYSIS), "analysis.json: malformed JSON"),
    (json_list, "analysis.json: damaged (a JSON list, not an object)"),
    (minimal_dict, "analysis.json: damaged (no 'groups')"),
    (another_runs_analysis, "analysis.json: another recording's analysis (runs 12, this one's 2)"),
    (lambda r: random_bytes(r / rundir.AGES), "ages.json: malformed JSON"),
    (lambda r: random_bytes(r / rundir.PRUNE_DIR / rundir.PRUNE_JSON), "prune.json: malformed JSON"),
    (lambda r: json_list(rundir.window_dir(r, 2)), "windows/age2/analysis.json: damaged (a JSON list"),
])
def test_plot_names_the_damaged_file_and_what_rewrites_it(damage, message, copy, capsys):
    damage(copy)
    refused(["plot", str(copy)], message, capsys)


def test_plot_of_a_window_whose_analysis_is_another_windows(copy, capsys):
    window = rundir.window_dir(copy, 2)
    shutil.copy(copy / rundir.ANALYSIS, window / rundir.ANALYSIS)
    refused(["plot", str(copy)], f"{window / rundir.ANALYSIS}: another recording's analysis (age None, this one's 2); "
                                 f"`socjax analyze {copy}` rewrites it", capsys)
