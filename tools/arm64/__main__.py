"""``python -m tools.arm64``."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
