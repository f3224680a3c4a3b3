"""Each job's status message: sent once, then edited at most once per interval."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.ports import Outbox
from bot.replies import Reply

log = logging.getLogger(__name__)


class StatusBoard:
    """Each job's status message: sent once, then edited at most once per interval."""

    def __init__(
        self,
        store: JobStore,
        outbox: Outbox,
        interval_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._last: dict[str, float] = {}

    def due(self, job_id: str, now: float) -> bool:
        """True when an unforced edit of the job's status would be shown now."""
        last = self._last.get(job_id)
        return last is None or now - last >= self.interval_s

    def forget(self, job_id: str) -> None:
        """The next edit of this job's status shows at once."""
        self._last.pop(job_id, None)

    async def show(self, job: Job, reply: Reply, *, force: bool = False) -> None:
        """Edit the job's status message, at most once per interval unless ``force``."""
        now = self._monotonic()
        if not force and not self.due(job.job_id, now):
            return
        self._last[job.job_id] = now
        try:
            if job.status_message:
                await self.outbox.edit(job.chat, job.status_message, reply, job.locale)
            else:
                message_id = await self.outbox.send(job.chat, reply, job.locale)
                await self.store.update(job.job_id, job.state, status_message=message_id)
        except Exception as error:
            log.warning("status of job %s not shown: %s", job.job_id, error)
