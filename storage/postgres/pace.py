"""``PgChatPace``: per-chat pacing (``chat_pace`` table) on PostgreSQL; see :mod:`bot.pacing`."""

from __future__ import annotations

from bot.pacing import ChatPace, PaceRule, wait_until_slot
from storage.postgres.database import PgDatabase

RESERVE = (
    "INSERT INTO chat_pace AS p (chat, next_at) VALUES ($1, $2::float8 + $3::float8)"
    " ON CONFLICT (chat) DO UPDATE SET next_at = greatest(p.next_at, $2::float8) + $3::float8"
    " RETURNING next_at"
)
"""One statement, under the chat row's lock: its ``next_at`` moved on by one slot, and returned."""


class PgChatPace(ChatPace):
    """Each reservation one statement on a pooled connection, in its own (unlogged) transaction."""

    def __init__(self, database: PgDatabase) -> None:
        self.database = database

    async def reserve(self, chat: str, rule: PaceRule, now: float) -> float:
        """See :meth:`bot.pacing.ChatPace.reserve`."""
        value = await self.database.fetchval(RESERVE, chat, now, rule.interval_s)
        return wait_until_slot(float(value), rule, now)
