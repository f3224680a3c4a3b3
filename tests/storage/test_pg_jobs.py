"""The PostgreSQL job store under concurrent replicas (each its own pool, tests/conftest.py).

What one SQLite writer got by running one thing at a time, PostgreSQL must
get from locks: a quote becomes one job however many replicas take the press,
a member's queue limit and quote rate count every replica's work, a hold ends
once when a finish races a cancel, one replica sends a clip, a refund pays once.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.commands import ChatRef, UserRef
from bot.errors import InsufficientCredits
from bot.jobs.model import Quote
from bot.jobs.store import QueueFull, QuoteTaken, SlowDown
from bot.ports import UserProfile, Wallet
from storage.postgres.audit import audit
from storage.postgres.database import PgDatabase
from storage.postgres.jobs import PgJobStore
from storage.postgres.ledger import PgLedger
from tests.support.jobs import a_job

NOW = 1_764_000_000
ALICE = UserRef("telegram", "1")


@pytest.fixture
def stores(pg_replicas: list[PgDatabase]) -> list[PgJobStore]:
    return [PgJobStore(database) for database in pg_replicas]


@pytest.fixture
async def ledger(pg_database: PgDatabase) -> PgLedger:
    ledger = PgLedger(pg_database)
    await ledger.open_wallet(UserProfile(ALICE, "Alice"), welcome_credits=0, now=NOW)
    await ledger.top_up(ALICE, 1000, key="fund", actor="t", reason="", now=NOW)
    return ledger


def a_quote(quote_id: str, created_at: int = NOW) -> Quote:
    return Quote(
        quote_id=quote_id,
        user=ALICE,
        chat=ChatRef("telegram", "1"),
        locale="en",
        image_path=f"/data/inputs/{quote_id}.jpg",
        prompt="a robot waves",
        negative_prompt="",
        duration_s=5,
        tiers=("standard",),
        state="open",
        created_at=created_at,
        expires_at=created_at + 600,
    )


async def settled(results):
    return [r for r in results if not isinstance(r, BaseException)], [
        r for r in results if isinstance(r, BaseException)
    ]


async def test_one_quote_pressed_on_every_replica_becomes_one_job(stores, ledger, pg_database):
    await stores[0].save_quote(a_quote("q1"))

    results = await asyncio.gather(
        *(
            store.create_job(a_job(job_id=f"job-{n}", quote_id="q1"), max_active=10, now=NOW)
            for n, store in enumerate(stores * 3)
        ),
        return_exceptions=True,
    )

    made, refused = await settled(results)
    assert len(made) == 1 and all(isinstance(r, QuoteTaken) for r in refused)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 980, 20, 1)
    assert await audit(pg_database) == []


async def test_the_queue_limit_counts_the_jobs_every_replica_made(stores, ledger, pg_database):
    for n in range(9):
        await stores[0].save_quote(a_quote(f"q{n}"))

    results = await asyncio.gather(
        *(
            stores[n % 3].create_job(
                a_job(job_id=f"job-{n}", quote_id=f"q{n}"), max_active=2, now=NOW
            )
            for n in range(9)
        ),
        return_exceptions=True,
    )

    made, refused = await settled(results)
    assert len(made) == 2 and all(isinstance(r, QueueFull) for r in refused)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 960, 40, 2)
    # A refused press left its quote open, to be pressed again once the queue moves.
    states = [(await stores[1].get_quote(f"q{n}")).state for n in range(9)]
    assert states.count("used") == 2 and states.count("open") == 7


async def test_presses_on_every_replica_never_overdraw(stores, ledger, pg_database):
    await ledger.adjust(ALICE, -950, key="spend", actor="t", reason="", now=NOW)  # 50 left
    for n in range(6):
        await stores[0].save_quote(a_quote(f"q{n}"))

    results = await asyncio.gather(
        *(
            stores[n % 3].create_job(
                a_job(job_id=f"job-{n}", quote_id=f"q{n}"), max_active=10, now=NOW
            )
            for n in range(6)
        ),
        return_exceptions=True,
    )

    made, refused = await settled(results)
    assert len(made) == 2 and all(isinstance(r, InsufficientCredits) for r in refused)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 10, 40, 2)
    assert await audit(pg_database) == []


async def test_the_quote_rate_counts_requests_on_every_replica(stores, pg_database):
    members = [UserRef("telegram", str(n)) for n in range(1, 4)]
    for member in members:  # last minute's requests, for whoever comes next to forget
        for _ in range(3):
            await stores[0].admit_quote_request(member, per_minute=3, now=NOW - 90)

    results = await asyncio.gather(
        *(
            stores[n % 3].admit_quote_request(members[n % 3], per_minute=3, now=NOW + n % 2)
            for n in range(36)
        ),
        return_exceptions=True,
    )

    admitted, refused = await settled(results)
    assert len(admitted) == 9 and all(isinstance(r, SlowDown) for r in refused)
    assert (
        await pg_database.fetchval(
            "SELECT count(*) FROM quote_requests WHERE requested_at < $1", NOW
        )
        == 0
    )


async def test_a_finish_racing_a_cancel_ends_the_hold_once(stores, ledger, pg_database):
    for n in range(10):
        await stores[0].save_quote(a_quote(f"q{n}"))
        await stores[0].create_job(
            a_job(job_id=f"job-{n}", quote_id=f"q{n}"), max_active=10, now=NOW
        )
        await stores[0].transition(f"job-{n}", ("held",), "running", now=NOW)

    async def race(n: int) -> list:
        return await asyncio.gather(
            stores[0].transition(f"job-{n}", ("running",), "succeeded", now=NOW, result_path="/c"),
            stores[1].transition(f"job-{n}", ("held", "running"), "cancelled", now=NOW),
            stores[2].transition(f"job-{n}", ("running",), "failed", now=NOW, error_kind="x"),
        )

    outcomes = await asyncio.gather(*(race(n) for n in range(10)))

    for n, moved in enumerate(outcomes):
        [winner] = [job for job in moved if job is not None]
        hold = await ledger.get_hold(f"job-{n}")
        assert hold.state == ("captured" if winner.state == "succeeded" else "released")
    captured = sum(1 for moved in outcomes for job in moved if job and job.state == "succeeded")
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 1000 - 20 * captured, 0, 0)
    assert await audit(pg_database) == []


async def test_one_replica_sends_a_clip_and_a_refund_pays_once(stores, ledger, pg_database):
    await stores[0].save_quote(a_quote("q1"))
    await stores[0].create_job(a_job(job_id="job-1", quote_id="q1"), max_active=1, now=NOW)
    await stores[0].transition("job-1", ("held",), "running", now=NOW)
    await stores[0].transition("job-1", ("running",), "succeeded", now=NOW, result_path="/c")

    claims = await asyncio.gather(
        *(
            store.claim_delivery("job-1", f"replica-{n}", now=NOW, stale_before=NOW - 600)
            for n, store in enumerate(stores * 2)
        )
    )
    assert claims.count(True) == 1
    await stores[0].transition("job-1", ("succeeded",), "delivered", now=NOW, delivered_at=NOW)
    refunds = await asyncio.gather(
        *(store.refund("job-1", actor="mod", reason="", now=NOW) for store in stores * 2)
    )

    assert sum(outcome.applied for outcome in refunds) == 1
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 1000, 0, 0)
    assert (await stores[2].get_job("job-1")).refunded
    assert await audit(pg_database) == []


async def test_a_column_a_newer_replica_adds_does_not_break_an_older_one(
    pg_database, pg_url, ledger
):
    """Rolling upgrade: a newer klingbot migrates while this one runs with cached statements."""
    try:
        async with PgDatabase(pg_url, min_size=1, max_size=1) as older:  # one connection: one cache
            store = PgJobStore(older)
            for n in range(2):
                if n == 1:
                    await pg_database.execute("ALTER TABLE jobs ADD COLUMN from_the_future TEXT")
                await store.save_quote(a_quote(f"q{n}"))
                await store.create_job(
                    a_job(job_id=f"job-{n}", quote_id=f"q{n}"), max_active=9, now=NOW
                )
                await store.transition(f"job-{n}", ("held",), "running", now=NOW)
                done = await store.transition(f"job-{n}", ("running",), "succeeded", now=NOW)
                assert done is not None and done.state == "succeeded"
                await store.transition(f"job-{n}", ("succeeded",), "delivered", now=NOW)
                await store.refund(f"job-{n}", actor="mod", reason="", now=NOW)
                assert (await store.jobs_of(ALICE, 1))[0].job_id == f"job-{n}"
    finally:
        await pg_database.execute("ALTER TABLE jobs DROP COLUMN IF EXISTS from_the_future")
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 1000, 0, 0)
