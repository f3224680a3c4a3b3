"""The schema: the bundled SQL migrations in ``storage/migrations``, applied in order.

Each file is ``NNNN_name.sql``; ``PRAGMA user_version`` records the last one
applied, and each applies in its own transaction, so a database is always at
one version or the next. A database whose version is newer than the last
bundled migration was written by a newer klingbot: it is refused
(:class:`~bot.errors.StorageUnavailable`, one line, exit status 2), never
used by code that does not know its schema.
"""

from __future__ import annotations

import logging
import sqlite3
from importlib import resources

from bot.errors import StorageUnavailable

log = logging.getLogger(__name__)


def migration_scripts() -> list[tuple[int, str, str]]:
    """The bundled migrations as ``(version, name, sql)``, in order."""
    return bundled_scripts("storage")


def bundled_scripts(package: str) -> list[tuple[int, str, str]]:
    """The ``<package>/migrations/NNNN_name.sql`` files as ``(version, name, sql)``, in order."""
    folder = resources.files(package).joinpath("migrations")
    scripts = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            scripts.append((version, entry.name, entry.read_text("utf-8")))
    return scripts


def migrate(connection: sqlite3.Connection, *, where: str = "the database") -> int:
    """Apply every migration newer than ``PRAGMA user_version``, each in its own transaction.

    Returns the schema version reached. Raises StorageUnavailable when the
    database is newer than the code (``where`` names it in the message).
    """
    current = connection.execute("PRAGMA user_version").fetchone()[0]
    scripts = migration_scripts()
    latest = scripts[-1][0] if scripts else 0
    if current > latest:
        raise StorageUnavailable(_newer(current, latest, where))
    for version, name, sql in scripts:
        if version <= current:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have just migrated.
            if connection.execute("PRAGMA user_version").fetchone()[0] >= version:
                connection.execute("ROLLBACK")
                continue
            for statement in split_statements(sql):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.rollback()
            raise
        log.info("database migrated to version %d (%s)", version, name)
        current = version
    return current


def _newer(current: int, latest: int, where: str) -> str:
    return (
        f"{where} is at schema version {current}, newer than this klingbot knows"
        f" ({latest}): it was written by a newer klingbot; run that version, or restore a"
        " backup made by this one"
    )


def schema_problem(current: int, *, where: str = "the database") -> str | None:
    """Why a database at schema version ``current`` cannot be read as it is; None: it can.

    For readers that migrate nothing (``klingbot db check``): a newer schema,
    or migrations still to apply.
    """
    scripts = migration_scripts()
    latest = scripts[-1][0] if scripts else 0
    if current > latest:
        return _newer(current, latest, where)
    if current < latest:
        pending = sum(1 for version, _, _ in scripts if version > current)
        return (
            f"{where} is at schema version {current}, {pending} migration(s) behind:"
            " run klingbot db migrate first (checking only reads)"
        )
    return None


def split_statements(sql: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements
