"""The job runner: queues, limits, the provider conversation, status edits, delivery, recovery.

One asyncio task drives each started job through ``held -> submitted ->
running -> succeeded -> delivered``. Every state change is a compare-and-set
in the store (with its ledger entry), so a cancel racing a completion, a
second runner or a restart each find the state already moved and stand
down. Nothing here sleeps for real in tests: waits are multiplied by
``time_scale`` and tests await :meth:`JobRunner.settled`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.catalog import Catalog
from bot.clock import Clock
from bot.jobs import status
from bot.jobs.model import TERMINAL, Job
from bot.jobs.store import JobStore
from bot.jobs.waits import ExpectedWaits
from bot.ports import Outbox
from bot.providers.base import (
    ContentRefused,
    GenerationRequest,
    OperatorError,
    Provider,
    ProviderError,
    RetryableError,
    TaskStatus,
)
from bot.replies import Reply

log = logging.getLogger(__name__)

CancelResult = Literal["cancelled", "too_late", "finished", "unknown"]


@dataclass(frozen=True)
class RunnerSettings:
    """Limits and pacing; every duration is multiplied by ``time_scale``."""

    per_user: int = 2
    queue_per_user: int = 5
    per_provider: int = 4
    status_interval_s: float = 3.0
    poll_interval_s: float = 2.0
    max_polls_per_s: float = 500.0
    time_scale: float = 1.0
    submit_attempts: int = 5
    poll_failures: int = 10
    delivery_attempts: int = 3
    backoff_s: float = 2.0
    timeout_factor: float = 5.0
    timeout_grace_s: float = 120.0
    """Added to ``expected × timeout_factor`` unscaled: rendering itself takes real time."""

    @property
    def max_active(self) -> int:
        """Running plus queued jobs one user may have."""
        return self.per_user + self.queue_per_user


class _Stop(Exception):
    """The job moved on elsewhere (cancelled, finished by another runner): stop driving it."""


class JobRunner:
    """Drives jobs; ``admit`` new ones, ``start`` to resume old ones after a restart."""

    def __init__(
        self,
        *,
        store: JobStore,
        provider: Provider,
        outbox: Outbox,
        catalog: Catalog,
        clock: Clock,
        waits: ExpectedWaits,
        clips_dir: Path,
        settings: RunnerSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.provider = provider
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.waits = waits
        self.clips_dir = clips_dir
        self.settings = settings or RunnerSettings()
        self._sleep = sleep
        self._monotonic = monotonic
        self._waiting: list[Job] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running_users: Counter[str] = Counter()
        self._last_status: dict[str, float] = {}
        self._settled: dict[str, asyncio.Event] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._positions: dict[str, int] = {}  # job id -> queue position last shown
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()

    # --- public -----------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished job found in the store (after a restart)."""
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for job in await self.store.unfinished_jobs():
            if job.state == "held" and job.attempts == 0:
                # Never sent to the provider: give the credits back rather than guess.
                await self._finish_failed(job, "held", "failure.interrupted", kind="restart")
            else:
                log.info("resuming job %s in state %s", job.job_id, job.state)
                self._launch(job)

    async def admit(self, job: Job) -> None:
        """A member pressed a tier and the hold is made: show its status, then queue it.

        The status message is sent and stored before the job can start, so a
        job never ends up with two status messages.
        """
        self._idle.clear()
        position = len(self._waiting) + 1
        try:
            message_id = await self.outbox.send(
                job.chat, status.queued(job, self.catalog, position), job.locale
            )
        except Exception:
            log.exception("could not send the status message of job %s", job.job_id)
        else:
            if await self.store.update(job.job_id, "held", status_message=message_id):
                job = await self._reload(job)
        if job.state != "held":  # cancelled while its status message was on its way
            self._schedule()
            return
        self._waiting.append(job)
        self._positions[job.job_id] = position
        self._schedule()

    async def cancel(self, job: Job) -> CancelResult:
        """Cancel a queued or running job, releasing its credits, if the provider allows."""
        now = self.clock.now()
        if job.state == "held":
            moved = await self.store.transition(
                job.job_id, ("held",), "cancelled", now=now, finished_at=now
            )
            if moved is not None:
                # A job already launched is inside provider.submit: its own
                # compare-and-set fails next and it cancels the task at the
                # provider, so it is left to finish that step.
                self._waiting = [w for w in self._waiting if w.job_id != job.job_id]
                self._positions.pop(job.job_id, None)
                await self._show(moved, status.cancelled(moved, self.catalog), force=True)
                self._settle(job.job_id)
                self._schedule()
                return "cancelled"
            job = await self._reload(job)
        if job.state in ("submitted", "running") and job.task_id:
            if not await self._provider_cancel(job.task_id):
                return "too_late"
            moved = await self.store.transition(
                job.job_id, ("submitted", "running"), "cancelled", now=now, finished_at=now
            )
            if moved is None:
                return "finished"
            await self._stop_task(job.job_id)
            await self._show(moved, status.cancelled(moved, self.catalog), force=True)
            self._settle(job.job_id)
            return "cancelled"
        return "finished" if job.state in (*TERMINAL, "succeeded") else "unknown"

    async def settled(self, job_id: str) -> None:
        """Wait until the job is delivered, failed or cancelled (for tests and shutdown)."""
        event = self._settled.setdefault(job_id, asyncio.Event())
        job = await self.store.get_job(job_id)
        if job is None or job.state in TERMINAL:
            if self._settled.get(job_id) is event and not event.is_set():
                del self._settled[job_id]
            return
        await event.wait()

    async def idle(self) -> None:
        """Wait until no job is queued or running."""
        await self._idle.wait()

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue, or None if the job is not waiting."""
        for index, job in enumerate(self._waiting, start=1):
            if job.job_id == job_id:
                return index
        return None

    def active_count(self) -> int:
        """Jobs queued or running in this process."""
        return len(self._waiting) + len(self._tasks)

    async def stop(self) -> None:
        """Stop driving jobs; their state stays in the store for the next start."""
        self._stopping = True
        self._waiting.clear()  # nothing new may start while the running ones stop
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._waiting.clear()

    # --- scheduling -------------------------------------------------------------

    def _schedule(self) -> None:
        if self._stopping:
            return
        limit = self.settings
        for job in list(self._waiting):
            if len(self._tasks) >= limit.per_provider:
                break
            if self._running_users[str(job.user)] >= limit.per_user:
                continue
            self._waiting.remove(job)
            self._positions.pop(job.job_id, None)
            self._launch(job)
        self._show_positions()
        if not self._waiting and not self._tasks:
            self._idle.set()
        else:
            self._idle.clear()

    def _show_positions(self) -> None:
        """Tell waiting members their new place in the queue when it moved.

        Throttled like any status edit, and checked here before a task is made,
        so a long queue moving by one costs a dictionary look-up per job.
        """
        now = self._monotonic()
        interval = self.settings.status_interval_s
        for position, job in enumerate(self._waiting, start=1):
            shown = self._positions.get(job.job_id)
            if shown is None or shown == position or not job.status_message:
                continue
            last = self._last_status.get(job.job_id)
            if last is not None and now - last < interval:
                continue
            self._positions[job.job_id] = position
            reply = status.queued(job, self.catalog, position)
            task = asyncio.create_task(self._show(job, reply))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _launch(self, job: Job) -> None:
        self._idle.clear()
        self._last_status.pop(job.job_id, None)  # "generating" must show at once
        self._running_users[str(job.user)] += 1
        task = asyncio.create_task(self._drive(job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        # Ids, not the Job: a finished Job copy must not stay alive with the task.
        task.add_done_callback(functools.partial(self._done, job.job_id, str(job.user)))

    def _done(self, job_id: str, user: str, _task: object) -> None:
        self._tasks.pop(job_id, None)
        self._running_users[user] -= 1
        if self._running_users[user] <= 0:
            del self._running_users[user]
        self._last_status.pop(job_id, None)
        self._schedule()

    async def _stop_task(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _settle(self, job_id: str) -> None:
        event = self._settled.pop(job_id, None)
        if event is not None:
            event.set()

    # --- one job ------------------------------------------------------------------

    async def _drive(self, job: Job) -> None:
        job_id = job.job_id
        try:
            if job.state == "held":
                job = await self._submit(job)
            if job.state in ("submitted", "running"):
                job = await self._await_clip(job)
            if job.state == "succeeded":
                await self._deliver(job)
        except _Stop:
            pass
        except asyncio.CancelledError:
            # Stopped (shutdown) or cancelled by a member: whoever cancelled settles it.
            raise
        except Exception:
            log.exception("job %s failed inside the runner", job_id)
            current = await self.store.get_job(job_id)
            if current is not None and current.state in ("held", "submitted", "running"):
                await self._finish_failed(
                    current, current.state, "failure.internal", kind="internal"
                )
        current = await self._reload_quietly(job_id)
        if current is None or current.state in TERMINAL:
            self._settle(job_id)

    def _request(self, job: Job) -> GenerationRequest:
        return GenerationRequest(
            external_id=job.job_id,
            tier=job.tier,
            model=job.model,
            mode=job.mode,
            resolution=job.resolution,
            duration_s=job.duration_s,
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            image_path=Path(job.image_path) if job.image_path else None,
            expected_wait_s=job.expected_wait_s,
        )

    async def _submit(self, job: Job) -> Job:
        # Recorded before the call: after a crash, a held job with an attempt
        # may exist at the provider, so it is submitted again (idempotent by
        # job id) rather than refunded while the provider renders it anyway.
        attempts = job.attempts + 1
        await self.store.update(job.job_id, "held", attempts=attempts)
        attempt = 0
        while True:
            attempt += 1
            try:
                task_id = await self.provider.submit(self._request(job))
                break
            except RetryableError as error:
                if attempt >= self.settings.submit_attempts:
                    return await self._finish_failed(
                        job, "held", "failure.busy", kind="retryable", detail=str(error)
                    )
                await self._backoff(attempt)
            except ProviderError as error:
                return await self._provider_failed(job, "held", error)
        now = self.clock.now()
        moved = await self.store.transition(
            job.job_id,
            ("held",),
            "submitted",
            now=now,
            task_id=task_id,
            submitted_at=now,
        )
        if moved is None:  # cancelled while submitting
            await self._provider_cancel(task_id)
            raise _Stop
        return moved

    async def _await_clip(self, job: Job) -> Job:
        assert job.task_id is not None
        started = self._monotonic()
        elapsed_before = max(0, self.clock.now() - (job.started_at or job.submitted_at or 0))
        expected = self.waits.seconds(job.tier)
        deadline = (
            started
            + expected * self.settings.timeout_factor
            + self.settings.timeout_grace_s
            - elapsed_before
        )
        failures = 0
        while True:
            try:
                task = await self.provider.poll(job.task_id)
                failures = 0
            except RetryableError:
                failures += 1
                if failures >= self.settings.poll_failures:
                    await self._provider_cancel(job.task_id)
                    return await self._finish_failed(
                        job, job.state, "failure.busy", kind="retryable"
                    )
                await self._backoff(failures)
                continue
            except ProviderError as error:
                return await self._provider_failed(job, job.state, error)
            elapsed = elapsed_before + self._monotonic() - started
            job = await self._track(job, task, elapsed, expected)
            if task.state == "succeeded":
                return await self._collect(job)
            if task.state == "failed":
                error = task.error or ProviderError("failed")
                return await self._provider_failed(job, job.state, error)
            if task.state == "lost":
                return await self._resubmit(job)
            if self._monotonic() > deadline:
                await self._provider_cancel(job.task_id)
                return await self._finish_failed(job, job.state, "failure.timeout", kind="timeout")
            await self._sleep(self._poll_interval())

    def _poll_interval(self) -> float:
        """The scaled poll interval, stretched to keep all polls under ``max_polls_per_s``.

        Below a thousand running jobs nothing changes; with 10,000 each job is
        polled every 20 s instead of every 2 s, and the event loop stays free.
        """
        interval = self._scaled(self.settings.poll_interval_s)
        return max(interval, len(self._tasks) / self.settings.max_polls_per_s)

    async def _track(self, job: Job, task: TaskStatus, elapsed: float, expected: int) -> Job:
        if task.state == "running" and job.state == "submitted":
            now = self.clock.now()
            moved = await self.store.transition(
                job.job_id, ("submitted",), "running", now=now, started_at=now
            )
            if moved is None:
                raise _Stop
            job = moved
        if task.state in ("queued", "running"):
            if task.progress is not None:
                percent = task.progress
            else:
                percent = min(95, int(100 * elapsed / expected)) if expected > 0 else 50
            await self._show(job, status.generating(job, self.catalog, elapsed, expected, percent))
        return job

    async def _resubmit(self, job: Job) -> Job:
        """The provider forgot the task (a local renderer restarted): start it again once."""
        if job.attempts >= 2:
            return await self._finish_failed(job, job.state, "failure.lost", kind="lost")
        log.warning("provider lost job %s; submitting it again", job.job_id)
        task_id = await self.provider.submit(self._request(job))
        moved = await self.store.transition(
            job.job_id,
            (job.state,),
            job.state,
            now=self.clock.now(),
            task_id=task_id,
            attempts=job.attempts + 1,
        )
        if moved is None:
            raise _Stop
        return await self._await_clip(moved)

    async def _collect(self, job: Job) -> Job:
        assert job.task_id is not None
        destination = self.clips_dir / f"{job.job_id}.mp4"
        try:
            path = await self.provider.fetch(job.task_id, destination)
        except RetryableError:
            path = await self._retry_fetch(job, destination)
        now = self.clock.now()
        if job.state == "submitted":
            job = (
                await self.store.transition(
                    job.job_id, ("submitted",), "running", now=now, started_at=job.submitted_at
                )
                or job
            )
        moved = await self.store.transition(
            job.job_id,
            ("running",),
            "succeeded",
            now=now,
            result_path=str(path),
            finished_at=now,
            progress=100,
        )
        if moved is None:
            raise _Stop
        if moved.started_at is not None:
            self.waits.record(moved.tier, now - moved.started_at)
        elapsed = now - (moved.started_at or moved.submitted_at or now)
        await self._show(moved, status.done(moved, self.catalog, elapsed), force=True)
        return moved

    async def _retry_fetch(self, job: Job, destination: Path) -> Path:
        assert job.task_id is not None
        for attempt in range(1, self.settings.submit_attempts + 1):
            await self._backoff(attempt)
            try:
                return await self.provider.fetch(job.task_id, destination)
            except RetryableError:
                continue
        raise RetryableError("the clip could not be downloaded")

    async def _deliver(self, job: Job) -> None:
        assert job.result_path is not None
        path = Path(job.result_path)
        reply = status.video(job, self.catalog, path)
        size = (await asyncio.to_thread(path.stat)).st_size
        how = "uploaded" if self.outbox.fits(job.chat, size) else "too_large"
        for attempt in range(1, self.settings.delivery_attempts + 1):
            try:
                await self.outbox.send(job.chat, reply, job.locale)
            except Exception as error:
                log.warning(
                    "delivery of job %s failed (attempt %d): %s", job.job_id, attempt, error
                )
                if attempt < self.settings.delivery_attempts:
                    await self._backoff(attempt)
                continue
            await self._mark_delivered(job, how)
            return
        try:
            await self.outbox.send(job.chat, status.link(job, path), job.locale)
        except Exception:
            log.exception(
                "could not even send the link of job %s; will retry on restart", job.job_id
            )
            return
        await self._mark_delivered(job, "link")

    async def _mark_delivered(self, job: Job, how: str) -> None:
        now = self.clock.now()
        await self.store.transition(
            job.job_id, ("succeeded",), "delivered", now=now, delivered_at=now, delivery=how
        )

    # --- failure ------------------------------------------------------------------

    async def _provider_failed(self, job: Job, state: str, error: ProviderError) -> Job:
        if isinstance(error, ContentRefused):
            return await self._finish_failed(
                job,
                state,
                "failure.content",
                kind="content",
                detail=error.reason,
                reason=error.reason or "—",
            )
        if isinstance(error, OperatorError):
            log.error("provider needs the operator's attention (job %s): %s", job.job_id, error)
            return await self._finish_failed(
                job, state, "failure.unavailable", kind="operator", detail=str(error)
            )
        return await self._finish_failed(
            job, state, "failure.provider", kind=error.kind, detail=str(error)
        )

    async def _finish_failed(
        self,
        job: Job,
        state: str,
        reason_key: str,
        *,
        kind: str,
        detail: str | None = None,
        **params: object,
    ) -> Job:
        now = self.clock.now()
        moved = await self.store.transition(
            job.job_id,
            (state,),
            "failed",
            now=now,
            error_kind=kind,  # type: ignore[arg-type]
            error_detail=(detail or "")[:500],
            finished_at=now,
        )
        if moved is None:
            raise _Stop
        await self._show(
            moved, status.failed(moved, self.catalog, reason_key, **params), force=True
        )
        self._settle(job.job_id)
        return moved

    # --- helpers --------------------------------------------------------------------

    async def _show(self, job: Job, reply: Reply, *, force: bool = False) -> None:
        """Edit the job's status message, at most once per interval unless ``force``."""
        now = self._monotonic()
        last = self._last_status.get(job.job_id)
        if not force and last is not None and now - last < self.settings.status_interval_s:
            return
        self._last_status[job.job_id] = now
        try:
            if job.status_message:
                await self.outbox.edit(job.chat, job.status_message, reply, job.locale)
            else:
                message_id = await self.outbox.send(job.chat, reply, job.locale)
                await self.store.update(job.job_id, job.state, status_message=message_id)
        except Exception as error:
            log.warning("status of job %s not shown: %s", job.job_id, error)

    async def _provider_cancel(self, task_id: str) -> bool:
        try:
            return await self.provider.cancel(task_id)
        except ProviderError as error:
            log.warning("provider did not cancel task %s: %s", task_id, error)
            return False

    async def _reload(self, job: Job) -> Job:
        current = await self.store.get_job(job.job_id)
        return current if current is not None else job

    async def _reload_quietly(self, job_id: str) -> Job | None:
        try:
            return await self.store.get_job(job_id)
        except Exception:
            return None

    async def _backoff(self, attempt: int) -> None:
        await self._sleep(self._scaled(self.settings.backoff_s * 2 ** min(attempt - 1, 5)))

    def _scaled(self, seconds: float) -> float:
        return seconds * self.settings.time_scale
