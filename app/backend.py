"""The storage backend: the SQLite file ``KLINGBOT_DB``, or PostgreSQL at ``KLINGBOT_DATABASE_URL``.

The one place that knows which classes implement the core's storage ports
on each backend; everything else (:func:`app.bootstrap.open_core`, the
wallet and database commands, ``doctor``) opens a :class:`Storage` here and
uses its ports, never a backend's classes.

- SQLite (``KLINGBOT_DATABASE_URL`` unset): :class:`storage.database.Database`
  with :class:`~storage.ledger.SqliteLedger`, :class:`~storage.jobs.SqliteJobStore`,
  :class:`~storage.app_state.SqliteAppState` and :func:`storage.audit.audit`.
  The file leases of :mod:`app.lease` (no restore under a running bot, one
  runner per file) are SQLite's.
- PostgreSQL: ``storage.postgres.database.PgDatabase`` (an asyncpg pool) with
  ``PgLedger``, ``PgJobStore``, ``PgAppState`` and ``storage.postgres.audit.audit``.
  Several replicas share it; the runner lease is one row per replica
  (:func:`runner_lease_for`), and what one replica at a time does is a
  role held by advisory lock (:func:`roles_for`).

The PostgreSQL modules are imported only when the URL is set, so the SQLite
default never loads the driver.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any, Literal

from app.lease import FileRunnerLease, RunnerLease
from bot.jobs.leases import JobLeases
from bot.jobs.store import JobStore
from bot.pacing import ChatPace
from bot.ports import AppState, Ledger
from bot.preferences import PreferenceStore
from bot.roles import Roles, SoleRoles
from bot.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["sqlite", "postgresql"]


class Storage:
    """An open database and the core's storage ports on it, each made on first use.

    (So ``db check`` and ``wallet export`` need only the ledger's side of a backend.)
    """

    def __init__(self, kind: Kind, shown: str, database: Any) -> None:
        self.kind = kind
        self.shown = shown
        """The database as an operator may see it: the file, or the URL, password masked."""
        self.database = database
        """``storage.database.Database`` or ``storage.postgres.database.PgDatabase``."""

    @cached_property
    def ledger(self) -> Ledger:
        """The wallets and their ledger."""
        if self.kind == "postgresql":
            from storage.postgres.ledger import PgLedger

            return PgLedger(self.database)
        from storage.ledger import SqliteLedger

        return SqliteLedger(self.database)

    @cached_property
    def jobs(self) -> JobStore:
        """Quotes and jobs (on the ledger's database: a job's state and its money move together)."""
        if self.kind == "postgresql":
            from storage.postgres.jobs import PgJobStore

            return PgJobStore(self.database)
        from storage.jobs import SqliteJobStore

        return SqliteJobStore(self.database)

    @cached_property
    def state(self) -> AppState:
        """The adapters' small key/value facts."""
        if self.kind == "postgresql":
            from storage.postgres.app_state import PgAppState

            return PgAppState(self.database)
        from storage.app_state import SqliteAppState

        return SqliteAppState(self.database)

    @cached_property
    def preferences(self) -> PreferenceStore:
        """Members' personal defaults (``/settings``), one row per wallet."""
        if self.kind == "postgresql":
            from storage.postgres.preferences import PgPreferences

            return PgPreferences(self.database)
        from storage.preferences import SqlitePreferences

        return SqlitePreferences(self.database)

    @cached_property
    def leases(self) -> JobLeases | None:
        """Job ownership shared by replicas (PostgreSQL); None: one runner per database (SQLite)."""
        if self.kind == "postgresql":
            from storage.postgres.leases import PgJobLeases

            return PgJobLeases(self.database)
        return None

    @cached_property
    def pace(self) -> ChatPace | None:
        """Per-chat pacing shared by every replica on PostgreSQL; None on SQLite.

        (One process serves an SQLite database: the adapters' own pacing is all there is.)
        """
        if self.kind == "postgresql":
            from storage.postgres.pace import PgChatPace

            return PgChatPace(self.database)
        return None

    async def audit(self) -> list[str]:
        """The ledger invariants (``klingbot db check``): one line per violation; none: clean."""
        if self.kind == "postgresql":
            from storage.postgres.audit import audit as postgres_audit

            return await postgres_audit(self.database)
        from storage.audit import audit as sqlite_audit

        return await sqlite_audit(self.database)

    def ledger_entries(self) -> AsyncIterator[Any]:
        """Every ledger entry with its user's display name, oldest first (``wallet export``)."""
        if self.kind == "postgresql":
            return _postgres_ledger_entries(self.database)
        from app.backup import ledger_entries

        return ledger_entries(self.database)

    async def wallet_count(self) -> int:
        """How many wallets the database holds (doctor's ledger line)."""
        if self.kind == "postgresql":
            return int(await self.database.fetchval("SELECT count(*) FROM wallets"))
        row = await self.database.read_one("SELECT count(*) AS n FROM wallets")
        return int(row["n"]) if row is not None else 0


def backend_of(settings: Settings) -> Kind:
    """Which backend the settings select."""
    return "postgresql" if settings.postgres else "sqlite"


@asynccontextmanager
async def open_storage(
    settings: Settings, *, create: bool = True, read_only: bool = False
) -> AsyncIterator[Storage]:
    """Open the settings' database (migrating it unless ``read_only``) and its ports.

    ``create=False``: a missing SQLite file is refused instead of made (the
    maintenance commands must not answer a mistyped ``KLINGBOT_DB`` with a
    new, empty database). ``read_only``: nothing is migrated or written; a
    schema that is not current is refused (``klingbot db check``). Raises
    StorageUnavailable with one operator-readable line.
    """
    if settings.postgres:
        from storage.postgres.database import PgDatabase

        assert settings.database_url is not None
        url = settings.database_url.get_secret_value()
        async with PgDatabase(url, max_size=settings.database_pool, read_only=read_only) as pg:
            yield Storage("postgresql", settings.database_shown, pg)
        return
    from storage.database import Database

    database = Database(
        settings.db,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        create=create,
        read_only=read_only,
    )
    async with database:
        yield Storage("sqlite", settings.database_shown, database)


EXPORT_PAGE = 1000
"""Ledger entries read per query while exporting."""


async def _postgres_ledger_entries(database: Any) -> AsyncIterator[Any]:
    """PostgreSQL's :func:`app.backup.ledger_entries`: the same rows, a page at a time."""
    last = 0
    while True:
        rows = await database.fetch(
            """
            SELECT l.seq, l.created_at, l.platform, l.user_id, u.display_name, l.kind, l.amount,
                   l.held_delta, l.balance_after, l.held_after, l.hold_id, l.actor, l.reason,
                   l.idem_key
            FROM ledger l LEFT JOIN users u ON u.platform = l.platform AND u.user_id = l.user_id
            WHERE l.seq > $1 ORDER BY l.seq LIMIT $2
            """,
            last,
            EXPORT_PAGE,
        )
        for row in rows:
            yield row
        if len(rows) < EXPORT_PAGE:
            return
        last = rows[-1]["seq"]


def runner_lease_for(settings: Settings) -> RunnerLease:
    """The runner lease ``klingbot run`` and ``console`` hold on this backend.

    SQLite: :class:`~app.lease.FileRunnerLease`, one runner per file. PostgreSQL:
    several replicas run at once, each holding its own lease
    (:class:`~app.replica_lease.PgRunnerLease`: one advisory lock and one
    ``replicas`` row per ``KLINGBOT_REPLICA_ID``).
    """
    if not settings.postgres:
        return FileRunnerLease(settings.db)
    from app.replica_lease import PgRunnerLease

    assert settings.database_url is not None
    return PgRunnerLease(
        settings.database_url.get_secret_value(), settings.replica, lease_s=settings.job_lease_s
    )


def roles_for(settings: Settings, *, runner: bool) -> Roles:
    """Where this process campaigns for the roles one replica at a time holds (:mod:`bot.roles`).

    A runner (``klingbot run``, ``console``) on PostgreSQL campaigns with a
    session advisory lock per role (``storage.postgres.locks``), retried
    every third of ``KLINGBOT_JOB_LEASE_S``. On SQLite the one runner holds
    every role; so does a process that runs no jobs (the wallet commands),
    which never starts a duty that needs one.
    """
    if not (settings.postgres and runner):
        return SoleRoles()
    from storage.postgres.locks import AdvisoryRoles

    assert settings.database_url is not None
    return AdvisoryRoles(
        settings.database_url.get_secret_value(),
        lease_s=settings.job_lease_s,
        label=f"klingbot {settings.replica}",
    )


def sole_runner(settings: Settings, lease: RunnerLease | None) -> bool:
    """Whether holding ``lease`` makes this process the database's only runner.

    Only SQLite's file lease does: on PostgreSQL other replicas run beside
    this one, so what their runners left in the database is theirs.
    """
    return lease is not None and not settings.postgres
