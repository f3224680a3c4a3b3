"""Time as a dependency, so tests move it by hand instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Tells the time in Unix seconds."""

    def now(self) -> int:
        """The current time in whole Unix seconds."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> int:
        """The current time in whole Unix seconds."""
        return int(time.time())
