"""Credit packs sold for Telegram Stars (``TELEGRAM_STARS_PACKS``), and their invoices' payload.

A pack is ``credits:stars``. Its invoice's payload names the pack and the
member (``stars:<credits>:<stars>:<user id>``), so the pre-checkout answer
needs no database: the payload, the price Telegram asks and the payer say
all there is to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_STARS = 10_000
"""The most Stars one invoice may ask (Telegram's limit for an XTR price)."""

CURRENCY = "XTR"
"""Telegram Stars' currency code."""

SOURCE = "telegram"
"""The ledger's name for payments in Stars (``purchase:telegram:<charge id>``)."""

_PACK = re.compile(r"\s*([0-9]{1,13})\s*:\s*([0-9]{1,6})\s*")
_PAYLOAD = re.compile(r"stars:([0-9]{1,13}):([0-9]{1,6}):([0-9]{1,20})")


@dataclass(frozen=True, slots=True, order=True)
class Pack:
    """``credits`` for ``stars`` Telegram Stars."""

    credits: int
    stars: int

    def payload(self, user_id: str) -> str:
        """The invoice payload for this pack bought by ``user_id`` (at most 56 bytes)."""
        return f"stars:{self.credits}:{self.stars}:{user_id}"

    def __str__(self) -> str:
        return f"{self.credits}:{self.stars}"


def parse_pack(text: str, *, max_credits: int) -> Pack:
    """``"100:50"`` -> ``Pack(100, 50)``; ValueError naming what is wrong."""
    match = _PACK.fullmatch(text)
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a pack; expected credits:stars, e.g. 100:50")
    credits, stars = int(match.group(1)), int(match.group(2))
    if not 0 < credits <= max_credits:
        raise ValueError(f"pack {text.strip()}: credits must be 1 to {max_credits}")
    if not 0 < stars <= MAX_STARS:
        raise ValueError(f"pack {text.strip()}: stars must be 1 to {MAX_STARS:,}")
    return Pack(credits, stars)


def parse_packs(items: list[str] | tuple[str, ...], *, max_credits: int) -> tuple[Pack, ...]:
    """The packs in the order given; the same pack twice, or two prices for one, is refused."""
    packs = tuple(parse_pack(item, max_credits=max_credits) for item in items if item.strip())
    credits = [pack.credits for pack in packs]
    if len(set(credits)) != len(credits):
        raise ValueError("each number of credits may be offered once")
    return packs


def read_payload(payload: str) -> tuple[Pack, str] | None:
    """The pack and member id an invoice payload names; None when it is not ours."""
    match = _PAYLOAD.fullmatch(payload)
    if match is None:
        return None
    return Pack(int(match.group(1)), int(match.group(2))), match.group(3)
