"""Quotes and jobs on SQLite, sharing the ledger's writer so transitions and money move together."""

from __future__ import annotations

import sqlite3
from typing import Any

from bot import reasons
from bot.commands import ChatRef, UserRef
from bot.errors import InsufficientCredits
from bot.jobs.model import ACTIVE, UNFINISHED, Compare, CompareState, Job, JobState, Quote
from bot.jobs.store import QUOTE_RATE_WINDOW_S, JobStore, QueueFull, QuoteTaken, SlowDown
from bot.ports import Outcome
from storage.database import Database
from storage.ledger import _balance, change_balance, end_hold, hold_credits, resolve

_JOB_FIELDS = tuple(Job.__dataclass_fields__)
_SETTABLE = set(_JOB_FIELDS) - {"job_id", "quote_id", "user", "chat", "state"}


def _quote(row: sqlite3.Row) -> Quote:
    return Quote(
        quote_id=row["quote_id"],
        user=UserRef(row["platform"], row["user_id"]),
        chat=ChatRef(row["platform"], row["chat_id"]),
        locale=row["locale"],
        image_path=row["image_path"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        duration_s=row["duration_s"],
        tiers=tuple(row["tiers"].split(",")),
        state=row["state"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        retired_at=row["retired_at"],
    )


def _job(row: sqlite3.Row) -> Job:
    values = {name: row[name] for name in _JOB_FIELDS if name not in ("user", "chat", "refunded")}
    return Job(
        **values,
        user=UserRef(row["platform"], row["user_id"]),
        chat=ChatRef(row["platform"], row["chat_id"]),
        refunded=bool(row["refunded"]),
    )


def _select_job(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = connection.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def check_settable(fields: dict[str, Any]) -> None:
    """Refuse a job update naming a field that is not settable."""
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable on a job: {sorted(unknown)}")


def quote_values(quote: Quote) -> tuple[Any, ...]:
    """A new quote's values for ``INSERT INTO quotes``, in this column order.

    quote_id, platform, user_id, chat_id, locale, image_path, prompt, negative_prompt,
    duration_s, tiers, state, created_at, expires_at.
    """
    return (
        quote.quote_id,
        quote.user.platform,
        quote.user.id,
        quote.chat.id,
        quote.locale,
        quote.image_path,
        quote.prompt,
        quote.negative_prompt,
        quote.duration_s,
        ",".join(quote.tiers),
        quote.state,
        quote.created_at,
        quote.expires_at,
    )


def hold_reason(job: Job) -> str:
    """The ledger reason of the hold a new job takes for its price."""
    return reasons.reason("reason.hold", job=job.short_id, tier=job.tier, duration=job.duration_s)


def held_job_values(job: Job, now: int) -> dict[str, Any]:
    """Column name -> value of a new job inserted in state ``held`` at ``now``."""
    values: dict[str, Any] = {
        name: getattr(job, name) for name in _JOB_FIELDS if name not in ("user", "chat")
    }
    values.update(
        platform=job.user.platform,
        user_id=job.user.id,
        chat_id=job.chat.id,
        state="held",
        created_at=now,
        refunded=int(job.refunded),
    )
    return values


def _assignments(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    check_settable(fields)
    return ", ".join(f"{name} = ?" for name in fields), list(fields.values())


def _retire_beyond(connection: sqlite3.Connection, quote: Quote, max_open: int) -> tuple[str, ...]:
    """Cancel the member's open quotes but the ``max_open`` newest; their images nothing names."""
    retired = connection.execute(
        "SELECT quote_id, image_path FROM quotes"
        " WHERE platform = ? AND user_id = ? AND state = 'open'"
        " ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?",
        (quote.user.platform, quote.user.id, max_open),
    ).fetchall()
    if not retired:
        return ()
    connection.executemany(
        "UPDATE quotes SET state = 'cancelled', retired_at = ? WHERE quote_id = ?",
        [(quote.created_at, row["quote_id"]) for row in retired],
    )
    paths = sorted({row["image_path"] for row in retired if row["image_path"] is not None})
    return tuple(
        path
        for path in paths
        if not connection.execute(
            "SELECT 1 FROM quotes WHERE image_path = ? AND state = 'open'"
            " UNION ALL SELECT 1 FROM jobs WHERE image_path = ? LIMIT 1",
            (path, path),
        ).fetchone()
    )


_QUOTE_COPY = (
    "platform, user_id, chat_id, locale, image_path, prompt,"
    " negative_prompt, duration_s, created_at, expires_at"
)
"""The columns a compare's per-tier quote copies from the compare's quote."""


def _use_quote(
    connection: sqlite3.Connection, quote_id: str, user: UserRef, max_active: int, count: int
) -> None:
    """Mark the quote used and check the member may have ``count`` more active jobs."""
    used = connection.execute(
        "UPDATE quotes SET state = 'used' WHERE quote_id = ? AND state = 'open'",
        (quote_id,),
    ).rowcount
    if not used:
        raise QuoteTaken(quote_id)
    active = connection.execute(
        f"SELECT count(*) FROM jobs WHERE platform = ? AND user_id = ?"
        f" AND state IN ({', '.join('?' * len(ACTIVE))})",
        (user.platform, user.id, *ACTIVE),
    ).fetchone()[0]
    if active + count > max_active:
        raise QueueFull(active)


def _insert_held_job(connection: sqlite3.Connection, job: Job, now: int) -> Job:
    """Hold the job's price and insert it in state ``held``."""
    hold_credits(
        connection,
        job.user,
        job.price,
        hold_id=job.job_id,
        actor=str(job.user),
        reason=hold_reason(job),
        now=now,
    )
    values = held_job_values(job, now)
    connection.execute(
        f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()),
    )
    created = _select_job(connection, job.job_id)
    assert created is not None
    return created


def compare_from_rows(rows: list[Any]) -> Compare:
    """A :class:`Compare` from its row joined with each of its jobs (in order)."""
    first = rows[0]
    return Compare(
        compare_id=first["compare_id"],
        quote_id=first["quote_id"],
        user=UserRef(first["platform"], first["user_id"]),
        chat=ChatRef(first["platform"], first["chat_id"]),
        locale=first["locale"],
        job_ids=tuple(row["job_id"] for row in rows),
        state=first["state"],
        claimed_by=first["claimed_by"],
        claimed_at=first["claimed_at"],
        created_at=first["created_at"],
        finished_at=first["finished_at"],
    )


_compare = compare_from_rows


def _grouped(rows: list[Any]) -> list[Compare]:
    """Compares from their rows joined with their jobs, in the rows' order."""
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row["compare_id"], []).append(row)
    return [compare_from_rows(group) for group in groups.values()]


class SqliteJobStore(JobStore):
    """:class:`bot.jobs.store.JobStore` on the shared :class:`storage.database.Database`."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def admit_quote_request(self, user: UserRef, *, per_minute: int, now: int) -> None:
        """Count the request in ``quote_requests`` unless the member's minute is used up."""
        since = now - QUOTE_RATE_WINDOW_S

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM quote_requests WHERE requested_at <= ?", (since,))
            count, oldest = connection.execute(
                "SELECT count(*), min(requested_at) FROM quote_requests"
                " WHERE platform = ? AND user_id = ?",
                (user.platform, user.id),
            ).fetchone()
            if count >= per_minute:
                raise SlowDown(max(1, oldest + QUOTE_RATE_WINDOW_S - now))
            connection.execute(
                "INSERT INTO quote_requests (platform, user_id, requested_at) VALUES (?, ?, ?)",
                (user.platform, user.id, now),
            )

        await self.db.write(write)

    async def save_quote(self, quote: Quote, *, max_open: int | None = None) -> tuple[str, ...]:
        """Insert a quote and retire the member's open quotes beyond ``max_open``, at once."""

        def write(connection: sqlite3.Connection) -> tuple[str, ...]:
            connection.execute(
                """
                INSERT INTO quotes (quote_id, platform, user_id, chat_id, locale, image_path,
                    prompt, negative_prompt, duration_s, tiers, state, created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                quote_values(quote),
            )
            if max_open is None:
                return ()
            return _retire_beyond(connection, quote, max_open)

        return await self.db.write(write)

    async def get_quote(self, quote_id: str) -> Quote | None:
        """A quote by id."""
        row = await self.db.read_one("SELECT * FROM quotes WHERE quote_id = ?", (quote_id,))
        return _quote(row) if row else None

    async def cancel_quote(self, quote_id: str) -> bool:
        """Compare-and-set open -> cancelled."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE quotes SET state = 'cancelled' WHERE quote_id = ? AND state = 'open'",
                    (quote_id,),
                ).rowcount
                == 1
            )
        )

    async def create_job(self, job: Job, *, max_active: int, now: int) -> Job:
        """Use the quote, hold the price and insert the job, all or nothing."""

        def write(connection: sqlite3.Connection) -> Job:
            _use_quote(connection, job.quote_id, job.user, max_active, 1)
            return _insert_held_job(connection, job, now)

        return await self.db.write(write)

    async def create_compare(
        self, compare: Compare, jobs: list[Job], *, max_active: int, now: int
    ) -> list[Job]:
        """Use the quote, hold every price, insert the jobs and the compare, all or nothing."""

        def write(connection: sqlite3.Connection) -> list[Job]:
            _use_quote(connection, compare.quote_id, compare.user, max_active, len(jobs))
            balance = _balance(connection, resolve(connection, compare.user))
            created = []
            try:
                for job in jobs:
                    # Each job has a quote of its own (jobs.quote_id is unique): the
                    # compare's, for its one tier, used at once.
                    connection.execute(
                        f"INSERT INTO quotes (quote_id, tiers, state, {_QUOTE_COPY})"
                        f" SELECT ?, ?, 'used', {_QUOTE_COPY} FROM quotes WHERE quote_id = ?",
                        (job.quote_id, job.tier, compare.quote_id),
                    )
                    created.append(_insert_held_job(connection, job, now))
            except InsufficientCredits:
                raise InsufficientCredits(balance, sum(job.price for job in jobs)) from None
            connection.execute(
                "INSERT INTO compares (compare_id, quote_id, platform, user_id, chat_id, locale,"
                " state, created_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?)",
                (
                    compare.compare_id,
                    compare.quote_id,
                    compare.user.platform,
                    compare.user.id,
                    compare.chat.id,
                    compare.locale,
                    now,
                ),
            )
            connection.executemany(
                "INSERT INTO compare_jobs (compare_id, job_id, position) VALUES (?, ?, ?)",
                [(compare.compare_id, job.job_id, n) for n, job in enumerate(jobs)],
            )
            return created

        return await self.db.write(write)

    async def get_compare(self, compare_id: str) -> Compare | None:
        """A compare by id, with its jobs in order."""
        rows = await self.db.read(
            "SELECT compares.*, compare_jobs.job_id FROM compares"
            " JOIN compare_jobs USING (compare_id) WHERE compare_id = ? ORDER BY position",
            (compare_id,),
        )
        return _compare(rows) if rows else None

    async def compare_of(self, job_id: str) -> Compare | None:
        """The compare naming the job."""
        row = await self.db.read_one(
            "SELECT compare_id FROM compare_jobs WHERE job_id = ?", (job_id,)
        )
        return await self.get_compare(row["compare_id"]) if row else None

    async def unfinished_compares(self, limit: int) -> list[Compare]:
        """Open or making, oldest first."""
        rows = await self.db.read(
            "SELECT compares.*, compare_jobs.job_id FROM compares"
            " JOIN compare_jobs USING (compare_id)"
            " WHERE compare_id IN (SELECT compare_id FROM compares"
            "   WHERE state IN ('open', 'making') ORDER BY created_at, rowid LIMIT ?)"
            " ORDER BY compares.created_at, compares.rowid, position",
            (limit,),
        )
        return _grouped(rows)

    async def claim_compare(
        self, compare_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Compare-and-set open (or a stale or own claim) -> making."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE compares SET state = 'making', claimed_by = ?, claimed_at = ?"
                    " WHERE compare_id = ? AND (state = 'open' OR (state = 'making'"
                    " AND (claimed_by = ? OR claimed_at <= ?)))",
                    (claimant, now, compare_id, claimant, stale_before),
                ).rowcount
                == 1
            )
        )

    async def finish_compare(
        self, compare_id: str, claimant: str, state: CompareState, *, now: int
    ) -> bool:
        """From ``making`` (claimed by ``claimant``) to ``state``."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE compares SET state = ?, finished_at = ?"
                    " WHERE compare_id = ? AND state = 'making' AND claimed_by = ?",
                    (state, now, compare_id, claimant),
                ).rowcount
                == 1
            )
        )

    async def get_job(self, job_id: str) -> Job | None:
        """A job by its full id, or by a prefix that names exactly one job."""
        rows = await self.db.read(
            "SELECT * FROM jobs WHERE job_id = ? OR (length(?) >= 4 AND job_id LIKE ? || '%')"
            " ORDER BY job_id = ? DESC LIMIT 2",  # the exact id first, however many share it
            (job_id, job_id, job_id.replace("%", "").replace("_", ""), job_id),
        )
        exact = [row for row in rows if row["job_id"] == job_id]
        if exact:
            return _job(exact[0])
        return _job(rows[0]) if len(rows) == 1 else None

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
        assignments, values = _assignments(fields)
        placeholders = ", ".join("?" * len(from_states))

        def write(connection: sqlite3.Connection) -> Job | None:
            moved = connection.execute(
                f"UPDATE jobs SET state = ?{', ' + assignments if assignments else ''}"
                f" WHERE job_id = ? AND state IN ({placeholders})",
                (to_state, *values, job_id, *from_states),
            ).rowcount
            if not moved:
                return None
            if to_state == "succeeded":
                end_hold(
                    connection,
                    job_id,
                    kind="capture",
                    actor="runner",
                    reason=reasons.reason("reason.capture", job=job_id[:8]),
                    now=now,
                )
            elif to_state in ("failed", "cancelled"):
                end_hold(
                    connection,
                    job_id,
                    kind="release",
                    actor="runner",
                    reason=reasons.reason(f"reason.{to_state}", job=job_id[:8]),
                    now=now,
                )
            return _select_job(connection, job_id)

        return await self.db.write(write)

    async def claim_delivery(
        self, job_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Compare-and-set the claim columns while the job is ``succeeded``."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET delivery_claimed_by = ?, delivery_claimed_at = ?"
                    " WHERE job_id = ? AND state = 'succeeded' AND (delivery_claimed_by IS NULL"
                    " OR delivery_claimed_by = ? OR delivery_claimed_at <= ?)",
                    (claimant, now, job_id, claimant, stale_before),
                ).rowcount
                == 1
            )
        )

    async def release_delivery(self, job_id: str, claimant: str) -> bool:
        """Clear the claim if ``claimant`` holds it."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET delivery_claimed_by = NULL, delivery_claimed_at = NULL"
                    " WHERE job_id = ? AND delivery_claimed_by = ?",
                    (job_id, claimant),
                ).rowcount
                == 1
            )
        )

    async def clear_delivery_claims(self) -> int:
        """Clear the claim columns wherever they are set."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET delivery_claimed_by = NULL, delivery_claimed_at = NULL"
                    " WHERE delivery_claimed_by IS NOT NULL"
                ).rowcount
            )
        )

    async def update(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Set fields while the job is still in ``state``."""
        assignments, values = _assignments(fields)
        return await self.db.write(
            lambda c: (
                c.execute(
                    f"UPDATE jobs SET {assignments} WHERE job_id = ? AND state = ?",
                    (*values, job_id, state),
                ).rowcount
                == 1
            )
        )

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs in held, submitted, running or succeeded."""
        rows = await self.db.read(
            f"SELECT * FROM jobs WHERE state IN ({', '.join('?' * len(UNFINISHED))})"
            " ORDER BY created_at, rowid",
            UNFINISHED,
        )
        return [_job(row) for row in rows]

    async def jobs_of(self, user: UserRef | None, limit: int) -> list[Job]:
        """Newest first."""
        if user is None:
            rows = await self.db.read(
                "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self.db.read(
                "SELECT * FROM jobs WHERE platform = ? AND user_id = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (user.platform, user.id, limit),
            )
        return [_job(row) for row in rows]

    async def recent_durations(self, tier: str, limit: int) -> list[tuple[int, int]]:
        """(start-to-finish seconds, clip seconds) of the tier's newest successful jobs."""
        rows = await self.db.read(
            "SELECT finished_at - started_at AS seconds, duration_s FROM jobs"
            " WHERE tier = ? AND state IN ('succeeded', 'delivered') AND started_at IS NOT NULL"
            " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (tier, limit),
        )
        return [(row["seconds"], row["duration_s"]) for row in rows]

    async def inputs_to_remove(self, *, now: int, finished_before: int, limit: int) -> list[str]:
        """Paths no open quote, unfinished job or recently finished job names."""
        unfinished = ", ".join("?" * len(UNFINISHED))
        rows = await self.db.read(
            f"""
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
                WHERE quotes.image_path = named.path AND state = 'open' AND expires_at >= ?
            )
            AND NOT EXISTS (
                SELECT 1 FROM jobs
                WHERE jobs.image_path = named.path
                  AND (state IN ({unfinished})
                       OR coalesce(delivered_at, finished_at, created_at) > ?)
            )
            ORDER BY path LIMIT ?
            """,
            (now, *UNFINISHED, finished_before, limit),
        )
        return [row["path"] for row in rows]

    async def note_input_removed(self, path: str, *, now: int) -> int:
        """Set ``input_removed_at`` on the quotes and jobs naming ``path``."""

        def write(connection: sqlite3.Connection) -> int:
            changed = 0
            for table in ("quotes", "jobs"):
                changed += connection.execute(
                    f"UPDATE {table} SET input_removed_at = ?"
                    " WHERE image_path = ? AND input_removed_at IS NULL",
                    (now, path),
                ).rowcount
            return changed

        return await self.db.write(write)

    async def clips_to_remove(self, *, delivered_before: int, limit: int) -> list[Job]:
        """Delivered jobs with a kept clip, oldest delivery first."""
        rows = await self.db.read(
            "SELECT * FROM jobs WHERE state = 'delivered' AND result_path IS NOT NULL"
            " AND clip_removed_at IS NULL AND delivered_at <= ?"
            " ORDER BY delivered_at, rowid LIMIT ?",
            (delivered_before, limit),
        )
        return [_job(row) for row in rows]

    async def note_clip_removed(self, job_id: str, *, now: int) -> bool:
        """Set ``clip_removed_at`` once."""
        return await self.db.write(
            lambda c: (
                c.execute(
                    "UPDATE jobs SET clip_removed_at = ?"
                    " WHERE job_id = ? AND clip_removed_at IS NULL",
                    (now, job_id),
                ).rowcount
                == 1
            )
        )

    async def refund(self, job_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """An ``adjust`` entry of the job's price, keyed by the job so it happens once."""

        def write(connection: sqlite3.Connection) -> Outcome:
            job = _select_job(connection, job_id)
            if job is None:
                raise KeyError(job_id)
            outcome = change_balance(
                connection,
                job.user,
                job.price,
                key=f"refund:{job_id}",
                kind="adjust",
                actor=actor,
                reason=reason or reasons.reason("reason.refund", job=job.short_id),
                now=now,
            )
            connection.execute("UPDATE jobs SET refunded = 1 WHERE job_id = ?", (job_id,))
            return outcome

        return await self.db.write(write)
