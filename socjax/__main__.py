import sys

from socjax.cli import main

sys.exit(main())
