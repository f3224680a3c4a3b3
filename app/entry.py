"""The ``klingbot`` script: ``klingbot health`` quickly, everything else through :mod:`app.cli`.

The health check runs every 30 seconds in a container; importing the whole
command line (the adapters, the renderer and its FFmpeg) would cost it about
a second of CPU each time, so it takes a short path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``health`` to :mod:`app.health`, the rest to :func:`app.cli.main`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["health"]:
        from app.health import main as health

        return health()
    from app.cli import main as cli

    return cli(args)
