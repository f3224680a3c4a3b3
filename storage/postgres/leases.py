"""Job leases on PostgreSQL (:class:`bot.jobs.leases.JobLeases`), for replicas sharing it.

The same columns and rules as :mod:`storage.leases` (SQLite); what differs
is how concurrent replicas are kept apart:

- Claiming, renewing and releasing are single compare-and-set ``UPDATE``
  statements on the job rows.
- Adoption picks its jobs with ``FOR UPDATE SKIP LOCKED``: two replicas
  adopting at once each take different jobs, neither waits for the other,
  and the ``WHERE`` is checked again on the locked row.
- Taking a slot counts the slots held while its transaction holds an
  advisory lock (:data:`SLOT_LOCK`): every slot taken in the database is
  serialized behind it, so two replicas never both see the last free one.
  (Slots are taken once per job start; the lock is held for one statement.)

Orderings SQLite takes from ``rowid`` use the ``seq`` column here.
"""

from __future__ import annotations

from bot.jobs.leases import Adopted, JobLeases, Refusal
from bot.jobs.model import UNFINISHED, Job
from storage.jobs import _job as job_from_row
from storage.postgres.database import PgDatabase

SLOT_LOCK = 0x6B6C_736C_6F74  # "klslot"
"""The advisory lock key held by the transaction that takes a slot."""

_UNFINISHED = list(UNFINISHED)
_HOLDING = "slot = 1 AND state = ANY($1::text[])"
"""A job holding a slot: one that counts against the limits (``$1`` = the unfinished states)."""


class PgJobLeases(JobLeases):
    """:class:`bot.jobs.leases.JobLeases` on a :class:`~storage.postgres.database.PgDatabase`."""

    def __init__(self, database: PgDatabase) -> None:
        self.db = database

    async def claim(self, job_id: str, owner: str, *, now: float, lease_s: float) -> bool:
        """Compare-and-set the owner of an unfinished job."""
        status = await self.db.execute(
            "UPDATE jobs SET owner = $2, lease_expires_at = $3::float8"
            " WHERE job_id = $1 AND state = ANY($5::text[])"
            " AND (owner IS NULL OR owner = $2 OR coalesce(lease_expires_at, 0) < $4::float8)",
            job_id,
            owner,
            now + lease_s,
            now,
            _UNFINISHED,
        )
        return status == "UPDATE 1"

    async def renew(self, owner: str, *, now: float, lease_s: float) -> set[str]:
        """One update for the unfinished jobs, one to drop the leases of finished ones."""
        async with self.db.transaction() as connection:
            await connection.execute(
                "UPDATE jobs SET lease_expires_at = NULL WHERE owner = $1"
                " AND lease_expires_at IS NOT NULL AND NOT state = ANY($2::text[])",
                owner,
                _UNFINISHED,
            )
            rows = await connection.fetch(
                "UPDATE jobs SET lease_expires_at = $2::float8 WHERE owner = $1"
                " AND lease_expires_at IS NOT NULL AND state = ANY($3::text[]) RETURNING job_id",
                owner,
                now + lease_s,
                _UNFINISHED,
            )
        return {row["job_id"] for row in rows}

    async def adopt(
        self, owner: str, *, now: float, lease_s: float, limit: int, own: bool = False
    ) -> list[Adopted]:
        """Lock the takeable rows (skipping those another replica has locked), move them."""
        rows = await self.db.fetch(
            """
            WITH takeable AS (
                SELECT job_id, owner AS previous FROM jobs
                WHERE state = ANY($6::text[])
                  AND ((owner IS NULL AND created_at < $3::float8 - $4::float8 - 1)
                       OR lease_expires_at < $3::float8 OR ($5::boolean AND owner = $1))
                ORDER BY created_at, seq LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET owner = $1, lease_expires_at = $3::float8 + $4::float8,
                slot = CASE WHEN state = 'succeeded' THEN 0 ELSE slot END,
                delivery_claimed_at = CASE WHEN delivery_claimed_by = takeable.previous
                    THEN NULL ELSE delivery_claimed_at END,
                delivery_claimed_by = CASE WHEN delivery_claimed_by = takeable.previous
                    THEN NULL ELSE delivery_claimed_by END
            FROM takeable WHERE jobs.job_id = takeable.job_id
            RETURNING jobs.*, takeable.previous
            """,
            owner,
            limit,
            now,
            lease_s,
            own,
            _UNFINISHED,
        )
        rows = sorted(rows, key=lambda row: (row["created_at"], row["seq"]))
        return [Adopted(job_from_row(row), row["previous"]) for row in rows]

    async def release(self, owner: str, *, now: float) -> int:
        """Set the leases of ``owner``'s unfinished jobs to 0: lapsed for any ``now``."""
        status = await self.db.execute(
            "UPDATE jobs SET lease_expires_at = 0 WHERE owner = $1"
            " AND lease_expires_at IS NOT NULL AND state = ANY($2::text[])",
            owner,
            _UNFINISHED,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def take_slot(
        self, job_id: str, owner: str, *, per_provider: int, per_user: int, now: float
    ) -> Job | Refusal:
        """Under the slot lock: count the slots and the older queued jobs, then take one."""
        async with self.db.transaction() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SLOT_LOCK)
            row = await connection.fetchrow(
                """
                SELECT j.slot, j.state, j.owner,
                    (SELECT count(*) FROM jobs AS p
                     WHERE p.slot = 1 AND p.state = ANY($3::text[])
                       AND p.provider = j.provider) AS provider_slots,
                    (SELECT count(*) FROM jobs AS u
                     WHERE u.slot = 1 AND u.state = ANY($3::text[])
                       AND u.platform = j.platform AND u.user_id = j.user_id) AS user_slots,
                    EXISTS (
                        SELECT 1 FROM jobs AS o
                        WHERE o.state = 'held' AND o.slot = 0 AND o.seq < j.seq
                          AND o.provider = j.provider AND o.owner IS NOT NULL AND o.owner <> $2
                          AND o.lease_expires_at >= $4::float8
                          AND (SELECT count(*) FROM jobs AS v
                               WHERE v.slot = 1 AND v.state = ANY($3::text[])
                                 AND v.platform = o.platform AND v.user_id = o.user_id) < $5
                    ) AS older
                FROM jobs AS j WHERE j.job_id = $1
                """,
                job_id,
                owner,
                _UNFINISHED,
                now,
                per_user,
            )
            if row is None or row["owner"] != owner:
                return "gone"
            if row["state"] not in ("held", "submitted", "running"):
                return "gone"
            if not row["slot"]:
                if row["provider_slots"] >= per_provider:
                    return "provider"
                if row["user_slots"] >= per_user:
                    return "user"
                if row["older"]:
                    return "older"
            taken = await connection.fetchrow(
                "UPDATE jobs SET slot = 1 WHERE job_id = $1 RETURNING *", job_id
            )
        assert taken is not None
        return job_from_row(taken)

    async def free_slot(self, job_id: str, owner: str) -> bool:
        """Clear the slot of a job that left the provider."""
        status = await self.db.execute(
            "UPDATE jobs SET slot = 0 WHERE job_id = $1 AND owner = $3 AND slot = 1"
            " AND NOT state = ANY($2::text[])",
            job_id,
            ["held", "submitted", "running"],
            owner,
        )
        return status == "UPDATE 1"

    async def positions(self, owner: str) -> dict[str, int]:
        """Rank every queued job by ``seq``, keep ``owner``'s."""
        rows = await self.db.fetch(
            "SELECT job_id, position FROM (SELECT job_id, owner,"
            " row_number() OVER (ORDER BY seq) AS position"
            " FROM jobs WHERE state = 'held' AND slot = 0) AS queued WHERE owner = $1",
            owner,
        )
        return {row["job_id"]: int(row["position"]) for row in rows}

    async def position(self, job_id: str) -> int | None:
        """Count the queued jobs up to this one, if it is queued."""
        position = await self.db.fetchval(
            "SELECT (SELECT count(*) FROM jobs AS q WHERE q.state = 'held' AND q.slot = 0"
            " AND q.seq <= j.seq) FROM jobs AS j"
            " WHERE j.job_id = $1 AND j.state = 'held' AND j.slot = 0",
            job_id,
        )
        return None if position is None else int(position)
