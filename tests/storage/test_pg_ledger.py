"""The PostgreSQL ledger under concurrent replicas: each replica is its own PgDatabase pool.

The guarantees come from row locks and constraints, not a single writer: many
holds on one wallet never overdraw it, a key raced by two replicas applies
once, a capture racing a release ends the hold once, and the audit (one
snapshot) finds nothing wrong afterwards.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.commands import UserRef
from bot.errors import InsufficientCredits
from bot.ports import UserProfile, Wallet
from storage.postgres.audit import audit
from storage.postgres.database import PgDatabase
from storage.postgres.ledger import PgLedger

NOW = 1_700_000_000
ALICE = UserRef("telegram", "1001")
REPLICAS = 3


@pytest.fixture
def replicas(pg_replicas: list[PgDatabase]) -> list[PgLedger]:
    """A ledger on each of three replicas' pools (tests/conftest.py)."""
    return [PgLedger(database) for database in pg_replicas]


async def funded(ledger: PgLedger, credits: int) -> None:
    await ledger.open_wallet(UserProfile(ALICE, "Alice"), welcome_credits=0, now=NOW)
    await ledger.top_up(ALICE, credits, key="fund", actor="t", reason="", now=NOW)


async def test_holds_from_three_replicas_never_overdraw_one_wallet(replicas, pg_database):
    await funded(replicas[0], 100)

    results = await asyncio.gather(
        *(
            replicas[n % REPLICAS].hold(ALICE, 2, hold_id=f"job-{n}", actor="a", reason="", now=NOW)
            for n in range(200)
        ),
        return_exceptions=True,
    )

    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 50 and all(isinstance(r, InsufficientCredits) for r in refused)
    assert await replicas[1].wallet(ALICE) == Wallet(ALICE, 0, 100, 50)
    assert await audit(pg_database) == []


async def test_50_holds_and_their_endings_raced_by_replicas_end_exactly(replicas, pg_database):
    await funded(replicas[0], 10_000)
    amounts = {f"job-{n}": 10 + n for n in range(50)}
    capture = {hold_id: n % 3 != 0 for n, hold_id in enumerate(amounts)}
    rng = random.Random(17)

    async def one_job(hold_id: str) -> None:
        # Every step is sent by two replicas at once, as a retry racing its original would be;
        # a third replica tries the opposite ending at the same moment.
        first, second, third = rng.sample(replicas, 3)
        held = await asyncio.gather(
            *(
                ledger.hold(ALICE, amounts[hold_id], hold_id=hold_id, actor="a", reason="", now=NOW)
                for ledger in (first, second)
            )
        )
        assert sorted(outcome.applied for outcome in held) == [False, True]
        assert held[0].entry == held[1].entry
        ending, other = ("capture", "release") if capture[hold_id] else ("release", "capture")
        ended = await asyncio.gather(
            getattr(first, ending)(hold_id, actor="r", reason="", now=NOW),
            getattr(second, ending)(hold_id, actor="r", reason="", now=NOW),
            getattr(third, other)(hold_id, actor="r", reason="", now=NOW),
        )
        assert sum(outcome.applied for outcome in ended) == 1
        assert len({outcome.entry for outcome in ended}) == 1

    await asyncio.gather(*(one_job(hold_id) for hold_id in amounts))

    # Whichever ending won each race, the wallet adds up exactly.
    holds = {hold_id: await replicas[2].get_hold(hold_id) for hold_id in amounts}
    spent = sum(amounts[h] for h, hold in holds.items() if hold.state == "captured")
    assert all(hold.state in ("captured", "released") for hold in holds.values())
    assert await replicas[0].wallet(ALICE) == Wallet(ALICE, 10_000 - spent, 0, 0)
    assert len(await replicas[0].history(ALICE, 1000)) == 1 + 50 + 50
    assert await audit(pg_database) == []


async def test_a_key_raced_by_replicas_applies_once(replicas, pg_database):
    bob = UserRef("telegram", "2002")
    opened = await asyncio.gather(
        *(
            ledger.open_wallet(UserProfile(bob, "Bob"), welcome_credits=30, now=NOW)
            for ledger in replicas
        )
    )
    assert all(wallet.balance == 30 for wallet in opened)
    outcomes = await asyncio.gather(
        *(
            ledger.top_up(bob, 500, key="ticket-42", actor="mod", reason="", now=NOW)
            for ledger in replicas * 3
        ),
        *(
            ledger.top_up(
                UserRef("telegram", "3003"), 7, key="new-member", actor="mod", reason="",
                now=NOW, create_wallet=True, welcome_credits=30,
            )
            for ledger in replicas
        ),
    )  # fmt: skip

    assert sum(outcome.applied for outcome in outcomes[:9]) == 1
    assert len({outcome.entry for outcome in outcomes[:9]}) == 1
    assert sum(outcome.applied for outcome in outcomes[9:]) == 1
    assert (await replicas[0].wallet(bob)).balance == 530
    assert (await replicas[0].wallet(UserRef("telegram", "3003"))).balance == 37
    assert await audit(pg_database) == []


async def test_the_audit_reports_a_wallet_its_entries_do_not_explain(pg_database):
    ledger = PgLedger(pg_database)
    await funded(ledger, 100)
    await ledger.hold(ALICE, 30, hold_id="job-1", actor="a", reason="", now=NOW)
    assert await audit(pg_database) == []

    # What only a hand edit of the database could do: the schema allows it, the audit sees it.
    await pg_database.execute("UPDATE wallets SET balance = balance + 5")
    await pg_database.execute("UPDATE holds SET state = 'captured'")

    assert await audit(pg_database) == [
        "wallet telegram:1001 holds 75/30 but its entries sum to 70/30",
        "wallet telegram:1001 holds 30 but its open holds add up to 0",
        "hold job-1 is captured with 0 endings",
        "top-ups and adjustments (100) differ from balances (75) + open holds (0) + captures (30)",
    ]


async def overlapping(blocker_db: PgDatabase, *writes):
    """Run ``writes`` so that they overlap for sure: all wait for the wallet's row lock,
    which another connection holds until every one of them waits."""
    async with blocker_db.transaction() as blocker:
        await blocker.execute("SELECT FROM wallets WHERE user_id = $1 FOR UPDATE", ALICE.id)
        tasks = [asyncio.create_task(write) for write in writes]
        while await blocker_db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ) < len(tasks):
            assert not any(task.done() for task in tasks)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_retry_that_waited_for_its_original_gets_its_entry_not_a_refusal(
    replicas, pg_replicas
):
    """The retry looked for its key before waiting for the wallet, and the original then spent it.

    The first write spends 60 of 100, the retry then finds 40 left: it must answer with
    the first one's entry, as it would have had it come a moment later.
    """
    await funded(replicas[0], 100)

    held = await overlapping(
        pg_replicas[2],
        *(
            ledger.hold(ALICE, 60, hold_id="job-1", actor="a", reason="", now=NOW)
            for ledger in replicas[:2]
        ),
    )
    fined = await overlapping(
        pg_replicas[2],
        *(
            ledger.adjust(ALICE, -30, key="fine", actor="m", reason="", now=NOW)
            for ledger in replicas[:2]
        ),
    )

    for first, retry in (held, fined):
        assert not isinstance(first, BaseException) and not isinstance(retry, BaseException)
        assert sorted([first.applied, retry.applied]) == [False, True]
        assert first.entry == retry.entry
    assert await replicas[0].wallet(ALICE) == Wallet(ALICE, 10, 60, 1)


async def test_a_payment_replayed_by_every_replica_at_once_is_credited_once(replicas, pg_database):
    await funded(replicas[0], 10)

    outcomes = await asyncio.gather(
        *(
            replicas[n % REPLICAS].purchase(
                ALICE, 100, source="telegram", charge_id="stx-race", actor="a", reason="", now=NOW
            )
            for n in range(30)
        )
    )

    assert sum(outcome.applied for outcome in outcomes) == 1
    assert len({outcome.entry.seq for outcome in outcomes}) == 1
    assert await replicas[2].wallet(ALICE) == Wallet(ALICE, 110, 0, 0)
    assert await audit(pg_database) == []


async def test_a_refund_raced_by_replicas_and_holds_takes_the_credits_once(replicas, pg_database):
    await replicas[0].open_wallet(UserProfile(ALICE, "Alice"), welcome_credits=0, now=NOW)
    await replicas[0].purchase(
        ALICE, 100, source="telegram", charge_id="stx-r", actor="a", reason="", now=NOW
    )

    async def refund(n: int):
        return await replicas[n % REPLICAS].refund_purchase(
            "telegram", "stx-r", force=True, actor="m", reason="", now=NOW
        )

    async def hold(n: int):
        return await replicas[n % REPLICAS].hold(
            ALICE, 10, hold_id=f"job-{n}", actor="a", reason="", now=NOW
        )

    results = await asyncio.gather(
        *(refund(n) if n % 2 else hold(n) for n in range(40)), return_exceptions=True
    )

    refunds = [r for n, r in enumerate(results) if n % 2]
    holds = [r for n, r in enumerate(results) if not n % 2 and not isinstance(r, BaseException)]
    assert not any(isinstance(r, BaseException) for r in refunds)
    assert sum(r.applied for r in refunds) == 1 and len({r.entry.seq for r in refunds}) == 1
    taken = -refunds[0].entry.amount
    assert taken + 10 * len(holds) == 100  # what the holds left, the refund took: no more
    assert await replicas[1].wallet(ALICE) == Wallet(ALICE, 0, 10 * len(holds), len(holds))
    assert await audit(pg_database) == []


async def test_a_known_member_with_the_same_profile_writes_nothing(pg_database):
    """Every command but /price opens the wallet: for a known member that must cost no write."""
    ledger = PgLedger(pg_database)
    profile = UserProfile(ALICE, "Alice", "alice", "zh-CN")
    await ledger.open_wallet(profile, welcome_credits=30, now=NOW)
    versions = (  # the row versions, and who last locked each row
        "SELECT (SELECT xmin::text FROM users), (SELECT xmin::text FROM wallets),"
        " (SELECT xmax::text FROM users), (SELECT xmax::text FROM wallets)"
    )
    before = await pg_database.fetchrow(versions)

    again = await ledger.open_wallet(profile, welcome_credits=30, now=NOW + 60)

    assert again == Wallet(ALICE, 30, 0, 0)
    assert await pg_database.fetchrow(versions) == before  # no new row version, no lock
    renamed = await ledger.open_wallet(
        UserProfile(ALICE, "Alice B", "alice", "zh-CN"), welcome_credits=30, now=NOW + 61
    )
    assert renamed == again
    assert (await pg_database.fetchrow(versions))[0] != before[0]
    assert (await ledger.find_user("telegram", "alice")).display_name == "Alice B"
