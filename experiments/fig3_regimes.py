"""Fig. 3: the intermediate range on log-log axes (power law) and the large range on log p versus
dw^2 axes (Gaussian), with the fitted power law times an exponential, a Gaussian and a
stretched-exponential cutoff.

    python experiments/fig3_regimes.py RUN [--out fig3.png]
"""

from _common import parse

from socjax import analyze, plots

run, out, (info, tracked, traj) = parse(__doc__, "fig3_regimes.png")
warnings: list[str] = []
lr, l2 = analyze.decay_rates(info)
series = analyze.describe_series(info, tracked, traj.shape[0])
inc, _, pool = analyze.increments_part(traj, lr, l2, info.stride, series, warnings)
plots.fig3_regimes(out, analyze._clean(inc), pool)
model = inc.get("model") or {}
print(f"wrote {out}; Gaussian cutoff: {model.get('is_gaussian')}", *warnings, sep="\n")
