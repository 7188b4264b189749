"""The toy model of Section 2: one fast neuron state x, one slow weight q, a quartic coupling.

    theory       eqs. (2)-(7): F, p(q), p(x|q) (closed forms, or quadrature with the quartic term
                 kx), crossovers, stiffness and step checks; float64 on the host
    simulate     Langevin chains on F and the SGD learning picture (exact x ~ p(x|q)), compiled
                 scans vmapped over chains (and over parameter sweeps)
    experiment   both simulations against the analytic equilibrium, sweeps, and `socjax toy`
                 (toy.json, sweep.json; figures in socjax.plots)

The parameters are `socjax.config.ToyParams` (plain data, so the CLI needs no JAX to parse them).
"""
