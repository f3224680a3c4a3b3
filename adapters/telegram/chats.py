"""Telegram users and chats as the core knows them: ``UserRef``, ``ChatRef`` and ``Caller``.

A chat is ``ChatRef("telegram", "<chat id>")``, or ``"<chat id>/<topic id>"``
for a topic of a forum group, so that status messages and clips land in the
topic where ``/gen`` was sent. Only this module reads or writes that form.
"""

from __future__ import annotations

from telegram import Chat, Message, User
from telegram.constants import ChatType

from bot.commands import Caller, ChatRef, UserRef
from bot.i18n import resolve_locale

PLATFORM = "telegram"


def user_ref(user: User) -> UserRef:
    """``telegram:<user id>``."""
    return UserRef(PLATFORM, str(user.id))


def chat_ref(chat_id: int, topic_id: int | None = None) -> ChatRef:
    """The core's name for a chat, or for one topic of a forum group."""
    return ChatRef(PLATFORM, f"{chat_id}/{topic_id}" if topic_id else str(chat_id))


def message_chat(message: Message) -> ChatRef:
    """Where the answers to ``message`` go: its chat, and its topic in a forum group."""
    topic = message.message_thread_id if message.is_topic_message else None
    return chat_ref(message.chat.id, topic)


def parse_chat(chat: ChatRef) -> tuple[int, int | None]:
    """``(chat id, topic id or None)`` from a ChatRef made by :func:`chat_ref`."""
    chat_id, _, topic = chat.id.partition("/")
    return int(chat_id), int(topic) if topic else None


def is_private(chat: Chat) -> bool:
    """A one-to-one chat with the bot."""
    return chat.type == ChatType.PRIVATE


def caller_for(user: User, chat: ChatRef, *, is_admin: bool) -> Caller:
    """The core's view of ``user`` writing in ``chat``."""
    return Caller(
        user=user_ref(user),
        display_name=user.full_name,
        username=user.username,
        locale=resolve_locale(user.language_code),
        is_platform_admin=is_admin,
        chat=chat,
    )
