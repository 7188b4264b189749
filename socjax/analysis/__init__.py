"""Analysis of recorded weights, pure and streamed: log-binned histograms with sufficient
statistics (loghist), bounded power laws (powerlaw), tail models (tails), increments of
trajectories (increments), Welch spectra (spectrum) and neuron-state distributions (neurons).
`socjax.analyze` runs them all on a run directory."""
