"""Linked wallets (one wallet on several platforms) on SQLite, PostgreSQL and the fake.

Every operation that names a user resolves the identity to its wallet: once
``discord:2`` redeemed ``telegram:1``'s code, top-ups, holds, adjustments,
purchases, /balance and /history of either land in, and show, one wallet.
The moves are ledger entries (``link_out``/``link_in``) and the audit stays
clean on every backend after every scenario.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NotLinked
from bot.ports import Ledger, LinkResult, Unlinked, UserProfile, Wallet
from storage.audit import audit as sqlite_audit
from storage.postgres.audit import audit as pg_audit
from storage.postgres.database import PgDatabase
from storage.postgres.ledger import PgLedger
from tests.unit.fakes import InMemoryLedger

NOW = 1_700_000_000
TG = UserRef("telegram", "1")
DC = UserRef("discord", "2")
TG2 = UserRef("telegram", "3")
CON = UserRef("console", "local")
TTL = 600


def digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def meet(ledger: Ledger, user: UserRef, credits: int = 0) -> None:
    await ledger.open_wallet(UserProfile(user, f"user {user.id}"), welcome_credits=0, now=NOW)
    if credits:
        await ledger.top_up(user, credits, key=f"fund:{user}", actor="t", reason="", now=NOW)


async def link(ledger: Ledger, issuer: UserRef, redeemer: UserRef, code: str = "ABCD2345"):
    assert await ledger.issue_link_code(issuer, digest(code), now=NOW, ttl_s=TTL, per_hour=5)
    return await ledger.redeem_link_code(redeemer, digest(code), now=NOW + 1, failures_per_hour=10)


async def audit(ledger: Ledger) -> list[str]:
    """The ledger invariants on this backend (the fake: its entries sum to its wallets)."""
    if isinstance(ledger, InMemoryLedger):
        problems = []
        for user, balance in ledger.balances.items():
            entries = [e for e in ledger.entries if e.user == user]
            if (sum(e.amount for e in entries), sum(e.held_delta for e in entries)) != (
                balance,
                ledger.held[user],
            ):
                problems.append(f"wallet {user}")
            opened = sum(
                h.amount for h in ledger.holds.values() if h.user == user and h.state == "open"
            )
            if opened != ledger.held[user]:
                problems.append(f"holds of {user}")
        return problems
    if isinstance(ledger, PgLedger):
        return await pg_audit(ledger.db)
    return await sqlite_audit(ledger.db)  # type: ignore[attr-defined]


async def test_a_redeemed_code_moves_the_second_wallet_into_the_first(ledger):
    await meet(ledger, TG, 100)
    await meet(ledger, DC, 30)
    await ledger.hold(DC, 10, hold_id="job-dc", actor="a", reason="", now=NOW)

    result = await link(ledger, TG, DC)

    assert result == LinkResult("linked", TG, 20, 10)
    assert await ledger.wallet(TG) == Wallet(TG, 120, 10, 1)
    assert await ledger.wallet(DC) == Wallet(DC, 120, 10, 1)
    assert await ledger.linked_identities(DC) == [TG, DC]
    assert await ledger.linked_identities(TG) == [TG, DC]
    kinds = [(e.user, e.kind, e.amount, e.held_delta) for e in await ledger.history(DC, 3)]
    assert kinds == [(TG, "link_in", 20, 10), (DC, "link_out", -20, -10), (DC, "hold", -10, 10)]
    assert await ledger.history(TG, 50) == await ledger.history(DC, 50)
    assert await audit(ledger) == []


async def test_every_operation_on_either_identity_uses_the_one_wallet(ledger):
    await meet(ledger, TG, 100)
    await meet(ledger, DC)
    await link(ledger, TG, DC)

    await ledger.top_up(DC, 50, key="t1", actor="m", reason="", now=NOW)
    await ledger.adjust(DC, -30, key="a1", actor="m", reason="", now=NOW)
    await ledger.purchase(DC, 40, source="discord", charge_id="e1", actor="d", reason="", now=NOW)
    held = await ledger.hold(DC, 150, hold_id="job-1", actor="a", reason="", now=NOW)
    with pytest.raises(InsufficientCredits):
        await ledger.hold(TG, 11, hold_id="job-2", actor="a", reason="", now=NOW)
    await ledger.capture("job-1", actor="r", reason="", now=NOW)

    assert held.entry.user == TG and (await ledger.get_hold("job-1")).user == TG
    assert await ledger.wallet(TG) == Wallet(TG, 10, 0, 0)
    assert await ledger.wallet(DC) == Wallet(DC, 10, 0, 0)
    refund = await ledger.refund_purchase(
        "discord", "e1", force=True, actor="m", reason="", now=NOW
    )
    assert (refund.entry.user, refund.entry.amount) == (TG, -10)
    assert await audit(ledger) == []


async def test_a_hold_made_before_the_link_ends_once_in_the_shared_wallet(ledger):
    await meet(ledger, TG, 100)
    await meet(ledger, DC, 50)
    await ledger.hold(DC, 20, hold_id="kept", actor="a", reason="", now=NOW)
    await ledger.hold(DC, 30, hold_id="given-back", actor="a", reason="", now=NOW)
    await link(ledger, TG, DC)

    captured = await ledger.capture("kept", actor="r", reason="", now=NOW)
    released = await ledger.release("given-back", actor="r", reason="", now=NOW)
    again = await ledger.capture("given-back", actor="r", reason="", now=NOW)

    assert (captured.entry.user, released.entry.user) == (TG, TG)
    assert again.entry == released.entry and not again.applied
    assert await ledger.wallet(DC) == Wallet(DC, 130, 0, 0)
    assert await audit(ledger) == []


async def test_wrong_expired_reused_codes_change_nothing(ledger):
    await meet(ledger, TG, 100)
    await meet(ledger, DC, 7)
    await meet(ledger, TG2, 9)
    await meet(ledger, CON)
    assert await ledger.issue_link_code(TG, digest("GOOD2345"), now=NOW, ttl_s=TTL, per_hour=5)
    before = await ledger.history(TG, 50)

    async def redeem(user: UserRef, code: str, at: int = NOW + 1) -> str:
        result = await ledger.redeem_link_code(user, digest(code), now=at, failures_per_hour=10)
        return result.status

    assert await redeem(TG, "GOOD2345") == "own"
    assert await redeem(TG2, "GOOD2345") == "same_platform"
    assert await redeem(DC, "WRONG234") == "unknown"
    assert await redeem(DC, "GOOD2345", NOW + TTL) == "expired"
    assert await ledger.history(TG, 50) == before
    assert await ledger.wallet(DC) == Wallet(DC, 7, 0, 0)
    assert await ledger.linked_identities(DC) == [DC]

    assert await redeem(DC, "GOOD2345") == "linked"
    assert await redeem(CON, "GOOD2345") == "used"
    assert await ledger.linked_identities(CON) == [CON]
    assert await audit(ledger) == []


async def test_no_chains_and_no_second_link(ledger):
    for user in (TG, DC, CON):
        await meet(ledger, user, 10)
    await link(ledger, TG, DC, "PAIR2345")

    assert (await link(ledger, TG, DC, "AGAIN234")).status == "already_linked"
    assert (await link(ledger, DC, TG, "BACK2345")).status == "already_linked"
    assert (await link(ledger, DC, CON, "CHAIN234")).status == "already_linked"
    assert (await link(ledger, CON, TG, "OTHER234")).status == "already_linked"
    assert await ledger.wallet(CON) == Wallet(CON, 10, 0, 0)
    assert await audit(ledger) == []


async def test_codes_and_wrong_guesses_are_rate_limited(ledger):
    await meet(ledger, TG)
    await meet(ledger, DC)
    issued = [
        await ledger.issue_link_code(TG, digest(f"CODE{n}"), now=NOW + n, ttl_s=TTL, per_hour=5)
        for n in range(6)
    ]
    assert issued == [True] * 5 + [False]
    assert await ledger.issue_link_code(TG, digest("LATER"), now=NOW + 3601, ttl_s=TTL, per_hour=5)

    statuses = [
        (
            await ledger.redeem_link_code(DC, digest(f"GUESS{n}"), now=NOW, failures_per_hour=3)
        ).status
        for n in range(3)
    ]
    right = await ledger.redeem_link_code(DC, digest("CODE4"), now=NOW + 10, failures_per_hour=3)
    later = await ledger.redeem_link_code(DC, digest("CODE4"), now=NOW + 3601, failures_per_hour=3)
    assert statuses == ["unknown"] * 3 and right.status == "too_many"
    assert later.status == "expired"  # counted again an hour on; the code lasted 10 minutes

    # Past an hour after expiring, an unused code is forgotten (so is a wrong guess).
    assert await ledger.issue_link_code(TG, digest("NEWER"), now=NOW + 7300, ttl_s=TTL, per_hour=5)
    gone = await ledger.redeem_link_code(DC, digest("CODE4"), now=NOW + 7300, failures_per_hour=3)
    assert gone.status == "unknown"


async def test_unlink_records_the_split_and_separates_the_wallets(ledger):
    await meet(ledger, TG, 100)
    await meet(ledger, DC, 50)
    await ledger.hold(DC, 20, hold_id="open-job", actor="a", reason="", now=NOW)
    await link(ledger, TG, DC)

    with pytest.raises(InsufficientCredits):
        await ledger.unlink(DC, credits=131, actor="mod", reason="", now=NOW + 5)
    split = await ledger.unlink(DC, credits=30, actor="mod", reason="", now=NOW + 5)

    assert split == Unlinked(TG, DC, 30, 100)
    assert await ledger.wallet(TG) == Wallet(TG, 100, 20, 1)  # open holds stay with the owner
    assert await ledger.wallet(DC) == Wallet(DC, 30, 0, 0)
    assert [(e.kind, e.amount) for e in await ledger.history(DC, 1)] == [("link_in", 30)]
    assert [(e.kind, e.amount) for e in await ledger.history(TG, 1)] == [("link_out", -30)]
    await ledger.top_up(DC, 5, key="after", actor="m", reason="", now=NOW)
    assert (await ledger.wallet(TG)).balance == 100
    with pytest.raises(NotLinked):
        await ledger.unlink(TG, credits=0, actor="mod", reason="", now=NOW + 6)

    # The owner named works too, and the pair may link again with a new code.
    await link(ledger, TG, DC, "AGAIN234")
    split = await ledger.unlink(TG, credits=0, actor="mod", reason="", now=NOW + 7)
    assert (split.kept, split.left, split.credits) == (TG, DC, 0)
    assert await ledger.wallet(DC) == Wallet(DC, 0, 0, 0)
    assert await audit(ledger) == []


async def test_concurrent_links_holds_and_top_ups_on_postgres_lose_no_credit(
    pg_replicas: list[PgDatabase],
):
    """Holds and top-ups of the redeemer, from three replicas, raced with the link itself.

    Each hold resolves the identity when it runs: before the link it holds in
    discord:2's own wallet (and the link moves it), after it in the shared one;
    one that resolved before and waited for the wallet's lock until after the
    link runs again. Every hold fits either wallet, so all of them must succeed.
    """
    ledgers = [PgLedger(database) for database in pg_replicas]
    await meet(ledgers[0], TG, 100)
    await meet(ledgers[0], DC, 100)
    assert await ledgers[0].issue_link_code(TG, digest("RACE2345"), now=NOW, ttl_s=TTL, per_hour=5)

    async def hold(n: int):
        ledger = ledgers[n % len(ledgers)]
        return await ledger.hold(DC, 2, hold_id=f"job-{n}", actor="a", reason="", now=NOW)

    async def top_up(n: int):
        ledger = ledgers[n % len(ledgers)]
        return await ledger.top_up(DC, 1, key=f"tip-{n}", actor="m", reason="", now=NOW)

    async def redeem():
        return await ledgers[1].redeem_link_code(
            DC, digest("RACE2345"), now=NOW, failures_per_hour=10
        )

    results = await asyncio.gather(
        *(hold(n) for n in range(20)),
        *(top_up(n) for n in range(5)),
        redeem(),
        *(hold(n) for n in range(20, 50)),
        *(top_up(n) for n in range(5, 10)),
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []
    linked = results[25]
    assert linked.status == "linked" and linked.partner == TG
    assert await ledgers[2].wallet(DC) == Wallet(DC, 110, 100, 50)
    assert await ledgers[0].wallet(TG) == Wallet(TG, 110, 100, 50)
    holds = [await ledgers[0].get_hold(f"job-{n}") for n in range(50)]
    assert {hold.user for hold in holds} == {TG}
    own = await ledgers[0].db.fetchrow(
        "SELECT balance, held FROM wallets WHERE platform = 'discord' AND user_id = '2'"
    )
    assert (own["balance"], own["held"]) == (0, 0)
    for n in range(50):
        await ledgers[n % 3].capture(f"job-{n}", actor="r", reason="", now=NOW)
    assert await ledgers[1].wallet(DC) == Wallet(DC, 110, 0, 0)
    assert await pg_audit(pg_replicas[0]) == []
