"""Fig. 2: the distribution of local fluctuations dw = w(t+1) - w(t) of the tracked weights.

    python experiments/fig2_increments.py RUN [--out fig2.png]

Pure weight-decay steps are identified and left out; the density of |dw| (each series scaled by
its median) on log-log axes with the bounded power-law fit, and its local slope.
"""

from _common import parse

from socjax import analyze, plots

run, out, (info, tracked, traj) = parse(__doc__, "fig2_increments.png")
warnings: list[str] = []
lr, l2 = analyze.decay_rates(info)
series = analyze.describe_series(info, tracked, traj.shape[0])
inc, _, pool = analyze.increments_part(traj, lr, l2, info.stride, series, warnings)
plots.fig2_increments(out, analyze._clean(inc), pool)
print(f"wrote {out}; pure decay {inc['decay_fraction']:.1%}", *warnings, sep="\n")
