"""Credit packs members buy on Discord: consumable SKUs mapped to credits (``DISCORD_SKU_CREDITS``).

A member pays for a SKU in Discord's own store (a premium button under
``/buy``); Discord grants them an *entitlement* and tells the bot
(``ENTITLEMENT_CREATE``, or the entitlements list at start-up).
:func:`credit` turns one entitlement into credits once: the ledger keys the
purchase by the entitlement id (``purchase:discord:<id>``), so a replayed
event, a second replica's start-up scan or a retry after a crash credits
nothing more. The adapter consumes the entitlement afterwards; credit first,
consume second, so a crash in between is finished by the next scan (the
credit is then a no-op and the consume is retried).

When Discord refunds a purchase (or removes the entitlement) it sends
``ENTITLEMENT_DELETE``; :func:`refunded` records a ``purchase_refund`` of
that entitlement's purchase, forced (Discord gave the money back already,
so the credits left are taken, never below zero), once: a replayed delete
records nothing more.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.commands import UserRef
from bot.errors import UnknownPurchase
from bot.ports import Outcome, Purchase
from bot.reasons import reason as bot_reason
from bot.replies import Reply, text

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

SOURCE = "discord"
"""The ledger's name for Discord purchases (``purchase:discord:<entitlement id>``)."""

_ITEM = re.compile(r"\s*([0-9]{1,20})\s*:\s*([0-9]{1,13})\s*")


@dataclass(frozen=True, slots=True)
class SkuPack:
    """``credits`` for one entitlement of the consumable SKU ``sku_id``."""

    sku_id: str
    credits: int

    def __str__(self) -> str:
        return f"{self.sku_id}:{self.credits}"


def parse_sku_credits(
    items: list[str] | tuple[str, ...], *, max_credits: int
) -> tuple[SkuPack, ...]:
    """``["1234:100", ...]`` -> packs, in the order given; ValueError naming what is wrong.

    A SKU id is Discord's snowflake (digits); each SKU may be mapped once.
    """
    packs = []
    for item in items:
        if not item.strip():
            continue
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(
                f"{item.strip()!r} is not a SKU pack; expected sku_id:credits, e.g. 1234567890:100"
            )
        sku_id, credits = str(int(match.group(1))), int(match.group(2))
        if not 0 < credits <= max_credits:
            raise ValueError(f"SKU {sku_id}: credits must be 1 to {max_credits}")
        packs.append(SkuPack(sku_id, credits))
    ids = [pack.sku_id for pack in packs]
    if len(set(ids)) != len(ids):
        raise ValueError("each SKU may be mapped to credits once")
    return tuple(packs)


def pack_of(deps: Deps, sku_id: int | str) -> SkuPack | None:
    """The pack a SKU buys, or None when the SKU is not one of ``DISCORD_SKU_CREDITS``."""
    wanted = str(sku_id)
    return next((pack for pack in deps.sku_packs if pack.sku_id == wanted), None)


async def credit(deps: Deps, user_id: str, entitlement_id: str, pack: SkuPack) -> Outcome:
    """Credit ``pack`` to Discord user ``user_id`` once for ``entitlement_id``.

    ``applied`` is False when this entitlement was credited before (nothing
    changed). A member the bot has never seen gets a wallet (with the
    welcome credits) in the same transaction: a payment is never lost.
    """
    user = UserRef(SOURCE, user_id)
    outcome = await deps.ledger.purchase(
        user,
        pack.credits,
        source=SOURCE,
        charge_id=entitlement_id,
        actor="discord",
        reason=bot_reason("reason.purchase_sku", credits=pack.credits, sku=pack.sku_id),
        now=deps.clock.now(),
        welcome_credits=deps.welcome_credits,
    )
    log.info(
        "Discord entitlement %s (SKU %s) of %s: %d credits %s",
        entitlement_id,
        pack.sku_id,
        user,
        pack.credits,
        "credited" if outcome.applied else "already credited",
    )
    return outcome


async def refunded(deps: Deps, entitlement_id: str) -> tuple[Purchase, Outcome] | None:
    """Record that Discord refunded (deleted) ``entitlement_id``: its purchase and the refund.

    None when the ledger has no purchase paid by that entitlement (one the
    bot never credited: another SKU, or deleted before it was credited).
    The refund is forced: it takes what is left of the credits, never more
    than the balance; ``applied`` is False when it was recorded before.
    """
    found = await deps.ledger.find_purchase(SOURCE, entitlement_id)
    if found is None:
        return None
    try:
        outcome = await deps.ledger.refund_purchase(
            SOURCE,
            entitlement_id,
            force=True,
            actor="discord",
            reason=bot_reason("reason.purchase_refund_sku"),
            now=deps.clock.now(),
        )
    except UnknownPurchase:
        return None
    log.info(
        "Discord entitlement %s deleted (refunded by Discord): %d credits %s from %s",
        entitlement_id,
        -outcome.entry.amount,
        "taken back" if outcome.applied else "were already taken back",
        found.bought.user,
    )
    return found, outcome


def refund_news(deps: Deps, purchase: Purchase, refund: Outcome, balance: int) -> Reply:
    """What the member is told when Discord refunded their purchase: what was taken back."""
    return Reply(
        (
            text(
                "sku.refunded",
                money=deps.money(purchase.bought.amount),
                taken=deps.money(-refund.entry.amount),
                balance=deps.money(balance),
            ),
        )
    )


BUTTON_ACTION = "sku:"
"""A button whose action is ``sku:<id>`` is Discord's premium button for that SKU: Discord
draws its name and price and opens its own checkout, so the bot never sees the press."""


def bought(deps: Deps, pack: SkuPack, balance: int) -> Reply:
    """What the member is told once their pack is credited: the credits and their new balance."""
    return Reply(
        (
            text("sku.done", money=deps.money(pack.credits)),
            text("topup.new_balance", money=deps.money(balance)),
        )
    )
