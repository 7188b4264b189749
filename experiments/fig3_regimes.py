"""Fig. 3: the intermediate range on log-log axes (power law) and the large range on log p versus
dw^2 axes (Gaussian), with the fitted power law times an exponential, a Gaussian and a
stretched-exponential cutoff.

    python experiments/fig3_regimes.py RUN [--group G] [--out fig3.png]

Drawn from the run's analysis (analysed first if it has none).
"""

from _common import draw, parse

from socjax import plots

run, group, out = parse(__doc__, "fig3_regimes.png")
draw(plots.fig3_regimes, run, group, out)
model = run.group(group)["increments"].get("model") or {}
print(f"wrote {out}; Gaussian cutoff: {model.get('is_gaussian')}")
