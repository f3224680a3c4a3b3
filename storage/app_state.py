"""``SqliteAppState``: the adapters' small key/value facts (``app_state`` table) on SQLite."""

from __future__ import annotations

import sqlite3
import time

from bot.ports import AppState
from storage.database import Database


class SqliteAppState(AppState):
    """Keys and values in the ``app_state`` table; writes go through the writer thread."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        row = await self.database.read_one("SELECT value FROM app_state WHERE key = ?", (key,))
        return row["value"] if row is not None else None

    async def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        now = int(time.time())

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO app_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, now),
            )

        await self.database.write(write)
