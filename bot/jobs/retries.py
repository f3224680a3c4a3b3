"""Clips made but not yet delivered: when each is tried again, and the one loop that tries them.

A send that failed for a reason the platform may get over (a 502, the
network) leaves the job ``succeeded`` with its next try written on the row
(``bot.jobs.delivery``); this keeps the same schedule in memory, a due time
per job in a heap, and one loop that sleeps until the earliest and starts
that try as a short task. :meth:`DeliveryRetries.now` (the Send again
button) makes a job due at once. The row is the truth: a restart reads the
schedule back (``JobRunner.start``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

from bot.jobs.nap import Nap

log = logging.getLogger(__name__)


class DeliveryRetries:
    """Job ids with the monotonic time their clip is tried again; ``attempt`` tries one."""

    def __init__(
        self,
        attempt: Callable[[str], Awaitable[None]],
        *,
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
    ) -> None:
        self._attempt = attempt
        self._monotonic = monotonic
        self._due: dict[str, float] = {}
        """Job id -> when it is tried next; a heap entry with another time is stale."""
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._tries: set[asyncio.Task[None]] = set()
        self._nap = Nap(sleep=sleep, monotonic=monotonic)
        """The loop's sleep until the earliest due time, cut short by an earlier one."""
        self._loop: asyncio.Task[None] | None = None
        self._stopped = False
        self._drained = asyncio.Event()
        self._drained.set()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._due

    def __len__(self) -> int:
        return len(self._due)

    def put(self, job_id: str, due: float) -> None:
        """Try the job's clip again at monotonic time ``due`` (an earlier time already set wins)."""
        if self._stopped:
            return
        known = self._due.get(job_id)
        if known is not None and known <= due:
            return
        self._due[job_id] = due
        heapq.heappush(self._heap, (due, next(self._order), job_id))
        self._drained.clear()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name="delivery-retries")
        else:
            self._nap.wake_before(due)

    def now(self, job_id: str) -> None:
        """Try the job's clip at once (Send again)."""
        self.put(job_id, self._monotonic())

    async def drained(self) -> None:
        """Wait until no clip waits for a try and no try is under way."""
        await self._drained.wait()

    async def stop(self) -> None:
        """Stop trying; the schedule stays on the rows for the next start."""
        self._stopped = True
        tasks = [*self._tries, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._due.clear()
        self._heap.clear()
        self._tries.clear()
        self._drained.set()

    async def _run(self) -> None:
        while not self._stopped:
            now = self._monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, job_id = heapq.heappop(self._heap)
                if self._due.get(job_id) != due:
                    continue
                del self._due[job_id]
                task = asyncio.create_task(self._try(job_id), name=f"delivery-{job_id}")
                self._tries.add(task)
                task.add_done_callback(self._tried)
            if not self._heap:
                return
            await self._nap(self._heap[0][0] - now)

    async def _try(self, job_id: str) -> None:
        try:
            await self._attempt(job_id)
        except Exception:
            log.exception("retrying the delivery of job %s failed", job_id)

    def _tried(self, task: asyncio.Task[None]) -> None:
        self._tries.discard(task)
        if not self._tries and not self._due:
            self._drained.set()

