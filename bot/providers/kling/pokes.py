"""Kling's callback posts turned into polls, at most one per task per poll interval.

A post to the callback URL says a task changed; the runner then polls that
task at once instead of at the end of its interval. Anyone can post there,
as often as they like, so a post never triggers more than one poll of a task
per ``spacing`` seconds: a post within that time of the task's last poll (or
poke) leaves one poke pending for when the time is up, and every further
post before then changes nothing. Posts naming tasks this process does not
follow change nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Pokes:
    """Passes "poll this task now" on to the runner, spaced per task."""

    def __init__(
        self,
        spacing: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spacing = spacing
        """Seconds between two polls of a task that posts may cause."""
        self._monotonic = monotonic
        self._sleep = sleep
        self._last: dict[str, float] = {}
        """Task id -> when it was last polled or poked."""
        self._pending: dict[str, asyncio.Task[None]] = {}
        """Task id -> the poke waiting for the task's spacing to pass."""
        self.on_change: Callable[[str], None] | None = None
        """The runner's "poll this task now"."""

    def polled(self, task_id: str) -> None:
        """The task was just polled (on the timer or after a poke)."""
        self._last[task_id] = self._monotonic()

    def heard(self, task_id: str) -> None:
        """A post named this task, one this process follows: poll it now, or when allowed."""
        if task_id in self._pending:
            return
        wait = self._last.get(task_id, float("-inf")) + self.spacing - self._monotonic()
        if wait <= 0:
            self._poke(task_id)
            return
        pending = asyncio.create_task(self._later(task_id, wait), name=f"kling-poke-{task_id}")
        self._pending[task_id] = pending

    def forget(self, task_id: str) -> None:
        """The task is finished: no poke for it any more."""
        self._last.pop(task_id, None)
        pending = self._pending.pop(task_id, None)
        if pending is not None and pending is not asyncio.current_task():
            pending.cancel()

    async def close(self) -> None:
        """Cancel the pokes still waiting."""
        pending = list(self._pending.values())
        self._pending.clear()
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _later(self, task_id: str, wait: float) -> None:
        await self._sleep(wait)
        self._pending.pop(task_id, None)
        self._poke(task_id)

    def _poke(self, task_id: str) -> None:
        self._last[task_id] = self._monotonic()
        if self.on_change is not None:
            self.on_change(task_id)
