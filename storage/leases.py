"""Job leases on SQLite (:class:`bot.jobs.leases.JobLeases`), on the ledger's one writer.

Every write runs inside ``BEGIN IMMEDIATE`` on the single writer thread, so a
read-then-update inside one write function is atomic: it is the
compare-and-set and the serialized slot count PostgreSQL does with
``FOR UPDATE SKIP LOCKED`` and an advisory lock. ``klingbot run`` on SQLite
is one runner per database (the file runner lease) and does not use leases;
they exist here so the runner's replica logic is tested on a real file and
a database copied to PostgreSQL carries its columns.
"""

from __future__ import annotations

import sqlite3

from bot.jobs.leases import Adopted, JobLeases, Refusal
from bot.jobs.model import UNFINISHED, Job
from storage.database import Database
from storage.jobs import _job

_IN_UNFINISHED = f"({', '.join(repr(state) for state in UNFINISHED)})"
_AT_PROVIDER = "('held', 'submitted', 'running')"
"""States in which a job may take a slot, and keeps it."""


def slots_held(
    connection: sqlite3.Connection,
    *,
    provider: str | None = None,
    user: tuple[str, str] | None = None,
) -> int:
    """Slots held now: on ``provider``, or by the member ``(platform, user_id)``."""
    sql = f"SELECT count(*) FROM jobs WHERE slot = 1 AND state IN {_IN_UNFINISHED}"
    params: tuple[str, ...] = ()
    if provider is not None:
        sql += " AND provider = ?"
        params = (provider,)
    if user is not None:
        sql += " AND platform = ? AND user_id = ?"
        params += user
    return int(connection.execute(sql, params).fetchone()[0])


class SqliteJobLeases(JobLeases):
    """:class:`bot.jobs.leases.JobLeases` on the shared :class:`storage.database.Database`."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def claim(self, job_id: str, owner: str, *, now: float, lease_s: float) -> bool:
        """Compare-and-set the owner of an unfinished job."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET owner = ?, lease_expires_at = ?"
                    f" WHERE job_id = ? AND state IN {_IN_UNFINISHED}"
                    " AND (owner IS NULL OR owner = ? OR coalesce(lease_expires_at, 0) < ?)",
                    (owner, now + lease_s, job_id, owner, now),
                ).rowcount
                == 1
            )
        )

    async def renew(self, owner: str, *, now: float, lease_s: float) -> set[str]:
        """One update for the unfinished jobs, one to drop the leases of finished ones."""

        def write(connection: sqlite3.Connection) -> set[str]:
            connection.execute(
                "UPDATE jobs SET lease_expires_at = NULL WHERE owner = ?"
                f" AND lease_expires_at IS NOT NULL AND state NOT IN {_IN_UNFINISHED}",
                (owner,),
            )
            rows = connection.execute(
                "UPDATE jobs SET lease_expires_at = ?"
                f" WHERE owner = ? AND lease_expires_at IS NOT NULL AND state IN {_IN_UNFINISHED}"
                " RETURNING job_id",
                (now + lease_s, owner),
            ).fetchall()
            return {row[0] for row in rows}

        return await self.db.write(write)

    async def adopt(
        self, owner: str, *, now: float, lease_s: float, limit: int, own: bool = False
    ) -> list[Adopted]:
        """Select the takeable jobs and move each to ``owner``, in one write."""

        def write(connection: sqlite3.Connection) -> list[Adopted]:
            rows = connection.execute(
                f"SELECT job_id, owner FROM jobs WHERE state IN {_IN_UNFINISHED}"
                " AND ((owner IS NULL AND created_at < ?) OR lease_expires_at < ?"
                " OR (? AND owner = ?)) ORDER BY created_at, rowid LIMIT ?",
                (now - lease_s - 1, now, own, owner, limit),
            ).fetchall()
            adopted = []
            for row in rows:
                taken = connection.execute(
                    """
                    UPDATE jobs SET owner = :owner, lease_expires_at = :until,
                        slot = CASE WHEN state = 'succeeded' THEN 0 ELSE slot END,
                        delivery_claimed_at = CASE WHEN delivery_claimed_by = :previous
                            THEN NULL ELSE delivery_claimed_at END,
                        delivery_claimed_by = CASE WHEN delivery_claimed_by = :previous
                            THEN NULL ELSE delivery_claimed_by END
                    WHERE job_id = :job_id RETURNING *
                    """,
                    {
                        "owner": owner,
                        "until": now + lease_s,
                        "previous": row["owner"],
                        "job_id": row["job_id"],
                    },
                ).fetchone()
                adopted.append(Adopted(_job(taken), row["owner"]))
            return adopted

        return await self.db.write(write)

    async def release(self, owner: str, *, now: float) -> int:
        """Set the leases of ``owner``'s unfinished jobs to 0: lapsed for any ``now``."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET lease_expires_at = 0 WHERE owner = ?"
                    f" AND lease_expires_at IS NOT NULL AND state IN {_IN_UNFINISHED}",
                    (owner,),
                ).rowcount
            )
        )

    async def take_slot(
        self, job_id: str, owner: str, *, per_provider: int, per_user: int, now: float
    ) -> Job | Refusal:
        """Count the slots and the older queued jobs under the write lock, then take one."""

        def write(connection: sqlite3.Connection) -> Job | Refusal:
            row = connection.execute(
                "SELECT rowid AS seq, * FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None or row["owner"] != owner:
                return "gone"
            if row["state"] not in ("held", "submitted", "running"):
                return "gone"
            if row["slot"]:
                return _job(row)
            if slots_held(connection, provider=row["provider"]) >= per_provider:
                return "provider"
            if slots_held(connection, user=(row["platform"], row["user_id"])) >= per_user:
                return "user"
            older = connection.execute(
                f"""
                SELECT 1 FROM jobs AS o
                WHERE o.state = 'held' AND o.slot = 0 AND o.rowid < ? AND o.provider = ?
                  AND o.owner IS NOT NULL AND o.owner != ? AND o.lease_expires_at >= ?
                  AND (SELECT count(*) FROM jobs AS u
                       WHERE u.slot = 1 AND u.state IN {_IN_UNFINISHED}
                         AND u.platform = o.platform AND u.user_id = o.user_id) < ?
                LIMIT 1
                """,
                (row["seq"], row["provider"], owner, now, per_user),
            ).fetchone()
            if older is not None:
                return "older"
            taken = connection.execute(
                "UPDATE jobs SET slot = 1 WHERE job_id = ? RETURNING *", (job_id,)
            ).fetchone()
            return _job(taken)

        return await self.db.write(write)

    async def free_slot(self, job_id: str, owner: str) -> bool:
        """Clear the slot of a job that left the provider."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET slot = 0 WHERE job_id = ? AND owner = ? AND slot = 1"
                    f" AND state NOT IN {_AT_PROVIDER}",
                    (job_id, owner),
                ).rowcount
                == 1
            )
        )

    async def positions(self, owner: str) -> dict[str, int]:
        """Rank every queued job by row order, keep ``owner``'s."""
        rows = await self.db.read(
            "SELECT job_id, position FROM (SELECT job_id, owner,"
            " row_number() OVER (ORDER BY rowid) AS position"
            " FROM jobs WHERE state = 'held' AND slot = 0) WHERE owner = ?",
            (owner,),
        )
        return {row["job_id"]: row["position"] for row in rows}

    async def position(self, job_id: str) -> int | None:
        """Count the queued jobs up to this one, if it is queued."""
        row = await self.db.read_one(
            "SELECT (SELECT count(*) FROM jobs AS q WHERE q.state = 'held' AND q.slot = 0"
            " AND q.rowid <= j.rowid) AS position FROM jobs AS j"
            " WHERE j.job_id = ? AND j.state = 'held' AND j.slot = 0",
            (job_id,),
        )
        return None if row is None else int(row["position"])
