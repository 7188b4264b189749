"""Figures a reader understands without the code: every panel labelled on both axes, no code names
in legends, no "(s)" plurals, and intervals of bounded quantities inside their range."""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

import socjax
from conftest import REPO
from socjax import plots, rundir

RESULTS = REPO / "experiments" / "results"


def test_intervals_are_clipped_to_the_quantity_range():
    numbers = [dict(mean=0.9, ci95=[0.4, 1.4]), dict(mean=0.05, ci95=[-0.3, 0.4]), dict(mean=0.5), {}]
    m, (below, above) = plots._mean_and_bars(numbers, (0.0, 1.0))
    np.testing.assert_array_equal(m[:3], [0.9, 0.05, 0.5])
    ci = np.array([n["ci95"] for n in numbers[:2]])
    np.testing.assert_allclose(m[:2] - below[:2], np.clip(ci[:, 0], 0, 1))
    np.testing.assert_allclose(m[:2] + above[:2], np.clip(ci[:, 1], 0, 1))
    assert below[2] == above[2] == 0 and np.isnan(m[3])
    _, (below, above) = plots._mean_and_bars(numbers[:1], (None, None))  # unbounded: the t interval itself
    assert np.isclose(0.9 - below[0], 0.4) and np.isclose(0.9 + above[0], 1.4)


def figures():
    sweep = socjax.load_run(RESULTS / "sweep_l2")
    yield "age", plots.age_figure(rundir.load_ages(RESULTS / "paper_scale"))
    pruned = json.loads((RESULTS / "vitality" / "prune" / "prune.json").read_text())  # one group, no "groups"
    yield "prune", plots.prune_figure(pruned, rundir.prune_groups(pruned)[0])
    yield "sweep", plots.sweep_figure(sweep)
    for name, draw in plots.FIGURE_FUNCTIONS[:4]:
        yield name, draw(sweep, 2)
    full = socjax.load_run(RESULTS / "full_mnist_300")  # analysed with the paper-style figures
    for name, draw in plots.FIGURE_FUNCTIONS[4:]:
        yield name, draw(full, 0)


@pytest.mark.parametrize("name, fig", list(figures()))
def test_every_panel_is_labelled_in_words(name, fig):
    try:
        shown = [ax for ax in fig.axes if ax.axison]
        assert shown
        for ax in shown:
            assert ax.get_xlabel().strip(), (name, ax.get_title())
            if ax in fig.axes[:1] or name not in ("fig1_neurons.png",):  # Fig. 1's panels share one label
                assert ax.get_ylabel().strip(), (name, ax.get_title())
            legend = ax.get_legend()
            for text in legend.get_texts() if legend else []:
                assert not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", text.get_text()), (name, text.get_text())
        texts = [t.get_text() for t in fig.findobj(plt.Text)]
        assert not any("(s)" in t for t in texts), name
    finally:
        plt.close(fig)


def test_the_age_figure_says_what_crosses_and_dotted_lines_are():
    fig = plots.age_figure(rundir.load_ages(RESULTS / "paper_scale"))
    text = " ".join(t.get_text() for t in fig.findobj(plt.Text))
    plt.close(fig)
    assert "crosses = seeds" in text and "dots = seeds" not in text
    assert "dotted line: the value" in text and "judged against" in text
