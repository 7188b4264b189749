"""Fig. 2: the distribution of local fluctuations dw = w(t+1) - w(t) of the tracked weights.

    python experiments/fig2_increments.py RUN [--group G] [--out fig2.png]

Pure weight-decay steps are identified and left out; the density of |dw| (each series scaled by
its median, pooled over the group) on log-log axes with the fitted model, and its local slope.
Drawn from the run's analysis (analysed first if it has none).
"""

from _common import draw, parse

from socjax import plots

run, group, out = parse(__doc__, "fig2_increments.png")
draw(plots.fig2_increments, run, group, out)
print(f"wrote {out}; pure decay {run.group(group)['increments']['decay_fraction']:.1%}")
