"""``PgChatPace``: per-chat pacing (``chat_pace`` table) on PostgreSQL; see :mod:`bot.pacing`."""

from __future__ import annotations

from bot.pacing import FORGET_AFTER_S, FORGET_EVERY, ChatPace, PaceRule, wait_until_slot
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
        self._reserved = 0

    async def reserve(self, chat: str, rule: PaceRule, now: float) -> float:
        """See :meth:`bot.pacing.ChatPace.reserve`."""
        value = await self.database.fetchval(RESERVE, chat, now, rule.interval_s)
        self._reserved += 1
        if self._reserved % FORGET_EVERY == 0:
            await self.forget(now - FORGET_AFTER_S)
        return wait_until_slot(float(value), rule, now)

    async def forget(self, before: float) -> int:
        """See :meth:`bot.pacing.ChatPace.forget` (a row being reserved meanwhile is kept)."""
        status = await self.database.execute(
            "DELETE FROM chat_pace WHERE next_at < $1::float8", before
        )
        return int(status.split()[-1])
