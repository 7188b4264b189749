"""Fig. 4: power spectra of the tracked weights, plotted as f^2 P(f), with a fitted in a low and a
high frequency band (Welch, Hann window, half-overlapping segments).

    python experiments/fig4_spectrum.py RUN [--out fig4.png]
"""

from _common import parse

from socjax import analyze, plots

run, out, (info, tracked, traj) = parse(__doc__, "fig4_spectrum.png")
warnings: list[str] = []
spec, f, psd, _ = analyze.spectrum_part(traj, info.stride, None, "hann", warnings)
if f is None:
    raise SystemExit(f"fig4: {spec['error']}")
plots.fig4_spectrum(out, analyze._clean(spec), f, psd, info.stride)
print(f"wrote {out}; a_low {spec['a_low']['value']:.3f}, a_high {spec['a_high']['value']:.3f}")
