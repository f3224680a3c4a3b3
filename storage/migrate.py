"""The schema: the bundled SQL migrations in ``storage/migrations``, applied in order.

Each file is ``NNNN_name.sql``; ``PRAGMA user_version`` records the last one
applied, and each applies in its own transaction, so a database is always at
one version or the next.
"""

from __future__ import annotations

import logging
import sqlite3
from importlib import resources

log = logging.getLogger(__name__)


def migration_scripts() -> list[tuple[int, str, str]]:
    """The bundled migrations as ``(version, name, sql)``, in order."""
    folder = resources.files("storage").joinpath("migrations")
    scripts = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            scripts.append((version, entry.name, entry.read_text("utf-8")))
    return scripts


def migrate(connection: sqlite3.Connection) -> int:
    """Apply every migration newer than ``PRAGMA user_version``, each in its own transaction.

    Returns the schema version reached.
    """
    current = connection.execute("PRAGMA user_version").fetchone()[0]
    for version, name, sql in migration_scripts():
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
