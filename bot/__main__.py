"""``python -m bot`` runs the ``klingbot`` command line."""

import sys

from bot.cli import main

sys.exit(main())
