"""Message catalogs (en, zh-CN) and the translator that renders replies for a reader.

Each catalog is a TOML file of ``str.format`` templates. A message that
counts something is a table of CLDR plural forms (``one``, ``other``, ...)
and picks its form from its ``count`` parameter by Babel's plural rules for
the reader's language (English has ``one`` and ``other``, Chinese only
``other``). Numbers are formatted by Babel too. Tests check that both
catalogs hold the same keys with the same placeholders, and every plural
form each language needs, so a message can never exist in one language only.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from babel import Locale
from babel.numbers import format_decimal

from bot.replies import Invoice, Money, Reply, Text, TextList, TierName, Timestamp, Wait

LOCALES: tuple[str, ...] = ("en", "zh-CN")
DEFAULT_LOCALE = "en"

PLURAL_FORMS = frozenset({"zero", "one", "two", "few", "many", "other"})
"""CLDR plural categories: a catalog table with only these keys is one plural message."""

Template = str | Mapping[str, str]
"""A message: one template, or plural form -> template."""


def resolve_locale(tag: str | None) -> str:
    """Map a language tag (``zh``, ``zh-hans``, ``zh_CN.UTF-8``, ``en-US``) to a catalog."""
    if tag and tag.strip().lower().replace("_", "-").startswith("zh"):
        return "zh-CN"
    return DEFAULT_LOCALE


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Template]:
    flat: dict[str, Template] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and set(value) <= PLURAL_FORMS:
            flat[name] = {form: str(template) for form, template in value.items()}
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(locale: str) -> Mapping[str, Template]:
    """The flattened message catalog of ``locale`` (``price.header`` -> template)."""
    raw = resources.files(__package__).joinpath(f"{locale}.toml").read_text("utf-8")
    return _flatten(tomllib.loads(raw))


@cache
def babel_locale(locale: str) -> Locale:
    """The Babel locale behind one of our catalogs (``zh-CN`` -> ``zh_Hans_CN``)."""
    return Locale.parse(locale, sep="-")


def load_locales() -> None:
    """Load every catalog and Babel's CLDR data for it now, rather than at the first message.

    ``klingbot run`` calls this before :func:`gc.freeze`, so the few thousand
    objects of locale data are never walked by the garbage collector again.
    """
    for locale in LOCALES:
        catalog(locale)
        babel = babel_locale(locale)
        babel.plural_form(2)
        format_decimal(1234.5, locale=babel)


def plural_forms(locale: str) -> frozenset[str]:
    """The plural forms a message in ``locale`` must have: ``other`` and each CLDR rule's."""
    return frozenset({"other", *babel_locale(locale).plural_form.tags})


def placeholders(template: Template) -> set[str]:
    """The names a template expects, e.g. ``{money}`` -> ``{"money"}``.

    For a plural message, the names of all its forms and ``count``, which picks the form.
    """
    if not isinstance(template, str):
        return {"count"}.union(*(placeholders(form) for form in template.values()))
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True, slots=True)
class RenderedReply:
    """A reply as one reader sees it: message text and button labels with their actions."""

    text: str
    buttons: tuple[tuple[str, str], ...]
    edit: bool
    private: bool
    video: Path | None = None
    invoice: RenderedInvoice | None = None


@dataclass(frozen=True, slots=True)
class RenderedInvoice:
    """An invoice in the reader's language: its title, description and price label."""

    title: str
    description: str
    label: str
    payload: str
    amount: int
    currency: str


MEMO_SIZE = 1024
"""Rendered messages one translator remembers; it forgets them all when this is reached."""

_LEAVES = frozenset({str, int, float, bool, Decimal, Money, Wait, TierName, Timestamp})
"""Parameter types whose value alone decides how they render (all immutable and hashable)."""


def _memo_key(item: Text) -> tuple[Any, ...] | None:
    """What decides how ``item`` renders, as a hashable key; None if a parameter has none.

    Each leaf carries its type, so ``True``, ``1`` and ``Decimal(1)`` (equal in
    Python, rendered differently) never share a key.
    """
    parts: list[Any] = [item.key]
    for name, value in item.params.items():
        kind = type(value)
        if kind is Text:
            value = _memo_key(value)
        elif kind is TextList:
            value = (TextList, *(_memo_key(entry) for entry in value.items))
            if None in value:
                return None
        elif kind in _LEAVES:
            value = value if kind is str else (kind, value)
        else:
            return None
        if value is None:
            return None
        parts.append(name)
        parts.append(value)
    return tuple(parts)


class Translator:
    """Renders :class:`Text` and :class:`Reply` in one locale.

    Rendering is a pure function of the message and its parameters, so each
    translator remembers what it rendered (up to :data:`MEMO_SIZE` messages):
    the lines every member sees alike, such as the price table, are formatted
    by Babel once instead of on every ``/price``. The core hands out the
    very same price table objects each time, which are found by identity
    without even building their key.
    """

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._messages = catalog(self.locale)
        self._fallback = catalog(DEFAULT_LOCALE)
        self._babel = babel_locale(self.locale)
        self._memo: dict[tuple[Any, ...], str] = {}
        self._seen: dict[int, tuple[Text, str]] = {}
        """By object: messages the core reuses (the price table) skip even the key."""

    def __call__(self, item: Text) -> str:
        """Render one message with its parameters formatted for this locale."""
        seen = self._seen.get(id(item))
        if seen is not None and seen[0] is item:  # the very object (it is kept alive here)
            return seen[1]
        key = _memo_key(item)
        if key is None:
            return self._render(item.key, item.params)
        rendered = self._memo.get(key)
        if rendered is None:
            rendered = self._render(item.key, item.params)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = rendered
        if len(self._seen) >= MEMO_SIZE:
            self._seen.clear()
        self._seen[id(item)] = (item, rendered)
        return rendered

    def number(self, value: int | Decimal, pattern: str | None = None) -> str:
        """A number as this locale writes it (``1,234``); ``pattern`` as in Babel/CLDR."""
        return format_decimal(value, format=pattern, locale=self._babel)

    def _render(self, key: str, params: Mapping[str, Any]) -> str:
        template = self._messages.get(key) or self._fallback.get(key)
        if template is None:
            raise KeyError(f"no message {key!r} in any catalog")
        if not isinstance(template, str):
            count = params.get("count")
            if not isinstance(count, int | Decimal):
                raise KeyError(f"plural message {key!r} needs a numeric count")
            form = self._babel.plural_form(count)
            template = template.get(form) or template["other"]
        return template.format(**{name: self._format(value) for name, value in params.items()})

    def reply(self, reply: Reply) -> RenderedReply:
        """Render a whole reply."""
        return RenderedReply(
            text="\n".join(self(line) for line in reply.lines),
            buttons=tuple((self(button.label), button.action) for button in reply.buttons),
            edit=reply.edit,
            private=reply.private,
            video=reply.video,
            invoice=self._invoice(reply.invoice) if reply.invoice is not None else None,
        )

    def _invoice(self, invoice: Invoice) -> RenderedInvoice:
        return RenderedInvoice(
            title=self(invoice.title),
            description=self(invoice.description),
            label=self(invoice.label),
            payload=invoice.payload,
            amount=invoice.amount,
            currency=invoice.currency,
        )

    def _format(self, value: Any) -> Any:
        match value:
            case Text():
                return self(value)
            case TextList(items=items):
                return self._render("list.separator", {}).join(self(item) for item in items)
            case Money(credits=credits, yuan=yuan):
                return self._render(
                    "money", {"count": credits, "yuan": "¥" + self.number(yuan, "#,##0.00")}
                )
            case Wait(seconds=seconds) if seconds < 60:
                return self._render("wait.seconds", {"count": seconds})
            case Wait(seconds=seconds):
                return self._render("wait.minutes", {"count": max(1, round(seconds / 60))})
            case TierName(tier=tier):
                return tier.name(self.locale)
            case Timestamp(epoch_s=epoch_s):
                return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
            case bool():
                return self._render("word.yes" if value else "word.no", {})
            case int() | Decimal():
                return self.number(value)
            case _:
                return value
