"""A published copy of a run (`rundir.publish`) redraws every figure without its trajectory, and
says which figure it cannot draw and why."""

from __future__ import annotations

import shutil

import matplotlib.image
import numpy as np
import pytest

import socjax
from socjax import plots, rundir
from test_cli import main


def pixels(path):
    return matplotlib.image.imread(path)


def test_a_published_run_redraws_every_figure_pixel_identical(analysed, tmp_path, capsys):
    dest = tmp_path / "published"
    files = rundir.publish(analysed, dest)
    # the bulk stays behind; everything else, and nothing more, is in the copy
    everything = sorted(p.relative_to(analysed) for p in analysed.rglob("*") if p.is_file())
    left_out = {str(p) for p in everything if p not in files}
    assert left_out == {"trajectory.npy", "params_init.npz", "params_final.npz", "params_age2.npz",
                        "weight_stats.npz", "checkpoint.npz", ".lock"}
    assert sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file()) == files
    figures = [f for f in files if f.suffix == ".png"]
    # 6 of the final recording (4 and the 2 paper-style), 6 of the window, the age figure, two prune figures
    assert len(figures) == 15 and {f.name for f in figures} >= {"ages.png", "prune.png", "fig1_neurons.png"}
    for f in figures:
        (dest / f).unlink()
    capsys.readouterr()
    assert main(["plot", str(dest)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert sorted(out.out.split()[1::2]) == sorted(str(dest / f) for f in figures)
    for f in figures:
        np.testing.assert_array_equal(pixels(dest / f), pixels(analysed / f), err_msg=str(f))
    # load_run works there, and the trajectory is the one thing it cannot give
    run = socjax.load_run(dest)
    assert run.histogram(0) is not None and run.group(0)["increments"]["fluctuating"] > 0
    with pytest.raises(rundir.RunDirError, match="trajectory.npy: missing"):
        run.trajectory
    assert main(["analyze", str(dest)]) == 2
    assert capsys.readouterr().err == (f"socjax: error: {dest}: no trajectory.npy (a published copy (rundir.publish); "
                                       "`socjax plot` redraws its figures from its analysis)\n")


def test_publishing_again_replaces_the_copy_and_keeps_its_notes(analysed, tmp_path):
    dest = tmp_path / "published"
    rundir.publish(analysed, dest)
    (dest / rundir.NOTES).write_text("how this was made\n")
    (dest / "stale.png").write_text("an older publication's file")
    rundir.publish(analysed, dest)
    assert not (dest / "stale.png").exists() and (dest / rundir.NOTES).read_text() == "how this was made\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("")
    with pytest.raises(rundir.RunDirError, match="not empty and not an earlier publication"):
        rundir.publish(analysed, other)
    with pytest.raises(rundir.RunDirError, match="inside the run"):
        rundir.publish(analysed, analysed / "copy")


def test_without_analysis_npz_each_figure_says_why_and_plot_fails(analysed, tmp_path, capsys):
    """A copy published before analysis.npz was published (experiments/results/paper_scale): every
    figure drawn from it is named, with the missing file, and the exit status is 1."""
    dest = tmp_path / "old"
    rundir.publish(analysed, dest)
    (dest / rundir.ARRAYS).unlink()
    (rundir.window_dir(dest, 2) / rundir.ARRAYS).unlink()
    capsys.readouterr()
    assert main(["plot", str(dest)]) == 1
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert len(lines) == 2 * len(rundir.FIGURES) and all(line.startswith("socjax: ") and "analysis.npz is missing" in line
                                                        for line in lines)
    assert {line.split()[1] for line in lines} == {str(d / f) for d in (dest, rundir.window_dir(dest, 2))
                                                   for f in rundir.FIGURES}
    assert f"wrote {dest / rundir.AGES_FIGURE}" in out.out  # what can be drawn still is
    run = socjax.load_run(dest)
    with pytest.raises(plots.NotDrawn, match=r"Fig. 2: .*analysis.npz is missing"):
        plots.fig2_increments(run)
    # no analysis.json at all, only prune outputs (experiments/results/vitality before this fix)
    for name in (rundir.ANALYSIS, rundir.AGES):
        (dest / name).unlink()
    shutil.rmtree(dest / rundir.WINDOWS)
    assert main(["plot", str(dest)]) == 1
    out = capsys.readouterr()
    assert out.out.count("prune.png") == 2
    assert out.err == f"socjax: {dest}/fig*.png not drawn: no analysis.json, and no trajectory.npy to analyse (a " \
                      "copy published without it)\n"


def test_a_figure_without_data_says_so(analysed, tmp_path):
    """A group with no non-decay increment, or no spectrum: NotDrawn names the figure and the reason
    from analysis.json, not the file."""
    run = socjax.load_run(analysed)
    run.group(0)["increments"]["fluctuating"] = 0
    run.group(0)["spectrum"] = dict(error="too short")
    with pytest.raises(plots.NotDrawn, match=r"^Fig. 3: no non-decay increments") as e:
        plots.fig3_regimes(run)
    assert not e.value.missing
    with pytest.raises(plots.NotDrawn, match=r"^Fig. 4: no spectrum \(too short\)"):
        plots.fig4_spectrum(run)
