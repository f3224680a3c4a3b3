"""Members buy credits with Telegram Stars (or Discord SKUs); moderators give payments back.

``/buy`` lists the packs of ``TELEGRAM_STARS_PACKS`` with what each buys in
clips of every tier, one button per pack; a button becomes an invoice (the
adapter sends it, in Stars, for exactly the pack's price). Before Telegram
takes the money it asks the bot (``pre_checkout_query``):
:func:`pre_checkout` says yes only for a pack still on sale, at exactly its
price, for the member the invoice was made for; it reads nothing from the
database, so it always answers within Telegram's 10 seconds. The payment
(:class:`~bot.commands.Paid`) is credited once per charge id: the ledger
keys the purchase by it, so a replayed update credits nothing more.

On Discord ``/buy`` lists the SKUs of ``DISCORD_SKU_CREDITS`` instead, each
with Discord's premium button (action ``sku:<id>``); Discord takes the
payment itself and the entitlement it grants is credited by
:mod:`bot.skus`.

A moderator's ``/refund <charge id> [reason] [force]`` writes the refund in
the ledger first and then asks the platform to give the money back
(:class:`~bot.ports.PaymentRefunds`). The ledger entry is the decision,
taken atomically against the member's balance (refused when the credits are
spent, unless ``force``); the platform's refund is idempotent per charge, so
a refund cut short (a crash, the platform unreachable) is finished by
running the same ``/refund`` again, which always asks the platform once more
and counts "already refunded" as done. The other order could let the member
spend the credits between the check and the record, or leave them with both
the money and the credits after a crash.
"""

from __future__ import annotations

import logging

from bot.access import describe, is_moderator
from bot.commands import Buy, BuyPack, Caller, Paid, RefundPurchase, UserRef
from bot.deps import Deps
from bot.errors import NotModerator, PurchaseSpent, UserError
from bot.packs import CURRENCY, SOURCE, Pack, read_payload
from bot.ports import LedgerEntry, Purchase, RefundRefused, UserProfile
from bot.reasons import reason as bot_reason
from bot.replies import Button, Invoice, Reply, Text, TextList, clips_affordable, say, text
from bot.skus import BUTTON_ACTION
from bot.skus import SOURCE as DISCORD
from bot.text import clean_text

log = logging.getLogger(__name__)

CLIP_SECONDS = 5
"""The clip length /buy counts packs in."""


def _offered(deps: Deps, caller: Caller) -> tuple[Pack, ...]:
    """The packs on sale to this caller: Stars packs, on Telegram only."""
    return deps.stars_packs if caller.user.platform == SOURCE else ()


def _clips(deps: Deps, credits: int) -> TextList:
    return clips_affordable(deps.catalog, credits, CLIP_SECONDS)


async def buy(command: Buy, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """The packs on sale, with what each buys; one button per pack."""
    if caller.user.platform == DISCORD:
        return _sku_offer(deps)
    packs = _offered(deps, caller)
    if not packs:
        return [say("buy.off")]
    lines = [text("buy.header", duration=CLIP_SECONDS)]
    lines += [
        text(
            "buy.row",
            money=deps.money(pack.credits),
            stars=pack.stars,
            clips=_clips(deps, pack.credits),
        )
        for pack in packs
    ]
    buttons = tuple(
        Button(
            text("buy.button", credits=pack.credits, stars=pack.stars),
            f"buy:{pack.credits}:{pack.stars}",
        )
        for pack in packs
    )
    return [Reply(tuple(lines), buttons=buttons)]


def _sku_offer(deps: Deps) -> list[Reply]:
    """``/buy`` on Discord: each SKU's credits, what they buy, and its premium button."""
    if not deps.sku_packs:
        return [say("buy.off")]
    lines = [text("sku.header", duration=CLIP_SECONDS)]
    lines += [
        text("sku.row", money=deps.money(pack.credits), clips=_clips(deps, pack.credits))
        for pack in deps.sku_packs
    ]
    lines.append(text("sku.how"))
    buttons = tuple(
        Button(text("sku.button", credits=pack.credits), BUTTON_ACTION + pack.sku_id)
        for pack in deps.sku_packs
    )
    return [Reply(tuple(lines), buttons=buttons)]


async def buy_pack(
    command: BuyPack, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A pack's button: its invoice, if the pack is still on sale at that price."""
    pack = Pack(command.credits, command.price)
    if pack not in _offered(deps, caller):
        raise UserError("buy.gone")
    invoice = Invoice(
        title=text("buy.invoice_title", credits=pack.credits),
        description=text(
            "buy.invoice_description",
            money=deps.money(pack.credits),
            clips=_clips(deps, pack.credits),
        ),
        label=text("buy.invoice_label", credits=pack.credits),
        payload=pack.payload(caller.user.id),
        amount=pack.stars,
        currency=CURRENCY,
    )
    return [Reply((), invoice=invoice)]


def pre_checkout(
    deps: Deps, payer: UserRef, payload: str, currency: str, amount: int
) -> Text | None:
    """Whether Telegram may take this payment: None for yes, else why not (to show the payer).

    Yes only when the payload names a pack still on sale at exactly
    ``amount`` Stars, for the member paying. Reads no database.
    """
    named = read_payload(payload)
    if payer.platform != SOURCE or named is None:
        return text("buy.refused_unknown")
    pack, member = named
    if member != payer.id:
        return text("buy.refused_not_yours")
    if pack not in deps.stars_packs:
        return text("buy.refused_gone")
    if currency != CURRENCY or amount != pack.stars:
        return text("buy.refused_price", stars=pack.stars)
    return None


async def paid(command: Paid, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """Credit a payment once per charge id and tell the member their new balance.

    What was paid is what counts now: the pack its payload names, checked
    against the amount actually paid (the pack may have left the list since
    the checkout said yes; the member paid for it all the same).
    """
    named = read_payload(command.payload)
    if (
        named is None
        or named[1] != caller.user.id
        or command.currency != CURRENCY
        or command.amount != named[0].stars
    ):
        log.error(
            "payment %s by %s does not match its invoice (%s, %d %s): not credited",
            command.charge_id,
            caller.user,
            command.payload,
            command.amount,
            command.currency,
        )
        return [say("buy.unmatched", charge=command.charge_id)]
    pack = named[0]
    try:
        outcome = await deps.ledger.purchase(
            caller.user,
            pack.credits,
            source=SOURCE,
            charge_id=command.charge_id,
            actor=str(caller.user),
            reason=bot_reason("reason.purchase", credits=pack.credits, stars=pack.stars),
            now=deps.clock.now(),
            welcome_credits=deps.welcome_credits,
        )
    except Exception as error:
        # Telegram sends a payment once: say exactly what to hand a moderator.
        log.error(
            "payment %s by %s NOT credited (%d credits for %d Stars): %s: %s",
            command.charge_id,
            caller.user,
            pack.credits,
            pack.stars,
            type(error).__name__,
            error,
        )
        return [say("buy.not_credited", charge=command.charge_id, money=deps.money(pack.credits))]
    log.info(
        "purchase %s by %s: %d credits for %d Stars (%s)",
        command.charge_id,
        caller.user,
        pack.credits,
        pack.stars,
        "credited" if outcome.applied else "already credited",
    )
    wallet = await deps.ledger.wallet(caller.user)
    balance = wallet.balance if wallet else outcome.entry.balance_after
    key = "buy.done" if outcome.applied else "buy.already"
    return [
        Reply(
            (
                text(key, money=deps.money(pack.credits), charge=command.charge_id),
                text("topup.new_balance", money=deps.money(balance)),
            )
        )
    ]


async def _find(deps: Deps, charge_id: str) -> tuple[Purchase, str] | None:
    """The purchase paid by ``charge_id`` on a platform that can give it back."""
    for source in deps.refunds:
        found = await deps.ledger.find_purchase(source, charge_id)
        if found is not None:
            return found, source
    return None


def payer(bought: LedgerEntry, source: str) -> UserRef:
    """Who paid for a purchase: its actor, the member on the platform that took the money.

    The entry itself is in the wallet the member's identity resolved to,
    which for a linked member may be their account on another platform
    (``bot/links.py``); the money goes back to the account that paid.
    """
    try:
        actor = UserRef.parse(bought.actor)
    except ValueError:
        return bought.user
    return actor if actor.platform == source else bought.user


async def refund_purchase(
    command: RefundPurchase, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A moderator gives a payment back: the ledger first, then the platform (see module)."""
    if not is_moderator(caller, deps):
        raise NotModerator()
    found = await _find(deps, command.charge_id)
    if found is None:
        raise UserError("refund.unknown_charge", charge=command.charge_id[:64])
    purchase, source = found
    member = payer(purchase.bought, source)
    profile = await deps.ledger.find_user(member.platform, member.id) or UserProfile(member)
    bought = purchase.bought.amount
    refund = purchase.refund
    already = refund is not None
    if refund is None:
        try:
            outcome = await deps.ledger.refund_purchase(
                source,
                command.charge_id,
                force=command.force,
                actor=str(caller.user),
                reason=clean_text(command.reason)
                or bot_reason("reason.purchase_refund", charge=command.charge_id),
                now=deps.clock.now(),
            )
        except PurchaseSpent as spent:
            raise UserError(
                "refund.purchase_spent",
                who=describe(profile),
                money=deps.money(spent.needed),
                balance=deps.money(spent.balance),
                charge=command.charge_id,
            ) from None
        refund = outcome.entry
        already = not outcome.applied
    try:
        await deps.refunds[source].refund(member, command.charge_id)
    except RefundRefused as refused:
        log.warning(
            "refund of %s recorded, but %s refused it: %s", command.charge_id, source, refused
        )
        return [
            say(
                "refund.purchase_not_returned",
                charge=command.charge_id,
                reason=refused.reason,
            )
        ]
    except Exception as error:  # the platform unreachable: the ledger has it; run it again
        log.warning(
            "refund of %s recorded, but %s could not be asked: %s: %s",
            command.charge_id,
            source,
            type(error).__name__,
            error,
        )
        return [
            say("refund.purchase_not_returned", charge=command.charge_id, reason=str(error)[:200])
        ]
    taken = -refund.amount
    lines = [
        text(
            "refund.purchase_already" if already else "refund.purchase_done",
            charge=command.charge_id,
            who=describe(profile),
            money=deps.money(taken),
        )
    ]
    if taken < bought:
        lines.append(text("refund.purchase_forced", money=deps.money(bought - taken)))
    lines.append(text("topup.new_balance", money=deps.money(refund.balance_after)))
    return [Reply(tuple(lines))]
