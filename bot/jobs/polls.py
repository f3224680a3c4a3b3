"""Started jobs between two polls: packed records in a heap, and the one loop that polls them.

The provider makes a clip for seconds (Standard) to many minutes (Master at
Kling); meanwhile the runner polls each job every few seconds. Thousands of
jobs may be in flight, so a job between two polls is no coroutine and no
object graph: a :class:`Watch` packed into a tuple of
plain values (which CPython's garbage collector stops tracking), its due
time in a heap. :class:`Polls` runs one loop that sleeps until the earliest
due time and hands each due job to the runner (``start``), which polls it
in a short task and gives it back with :meth:`Polls.put` (or not, once the
job is done with the provider).

A provider that hears of a change (a Kling callback, a local render that
ended) calls :meth:`Polls.poke` with the task id, and that job is polled at
once: straight away if it is waiting, right after its poll if one is under
way, after its first poll if that has not ended yet.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.jobs.model import Job, JobRecord, pack_job, unpack_job
from bot.jobs.nap import Nap

WatchRecord = tuple[JobRecord, float, float, int, float, int, int]
"""A :class:`Watch` between two polls, as plain values (see :meth:`Watch.pack`)."""


@dataclass(slots=True, eq=False)
class Watch:
    """A job the provider is making, during one poll.

    Between polls the runner keeps it packed (:meth:`pack`): a tuple of
    strings and numbers, which the garbage collector stops tracking, in a
    heap that one poll loop takes in order of ``due``. Ten thousand jobs in
    flight are then no coroutine and no object graph each, and a full
    collection stays short.
    """

    job: Job
    started: float
    """Monotonic time the watch began (in this process)."""
    elapsed_before: float
    """Seconds the job had already run before (a restart), by the wall clock."""
    expected: int
    """The tier's expected wait, for the progress bar."""
    deadline: float
    """Monotonic time after which the job fails as timed out."""
    polls: int = 0
    failures: int = 0
    """Polls in a row that failed with a retryable error."""
    due: float = 0.0
    """Monotonic time of the next poll."""

    def pack(self) -> WatchRecord:
        """The watch as plain values, until its next poll."""
        return (
            pack_job(self.job),
            self.started,
            self.elapsed_before,
            self.expected,
            self.deadline,
            self.polls,
            self.failures,
        )

    @classmethod
    def unpack(cls, record: WatchRecord, due: float) -> Watch:
        """The watch :meth:`pack` packed, due at ``due``."""
        job, started, elapsed_before, expected, deadline, polls, failures = record
        return cls(
            unpack_job(job), started, elapsed_before, expected, deadline, polls, failures, due
        )


STEPS_PER_TURN = 16
"""Polls the loop starts before it lets the rest of the bot run again."""

EARLY_LIMIT = 10_000
"""At most this many pokes kept for tasks whose job is not known yet."""


class Polls:
    """The jobs waiting for their next poll, and the loop that starts each poll when due."""

    def __init__(
        self,
        *,
        start: Callable[[Watch], None],
        busy: Callable[[str], bool],
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
    ) -> None:
        self._start = start
        """Starts the poll of a due job (the runner's step)."""
        self._busy = busy
        """True while a step of that job is under way (no second poll then)."""
        self._monotonic = monotonic
        self._records: dict[str, WatchRecord] = {}
        """Job id -> its watch, packed."""
        self._next: dict[str, float] = {}
        """Job id -> when its next poll is due; a heap entry with another time is stale."""
        self._heap: list[tuple[float, int, str]] = []
        """(when, tie-breaker, job id), earliest first."""
        self._order = itertools.count()
        self._poked: set[str] = set()
        """Jobs poked while a poll was under way: polled again as soon as it ends."""
        self._by_task: dict[str, str] = {}
        """Provider task id -> job id."""
        self._task_of: dict[str, str] = {}
        """Job id -> provider task id."""
        self._early: set[str] = set()
        """Task ids poked before their job's first poll ended."""
        self._nap = Nap(sleep=sleep, monotonic=monotonic)
        """The loop's sleep until the earliest due time, cut short by an earlier one."""
        self._loop: asyncio.Task[None] | None = None
        self._stopped = False

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._records

    def put(self, watch: Watch) -> None:
        """Poll this job at ``watch.due`` (or at once, if it was poked meanwhile)."""
        job_id = watch.job.job_id
        self._records[job_id] = watch.pack()
        task_id = watch.job.task_id
        if task_id and self._task_of.get(job_id) != task_id:  # new, or submitted again
            self._by_task.pop(self._task_of.get(job_id, ""), None)
            self._by_task[task_id] = job_id
            self._task_of[job_id] = task_id
            if task_id in self._early:
                self._early.discard(task_id)
                self._poked.add(job_id)
        due = watch.due
        if job_id in self._poked:
            self._poked.discard(job_id)
            due = self._monotonic()
        self._enqueue(job_id, due)

    def remove(self, job_id: str) -> None:
        """The job no longer needs polling (done with, cancelled)."""
        self._records.pop(job_id, None)
        self._next.pop(job_id, None)
        self._poked.discard(job_id)
        task_id = self._task_of.pop(job_id, None)
        if task_id is not None:
            self._by_task.pop(task_id, None)

    def poke(self, task_id: str) -> None:
        """The provider heard that this task changed: poll its job now."""
        job_id = self._by_task.get(task_id)
        if job_id is None:  # its first poll is under way (or the task is not ours)
            if len(self._early) < EARLY_LIMIT:
                self._early.add(task_id)
            return
        if job_id not in self._records:
            return
        if self._busy(job_id):
            self._poked.add(job_id)
            return
        self._enqueue(job_id, self._monotonic())

    def forget_early(self) -> None:
        """No job is started: pokes kept for tasks not known yet are moot."""
        self._early.clear()

    async def stop(self) -> None:
        """Stop the loop and forget every job (their state is in the store)."""
        self._stopped = True
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for table in (self._records, self._next, self._by_task, self._task_of):
            table.clear()
        self._heap.clear()
        self._poked.clear()
        self._early.clear()

    # --- the loop -------------------------------------------------------------------

    def _enqueue(self, job_id: str, due: float) -> None:
        self._next[job_id] = due
        heapq.heappush(self._heap, (due, next(self._order), job_id))
        if self._loop is None or self._loop.done():
            if not self._stopped:
                self._loop = asyncio.create_task(self._run(), name="job-poller")
        else:
            self._nap.wake_before(due)

    async def _run(self) -> None:
        """Start each job's poll when it is due; nap in between; end when no job is left."""
        while not self._stopped:
            now = self._monotonic()
            started = 0
            while self._heap and self._heap[0][0] <= now and started < STEPS_PER_TURN:
                due, _, job_id = heapq.heappop(self._heap)
                if self._next.get(job_id) != due or self._busy(job_id):
                    continue  # removed, moved to another time, or a step under way
                self._start(Watch.unpack(self._records[job_id], due))
                started += 1
            if not self._heap:
                return  # the next _enqueue starts the loop again
            if self._heap[0][0] <= now:
                # More are due (the loop was held up): let these polls and whatever
                # else waits (a member's /price) run before starting the next ones.
                await asyncio.sleep(0)
                continue
            await self._nap(self._heap[0][0] - now)

