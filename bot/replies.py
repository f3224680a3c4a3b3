"""What the core answers: locale-free text (an i18n key with parameters), buttons and flags.

Adapters render a :class:`Reply` with :mod:`bot.i18n` into their platform's
message, keyboard and visibility. Parameters that read differently per
language (money, waits, tier names, times) are small value objects that the
translator formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.catalog import Catalog, Tier

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Text:
    """A message from the i18n catalogs: ``key`` plus the values for its placeholders."""

    key: str
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


def text(key: str, **params: Any) -> Text:
    """Build a :class:`Text`: ``text("balance.own", money=Money(...))``."""
    return Text(key, MappingProxyType(params))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of credits with its yuan value, e.g. ``35 credits (¥3.50)``."""

    credits: int
    yuan: Decimal

    @classmethod
    def of(cls, catalog: Catalog, credits: int) -> Money:
        """``credits`` with their yuan value at the catalog's rate."""
        return cls(credits, catalog.yuan_amount(credits))


@dataclass(frozen=True, slots=True)
class Wait:
    """An expected wait in seconds, shown as ``~45 s`` / ``~3 min``."""

    seconds: int


@dataclass(frozen=True, slots=True)
class TierName:
    """A tier's display name in the reader's language."""

    tier: Tier


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A moment (Unix seconds), shown in UTC."""

    epoch_s: int


@dataclass(frozen=True, slots=True)
class TextList:
    """Several messages joined with the reader's list separator (``, `` or ``、``)."""

    items: tuple[Text, ...]


def clips_affordable(catalog: Catalog, credits: int, duration_s: int) -> TextList:
    """How many clips of ``duration_s`` each tier ``credits`` buys, as one list (/price, /buy)."""
    affordable = catalog.clips_affordable(credits, duration_s)
    return TextList(
        tuple(
            text("price.clips", count=affordable[tier.key], tier=TierName(tier))
            for tier in catalog.tiers
        )
    )


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a message; pressing it sends ``action`` back to the core."""

    label: Text
    action: str


@dataclass(frozen=True, slots=True)
class Invoice:
    """A bill the member pays in the platform's own payments (Telegram: Stars).

    ``amount`` is in the currency's smallest unit (one Star); ``payload``
    is what the platform hands back at checkout and with the payment.
    """

    title: Text
    description: Text
    label: Text
    payload: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One message from the bot.

    ``lines`` are joined with newlines. ``edit`` asks the adapter to replace
    the message whose button was pressed instead of sending a new one;
    ``private`` asks it to show the reply to the caller only, where the
    platform can; ``video`` is a clip to send with the lines as its caption;
    ``invoice`` a bill to send (after the lines, if there are any); ``locale`` the
    language to render it in, when the member chose one.
    """

    lines: tuple[Text, ...]
    buttons: tuple[Button, ...] = ()
    edit: bool = False
    private: bool = False
    video: Path | None = None
    invoice: Invoice | None = None
    locale: str | None = None
    """Render in this language rather than the reader's platform language (the member
    chose it in /settings); None: the language the adapter would use."""


def say(key: str, **params: Any) -> Reply:
    """A one-line reply."""
    return Reply((text(key, **params),))
