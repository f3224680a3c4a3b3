"""One job's life after it starts: the provider conversation, status edits, failure.

:class:`JobLifecycle` drives a job through ``held -> submitted -> running ->
succeeded -> delivered`` (or to ``failed``), each step a compare-and-set in
the store with its ledger entry; ``bot.jobs.board.StatusBoard`` keeps each job's
status message edited at most once per interval, and ``bot.jobs.delivery``
sends the finished clip. The runner (``bot.jobs.runner``) decides when a job
starts and owns cancellation; between two polls a job waits in
``bot.jobs.polls``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from bot.catalog import Catalog
from bot.clock import Clock
from bot.inputs import FileInputStore, InputGone, InputStore
from bot.jobs import status
from bot.jobs.board import StatusBoard
from bot.jobs.delivery import Delivery
from bot.jobs.limits import RunnerSettings
from bot.jobs.links import ClipLinks
from bot.jobs.model import TERMINAL, Job
from bot.jobs.polls import Watch
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
from bot.replies import text

log = logging.getLogger(__name__)


class _Stop(Exception):
    """The job moved on elsewhere (cancelled, finished by another runner): stop driving it."""


class JobLifecycle:
    """Takes started jobs one step at a time (:meth:`begin`, :meth:`step`); no per-job state."""

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
        settings: RunnerSettings,
        board: StatusBoard,
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
        running_count: Callable[[], int],
        on_settled: Callable[[str], None],
        claimant: str,
        links: ClipLinks | None = None,
        claim_refresh_s: float | None = None,
        inputs: InputStore | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.waits = waits
        self.clips_dir = clips_dir
        self.inputs = inputs or FileInputStore(clips_dir.parent / "inputs")
        """Where the members' images are; each job's is made a local file before a submit."""
        self.settings = settings
        self.board = board
        self._sleep = sleep
        self._monotonic = monotonic
        self._running_count = running_count
        self._on_settled = on_settled
        self._alerts: set[str] = set()
        """Operator problems already logged; cleared when a submit works again."""
        self.delivery = Delivery(
            store=store,
            provider=provider,
            outbox=outbox,
            catalog=catalog,
            clock=clock,
            settings=settings,
            board=board,
            sleep=sleep,
            claimant=claimant,
            monotonic=monotonic,
            on_settled=on_settled,
            links=links,
            claim_refresh_s=claim_refresh_s,
            clip_here=self.clip_here,
        )
        """Sends finished clips, and retries those the platform did not take."""

    async def begin(self, job: Job) -> Watch | None:
        """Take a job that may start as far as it goes now: submit, first poll, or delivery.

        Returns the job's :class:`Watch` while the provider is still making
        the clip (the runner polls it again at ``watch.due``), None once the
        job has left the provider (delivered, failed, cancelled, or a
        clip waiting for its next send in ``bot.jobs.retries``).
        """
        return await self._guarded(job.job_id, self._begin(job))

    async def step(self, watch: Watch) -> Watch | None:
        """Poll a job the provider is making, once; see :meth:`begin` for the result."""
        return await self._guarded(watch.job.job_id, self._poll(watch))

    async def _begin(self, job: Job) -> Watch | None:
        if job.state == "held":
            job = await self._submit(job)
        if job.state in ("submitted", "running"):
            return await self._poll(self._watch(job))
        if job.state == "succeeded":
            await self.delivery.deliver(job)
        return None

    async def _guarded(self, job_id: str, work: Awaitable[Watch | None]) -> Watch | None:
        try:
            watch = await work
        except _Stop:
            watch = None
        except asyncio.CancelledError:
            # Stopped (shutdown) or cancelled by a member: whoever cancelled settles it.
            raise
        except Exception:
            log.exception("job %s failed inside the runner", job_id)
            watch = await self._after_error(job_id)
        if watch is None:
            current = await self.reload_quietly(job_id)
            if current is None or current.state in TERMINAL:
                self._on_settled(job_id)
        return watch

    async def _after_error(self, job_id: str) -> Watch | None:
        """A step raised: end the job here and now, retrying through storage errors.

        A job the provider was making (or had not started) is failed and its
        credits released, its task at the provider cancelled first; a job
        whose clip is made is delivered. A job that was sent but whose task
        was never stored is looked up at the provider first (:meth:`last_look`):
        a task found is followed (the watch is returned), not refunded. If
        any of this fails too (the store is down), it is tried again after a
        backoff (capped at about a minute) until it works or the runner
        stops, so no paid job waits for the next restart.
        """
        attempt = 0
        while True:
            try:
                current = await self.store.get_job(job_id)
                if current is None or current.state in TERMINAL:
                    return None
                if current.state == "succeeded":
                    await self.delivery.deliver(current)
                    return None
                if current.state == "held" and current.attempts > 0:
                    found = await self.last_look(current)
                    if found is not None:
                        moved = await self._record_submit(current, found)
                        if moved is not None:
                            return await self._poll(self._watch(moved))
                        continue
                if current.task_id and current.state in ("submitted", "running"):
                    await self.provider_cancel(current.task_id)
                await self.finish_failed(
                    current, current.state, "failure.internal", kind="internal"
                )
                return None
            except _Stop:  # it moved meanwhile: look again
                continue
            except Exception:
                attempt += 1
                log.exception("job %s: releasing it failed too (attempt %d)", job_id, attempt)
                await self._backoff(attempt)

    def _request(
        self, job: Job, attempt: int = 1, image: Path | str | None = "reference"
    ) -> GenerationRequest:
        """The provider's request for ``job``; ``image`` its local file (default: the reference).

        Only a look-up (:meth:`last_look`) goes with the reference: it reads no image.
        """
        if image == "reference":
            image = Path(job.image_path) if job.image_path else None
        assert not isinstance(image, str)
        return GenerationRequest(
            external_id=job.job_id,
            tier=job.tier,
            model=job.model,
            mode=job.mode,
            resolution=job.resolution,
            duration_s=job.duration_s,
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            image_path=image,
            expected_wait_s=job.expected_wait_s,
            attempt=attempt,
        )

    async def _submit(self, job: Job) -> Job:
        # Recorded before the call: after a crash, a held job with an attempt
        # may exist at the provider, so it is submitted again (idempotent by
        # job id) rather than refunded while the provider renders it anyway.
        attempts = job.attempts + 1
        if not await self.store.update(job.job_id, "held", attempts=attempts):
            raise _Stop  # cancelled before it was sent: nothing to submit
        try:
            request = self._request(job, attempts, await self._image(job))
        except InputGone as gone:
            return await self._input_gone(job, "held", gone)
        attempt = 0
        while True:
            attempt += 1
            try:
                task_id = await self.provider.submit(request)
                break
            except RetryableError as error:
                if attempt >= self.settings.submit_attempts:
                    found = await self.last_look(job, attempts)
                    if found is None:
                        return await self.finish_failed(
                            job, "held", "failure.busy", kind="retryable", detail=str(error)
                        )
                    task_id = found  # the provider made it after all: follow it, not refund
                    break
                await self._backoff(attempt)
            except ProviderError as error:
                return await self._provider_failed(job, "held", error)
        if self._alerts:
            log.warning("the provider accepts jobs again")
            self._alerts.clear()
        moved = await self._record_submit(job, task_id)
        if moved is None:  # cancelled while submitting
            await self.provider_cancel(task_id)
            raise _Stop
        return moved

    async def _record_submit(self, job: Job, task_id: str) -> Job | None:
        """Store the task the provider made: retried, since the provider renders (and bills) it.

        If the store keeps failing, a provider that can stop tasks is told
        to stop this one before the error goes on (and the job is released);
        one that cannot is asked for it again when the job is released
        (:meth:`_after_error`).
        """
        attempt = 0
        while True:
            attempt += 1
            now = self.clock.now()
            try:
                return await self.store.transition(
                    job.job_id, ("held",), "submitted", now=now, task_id=task_id, submitted_at=now
                )
            except Exception as error:
                if attempt >= self.settings.submit_attempts:
                    if self.provider.stops_tasks:
                        await self.provider_cancel(task_id)
                    raise
                log.warning(
                    "task %s of job %s not stored (attempt %d): %s",
                    task_id,
                    job.job_id,
                    attempt,
                    error,
                )
                await self._backoff(attempt)

    async def last_look(self, job: Job, attempt: int | None = None) -> str | None:
        """Before a job that was sent is refunded: the provider's task for it, if it has one.

        A submit that got no answer may have made the task (the provider
        bills it): if so the job follows it instead of being refunded.
        None when the provider has none or cannot say. The request names the
        image by its reference (a look-up reads no image), so this works
        whatever happened to the image's local copy.
        """
        request = self._request(job, attempt if attempt is not None else max(job.attempts, 1))
        try:
            found = await self.provider.find(request)
        except ProviderError as error:
            log.warning("could not ask the provider for the task of job %s: %s", job.job_id, error)
            return None
        if found is not None:
            log.warning(
                "job %s: the provider has task %s after all; following it", job.job_id, found
            )
        return found

    def _watch(self, job: Job) -> Watch:
        """Start watching a submitted job: its deadline counts from when it started."""
        started = self._monotonic()
        elapsed_before = max(0, self.clock.now() - (job.started_at or job.submitted_at or 0))
        expected = self.waits.seconds(job.tier, job.duration_s)
        limit = self.settings.tier_timeouts_s.get(job.tier)
        if limit is not None:  # the provider's own total timeout for the tier
            deadline = started + self._scaled(limit) - elapsed_before
        else:
            deadline = (
                started
                + expected * self.settings.timeout_factor
                + self.settings.timeout_grace_s
                - elapsed_before
            )
        return Watch(job, started, elapsed_before, expected, deadline)

    async def _poll(self, watch: Watch) -> Watch | None:
        """Poll until the clip is due again later (the watch), or the job is done with."""
        job = watch.job
        assert job.task_id is not None
        while True:
            try:
                task = await self.provider.poll(job.task_id)
                watch.failures = 0
            except RetryableError:
                watch.failures += 1
                if watch.failures >= self.settings.poll_failures:
                    await self.provider_cancel(job.task_id)
                    await self.finish_failed(job, job.state, "failure.busy", kind="retryable")
                    return None
                await self._backoff(watch.failures)
                continue
            except ProviderError as error:
                await self._provider_failed(job, job.state, error)
                return None
            elapsed = watch.elapsed_before + self._monotonic() - watch.started
            job = watch.job = await self._track(job, task, elapsed, watch.expected)
            if task.state == "succeeded":
                job = await self._collect(job)
                if job.state == "succeeded":
                    await self.delivery.deliver(job)
                return None
            if task.state == "failed":
                await self._provider_failed(job, job.state, task.error or ProviderError("failed"))
                return None
            if task.state == "lost" and self._monotonic() <= watch.deadline:
                job = watch.job = await self._resubmit(job)
                if job.state not in ("submitted", "running"):
                    return None
                assert job.task_id is not None
                continue
            if self._monotonic() > watch.deadline:
                await self.provider_cancel(job.task_id)
                await self.finish_failed(job, job.state, "failure.timeout", kind="timeout")
                return None
            watch.polls += 1
            watch.due = self._monotonic() + self._poll_interval(watch.polls)
            return watch

    def _poll_interval(self, polls: int = 0) -> float:
        """The scaled poll interval, stretched to keep all polls under ``max_polls_per_s``.

        Below a thousand running jobs nothing changes; with 10,000 each job is
        polled every 20 s instead of every 2 s, and the event loop stays free.
        With ``poll_backoff_cap_s`` above the interval (a remote provider), the
        interval grows by half after every poll, with jitter, up to that cap.
        """
        seconds = self.settings.poll_interval_s
        cap = self.settings.poll_backoff_cap_s
        if cap > seconds:
            seconds = min(cap, seconds * 1.5 ** min(polls, 32)) * random.uniform(0.8, 1.0)
        interval = self._scaled(seconds)
        return max(interval, self._running_count() / self.settings.max_polls_per_s)

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
            await self.board.show(
                job, status.generating(job, self.catalog, elapsed, expected, percent)
            )
        return job

    async def _resubmit(self, job: Job) -> Job:
        """The provider forgot the task (a local renderer restarted): start it again.

        A restart alone never fails a job: a lost task is submitted again (by
        the same job id, so a remote service that still has it answers with
        it) for as long as the job's total deadline allows; only that
        deadline ends a job whose tasks keep getting lost.
        """
        log.warning("provider lost job %s; submitting it again", job.job_id)
        if job.attempts > 1:  # lost more than once: give the provider a breath first
            await self._sleep(self._poll_interval())
        try:
            request = self._request(job, job.attempts + 1, await self._image(job))
        except InputGone as gone:
            return await self._input_gone(job, job.state, gone)
        try:
            task_id = await self.provider.submit(request)
        except RetryableError:
            await self._backoff(job.attempts)
            return job  # polled again: still lost, submitted again
        except ProviderError as error:
            return await self._provider_failed(job, job.state, error)
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
        return moved

    async def _collect(self, job: Job) -> Job:
        assert job.task_id is not None
        destination = self.clips_dir / f"{job.job_id}.mp4"
        try:
            try:
                path = await self.provider.fetch(job.task_id, destination)
            except RetryableError:
                path = await self._retry_fetch(job, destination)
        except ProviderError as error:
            # The clip could not be had (an expired link, not a video): nothing to pay for.
            log.warning("the clip of job %s could not be fetched: %s", job.job_id, error)
            return await self.finish_failed(
                job, job.state, "failure.provider", kind="fetch", detail=str(error)
            )
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
            self.waits.record(moved.tier, now - moved.started_at, moved.duration_s)
        elapsed = now - (moved.started_at or moved.submitted_at or now)
        await self.board.show(moved, status.done(moved, self.catalog, elapsed), force=True)
        return moved

    async def _image(self, job: Job) -> Path | None:
        """The job's image as a file on this machine (None without one); InputGone if lost.

        The copy (with a store that makes one) stays until the job leaves
        the provider (``JobRunner`` releases it): a local render reads it
        when its wait ends, not at the submit.
        """
        if job.image_path is None:
            return None
        return await self.inputs.materialize(job.image_path, job.job_id)

    async def _input_gone(self, job: Job, state: str, gone: InputGone) -> Job:
        """The job's image is kept nowhere (it cannot be, while the job runs): fail and refund."""
        log.error("the image of job %s is gone: %s", job.job_id, gone)
        return await self.finish_failed(
            job, state, "failure.internal", kind="input", detail=str(gone)
        )

    async def clip_here(self, job: Job) -> Job | None:
        """The job with its clip on this machine, fetched or made again when it is elsewhere.

        A clip is a file on the replica that collected it. When another
        replica (or this one with another data folder) made the clip and
        stopped before it was delivered, the job's new owner fetches it
        again from the provider (Kling keeps the result), or, with a
        provider that keeps nothing past a restart (the local renderer,
        ``Provider.remakes_clips``), renders it again from the job's inputs,
        without the wait the member already had. The row then names the new
        file (None: the job is no longer ``succeeded``, nothing to send).
        Raises RetryableError when a later try may work, ProviderError when
        the clip can no longer be had (the delivery gives up on it).
        """
        if job.result_path and await asyncio.to_thread(Path(job.result_path).is_file):
            return job
        assert job.task_id is not None
        destination = self.clips_dir / f"{job.job_id}.mp4"
        if not await asyncio.to_thread(destination.is_file):
            log.warning(
                "the clip of job %s is not on this machine (%s): fetching it again",
                job.job_id,
                job.result_path,
            )
            try:
                try:
                    await self.provider.fetch(job.task_id, destination)
                except RetryableError:
                    await self._retry_fetch(job, destination)
            except RetryableError:
                raise
            except ProviderError:
                if not self.provider.remakes_clips:
                    raise
                await self._make_again(job, destination)
        path = str(destination)
        if not await self.store.update(job.job_id, "succeeded", result_path=path):
            return None  # delivered meanwhile
        return replace(job, result_path=path)

    async def _make_again(self, job: Job, destination: Path) -> None:
        """Render a made job's clip again into ``destination`` (no wait, same job id)."""
        log.warning("making the clip of job %s again here", job.job_id)
        try:
            image = await self._image(job)
        except InputGone as gone:
            raise ProviderError(str(gone)) from None
        request = replace(self._request(job, job.attempts + 1, image), expected_wait_s=0)
        expected = self.waits.seconds(job.tier, job.duration_s)
        deadline = (
            self._monotonic()
            + expected * self.settings.timeout_factor
            + self.settings.timeout_grace_s
        )
        try:
            task_id = await self.provider.submit(request)
            while True:
                task = await self.provider.poll(task_id)
                if task.state == "succeeded":
                    await self.provider.fetch(task_id, destination)
                    return
                if task.state == "failed":
                    raise task.error or ProviderError("the clip could not be made again")
                if task.state == "lost":
                    task_id = await self.provider.submit(request)
                if self._monotonic() > deadline:
                    await self.provider_cancel(task_id)
                    raise RetryableError("the clip took too long to make again")
                await self._sleep(self._scaled(self.settings.poll_interval_s))
        finally:
            self.inputs.release(job.job_id)

    async def _retry_fetch(self, job: Job, destination: Path) -> Path:
        assert job.task_id is not None
        for attempt in range(1, self.settings.submit_attempts + 1):
            await self._backoff(attempt)
            try:
                return await self.provider.fetch(job.task_id, destination)
            except RetryableError:
                continue
        raise RetryableError("the clip could not be downloaded")

    async def _provider_failed(self, job: Job, state: str, error: ProviderError) -> Job:
        if isinstance(error, ContentRefused):
            return await self.finish_failed(
                job,
                state,
                "failure.content",
                kind="content",
                detail=error.reason,
                reason=text(error.reason_key) if error.reason_key else error.reason or "—",
            )
        if isinstance(error, OperatorError):
            if error.condition not in self._alerts:
                self._alerts.add(error.condition)
                log.error("provider needs the operator's attention (job %s): %s", job.job_id, error)
            else:  # already said: one error line per condition, not one per job
                log.info("job %s failed on the same provider problem: %s", job.job_id, error)
            return await self.finish_failed(
                job, state, "failure.unavailable", kind="operator", detail=str(error)
            )
        return await self.finish_failed(
            job, state, "failure.provider", kind=error.kind, detail=str(error)
        )

    async def finish_failed(
        self,
        job: Job,
        state: str,
        reason_key: str,
        *,
        kind: str,
        detail: str | None = None,
        **params: object,
    ) -> Job:
        """Move the job to ``failed`` (releasing its hold) and tell the member why."""
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
        await self.board.show(
            moved, status.failed(moved, self.catalog, reason_key, **params), force=True
        )
        self._on_settled(job.job_id)
        return moved

    async def provider_cancel(self, task_id: str) -> bool:
        """Ask the provider to stop a task; False if it refused or failed."""
        try:
            return await self.provider.cancel(task_id)
        except ProviderError as error:
            log.warning("provider did not cancel task %s: %s", task_id, error)
            return False

    async def reload(self, job: Job) -> Job:
        """The job as the store has it now (the given copy if it vanished)."""
        current = await self.store.get_job(job.job_id)
        return current if current is not None else job

    async def reload_quietly(self, job_id: str) -> Job | None:
        """The job as the store has it now, or None on any error."""
        try:
            return await self.store.get_job(job_id)
        except Exception:
            return None

    async def _backoff(self, attempt: int) -> None:
        await self._sleep(self.settings.backoff(attempt))

    def _scaled(self, seconds: float) -> float:
        return seconds * self.settings.time_scale
