"""``python -m app`` runs the ``klingbot`` command line."""

import sys

from app.cli import main

sys.exit(main())
