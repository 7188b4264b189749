"""Fig. 1: p(x|q), the distribution over test images of layer-2 neurons of the trained network.

    python experiments/fig1_neurons.py RUN [--group G] [--out fig1.png] [--data-dir MNIST_IDX_DIR]

Plots the pre-activation z (the output is relu(z)) of 6 random live neurons of the group's first
run, with the fraction of bimodal neurons over all 476 (KDE modes and Sarle's coefficient) in the
title. Drawn from the run's analysis (analysed first if it has none).
"""

from _common import draw, parse

from socjax import plots

run, group, out = parse(__doc__, "fig1_neurons.png", data_dir=True)
draw(plots.fig1_neurons, run, group, out)
print(f"wrote {out}: {run.group(group)['neurons']['fraction_bimodal_kde']:.0%} of layer-2 neurons bimodal (KDE)")
