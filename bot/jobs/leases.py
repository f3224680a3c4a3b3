"""Jobs across replicas: who owns a job, for how long, and the limits all replicas share.

Several replicas (``klingbot run`` processes) may share one PostgreSQL
database. Each names itself (``KLINGBOT_REPLICA_ID``) and owns the jobs it
drives through a lease on the job's row: ``owner`` and ``lease_expires_at``
(wall-clock seconds), renewed by the owner every third of
``KLINGBOT_JOB_LEASE_S`` while the job is unfinished. A replica that dies
stops renewing; once its leases lapse another replica *adopts* the jobs
(:meth:`JobLeases.adopt`, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
adopters never take the same job) and resumes them exactly as a restart
does (``bot.jobs.runner``): the provider's task is followed, never
submitted twice, and a made clip is sent under the delivery claim.

The per-provider and per-user running limits hold for all replicas
together: a job takes a *slot* on its row (:meth:`JobLeases.take_slot`)
with one statement that counts the slots held, serialized by the
database. Queue positions are counted in the database among the queued
jobs of every replica (:meth:`JobLeases.positions`).

This module is the port; ``storage.leases`` (SQLite),
``storage.postgres.leases`` (PostgreSQL) and ``tests.unit.fakes``
implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from bot.jobs.model import Job

Refusal = Literal["provider", "user", "older", "gone"]
"""Why :meth:`JobLeases.take_slot` gave no slot.

``provider``: the provider's limit is reached across all replicas;
``user``: the member's; ``older``: an older queued job of another live
replica may start first; ``gone``: the job is no longer queued or running
here (finished, cancelled, or owned by another replica): forget it."""


@dataclass(frozen=True, slots=True)
class Adopted:
    """A job a replica took over, and the replica that owned it before (None: nobody)."""

    job: Job
    previous_owner: str | None


class JobLeases(ABC):
    """Job ownership, leases, shared slots and global queue positions on one database.

    Times are wall-clock seconds (floats): every replica's clock must agree
    to well within the lease (NTP does).
    """

    @abstractmethod
    async def claim(self, job_id: str, owner: str, *, now: float, lease_s: float) -> bool:
        """Own an unfinished job: True when it was unowned, ``owner``'s, or its lease lapsed.

        A new job is claimed by the replica that admitted it; False means
        another replica took it first, and drives it.
        """

    @abstractmethod
    async def renew(self, owner: str, *, now: float, lease_s: float) -> set[str]:
        """Extend the lease of every unfinished job ``owner`` holds; the ids it still holds.

        A job of ``owner``'s that finished loses its lease (``owner`` stays on
        the row as the replica that finished it). A job missing from the
        answer was adopted by another replica (this one's lease lapsed):
        the caller stops driving it.
        """

    @abstractmethod
    async def adopt(
        self, owner: str, *, now: float, lease_s: float, limit: int, own: bool = False
    ) -> list[Adopted]:
        """Take unfinished jobs whose lease lapsed or that stayed unowned (``own``: or ours).

        A job is unowned from its creation until the replica that admits it
        claims it, an instant later: only one that stayed unowned for a lease
        and a second (``created_at`` is in whole seconds) is an orphan to adopt.

        ``own`` is for a replica starting under a stable id: the jobs of its
        previous run are its own at once, whatever their lease.

        Oldest first, at most ``limit``; each becomes ``owner``'s with a
        fresh lease. Jobs another transaction is adopting are skipped, never
        waited for. An adopted ``succeeded`` job (made, not yet delivered)
        needs no slot: its slot is freed, and a delivery claim its previous
        owner left is dropped (that owner's lease lapsed: it is not sending).
        """

    @abstractmethod
    async def release(self, owner: str, *, now: float) -> int:
        """Let every unfinished job of ``owner`` go at once (a replica stopping); how many.

        Their leases lapse now (``owner`` stays, so the adopter can name it):
        another replica adopts them at its next look instead of a lease later.
        """

    @abstractmethod
    async def take_slot(
        self, job_id: str, owner: str, *, per_provider: int, per_user: int, now: float
    ) -> Job | Refusal:
        """Give ``owner``'s job a running slot if the limits allow; the job as it is now.

        In one serialized statement: the job must be ``owner``'s and in
        ``held``, ``submitted`` or ``running``; a job holding a slot keeps it
        (a resumed job). Otherwise the slots held (jobs with a slot in
        ``held``, ``submitted``, ``running`` or ``succeeded``) are counted:
        fewer than ``per_provider`` on the job's provider and fewer than
        ``per_user`` for its member, and no older queued job of another
        replica whose lease is live and whose member is under ``per_user``
        (oldest first across replicas). Else the :data:`Refusal`.
        """

    @abstractmethod
    async def free_slot(self, job_id: str, owner: str) -> bool:
        """Give ``owner``'s job's slot back once it left the provider; False if it held none.

        Only a job no longer ``held``, ``submitted`` or ``running`` gives it
        back, and only its owner (a replica that lost the job leaves its
        adopter's slot alone).
        """

    @abstractmethod
    async def positions(self, owner: str) -> dict[str, int]:
        """Queue positions (1-based) of ``owner``'s queued jobs among every replica's.

        Queued: ``held`` without a slot; oldest first across the database.
        """

    @abstractmethod
    async def position(self, job_id: str) -> int | None:
        """The queue position of one job among every replica's queued jobs; None: not queued."""
