"""Fig. 1: p(x|q), the distribution over test images of layer-2 neurons of the trained network.

    python experiments/fig1_neurons.py RUN [--out fig1.png] [--data-dir MNIST_IDX_DIR]

Plots the pre-activation z (the output is relu(z)) of 6 random live neurons of run 0, with the
fraction of bimodal neurons over all 476 (KDE modes and Sarle's coefficient) in the title.
"""

import sys

from _common import parse

from socjax import analyze, plots

run, out, (info, *_rest), data_dir = parse(__doc__, "fig1_neurons.png", data_dir=True)
warnings: list[str] = []
summary, data = analyze.neurons_part(run, info, data_dir, warnings)
if data is None:
    sys.exit(f"fig1: {summary.get('skipped', warnings)}")
plots.fig1_neurons(out, summary, *data)
print(f"wrote {out}: {summary['fraction_bimodal_kde']:.0%} of layer-2 neurons bimodal (KDE)")
