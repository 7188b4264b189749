"""The whole reproduction with the paper's settings: full MNIST, 3000 epochs to equilibrium, then
200 recorded epochs (1.92e8 SGD steps per seed), analysis, figures and report.md.

    python experiments/reproduce_paper.py --out runs/paper [--data-dir MNIST_IDX_DIR] [--seeds 4]

The same as `socjax reproduce --preset paper ...`; extra arguments are passed through. At about
5,000 steps/s on a 2-core CPU this is 11 hours per seed; on a GPU, run several seeds at once.
"""

import sys

from socjax.cli import main

sys.exit(main(["reproduce", "--preset", "paper", *sys.argv[1:]]))
