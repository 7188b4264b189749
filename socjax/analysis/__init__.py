"""Analysis of recorded weights, pure and streamed: log-binned histograms with sufficient
statistics (loghist), bounded power laws (powerlaw), the power law with a cutoff as one model of the
whole distribution (cutoff, on the incomplete gamma functions of incgamma), increments of
trajectories (increments), Welch spectra (spectrum) and neuron-state distributions (neurons).
`socjax.analyze` runs them all on a run directory."""
