"""Time in tests: it moves only when something sleeps on it or the test says so.

One virtual clock for every package: the job runner and the Telegram flood
control take its ``sleep`` and ``monotonic``, the core takes it as its wall
``Clock``. Nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.unit.fakes import FakeClock

__all__ = ["FakeClock", "GatedTime", "SkippingTime", "VirtualTime"]


class VirtualTime:
    """Monotonic and wall-clock time that move only when a sleeper sleeps or ``advance`` is called.

    ``monotonic()`` starts at ``monotonic_start``; ``now()`` (the core's
    ``Clock`` port, whole Unix seconds) starts at ``start``; both move
    together. Every sleep is recorded in ``sleeps`` and yields once to the
    event loop, as a real sleep would.
    """

    def __init__(self, start: int = 1_764_000_000, monotonic_start: float = 0.0) -> None:
        self.start = start
        self.monotonic_start = monotonic_start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.monotonic_start + self.elapsed

    def now(self) -> int:
        return self.start + int(self.elapsed)

    def wall(self) -> float:
        """Wall-clock seconds (``time.time`` of the shared pacing), as precise as it moves."""
        return self.start + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        await asyncio.sleep(0)  # let the other tasks run

    def timing(self) -> Any:
        """The Telegram adapter's ``Timing`` on this clock."""
        from adapters.telegram import Timing

        return Timing(monotonic=self.monotonic, sleep=self.sleep, wall=self.wall)


class GatedTime(VirtualTime):
    """Virtual time whose sleepers stay asleep until the test opens ``gate``."""

    def __init__(self, start: int = 1_764_000_000, monotonic_start: float = 0.0) -> None:
        super().__init__(start, monotonic_start)
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.gate.wait()
        self.elapsed += seconds


class SkippingTime(VirtualTime):
    """Real monotonic time, plus every sleep skipped: sleepers move the clock instead of waiting.

    For a pacer that must agree with a server counting windows on the same
    clock, in a test where other requests keep the real pace (a global limit
    per real second still resets while nobody sleeps).
    """

    def monotonic(self) -> float:
        return time.monotonic() + self.elapsed

    def wall(self) -> float:
        return time.time() + self.elapsed


class ScaledTime(VirtualTime):
    """Real time running ``scale`` times faster: for several sleepers waiting at once.

    :class:`VirtualTime` moves by each sleep in turn, so sleepers waiting
    side by side (two replicas pacing one chat) all wake at the sum of their
    waits. Here every sleep really waits, ``scale`` times shorter, and each
    sleeper wakes in the order of its deadline; a request's real latency
    counts ``scale`` times too, so keep the scale modest.
    """

    def __init__(
        self, scale: float, start: int = 1_764_000_000, monotonic_start: float = 0.0
    ) -> None:
        self.scale = scale
        self._origin = time.monotonic()
        super().__init__(start, monotonic_start)

    @property
    def elapsed(self) -> float:  # type: ignore[override]
        return (time.monotonic() - self._origin) * self.scale

    @elapsed.setter
    def elapsed(self, value: float) -> None:
        self._origin = time.monotonic() - value / self.scale

    def advance(self, seconds: float) -> None:
        self._origin -= seconds / self.scale

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(max(seconds, 0) / self.scale)
