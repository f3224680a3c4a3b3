"""The core's replies as Telegram messages: plain text, inline keyboards, and their limits.

Text goes out without a parse mode, so nothing a member typed (a prompt
with ``<`` or ``*``) can change the formatting. A button's ``callback_data``
is the core's action string (``tier:<quote>:<tier>``, ``cancel:<job>``):
short keys, with the state in the database.
"""

from __future__ import annotations

import logging
from functools import cache

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import CallbackQueryLimit, InlineKeyboardButtonLimit, MessageLimit
from telegram.error import BadRequest
from telegram.ext import ExtBot

from adapters.messages import split_text
from adapters.telegram.flood import JobMessage
from bot.i18n import RenderedReply, Translator
from bot.replies import Reply

log = logging.getLogger(__name__)

SHORT_LABEL = 16
"""Buttons whose labels are all this short share one row (Reroll, Other tier)."""

ROW_MAX = 3


@cache
def translator(locale: str) -> Translator:
    """One translator per locale, made once."""
    return Translator(locale)


def render(reply: Reply, locale: str) -> RenderedReply:
    """A reply in the reader's language (or the one the member chose, when it says so)."""
    return translator(reply.locale or locale).reply(reply)


def keyboard(buttons: tuple[tuple[str, str], ...]) -> InlineKeyboardMarkup | None:
    """Inline buttons: short labels side by side, long ones (tier prices) one per row."""
    usable = []
    for label, action in buttons:
        if len(action.encode()) > InlineKeyboardButtonLimit.MAX_CALLBACK_DATA:
            log.error("button %r dropped: its action is over 64 bytes", label)
            continue
        usable.append(InlineKeyboardButton(label, callback_data=action))
    if not usable:
        return None
    if all(len(button.text) <= SHORT_LABEL for button in usable):
        rows = [usable[i : i + ROW_MAX] for i in range(0, len(usable), ROW_MAX)]
    else:
        rows = [[button] for button in usable]
    return InlineKeyboardMarkup(rows)


def fits_alert(text: str) -> bool:
    """Short enough for a callback query's alert."""
    return 0 < len(text) <= CallbackQueryLimit.ANSWER_CALLBACK_QUERY_TEXT_LENGTH


async def send_text(
    bot: ExtBot,
    chat_id: int,
    topic_id: int | None,
    rendered: RenderedReply,
    *,
    reply_to: int | None = None,
    ticket: JobMessage | None = None,
) -> Message:
    """Send a rendered reply as one message (or several, if it is long); return the last.

    ``ticket``: a job's own message, which takes the chat's shared turn (each piece).
    """
    pieces = split_text(rendered.text or "…", MessageLimit.MAX_TEXT_LENGTH)
    markup = keyboard(rendered.buttons)
    message: Message | None = None
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        message = await bot.send_message(
            chat_id,
            piece,
            message_thread_id=topic_id,
            reply_markup=markup if last else None,
            reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
            if reply_to is not None and index == 0
            else None,
            rate_limit_args=ticket,
        )
    assert message is not None
    return message


async def edit_text(
    bot: ExtBot,
    chat_id: int,
    message_id: int,
    rendered: RenderedReply,
    *,
    ticket: JobMessage | None = None,
) -> None:
    """Replace a message's text and buttons; an unchanged message is not an error."""
    text = rendered.text[: MessageLimit.MAX_TEXT_LENGTH] or "…"
    try:
        await bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            reply_markup=keyboard(rendered.buttons),
            rate_limit_args=ticket,
        )
    except BadRequest as error:
        if "message is not modified" not in error.message.lower():
            raise
