import sys

from socjax.cli import entry

sys.exit(entry())
