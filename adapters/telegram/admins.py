"""Who administers the moderators' groups: ``getChatMember``, remembered for a minute.

Administrators (and the owner) of the groups listed in
``TELEGRAM_ADMIN_CHATS`` are moderators wherever they talk to the bot. The
answer is cached briefly per (group, user), so a burst of commands costs one
lookup, and a demoted admin loses the right within a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import ExtBot

log = logging.getLogger(__name__)

CACHE_TTL_S = 60.0

_ADMIN = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})


class AdminCheck:
    """``is_admin(user_id)``: True when the user administers one of the listed groups."""

    def __init__(
        self,
        bot: ExtBot,
        chats: tuple[int, ...],
        *,
        ttl_s: float = CACHE_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.chats = chats
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._cache: dict[tuple[int, int], tuple[float, asyncio.Future[bool]]] = {}

    async def is_admin(self, user_id: int) -> bool:
        """Ask each listed group (answers cached); False when there are none."""
        if not self.chats:
            return False
        answers = await asyncio.gather(*(self._lookup(chat, user_id) for chat in self.chats))
        return any(answers)

    def _lookup(self, chat_id: int, user_id: int) -> asyncio.Future[bool]:
        now = self._monotonic()
        key = (chat_id, user_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        # Callers asking at the same moment share one request.
        future = asyncio.ensure_future(self._ask(chat_id, user_id))
        self._cache[key] = (now + self.ttl_s, future)
        return future

    async def _ask(self, chat_id: int, user_id: int) -> bool:
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
        except TelegramError as error:
            log.warning("cannot check the admins of chat %s: %s", chat_id, error)
            return False
        return member.status in _ADMIN
