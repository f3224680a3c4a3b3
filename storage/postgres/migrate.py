"""The PostgreSQL schema: the bundled migrations in ``storage/postgres/migrations``.

Each file is ``NNNN_name.sql``. Table ``schema_migrations`` records every
one applied (version, file name, when); each applies in its own transaction,
so a database is always at one version or the next. A migration runs while
its transaction holds an advisory lock (:data:`MIGRATION_LOCK`), and checks
``schema_migrations`` again once it has it: two replicas starting at once
apply each migration once, the second waiting for the first.

A database that records a version this code does not bundle was written by a
newer klingbot: it is refused (:class:`~bot.errors.StorageUnavailable`, one
line), never used by code that does not know its schema.
"""

from __future__ import annotations

import logging

import asyncpg

from bot.errors import StorageUnavailable
from storage.migrate import bundled_scripts

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x6B6C_6D69_6772  # "klmigr"
"""The advisory lock key (one bigint) held by the transaction applying a migration."""

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def migration_scripts() -> list[tuple[int, str, str]]:
    """The bundled migrations as ``(version, name, sql)``, in order."""
    return bundled_scripts("storage.postgres")


async def applied_versions(connection: asyncpg.Connection) -> set[int]:
    """The versions ``schema_migrations`` records (none: the table does not exist yet)."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    rows = await connection.fetch("SELECT version FROM schema_migrations")
    return {row["version"] for row in rows}


async def migrate(connection: asyncpg.Connection, *, where: str = "the database") -> list[str]:
    """Apply every bundled migration the database lacks, each in its own transaction.

    Returns the names of the migrations applied (empty: the schema was current).
    Raises StorageUnavailable when the database is newer than the code.
    """
    scripts = migration_scripts()
    applied = await applied_versions(connection)
    if problem := _newer(applied, scripts, where):
        raise StorageUnavailable(problem)
    done: list[str] = []
    for version, name, sql in scripts:
        if version in applied:
            continue
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await connection.execute(_VERSION_TABLE)
            # Checked again under the lock: another replica may have just applied it.
            if await connection.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", version
            ):
                continue
            await connection.execute(sql)  # the simple protocol: a script of statements
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
        log.info("PostgreSQL database migrated to version %d (%s)", version, name)
        done.append(name)
    return done


async def schema_problem(connection: asyncpg.Connection, *, where: str) -> str | None:
    """Why this database's schema cannot be used as it is; None: it can (it is current).

    For readers that migrate nothing (``klingbot db check``): a newer schema,
    or migrations still to apply.
    """
    scripts = migration_scripts()
    applied = await applied_versions(connection)
    if problem := _newer(applied, scripts, where):
        return problem
    pending = [version for version, _, _ in scripts if version not in applied]
    if pending:
        if not applied:
            return f"{where} has no klingbot schema yet: run klingbot db migrate first"
        return (
            f"{where} is {len(pending)} migration(s) behind: run klingbot db migrate first"
            " (checking only reads)"
        )
    return None


def _newer(applied: set[int], scripts: list[tuple[int, str, str]], where: str) -> str | None:
    known = {version for version, _, _ in scripts}
    unknown = sorted(applied - known)
    if not unknown:
        return None
    return (
        f"{where} is at schema version {max(applied)}, newer than this klingbot knows"
        f" ({max(known, default=0)}): it was written by a newer klingbot; run that version,"
        " or restore a backup made by this one"
    )
