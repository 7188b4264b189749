"""The toy model of Section 2 with its default parameters (or any `socjax toy` flags):

    python experiments/toy_model.py --out runs/toy [--alpha 1.5 --beta 1 --lx 1e-4 --lq 0.5 ...]
    python experiments/toy_model.py --out runs/toy-frustrated --lx -1e-3 --kx 8.333e-8
    python experiments/toy_model.py --out runs/toy-sweep --sweep alpha=1.2,1.5,2,2.5,3

Writes toy.json (analytic crossovers and exponent, Langevin and SGD simulations compared with
eq. (6), the x sampler against p(x|q)) and toy.png; with --sweep, sweep.json and sweep.png.
The same as `socjax toy ...`.
"""

import sys

from socjax.cli import main

sys.exit(main(["toy", *sys.argv[1:]]))
