"""One replica's side of the job leases: renew its own, adopt the lapsed, tick the queue.

:class:`LeaseKeeper` runs beside a :class:`~bot.jobs.runner.JobRunner` that
shares its database with other replicas (``bot.jobs.leases``). Every third
of the lease it renews the leases of the jobs this replica owns, hands the
runner the ids it no longer owns (another replica adopted them while this
one stalled), and adopts the jobs whose owner stopped renewing. Every
``tick_s`` in between it lets the runner try its queue again, since a slot
another replica frees sends no word here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from bot.jobs.leases import Adopted, JobLeases

log = logging.getLogger(__name__)

ADOPT_BATCH = 500
"""Jobs adopted per statement; a long list is taken in several."""


class LeaseKeeper:
    """Renews, adopts and ticks for one replica; :meth:`run` until cancelled."""

    def __init__(
        self,
        leases: JobLeases,
        replica_id: str,
        *,
        lease_s: float,
        tick_s: float,
        wall: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
        local_jobs: Callable[[], set[str]],
        lost: Callable[[set[str]], Awaitable[None]],
        adopted: Callable[[list[Adopted]], None],
        tick: Callable[[], None],
    ) -> None:
        self.leases = leases
        self.replica_id = replica_id
        self.lease_s = lease_s
        self.renew_s = lease_s / 3
        self.tick_s = min(tick_s, self.renew_s)
        self._wall = wall
        self._sleep = sleep
        self._monotonic = monotonic
        self._local_jobs = local_jobs
        self._lost = lost
        self._adopted = adopted
        self._tick = tick

    async def adopt_all(self, *, own: bool) -> list[Adopted]:
        """Adopt every takeable job (``own``: also this replica's, as after a restart)."""
        adopted: list[Adopted] = []
        while True:
            batch = await self.leases.adopt(
                self.replica_id,
                now=self._wall(),
                lease_s=self.lease_s,
                limit=ADOPT_BATCH,
                own=own,
            )
            adopted.extend(batch)
            if len(batch) < ADOPT_BATCH:
                break
        counts = Counter(job.previous_owner or "none" for job in adopted)
        for previous, count in counts.items():
            log.info("replica %s adopted %d jobs of replica %s", self.replica_id, count, previous)
        return adopted

    async def run(self) -> None:
        """Renew and adopt every third of the lease, tick the queue every ``tick_s``."""
        due = self._monotonic() + self.renew_s
        while True:
            await self._sleep(max(0.0, min(self.tick_s, due - self._monotonic())))
            try:
                if self._monotonic() >= due:
                    due = self._monotonic() + self.renew_s
                    await self.renew_and_adopt()
                self._tick()
            except Exception:  # a bug here must not stop the renewals: others would adopt
                log.exception("replica %s: the job lease round failed", self.replica_id)

    async def renew_and_adopt(self) -> None:
        """One round: renew this replica's leases, stop the jobs it lost, adopt the lapsed."""
        try:
            before = self._local_jobs()
            held = await self.leases.renew(self.replica_id, now=self._wall(), lease_s=self.lease_s)
            if before - held:
                await self._lost(before - held)
            adopted = await self.adopt_all(own=False)
        except Exception as error:  # the database is away: try again next round
            log.warning("replica %s could not renew its job leases: %s", self.replica_id, error)
            return
        if adopted:
            self._adopted(adopted)
