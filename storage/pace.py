"""``SqliteChatPace``: per-chat pacing (``chat_pace`` table) on SQLite; see :mod:`bot.pacing`."""

from __future__ import annotations

import sqlite3

from bot.pacing import FORGET_AFTER_S, FORGET_EVERY, ChatPace, PaceRule, wait_until_slot
from storage.database import Database

RESERVE = (
    "INSERT INTO chat_pace (chat, next_at) VALUES (:chat, :now + :interval)"
    " ON CONFLICT (chat) DO UPDATE SET next_at = max(next_at, :now) + :interval"
    " RETURNING next_at"
)
"""One statement: the chat's ``next_at`` moved on by one slot, and returned."""


class SqliteChatPace(ChatPace):
    """Each reservation one upsert through the writer thread (several processes: one file lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._reserved = 0

    async def reserve(self, chat: str, rule: PaceRule, now: float) -> float:
        """See :meth:`bot.pacing.ChatPace.reserve`."""
        interval = rule.interval_s

        def write(connection: sqlite3.Connection) -> float:
            values = {"chat": chat, "now": now, "interval": interval}
            row = connection.execute(RESERVE, values).fetchone()
            return float(row[0])

        value = await self.database.write(write)
        self._reserved += 1
        if self._reserved % FORGET_EVERY == 0:
            await self.forget(now - FORGET_AFTER_S)
        return wait_until_slot(value, rule, now)

    async def forget(self, before: float) -> int:
        """See :meth:`bot.pacing.ChatPace.forget`."""

        def write(connection: sqlite3.Connection) -> int:
            return connection.execute("DELETE FROM chat_pace WHERE next_at < ?", (before,)).rowcount

        return await self.database.write(write)
