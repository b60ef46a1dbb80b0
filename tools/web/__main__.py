"""``python -m tools.web``."""

import sys

from .references import main

sys.exit(main(sys.argv[1:]))
