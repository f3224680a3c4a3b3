"""Route the runner's messages to the adapter of each chat's platform."""

from __future__ import annotations

from bot.commands import ChatRef
from bot.ports import Outbox, Sent
from bot.replies import Reply


class OutboxRouter(Outbox):
    """One outbox per platform; adapters register theirs when they start."""

    def __init__(self) -> None:
        self._outboxes: dict[str, Outbox] = {}

    def register(self, platform: str, outbox: Outbox) -> None:
        """Send messages for ``platform`` chats through ``outbox``."""
        self._outboxes[platform] = outbox

    def _for(self, chat: ChatRef) -> Outbox:
        try:
            return self._outboxes[chat.platform]
        except KeyError:
            raise LookupError(f"no adapter is running for {chat.platform} chats") from None

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Send through the chat's platform."""
        return await self._for(chat).send(chat, reply, locale)

    async def deliver(self, chat: ChatRef, reply: Reply, locale: str) -> Sent:
        """Deliver through the chat's platform, which names the route it took."""
        return await self._for(chat).deliver(chat, reply, locale)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Edit through the chat's platform."""
        await self._for(chat).edit(chat, message_id, reply, locale)

    def fits(self, chat: ChatRef, size_bytes: int) -> bool:
        """Ask the chat's platform."""
        return self._for(chat).fits(chat, size_bytes)
