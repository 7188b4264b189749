"""Every script in benchmarks/ and experiments/ runs at its smallest size and writes what it says.

The scripts run in this process (runpy, with sys.argv set as on the command line), so they share
the compiled functions of the rest of the suite; `test_every_script_has_a_smoke_test` keeps the
table complete as scripts are added.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest

from conftest import MNIST_DIR, REPO
from socjax import rundir

SMALL_TRAIN = ["--hidden", "16", "12", "--train-limit", "300", "--track", "4", "--no-progress"]


def run_script(path: Path, *argv: str) -> int:
    """Run a script as `python path argv...` would, here; its exit status."""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv, sys.path = [str(path), *argv], [str(path.parent), *sys.path]
    try:
        runpy.run_path(str(path), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.path = old_argv, old_path


def figure_script(name):
    def check(tmp, run):
        out = tmp / f"{name}.png"
        assert run_script(REPO / "experiments" / f"{name}.py", str(run), "--out", str(out)) == 0
        return [out]
    return check


def bench(name, *argv, json_out=True):
    def check(tmp, run):
        out = tmp / f"{name}.json"
        assert run_script(REPO / "benchmarks" / f"{name}.py", *argv, *(["--out", str(out)] if json_out else [])) == 0
        return [out]
    return check


def paper_scale(tmp, run):
    out = tmp / "paper_scale"
    script = REPO / "experiments" / "paper_scale.py"
    assert run_script(script, "--out", str(out), "--data-dir", str(MNIST_DIR), "--windows", "1", "--no-progress",
                      "--", "--epochs", "4", "--record-epochs", "1", *SMALL_TRAIN) == 0
    assert run_script(script, "--out", str(out), "--publish", str(tmp / "published")) == 0
    return [out / rundir.AGES, tmp / "published" / rundir.AGES, tmp / "published" / rundir.ARRAYS]


def vitality(tmp, run):
    out = tmp / "vitality"
    script = REPO / "experiments" / "vitality.py"
    assert run_script(script, "--out", str(out), "--epochs", "3", "--record-epochs", "1", "--track", "4", "--draws",
                      "1", "--no-progress", "--", "--dataset", "mnist-mini", *SMALL_TRAIN) == 0
    assert run_script(script, "--out", str(out), "--publish", str(tmp / "published")) == 0
    return [out / rundir.PRUNE_DIR / rundir.PRUNE_JSON, tmp / "published" / rundir.ARRAYS]


def reproduce_paper(tmp, run):
    out = tmp / "paper"
    assert run_script(REPO / "experiments" / "reproduce_paper.py", "--out", str(out), "--data-dir", str(MNIST_DIR),
                      "--epochs", "2", "--record-epochs", "1", *SMALL_TRAIN) == 0
    return [out / rundir.REPORT]


def sweep_l2(tmp, run):
    out = tmp / "sweep"
    assert run_script(REPO / "experiments" / "sweep_l2.py", "--out", str(out), "--l2", "0", "5e-4", "--seeds", "1",
                      "--", "--preset", "smoke", *SMALL_TRAIN) == 0
    return [out / rundir.SWEEP_FIGURE]


def toy_model(tmp, run):
    out = tmp / "toy"
    assert run_script(REPO / "experiments" / "toy_model.py", "--out", str(out), "--chains", "8", "--steps", "400") == 0
    return [out / "toy.json", out / "toy.png"]


def build_mnist_mini(tmp, run):
    out = tmp / "mini.npz"
    assert run_script(REPO / "experiments" / "build_mnist_mini.py", "--data-dir", str(MNIST_DIR), "--out", str(out)) == 0
    return [out]


def claim_power(tmp, run):
    out = tmp / "claim_power.json"
    assert run_script(REPO / "experiments" / "claim_power.py", "--reps", "1", "--sizes", "quick-weight",
                      "--out", str(out)) == 0
    return [out]


def pooling_heterogeneity(tmp, run):
    out = tmp / "pooling.json"
    assert run_script(REPO / "experiments" / "pooling_heterogeneity.py", "--weights", "2", "--n", "5000",
                      "--out", str(out)) == 0
    return [out]


def universality(tmp, run):
    """One cell (the random-labels control) at its smallest; a rerun finds it done and trains nothing."""
    out = tmp / "universality"
    args = ("--out", str(out), "--cells", "random-labels", "--tiny", "--no-progress")
    assert run_script(REPO / "experiments" / "universality.py", *args) == 0
    before = (out / "random-labels" / rundir.ANALYSIS).stat().st_mtime_ns
    assert run_script(REPO / "experiments" / "universality.py", *args) == 0
    assert (out / "random-labels" / rundir.ANALYSIS).stat().st_mtime_ns == before
    a = json.loads((out / "random-labels" / rundir.ANALYSIS).read_text())
    assert a["groups"][0]["peers"]["tail_index"]["pooled"][0]["m"] == 10
    assert rundir.read_info(out / "random-labels").config.random_labels == 0
    res = tmp / "universality-results"
    assert run_script(REPO / "experiments" / "universality.py", "--out", str(out), "--cells", "random-labels", "--tiny",
                      "--results", str(res)) == 0
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert [r["setting"] for r in rows] == ["paper", "random-labels"]  # the committed paper-scale run, then the cell
    want = {c["key"]: c["verdict"] for c in a["groups"][0]["claims"]}
    assert {k: c["verdict"] for k, c in rows[1]["claims"].items()} == want
    assert rows[1]["peers"] == a["groups"][0]["peers"] and (res / "random-labels" / "report.md").exists()
    # the tail index by age: the window's (age 0) from its own analysis, the last age's from the final recording's
    window = json.loads((rundir.window_dir(out / "random-labels", 0) / rundir.ANALYSIS).read_text())
    by_age = rows[1]["peers_by_age"]
    for e, analysis in ((by_age[0], window), (by_age[-1], a)):
        assert e["pooled"] == [x["value"] for x in analysis["groups"][0]["peers"]["tail_index"]["pooled"]]
    assert by_age[0]["age"] == 0 and len(by_age) == 2
    # the results of another cell (teacher, not trained here) keep random-labels' rows from res/results.json,
    # its run directory away; random-labels' results again replace its rows rather than adding to them
    script = REPO / "experiments" / "universality.py"
    shutil.move(out / "random-labels", tmp / "away")
    assert run_script(script, "--out", str(out), "--cells", "teacher", "--tiny", "--results", str(res)) == 0
    merged = json.loads((res / "results.json").read_text())
    assert merged["rows"] == rows and merged["missing"] == ["teacher"]
    assert [c["name"] for c in merged["cells"]] == ["random-labels", "teacher"]
    shutil.move(tmp / "away", out / "random-labels")
    assert run_script(script, "--out", str(out), "--cells", "random-labels", "--tiny", "--results", str(res)) == 0
    assert json.loads((res / "results.json").read_text())["rows"] == rows
    # a kept cell whose definition has changed since is dropped, not reported under the new one
    merged = json.loads((res / "results.json").read_text())
    next(c for c in merged["cells"] if c["name"] == "random-labels")["epochs"] += 1
    (res / "results.json").write_text(json.dumps(merged))
    assert run_script(script, "--out", str(out), "--cells", "teacher", "--tiny", "--results", str(res)) == 0
    assert [r["setting"] for r in json.loads((res / "results.json").read_text())["rows"]] == ["paper"]
    # the cell at its full size is another schedule: the tiny run is neither continued nor reported as it
    assert run_script(REPO / "experiments" / "universality.py", *[a for a in args if a != "--tiny"]) == 2
    assert (out / "random-labels" / rundir.ANALYSIS).stat().st_mtime_ns == before
    assert run_script(REPO / "experiments" / "universality.py", "--out", str(out), "--cells", "random-labels",
                      "--results", str(tmp / "full-results")) == 0
    assert json.loads((tmp / "full-results" / "results.json").read_text())["missing"] == ["random-labels"]
    return [out / "random-labels" / "report.md", res / "README.md", res / "claims.png"]


SCRIPTS = {
    "benchmarks/throughput.py": bench("throughput", "--steps", "40", "--loop-steps", "5", "--rounds", "1",
                                      "--seeds", "2"),
    # the configuration that exercises the most (recording and --weight-stats), to keep the suite short
    "benchmarks/long_runs.py": bench("long_runs", "--examples", "40", "--epochs", "2", "--rounds", "1", "--track", "2",
                                     "--weight-stats-epochs", "2", "--only", "weight-stats"),
    "benchmarks/distributed.py": bench("distributed", "--epochs", "1", "--hidden", "16", "12", "--train-limit", "200",
                                       "--cases", "2x1"),
    "benchmarks/analysis_stream.py": None,  # below: it writes its trajectory to --dir
    "benchmarks/analysis_groups.py": None,
    "benchmarks/analysis_scale.py": None,
    "experiments/build_mnist_mini.py": build_mnist_mini,
    "experiments/claim_power.py": claim_power,
    "experiments/fig1_neurons.py": figure_script("fig1_neurons"),
    "experiments/fig2_increments.py": figure_script("fig2_increments"),
    "experiments/fig3_regimes.py": figure_script("fig3_regimes"),
    "experiments/fig4_spectrum.py": figure_script("fig4_spectrum"),
    "experiments/paper_scale.py": paper_scale,
    "experiments/pooling_heterogeneity.py": pooling_heterogeneity,
    "experiments/vitality.py": vitality,
    "experiments/reproduce_paper.py": reproduce_paper,
    "experiments/sweep_l2.py": sweep_l2,
    "experiments/toy_model.py": toy_model,
    "experiments/universality.py": universality,
}


def test_every_script_has_a_smoke_test():
    scripts = {str(p.relative_to(REPO)) for d in ("benchmarks", "experiments") for p in (REPO / d).glob("*.py")
               if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(k for k, v in SCRIPTS.items() if v is not None))
def test_script_runs_at_its_smallest_size(script, analysed, tmp_path):
    for path in SCRIPTS[script](tmp_path, analysed):
        assert path.exists() and path.stat().st_size > 0, path


@pytest.mark.parametrize("name", ["analysis_stream", "analysis_groups"])
def test_analysis_benchmarks_run_at_their_smallest_size(name, tmp_path):
    out = tmp_path / "result.json"
    argv = ["--runs", "2", "--steps", "4096", "--weights", "2", "--dir", str(tmp_path / "traj"), "--out", str(out)]
    more = ["--rounds", "1", "--only", "one"] if name == "analysis_groups" else []
    assert run_script(REPO / "benchmarks" / f"{name}.py", *argv, *more) == 0
    result = json.loads(out.read_text())
    assert result["shape"] == [2, 4096, 2]


def test_analysis_scale_benchmark_runs_at_its_smallest_size(tmp_path):
    """One size, warm (two processes: one fills the cache, the second is timed), in the suite's own
    cache (socjax.cache.cache_dir(): what the other tests compiled is loaded, not compiled again)."""
    from socjax.cache import cache_dir

    out = tmp_path / "result.json"
    assert run_script(REPO / "benchmarks" / "analysis_scale.py", "--weights", "2", "--steps", "3000", "--cases",
                      "warm", "--dir", str(tmp_path / "traj"), "--out", str(out), "--cache", str(cache_dir())) == 0
    result = json.loads(out.read_text())
    assert [(r["weights"], r["case"]) for r in result["rows"]] == [(2, "after, warm")]
    assert all(r["seconds"] > 0 and r["peak_rss_gb"] > 0 for r in result["rows"])
