"""The whole reproduction with the paper's settings: full MNIST, 3000 epochs to equilibrium, then
200 recorded epochs (1.92e8 SGD steps per seed), analysis, figures and report.md.

    python experiments/reproduce_paper.py --out runs/paper [--data-dir MNIST_IDX_DIR] [--seeds 4]

The same as `socjax reproduce --preset paper ...`; extra arguments are passed through. With the
native CPU step (a full MNIST epoch in 2.86 s on a 2-core Xeon, README) this is about 2.5 hours
per seed, and two seeds on two cores about 3.1 hours; with the XLA step about 19 hours per seed.
"""

import sys

from socjax.cli import main

sys.exit(main(["reproduce", "--preset", "paper", *sys.argv[1:]]))
