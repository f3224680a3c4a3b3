"""Sending a finished clip to its member, and recording how it went.

The clip goes to the chat the job came from; if it is over the chat's upload
limit, the provider's download link goes instead (when it has one). Transient
errors are retried; a platform that refuses the member for good makes the
job ``undeliverable``, still paid for, its clip kept. Before anything is
sent, the runner claims the job in the store (a compare-and-set), so two
processes on one database can never both send a clip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.catalog import Catalog
from bot.clock import Clock
from bot.jobs import status
from bot.jobs.limits import RunnerSettings
from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.ports import Outbox, Sent, Undeliverable
from bot.providers.base import Provider, ProviderError

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
    """Delivers ``succeeded`` jobs (:meth:`deliver`); holds no per-job state."""

    def __init__(
        self,
        *,
        store: JobStore,
        provider: Provider,
        outbox: Outbox,
        catalog: Catalog,
        clock: Clock,
        settings: RunnerSettings,
        sleep: Callable[[float], Awaitable[None]],
        claimant: str,
    ) -> None:
        self.store = store
        self.provider = provider
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.settings = settings
        self._sleep = sleep
        self.claimant = claimant
        """This runner's name on the delivery claims it takes."""

    async def deliver(self, job: Job) -> None:
        """Claim the job, send its clip (:meth:`_send`), then give the claim up.

        Without the claim nothing is sent: another runner is sending this
        clip now, or the job was delivered already.
        """
        now = self.clock.now()
        stale = now - self.settings.delivery_claim_s
        if not await self.store.claim_delivery(
            job.job_id, self.claimant, now=now, stale_before=stale
        ):
            log.info("job %s is not sent here: delivered, or claimed by another runner", job.job_id)
            return
        try:
            await self._send(job)
        finally:  # also when stopped mid-send: the next runner need not wait for the claim
            try:
                await self.store.release_delivery(job.job_id, self.claimant)
            except Exception as error:
                log.warning("the delivery claim of job %s stays: %s", job.job_id, error)

    async def _send(self, job: Job) -> None:
        """Send the clip; record how it went (see :func:`delivery_of`).

        Transient errors are retried, then the clip's path is sent instead;
        if even that fails the job stays ``succeeded`` and the next start
        tries again. When the platform says the member cannot be reached at
        all (:class:`~bot.ports.Undeliverable`), retrying is pointless: the
        job is recorded ``delivered`` with delivery ``undeliverable``, still
        paid for (the clip exists and is kept), and ``/jobs`` tells the member
        to ask a moderator for the file.
        """
        assert job.result_path is not None
        path = Path(job.result_path)
        reply = status.video(job, self.catalog, path)
        size = (await asyncio.to_thread(path.stat)).st_size
        how = "uploaded" if self.outbox.fits(job.chat, size) else "too_large"
        if how == "too_large" and await self._send_result_link(job):
            return
        for attempt in range(1, self.settings.delivery_attempts + 1):
            try:
                sent = await self.outbox.deliver(job.chat, reply, job.locale)
            except Undeliverable as error:
                await self._undeliverable(job, error)
                return
            except Exception as error:
                log.warning(
                    "delivery of job %s failed (attempt %d): %s", job.job_id, attempt, error
                )
                if attempt < self.settings.delivery_attempts:
                    await self._sleep(self.settings.backoff(attempt))
                continue
            await self._mark_delivered(job, delivery_of(how, sent))
            return
        try:
            sent = await self.outbox.deliver(job.chat, status.link(job, path), job.locale)
        except Undeliverable as error:
            await self._undeliverable(job, error)
            return
        except Exception:
            log.exception(
                "could not even send the link of job %s; will retry on restart", job.job_id
            )
            return
        await self._mark_delivered(job, "link")

    async def _send_result_link(self, job: Job) -> bool:
        """Too large for the chat: send the provider's download link, if it has a valid one."""
        if job.task_id is None:
            return False
        try:
            url = await self.provider.result_link(job.task_id)
        except ProviderError as error:
            log.warning("no result link for job %s: %s", job.job_id, error)
            return False
        if url is None:
            return False
        try:
            await self.outbox.deliver(job.chat, status.remote_link(job, url), job.locale)
        except Undeliverable as error:
            await self._undeliverable(job, error)
            return True
        except Exception as error:
            log.warning("the result link of job %s was not sent: %s", job.job_id, error)
            return False
        await self._mark_delivered(job, "link")
        return True

    async def _undeliverable(self, job: Job, error: Undeliverable) -> None:
        log.warning(
            "job %s cannot be delivered (%s); its clip is kept at %s",
            job.job_id,
            error.reason,
            job.result_path,
        )
        await self._mark_delivered(job, "undeliverable")

    async def _mark_delivered(self, job: Job, how: str) -> None:
        """Record the delivery; the clip is out, so a store error is retried, never re-sent."""
        attempt = 0
        while True:
            now = self.clock.now()
            try:
                await self.store.transition(
                    job.job_id, ("succeeded",), "delivered", now=now, delivered_at=now, delivery=how
                )
                return
            except Exception as error:
                attempt += 1
                log.warning(
                    "delivery of job %s not recorded (attempt %d): %s", job.job_id, attempt, error
                )
                await self._sleep(self.settings.backoff(attempt))
