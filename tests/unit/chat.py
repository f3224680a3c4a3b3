"""Render the core's replies the way a reader would see them, for assertions."""

from __future__ import annotations

from bot.i18n import Translator
from bot.replies import Reply


def shown(replies: list[Reply], locale: str = "en") -> str:
    """All replies as one text, buttons as ``[label]`` lines."""
    translate = Translator(locale)
    parts = []
    for reply in replies:
        rendered = translate.reply(reply)
        parts.append(rendered.text)
        parts.extend(f"[{label}]" for label, _ in rendered.buttons)
    return "\n".join(parts)
