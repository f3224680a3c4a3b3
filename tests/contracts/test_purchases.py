"""The Ledger port's purchases, on SQLite, PostgreSQL and the in-memory fake (see conftest).

A paid pack is credited once per payment (source and charge id), whoever
replays it; its refund takes the credits back once, is refused when they
are spent, and with ``force`` takes what is left, never below zero.
"""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet, PurchaseSpent, UnknownPurchase
from bot.ports import Ledger, UserProfile, Wallet

NOW = 1_700_000_000
ALICE = UserRef("telegram", "1")
BOB = UserRef("telegram", "2")


async def buy(ledger: Ledger, user: UserRef, credits: int, charge: str, **options):
    return await ledger.purchase(
        user,
        credits,
        source="telegram",
        charge_id=charge,
        actor=str(user),
        reason="100 credits for 50 Stars",
        now=NOW,
        **options,
    )


async def refund(ledger: Ledger, charge: str, *, force: bool = False, source: str = "telegram"):
    return await ledger.refund_purchase(
        source, charge, force=force, actor="telegram:9", reason="asked", now=NOW + 5
    )


async def test_a_payment_is_credited_once_whoever_replays_it(ledger):
    await ledger.open_wallet(UserProfile(ALICE, "Alice"), welcome_credits=0, now=NOW)

    first = await buy(ledger, ALICE, 100, "stx-1")
    again = await buy(ledger, ALICE, 100, "stx-1")
    other_amount = await buy(ledger, ALICE, 500, "stx-1")
    other_member = await buy(ledger, BOB, 100, "stx-1")

    assert first.applied and not (again.applied or other_amount.applied or other_member.applied)
    assert again.entry == other_amount.entry == other_member.entry == first.entry
    entry = first.entry
    assert (entry.kind, entry.amount, entry.held_delta, entry.balance_after) == (
        "purchase",
        100,
        0,
        100,
    )
    assert (entry.key, entry.actor, entry.reason) == (
        "purchase:telegram:stx-1",
        "telegram:1",
        "100 credits for 50 Stars",
    )
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 100, 0, 0)
    assert await ledger.wallet(BOB) is None
    # The same charge id on another source is another payment.
    other_source = await ledger.purchase(
        ALICE, 7, source="discord", charge_id="stx-1", actor="x", reason="", now=NOW
    )
    assert other_source.applied and other_source.entry.balance_after == 107
    assert [e.kind for e in await ledger.history(ALICE, 10)] == ["purchase", "purchase"]


async def test_a_purchase_opens_the_wallet_it_pays_into(ledger):
    with pytest.raises(NoWallet):
        await buy(ledger, BOB, 100, "stx-2", create_wallet=False)
    assert await ledger.wallet(BOB) is None

    outcome = await buy(ledger, BOB, 100, "stx-2", welcome_credits=30)

    assert outcome.applied and outcome.entry.balance_after == 130
    assert await ledger.wallet(BOB) == Wallet(BOB, 130, 0, 0)
    for bad in (0, -5):
        with pytest.raises(ValueError):
            await buy(ledger, BOB, bad, "stx-bad")
    assert await ledger.entry("purchase:telegram:stx-bad") is None


async def test_a_refund_takes_the_credits_back_once(ledger):
    await buy(ledger, ALICE, 100, "stx-3")
    await ledger.top_up(ALICE, 20, key="gift", actor="m", reason="", now=NOW)

    first = await refund(ledger, "stx-3")
    again = await refund(ledger, "stx-3", force=True)

    assert first.applied and not again.applied and again.entry == first.entry
    entry = first.entry
    assert (entry.kind, entry.amount, entry.balance_after, entry.key, entry.actor) == (
        "purchase_refund",
        -100,
        20,
        "purchase_refund:telegram:stx-3",
        "telegram:9",
    )
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 20, 0, 0)
    found = await ledger.find_purchase("telegram", "stx-3")
    assert found is not None and found.bought.amount == 100 and found.refund == entry
    assert await ledger.find_purchase("telegram", "stx-none") is None
    with pytest.raises(UnknownPurchase):
        await refund(ledger, "stx-none")
    with pytest.raises(UnknownPurchase):
        await refund(ledger, "stx-3", source="discord")


async def test_spent_credits_refuse_a_refund_unless_forced(ledger):
    await buy(ledger, ALICE, 100, "stx-4")
    await ledger.hold(ALICE, 70, hold_id="job-1", actor="a", reason="", now=NOW)

    with pytest.raises(PurchaseSpent) as spent:
        await refund(ledger, "stx-4")
    assert isinstance(spent.value, InsufficientCredits)
    assert (spent.value.balance, spent.value.needed) == (30, 100)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 30, 70, 1)
    assert (await ledger.find_purchase("telegram", "stx-4")).refund is None

    forced = await refund(ledger, "stx-4", force=True)

    assert forced.applied and (forced.entry.amount, forced.entry.balance_after) == (-30, 0)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 0, 70, 1)  # the job's hold is untouched
    await ledger.capture("job-1", actor="runner", reason="", now=NOW)

    # Nothing left at all: a forced refund is still recorded, taking nothing.
    await buy(ledger, ALICE, 50, "stx-5")
    await ledger.hold(ALICE, 50, hold_id="job-2", actor="a", reason="", now=NOW)
    empty = await refund(ledger, "stx-5", force=True)
    assert empty.applied and (empty.entry.amount, empty.entry.balance_after) == (0, 0)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 0, 50, 1)
    assert [(e.kind, e.amount) for e in await ledger.history(ALICE, 3)] == [
        ("purchase_refund", 0),
        ("hold", -50),
        ("purchase", 50),
    ]
