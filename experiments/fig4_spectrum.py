"""Fig. 4: power spectra of the tracked weights, plotted as f^2 P(f), with a fitted in a low and a
high frequency band (Welch, Hann window, half-overlapping segments).

    python experiments/fig4_spectrum.py RUN [--group G] [--out fig4.png]

Drawn from the run's analysis (analysed first if it has none).
"""

from _common import draw, parse

from socjax import plots

run, group, out = parse(__doc__, "fig4_spectrum.png")
spec = run.group(group)["spectrum"]
draw(plots.fig4_spectrum, run, group, out)
print(f"wrote {out}; a_low {spec['a_low']['value']:.3f}, a_high {spec['a_high']['value']:.3f}")
