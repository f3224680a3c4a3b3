"""Message catalogs (en, zh-CN) and the translator that renders replies for a reader.

Each catalog is a TOML file of ``str.format`` templates. Tests check that both
catalogs hold the same keys with the same placeholders, so a message can
never exist in one language only.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from bot.replies import Money, Reply, Text, TextList, TierName, Timestamp, Wait

LOCALES: tuple[str, ...] = ("en", "zh-CN")
DEFAULT_LOCALE = "en"


def resolve_locale(tag: str | None) -> str:
    """Map a language tag (``zh``, ``zh-hans``, ``zh_CN.UTF-8``, ``en-US``) to a catalog."""
    if tag and tag.strip().lower().replace("_", "-").startswith("zh"):
        return "zh-CN"
    return DEFAULT_LOCALE


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(locale: str) -> Mapping[str, str]:
    """The flattened message catalog of ``locale`` (``price.header`` -> template)."""
    raw = resources.files(__package__).joinpath(f"{locale}.toml").read_text("utf-8")
    return _flatten(tomllib.loads(raw))


def placeholders(template: str) -> set[str]:
    """The names a template expects, e.g. ``{money}`` -> ``{"money"}``."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True, slots=True)
class RenderedReply:
    """A reply as one reader sees it: message text and button labels with their actions."""

    text: str
    buttons: tuple[tuple[str, str], ...]
    edit: bool
    private: bool
    video: Path | None = None


class Translator:
    """Renders :class:`Text` and :class:`Reply` in one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._messages = catalog(self.locale)
        self._fallback = catalog(DEFAULT_LOCALE)

    def __call__(self, item: Text) -> str:
        """Render one message with its parameters formatted for this locale."""
        template = self._messages.get(item.key) or self._fallback.get(item.key)
        if template is None:
            raise KeyError(f"no message {item.key!r} in any catalog")
        params = {name: self._format(value) for name, value in item.params.items()}
        return template.format(**params)

    def reply(self, reply: Reply) -> RenderedReply:
        """Render a whole reply."""
        return RenderedReply(
            text="\n".join(self(line) for line in reply.lines),
            buttons=tuple((self(button.label), button.action) for button in reply.buttons),
            edit=reply.edit,
            private=reply.private,
            video=reply.video,
        )

    def _format(self, value: Any) -> Any:
        match value:
            case Text():
                return self(value)
            case TextList(items=items):
                return self._messages["list.separator"].join(self(item) for item in items)
            case Money(credits=credits, yuan=yuan):
                unit = "money.one" if credits == 1 else "money.other"
                return self._messages[unit].format(credits=f"{credits:,}", yuan=yuan)
            case Wait(seconds=seconds) if seconds < 60:
                return self._messages["wait.seconds"].format(n=seconds)
            case Wait(seconds=seconds):
                return self._messages["wait.minutes"].format(n=max(1, round(seconds / 60)))
            case TierName(tier=tier):
                return tier.name(self.locale)
            case Timestamp(epoch_s=epoch_s):
                return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
            case bool():
                return self._messages["word.yes" if value else "word.no"]
            case _:
                return value
