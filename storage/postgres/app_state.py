"""``PgAppState``: the adapters' small key/value facts (``app_state`` table) on PostgreSQL."""

from __future__ import annotations

import time

from bot.ports import AppState
from storage.postgres.database import PgDatabase


class PgAppState(AppState):
    """Keys and values in the ``app_state`` table; each call is one statement."""

    def __init__(self, database: PgDatabase) -> None:
        self.database = database

    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        return await self.database.fetchval("SELECT value FROM app_state WHERE key = $1", key)

    async def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        await self.database.execute(
            "INSERT INTO app_state (key, value, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            key,
            value,
            int(time.time()),
        )
