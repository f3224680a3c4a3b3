"""Quotes and jobs on PostgreSQL: every transition commits with its ledger entry.

The same tables and rules as :mod:`storage.jobs` (SQLite), and the same row
conversions; what differs is how concurrent replicas are kept apart:

- A member's quote rate and open quotes are counted under a per-member
  advisory transaction lock (:data:`MEMBER_LOCK`), so two replicas taking
  requests from one member at once count each other's.
- ``create_job`` uses the quote (a compare-and-set under its row lock), then
  locks the member's wallet row before counting their active jobs: any other
  press of that member waits there, and counts this job once it commits.
- A transition is a compare-and-set ``UPDATE ... WHERE state = ANY(...)``;
  one that ends the hold does it in the same transaction (job row, then hold,
  then wallet: the order every writer here takes its locks in).
- A delivery claim is a compare-and-set on the claim columns.

Orderings SQLite takes from ``rowid`` use the ``seq`` column here, and text
is ordered byte by byte (``COLLATE "C"``), as SQLite does.
"""

from __future__ import annotations

import string
from typing import Any

import asyncpg

from bot import reasons
from bot.commands import UserRef
from bot.errors import InsufficientCredits
from bot.jobs.model import ACTIVE, UNFINISHED, Compare, CompareState, Job, JobState, Quote
from bot.jobs.store import QUOTE_RATE_WINDOW_S, JobStore, QueueFull, QuoteTaken, SlowDown
from bot.ports import Outcome
from storage.jobs import (
    _JOB_FIELDS,
    _QUOTE_COPY,
    check_settable,
    compare_from_rows,
    held_job_values,
    hold_reason,
    quote_values,
)
from storage.jobs import _grouped as grouped_compares
from storage.jobs import _job as job_from_row
from storage.jobs import _quote as quote_from_row
from storage.postgres.database import PgDatabase
from storage.postgres.ledger import change_balance, end_hold, hold_credits

MEMBER_LOCK = 0x6B71  # "kq"
"""The first key of the two-key advisory lock that serializes one member's quote requests."""

_INSERTED_COLUMNS = tuple(name for name in _JOB_FIELDS if name not in ("user", "chat"))

JOB_COLUMNS = ", ".join((*_INSERTED_COLUMNS, "platform", "user_id", "chat_id"))
"""The columns a Job is read from, named: never ``*``, so a column a newer klingbot's
migration adds (a rolling upgrade, replicas on two versions) changes no statement's
result and cannot fail a cached statement inside a transaction."""
QUOTE_COLUMNS = ", ".join(
    (*(name for name in Quote.__dataclass_fields__ if name not in ("user", "chat")),
     "platform", "user_id", "chat_id")
)  # fmt: skip
"""The columns a Quote is read from (see :data:`JOB_COLUMNS`)."""


async def _lock_member(connection: asyncpg.Connection, user: UserRef) -> None:
    await connection.execute(
        f"SELECT pg_advisory_xact_lock({MEMBER_LOCK}, hashtext($1))", str(user)
    )


def _assignments(fields: dict[str, Any], first: int) -> tuple[str, list[Any]]:
    """``name = $n, ...`` for ``fields``, numbering from ``first``; refuses unknown names."""
    check_settable(fields)
    columns = ", ".join(f"{name} = ${first + n}" for n, name in enumerate(fields))
    return columns, [int(v) if isinstance(v, bool) else v for v in fields.values()]


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


COMPARE_COLUMNS = ", ".join(
    "compares." + name
    for name in (
        "compare_id", "quote_id", "platform", "user_id", "chat_id", "locale", "state",
        "claimed_by", "claimed_at", "created_at", "finished_at",
    )
)  # fmt: skip


async def _use_quote(
    connection: asyncpg.Connection, quote_id: str, user: UserRef, max_active: int, count: int
) -> None:
    """Mark the job's quote used, lock the member's wallet, check ``count`` more jobs may run.

    The member's other presses wait at the wallet's lock; the count then sees their jobs.
    """
    used = await connection.fetchval(
        """
        WITH used AS (
            UPDATE quotes SET state = 'used' WHERE quote_id = $1 AND state = 'open'
            RETURNING quote_id
        )
        SELECT count(*) FROM used
        """,
        quote_id,
    )
    if not used:
        raise QuoteTaken(quote_id)
    await connection.execute(
        "SELECT FROM wallets WHERE platform = $1 AND user_id = $2 FOR UPDATE",
        user.platform,
        user.id,
    )
    active = await connection.fetchval(
        "SELECT count(*) FROM jobs WHERE platform = $1 AND user_id = $2 AND state = ANY($3)",
        user.platform,
        user.id,
        list(ACTIVE),
    )
    if active + count > max_active:
        raise QueueFull(active)


async def _insert_held_job(connection: asyncpg.Connection, job: Job, now: int) -> Job:
    """Hold the job's price and insert it in state ``held``."""
    user = job.user
    await hold_credits(
        connection,
        user,
        job.price,
        hold_id=job.job_id,
        actor=str(user),
        reason=hold_reason(job),
        now=now,
    )
    values = held_job_values(job, now)
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    row = await connection.fetchrow(
        f"INSERT INTO jobs ({', '.join(values)}) VALUES ({placeholders}) RETURNING {JOB_COLUMNS}",
        *values.values(),
    )
    return job_from_row(row)


class PgJobStore(JobStore):
    """:class:`bot.jobs.store.JobStore` on a :class:`~storage.postgres.database.PgDatabase`."""

    def __init__(self, database: PgDatabase) -> None:
        self.db = database

    async def admit_quote_request(self, user: UserRef, *, per_minute: int, now: int) -> None:
        """Count the request in ``quote_requests`` unless the member's minute is used up."""
        since = now - QUOTE_RATE_WINDOW_S
        async with self.db.transaction() as connection:
            await _lock_member(connection, user)
            # Requests older than the window are forgotten by whoever comes next; rows another
            # member's request is deleting right now are left to it (no waiting, no deadlock),
            # and not counted below.
            await connection.execute(
                "DELETE FROM quote_requests WHERE ctid = ANY(ARRAY(SELECT ctid FROM quote_requests"
                " WHERE requested_at <= $1 FOR UPDATE SKIP LOCKED))",
                since,
            )
            row = await connection.fetchrow(
                """
                WITH recent AS (
                    SELECT count(*) AS requests, min(requested_at) AS oldest FROM quote_requests
                    WHERE platform = $1 AND user_id = $2 AND requested_at > $5
                ), admitted AS (
                    INSERT INTO quote_requests (platform, user_id, requested_at)
                    SELECT $1, $2, $3 FROM recent WHERE requests < $4
                )
                SELECT requests, oldest FROM recent
                """,
                user.platform,
                user.id,
                now,
                per_minute,
                since,
            )
        if row["requests"] >= per_minute:
            raise SlowDown(max(1, row["oldest"] + QUOTE_RATE_WINDOW_S - now))

    async def save_quote(self, quote: Quote, *, max_open: int | None = None) -> tuple[str, ...]:
        """Insert a quote and retire the member's open quotes beyond ``max_open``, at once."""
        insert = (
            "INSERT INTO quotes (quote_id, platform, user_id, chat_id, locale, image_path,"
            " prompt, negative_prompt, duration_s, tiers, state, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )
        values = quote_values(quote)
        if max_open is None:
            await self.db.execute(insert, *values)
            return ()
        async with self.db.transaction() as connection:
            await _lock_member(connection, quote.user)
            await connection.execute(insert, *values)
            retired = await connection.fetch(
                """
                UPDATE quotes SET state = 'cancelled', retired_at = $4
                WHERE quote_id IN (
                    SELECT quote_id FROM quotes
                    WHERE platform = $1 AND user_id = $2 AND state = 'open'
                    ORDER BY created_at DESC, seq DESC OFFSET $3
                )
                RETURNING image_path
                """,
                quote.user.platform,
                quote.user.id,
                max_open,
                quote.created_at,
            )
            paths = sorted({row["image_path"] for row in retired if row["image_path"]})
            if not paths:
                return ()
            needed = await connection.fetch(
                "SELECT image_path FROM quotes WHERE image_path = ANY($1) AND state = 'open'"
                " UNION SELECT image_path FROM jobs WHERE image_path = ANY($1)",
                paths,
            )
        kept = {row["image_path"] for row in needed}
        return tuple(path for path in paths if path not in kept)

    async def get_quote(self, quote_id: str) -> Quote | None:
        """A quote by id."""
        row = await self.db.fetchrow(
            f"SELECT {QUOTE_COLUMNS} FROM quotes WHERE quote_id = $1", quote_id
        )
        return quote_from_row(row) if row else None

    async def cancel_quote(self, quote_id: str) -> bool:
        """Compare-and-set open -> cancelled."""
        status = await self.db.execute(
            "UPDATE quotes SET state = 'cancelled' WHERE quote_id = $1 AND state = 'open'",
            quote_id,
        )
        return _count(status) == 1

    async def create_job(self, job: Job, *, max_active: int, now: int) -> Job:
        """Use the quote, hold the price and insert the job, all or nothing."""
        async with self.db.transaction() as connection:
            await _use_quote(connection, job.quote_id, job.user, max_active, 1)
            return await _insert_held_job(connection, job, now)

    async def create_compare(
        self, compare: Compare, jobs: list[Job], *, max_active: int, now: int
    ) -> list[Job]:
        """Use the quote, hold every price, insert the jobs and the compare, all or nothing."""
        user = compare.user
        async with self.db.transaction() as connection:
            await _use_quote(connection, compare.quote_id, user, max_active, len(jobs))
            balance = await connection.fetchval(  # of the wallet it spends from (linked?)
                "SELECT w.balance FROM wallets me JOIN wallets w"
                " ON w.platform = coalesce(me.linked_platform, me.platform)"
                " AND w.user_id = coalesce(me.linked_user_id, me.user_id)"
                " WHERE me.platform = $1 AND me.user_id = $2",
                user.platform,
                user.id,
            )
            created = []
            try:
                for job in jobs:
                    # Each job has a quote of its own (jobs.quote_id is unique): the
                    # compare's, for its one tier, used at once.
                    await connection.execute(
                        f"INSERT INTO quotes (quote_id, tiers, state, {_QUOTE_COPY})"
                        f" SELECT $1, $2, 'used', {_QUOTE_COPY} FROM quotes WHERE quote_id = $3",
                        job.quote_id,
                        job.tier,
                        compare.quote_id,
                    )
                    created.append(await _insert_held_job(connection, job, now))
            except InsufficientCredits:
                raise InsufficientCredits(balance, sum(job.price for job in jobs)) from None
            await connection.execute(
                "INSERT INTO compares (compare_id, quote_id, platform, user_id, chat_id, locale,"
                " state, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
                compare.compare_id,
                compare.quote_id,
                user.platform,
                user.id,
                compare.chat.id,
                compare.locale,
                now,
            )
            await connection.executemany(
                "INSERT INTO compare_jobs (compare_id, job_id, position) VALUES ($1, $2, $3)",
                [(compare.compare_id, job.job_id, n) for n, job in enumerate(jobs)],
            )
        return created

    async def get_compare(self, compare_id: str) -> Compare | None:
        """A compare by id, with its jobs in order."""
        rows = await self.db.fetch(
            f"SELECT {COMPARE_COLUMNS}, compare_jobs.job_id FROM compares"
            " JOIN compare_jobs USING (compare_id) WHERE compare_id = $1 ORDER BY position",
            compare_id,
        )
        return compare_from_rows(rows) if rows else None

    async def compare_of(self, job_id: str) -> Compare | None:
        """The compare naming the job."""
        compare_id = await self.db.fetchval(
            "SELECT compare_id FROM compare_jobs WHERE job_id = $1", job_id
        )
        return await self.get_compare(compare_id) if compare_id is not None else None

    async def unfinished_compares(self, limit: int) -> list[Compare]:
        """Open or making, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {COMPARE_COLUMNS}, compare_jobs.job_id FROM compares"
            " JOIN compare_jobs USING (compare_id)"
            " WHERE compare_id IN (SELECT compare_id FROM compares"
            "   WHERE state IN ('open', 'making') ORDER BY created_at, compare_id LIMIT $1)"
            " ORDER BY compares.created_at, compares.compare_id, position",
            limit,
        )
        return grouped_compares(rows)

    async def claim_compare(
        self, compare_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Compare-and-set open (or a stale or own claim) -> making."""
        status = await self.db.execute(
            "UPDATE compares SET state = 'making', claimed_by = $2, claimed_at = $3"
            " WHERE compare_id = $1 AND (state = 'open' OR (state = 'making'"
            " AND (claimed_by = $2 OR claimed_at <= $4)))",
            compare_id,
            claimant,
            now,
            stale_before,
        )
        return _count(status) == 1

    async def finish_compare(
        self, compare_id: str, claimant: str, state: CompareState, *, now: int
    ) -> bool:
        """From ``making`` (claimed by ``claimant``) to ``state``."""
        status = await self.db.execute(
            "UPDATE compares SET state = $3, finished_at = $4"
            " WHERE compare_id = $1 AND state = 'making' AND claimed_by = $2",
            compare_id,
            claimant,
            state,
            now,
        )
        return _count(status) == 1

    async def get_job(self, job_id: str) -> Job | None:
        """A job by its full id, or by a prefix that names exactly one job (ASCII case aside).

        The full id first, by the primary key: the runner asks that way all the time.
        """
        row = await self.db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1", job_id)
        if row is not None:
            return job_from_row(row)
        if len(job_id) < 4:
            return None
        # As SQLite's LIKE pattern is made: no wildcards, ASCII letters in any case.
        prefix = job_id.replace("%", "").replace("_", "").translate(_ASCII_LOWER)
        rows = await self.db.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE ascii_lower(job_id) LIKE $1 LIMIT 2",
            prefix.replace("\\", "\\\\") + "%",  # PostgreSQL's LIKE escapes with a backslash
        )
        return job_from_row(rows[0]) if len(rows) == 1 else None

    async def transition(
        self,
        job_id: str,
        from_states: tuple[JobState, ...],
        to_state: JobState,
        *,
        now: int,
        **fields: Any,
    ) -> Job | None:
        """Compare-and-set the state, with the ledger entry the new state implies."""
        assignments, values = _assignments(fields, first=4)
        move = (
            f"UPDATE jobs SET state = $1{', ' + assignments if assignments else ''}"
            f" WHERE job_id = $2 AND state = ANY($3) RETURNING {JOB_COLUMNS}"
        )
        arguments = (to_state, job_id, list(from_states), *values)
        if to_state == "succeeded":
            ending, reason = "capture", reasons.reason("reason.capture", job=job_id[:8])
        elif to_state in ("failed", "cancelled"):
            ending, reason = "release", reasons.reason(f"reason.{to_state}", job=job_id[:8])
        else:
            row = await self.db.fetchrow(move, *arguments)
            return job_from_row(row) if row else None
        async with self.db.transaction() as connection:
            row = await connection.fetchrow(move, *arguments)
            if row is None:
                return None
            await end_hold(connection, job_id, kind=ending, actor="runner", reason=reason, now=now)
        return job_from_row(row)

    async def claim_delivery(
        self, job_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Compare-and-set the claim columns while the job is ``succeeded``."""
        status = await self.db.execute(
            "UPDATE jobs SET delivery_claimed_by = $2, delivery_claimed_at = $3"
            " WHERE job_id = $1 AND state = 'succeeded' AND (delivery_claimed_by IS NULL"
            " OR delivery_claimed_by = $2 OR delivery_claimed_at <= $4)",
            job_id,
            claimant,
            now,
            stale_before,
        )
        return _count(status) == 1

    async def release_delivery(self, job_id: str, claimant: str) -> bool:
        """Clear the claim if ``claimant`` holds it."""
        status = await self.db.execute(
            "UPDATE jobs SET delivery_claimed_by = NULL, delivery_claimed_at = NULL"
            " WHERE job_id = $1 AND delivery_claimed_by = $2",
            job_id,
            claimant,
        )
        return _count(status) == 1

    async def clear_delivery_claims(self) -> int:
        """Clear the claim columns wherever they are set."""
        status = await self.db.execute(
            "UPDATE jobs SET delivery_claimed_by = NULL, delivery_claimed_at = NULL"
            " WHERE delivery_claimed_by IS NOT NULL"
        )
        return _count(status)

    async def update(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Set fields while the job is still in ``state``."""
        assignments, values = _assignments(fields, first=3)
        status = await self.db.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id = $1 AND state = $2",
            job_id,
            state,
            *values,
        )
        return _count(status) == 1

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs in held, submitted, running or succeeded, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = ANY($1) ORDER BY created_at, seq",
            list(UNFINISHED),
        )
        return [job_from_row(row) for row in rows]

    async def jobs_of(self, user: UserRef | None, limit: int) -> list[Job]:
        """Newest first."""
        if user is None:
            rows = await self.db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, seq DESC LIMIT $1", limit
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE platform = $1 AND user_id = $2"
                " ORDER BY created_at DESC, seq DESC LIMIT $3",
                user.platform,
                user.id,
                limit,
            )
        return [job_from_row(row) for row in rows]

    async def recent_durations(self, tier: str, limit: int) -> list[tuple[int, int]]:
        """(start-to-finish seconds, clip seconds) of the tier's newest successful jobs."""
        rows = await self.db.fetch(
            "SELECT finished_at - started_at AS seconds, duration_s FROM jobs"
            " WHERE tier = $1 AND state IN ('succeeded', 'delivered') AND started_at IS NOT NULL"
            " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT $2",
            tier,
            limit,
        )
        return [(row["seconds"], row["duration_s"]) for row in rows]

    async def inputs_to_remove(self, *, now: int, finished_before: int, limit: int) -> list[str]:
        """Paths no open quote, unfinished job or recently finished job names."""
        rows = await self.db.fetch(
            """
            WITH named (path) AS (
                SELECT image_path FROM quotes
                    WHERE image_path IS NOT NULL AND input_removed_at IS NULL
                UNION
                SELECT image_path FROM jobs
                    WHERE image_path IS NOT NULL AND input_removed_at IS NULL
            )
            SELECT path FROM named
            WHERE NOT EXISTS (
                SELECT 1 FROM quotes
                WHERE quotes.image_path = named.path AND state = 'open' AND expires_at >= $1
            )
            AND NOT EXISTS (
                SELECT 1 FROM jobs
                WHERE jobs.image_path = named.path
                  AND (state = ANY($2) OR coalesce(delivered_at, finished_at, created_at) > $3)
            )
            ORDER BY path COLLATE "C" LIMIT $4
            """,
            now,
            list(UNFINISHED),
            finished_before,
            limit,
        )
        return [row["path"] for row in rows]

    async def note_input_removed(self, path: str, *, now: int) -> int:
        """Set ``input_removed_at`` on the quotes and jobs naming ``path``."""
        return await self.db.fetchval(
            """
            WITH quotes_noted AS (
                UPDATE quotes SET input_removed_at = $1
                WHERE image_path = $2 AND input_removed_at IS NULL
                RETURNING 1
            ), jobs_noted AS (
                UPDATE jobs SET input_removed_at = $1
                WHERE image_path = $2 AND input_removed_at IS NULL
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM quotes_noted) + (SELECT count(*) FROM jobs_noted)
            """,
            now,
            path,
        )

    async def clips_to_remove(self, *, delivered_before: int, limit: int) -> list[Job]:
        """Delivered jobs with a kept clip, oldest delivery first."""
        rows = await self.db.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'delivered' AND result_path IS NOT NULL"
            " AND clip_removed_at IS NULL AND delivered_at <= $1"
            " ORDER BY delivered_at, seq LIMIT $2",
            delivered_before,
            limit,
        )
        return [job_from_row(row) for row in rows]

    async def note_clip_removed(self, job_id: str, *, now: int) -> bool:
        """Set ``clip_removed_at`` once."""
        status = await self.db.execute(
            "UPDATE jobs SET clip_removed_at = $2 WHERE job_id = $1 AND clip_removed_at IS NULL",
            job_id,
            now,
        )
        return _count(status) == 1

    async def refund(self, job_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """An ``adjust`` entry of the job's price, keyed by the job so it happens once.

        The job's row is locked first, so two replicas refunding it at once
        take turns, and the second finds the first one's entry.
        """
        async with self.db.transaction() as connection:
            row = await connection.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1 FOR UPDATE", job_id
            )
            if row is None:
                raise KeyError(job_id)
            job = job_from_row(row)
            outcome = await change_balance(
                connection,
                job.user,
                job.price,
                key=f"refund:{job_id}",
                kind="adjust",
                actor=actor,
                reason=reason or reasons.reason("reason.refund", job=job.short_id),
                now=now,
            )
            await connection.execute("UPDATE jobs SET refunded = 1 WHERE job_id = $1", job_id)
        return outcome
