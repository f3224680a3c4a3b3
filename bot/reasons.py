"""Ledger reasons the bot writes itself, stored so each reader sees them in their language.

A reason is free text when a moderator types it (``/topup alice 50 contest
prize``), and shown as typed. When the bot writes one (a hold for a job, a
capture, a refund), it stores a message key and its parameters as a small
JSON object instead, which :func:`reason_text` turns back into a
translatable :class:`~bot.replies.Text`. Entries written before this
existed hold English text and display as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.catalog import Catalog
from bot.i18n import DEFAULT_LOCALE, placeholders
from bot.i18n import catalog as messages
from bot.replies import Text, TierName, text

KEYS = frozenset(
    {
        "reason.welcome",
        "reason.hold",
        "reason.capture",
        "reason.failed",
        "reason.cancelled",
        "reason.refund",
        "reason.purchase",
        "reason.purchase_refund",
        "reason.purchase_sku",
        "reason.purchase_refund_sku",
        "reason.link",
        "reason.unlink",
    }
)
"""The reasons the bot writes; anything else stored is shown verbatim."""


def reason(key: str, **params: str | int) -> str:
    """The stored form of one of the bot's own reasons."""
    if key not in KEYS:
        raise ValueError(f"unknown ledger reason {key!r}")
    return json.dumps({"key": key, "params": params}, ensure_ascii=False, separators=(",", ":"))


def reason_text(stored: str, catalog: Catalog) -> Text | str:
    """What to show for a stored reason: a translatable text, or the stored words themselves."""
    if not stored.startswith("{"):
        return stored
    try:
        data: Any = json.loads(stored)
    except ValueError:
        return stored
    if not isinstance(data, dict) or data.get("key") not in KEYS:
        return stored
    params = data.get("params")
    if not isinstance(params, dict) or not placeholders(messages(DEFAULT_LOCALE)[data["key"]]) <= {
        name for name, value in params.items() if isinstance(value, str | int)
    }:
        return stored
    shown: dict[str, Any] = dict(params)
    tier_key = shown.get("tier")
    if isinstance(tier_key, str) and any(tier.key == tier_key for tier in catalog.tiers):
        shown["tier"] = TierName(catalog.tier(tier_key))
    return text(data["key"], **shown)


def reason_for(stored: str, catalog: Catalog, translate: Callable[[Text], str]) -> str:
    """The stored reason as one reader reads it (operator output: CLI history, CSV export)."""
    shown = reason_text(stored, catalog)
    return shown if isinstance(shown, str) else translate(shown)
