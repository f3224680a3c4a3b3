"""Sending a finished clip to its member, retrying until it arrives, and recording how it went.

The clip goes to the chat the job came from. One too large for the chat goes
as a link the member can open: the provider's download link when it has one,
else (with ``KLINGBOT_PUBLIC_URL``) a signed, expiring link to the bot's own
HTTP server (``bot.jobs.links``); with neither, the chat gets a notice and
the job records ``too_large``. No message to a member ever names a path on
the bot's server.

A send that fails for a reason the platform may get over (a 502, the
network) leaves the job ``succeeded``, "made, not yet delivered": its
status message says the clip is ready and will come as soon as the platform
accepts it, with a Send again button, and the running process tries again on
a schedule (``RunnerSettings.delivery_retry_in``: at least every two minutes
during the first hour) kept on the job's row and in ``bot.jobs.retries``.
Only when sends have failed for the whole retry window
(``KLINGBOT_DELIVERY_RETRY_H``), and no link could be sent either, is the
job ``undeliverable``: still paid for, its clip kept, refundable by a
moderator. A platform that refuses the member for good (blocked bot, no
right to post, chat gone) makes the job undeliverable at once, as retrying
cannot help.

Before anything is sent, the runner claims the job in the store (a
compare-and-set), so two processes on one database can never both send a
clip; within one process, one send of a clip runs at a time.

The clip sent is always a file on this machine: a job whose clip another
replica made (it stopped before the delivery) has it fetched or made again
first (``JobLifecycle.clip_here``); a clip that can no longer be had makes
the job undeliverable, never a send of a path that is not here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.catalog import Catalog
from bot.clock import Clock
from bot.jobs import status
from bot.jobs.board import StatusBoard
from bot.jobs.limits import RunnerSettings
from bot.jobs.links import ClipLinks
from bot.jobs.model import Job
from bot.jobs.retries import DeliveryRetries
from bot.jobs.store import JobStore
from bot.ports import Outbox, Sent, Undeliverable
from bot.providers.base import Provider, ProviderError, RetryableError
from bot.replies import Reply

log = logging.getLogger(__name__)


def delivery_of(how: str, sent: Sent) -> str:
    """What a job records as its delivery: how the clip went, and by which route.

    ``uploaded`` in the member's chat, or the route that took it instead
    (``followup``, ``dm``); a clip too large for the chat stays
    ``too_large`` whatever the route, since the member still lacks the file.
    """
    if how == "too_large" or sent.route == "chat":
        return how
    return sent.route


class Delivery:
    """Delivers ``succeeded`` jobs (:meth:`deliver`) and retries those that failed."""

    def __init__(
        self,
        *,
        store: JobStore,
        provider: Provider,
        outbox: Outbox,
        catalog: Catalog,
        clock: Clock,
        settings: RunnerSettings,
        board: StatusBoard,
        sleep: Callable[[float], Awaitable[None]],
        claimant: str,
        monotonic: Callable[[], float],
        on_settled: Callable[[str], None],
        links: ClipLinks | None = None,
        claim_refresh_s: float | None = None,
        clip_here: Callable[[Job], Awaitable[Job | None]] | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.settings = settings
        self.board = board
        self.links = links
        self._clip_here = clip_here
        """The job with its clip on this machine (fetched or made again); None: as it is."""
        self._sleep = sleep
        self._monotonic = monotonic
        self._on_settled = on_settled
        self.claimant = claimant
        """This runner's name on the delivery claims it takes."""
        self.claim_refresh_s = claim_refresh_s
        """Renew the claim this often while a send is under way (None: never; replicas do,
        as their claims go stale after one job lease)."""
        self._sending: set[str] = set()
        self._recording: dict[str, asyncio.Future[None]] = {}
        """Jobs whose clip went out and whose delivery is being recorded (see :meth:`_record`)."""
        """Jobs whose clip is being sent by this process: never two sends of one clip."""
        self.retries = DeliveryRetries(self._retry, sleep=sleep, monotonic=monotonic)
        """The clips waiting for their next try, and the loop that tries them."""

    def sending(self, job_id: str) -> bool:
        """A send of this job's clip is under way."""
        return job_id in self._sending

    async def deliver(self, job: Job) -> None:
        """Send the clip (or a link to it) once; record how it went, or when to try again.

        Does nothing while another send of the same clip is under way, or
        once the job is no longer ``succeeded`` (delivered meanwhile).
        """
        if job.job_id in self._sending:
            return
        self._sending.add(job.job_id)
        retry_in = None
        claimed: bool | None = None  # None while the claim is on its way: then it may be ours
        keeping = None
        try:
            now = self.clock.now()
            stale = now - self.settings.delivery_claim_s
            claimed = await self.store.claim_delivery(
                job.job_id, self.claimant, now=now, stale_before=stale
            )
            if not claimed:
                log.info(
                    "job %s is not sent here: delivered, or claimed by another runner", job.job_id
                )
                return
            if self.claim_refresh_s is not None:
                keeping = asyncio.create_task(self._keep_claim(job.job_id, self.claim_refresh_s))
            current = await self.store.get_job(job.job_id)
            if current is not None and current.state == "succeeded":
                retry_in = await self._deliver(current)
        finally:
            # Also when stopped mid-send, or while the claim was being written: the next
            # runner need not wait for the claim to go stale. (Giving back a claim that
            # is not ours changes nothing: it is a compare-and-set on the claimant.)
            if keeping is not None:
                keeping.cancel()
            if job.job_id in self._recording:
                pass  # the clip went out: the claim stays until the job is recorded delivered
            elif claimed is not False:
                try:
                    await self.store.release_delivery(job.job_id, self.claimant)
                except Exception as error:
                    log.warning("the delivery claim of job %s stays: %s", job.job_id, error)
            self._sending.discard(job.job_id)
        if retry_in is not None:  # once this send is over, so the next try is not skipped
            self.retries.put(job.job_id, self._monotonic() + retry_in)

    async def _keep_claim(self, job_id: str, every_s: float) -> None:
        """Claim the job again every ``every_s`` while its clip is being sent (a long upload)."""
        while True:
            await self._sleep(every_s)
            now = self.clock.now()
            stale = now - self.settings.delivery_claim_s
            try:
                await self.store.claim_delivery(job_id, self.claimant, now=now, stale_before=stale)
            except Exception as error:
                log.warning("the delivery claim of job %s was not renewed: %s", job_id, error)

    def resume(self, job_id: str) -> None:
        """After a restart: try a made, undelivered clip at once.

        Its row keeps how many sends failed since when, so the schedule and
        the retry window go on from there.
        """
        self.retries.now(job_id)

    async def _deliver(self, job: Job) -> float | None:
        """One send; the seconds until the next try when it failed and may be retried."""
        try:
            here = job if self._clip_here is None else await self._clip_here(job)
        except RetryableError as error:
            return await self._failed(job, error)
        except ProviderError as error:
            log.warning(
                "job %s: its clip is not on this machine and cannot be had again (%s);"
                " it is undeliverable",
                job.job_id,
                error,
            )
            await self._delivered(job, "undeliverable")
            await self.board.show(job, status.clip_lost(job), force=True)
            return None
        if here is None:  # delivered meanwhile
            return None
        job = here
        try:
            how = await self._send(job)
        except Undeliverable as error:
            log.warning(
                "job %s cannot be delivered (%s); its clip is kept", job.job_id, error.reason
            )
            how = "undeliverable"
        except Exception as error:
            return await self._failed(job, error)
        await self._record(job, how)
        return None

    async def _record(self, job: Job, how: str) -> None:
        """Record a clip that went out; a stop while it is being written does not undo it.

        The member has the clip: were the record lost, the next owner of the
        job (a restart, or another replica) would send it again. So the write
        goes on by itself when this step is cancelled, and :meth:`recorded`
        lets the runner's stop wait for it.
        """
        writing = asyncio.ensure_future(self._delivered(job, how))
        self._recording[job.job_id] = writing
        writing.add_done_callback(lambda _: self._recording.pop(job.job_id, None))
        await asyncio.shield(writing)

    async def recorded(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the records of clips that went out to be written."""
        if self._recording:
            await asyncio.wait(list(self._recording.values()), timeout=timeout_s)

    async def _send(self, job: Job) -> str:
        """Send the clip, or a link, or the notice that it is too large; say which went."""
        assert job.result_path is not None
        path = Path(job.result_path)
        size = (await asyncio.to_thread(path.stat)).st_size
        if self.outbox.fits(job.chat, size):
            sent = await self.outbox.deliver(
                job.chat, status.video(job, self.catalog, path), job.locale
            )
            return delivery_of("uploaded", sent)
        if await self._send_link(job):
            return "link"
        # No link to give: the chat gets a notice instead of the clip.
        await self.outbox.deliver(job.chat, status.video(job, self.catalog, path), job.locale)
        return "too_large"

    async def _send_link(self, job: Job) -> bool:
        """Send a link the member can open (the provider's, else our signed one); False: none.

        A failed send raises, like an upload.
        """
        reply = await self._link(job)
        if reply is None:
            return False
        await self.outbox.deliver(job.chat, reply, job.locale)
        return True

    async def _link(self, job: Job) -> Reply | None:
        if job.task_id is not None:
            try:
                url = await self.provider.result_link(job.task_id)
            except ProviderError as error:
                log.warning("no result link for job %s: %s", job.job_id, error)
                url = None
            if url is not None:
                return status.remote_link(job, url)
        if self.links is not None:
            url = self.links.url(job.job_id, self.clock.now())
            return status.signed_link(job, url, max(1, self.links.ttl_s // 3600))
        return None

    async def _failed(self, job: Job, error: Exception) -> float | None:
        """Record the failure and say when to try next, or give up once the window is over."""
        now = self.clock.now()
        since = job.delivery_failing_since or now
        failures = job.delivery_attempts + 1
        if now - since >= self.settings.delivery_retry_s:
            await self._give_up(job, error)
            return None
        wait = self.settings.delivery_retry_in(failures, now - since)
        if not await self.store.update(
            job.job_id,
            "succeeded",
            delivery_attempts=failures,
            delivery_failing_since=since,
            delivery_retry_at=now + math.ceil(wait),
        ):
            return None  # delivered meanwhile
        log.warning(
            "sending the clip of job %s failed (%d so far): %s; trying again in %.0f s",
            job.job_id,
            failures,
            error,
            wait,
        )
        if failures == 1:
            await self.board.show(job, status.not_yet_delivered(job, self.catalog), force=True)
        return wait

    async def _give_up(self, job: Job, error: Exception) -> None:
        """Every send failed for the whole window: a link as the last way, else undeliverable."""
        try:
            if await self._send_link(job):
                await self._record(job, "link")
                return
        except Exception as last:  # Undeliverable too: nothing reaches the member
            error = last
        log.warning(
            "job %s could not be delivered for %.0f h (last: %s); it is undeliverable,"
            " its clip kept",
            job.job_id,
            self.settings.delivery_retry_s / 3600,
            error,
        )
        await self._delivered(job, "undeliverable")
        await self.board.show(job, status.undelivered(job), force=True)

    async def _retry(self, job_id: str) -> None:
        """The retry loop's turn for this job; any surprise reschedules it rather than drop it."""
        try:
            job = await self.store.get_job(job_id)
            if job is not None and job.state == "succeeded":
                await self.deliver(job)
        except Exception:
            log.exception("retrying the delivery of job %s failed; trying again later", job_id)
            self.retries.put(
                job_id,
                self._monotonic() + self.settings.delivery_retry_cap_s * self.settings.time_scale,
            )

    async def _delivered(self, job: Job, how: str) -> None:
        """Record the delivery; the clip is out, so a store error is retried, never re-sent."""
        attempt = 0
        while True:
            now = self.clock.now()
            try:
                moved = await self.store.transition(
                    job.job_id,
                    ("succeeded",),
                    "delivered",
                    now=now,
                    delivered_at=now,
                    delivery=how,
                    delivery_retry_at=None,
                )
                break
            except Exception as error:
                attempt += 1
                log.warning(
                    "delivery of job %s not recorded (attempt %d): %s", job.job_id, attempt, error
                )
                await self._sleep(self.settings.backoff(attempt))
        if moved is not None and job.delivery_attempts and how != "undeliverable":
            # The status message still offers Send again: it is done now.
            await self.board.show(
                moved, status.done(moved, self.catalog, _made_in(moved)), force=True
            )
        self._on_settled(job.job_id)


def _made_in(job: Job) -> int:
    began = job.started_at or job.submitted_at or job.finished_at or 0
    return max(0, (job.finished_at or began) - began)
