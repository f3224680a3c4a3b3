"""The core's replies as Discord messages: text within Discord's limits, in the reader's language.

Text goes out as written: no member's words can ping anyone, because the
client's default ``allowed_mentions`` is none (only a finished clip mentions
its requester, explicitly). The core's ``/help`` lines describe the chat-text
commands of Telegram; on Discord they (and the text-only quote's hint to add
an image) are swapped for lines describing the slash commands' options.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from bot.i18n import RenderedReply, Translator
from bot.replies import Reply, Text

MAX_CONTENT = 2000
"""Characters a Discord message may hold."""

_DISCORD_LINES = {
    "help.user_commands": "discord.help_user",
    "help.moderator_commands": "discord.help_moderator",
    "quote.needs_image_omitted": "discord.needs_image_omitted",
    "compare.too_few": "discord.compare_too_few",
}
"""Core messages that read differently with slash commands."""


@cache
def translator(locale: str) -> Translator:
    """One translator per locale, made once."""
    return Translator(locale)


def _for_discord(line: Text) -> Text:
    key = _DISCORD_LINES.get(line.key)
    return line if key is None else Text(key, line.params)


def render(reply: Reply, locale: str) -> RenderedReply:
    """A reply in the reader's language (or the member's chosen one), in Discord's wording."""
    if any(line.key in _DISCORD_LINES for line in reply.lines):
        reply = replace(reply, lines=tuple(_for_discord(line) for line in reply.lines))
    return translator(reply.locale or locale).reply(reply)


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut); never empty."""
    if not text:
        return "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"
