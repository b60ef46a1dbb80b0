"""``python -m edgeret`` runs the ``edgeret`` command."""

import sys

from .cli.main import main

sys.exit(main())
