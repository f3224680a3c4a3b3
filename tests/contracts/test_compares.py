"""The /compare side of the JobStore port, on SQLite, PostgreSQL and the fake (see conftest).

One press holds every tier's price in one transaction or none; the runner
that settles the last job claims the compare once.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.commands import ChatRef
from bot.errors import InsufficientCredits, NoWallet
from bot.jobs.model import Compare
from bot.jobs.store import QueueFull, QuoteTaken
from bot.ports import Wallet
from tests.contracts.test_job_store import ALICE, BOB, NOW, job, made, quote, wallet_of

TIERS = (("job-std", "standard", 20), ("job-hq", "high_quality", 35), ("job-mst", "master", 100))


def tier_jobs(quote_id: str = "q1") -> list:
    return [
        job(job_id, f"{quote_id}-{n}", tier=tier, price=price)
        for n, (job_id, tier, price) in enumerate(TIERS)
    ]


def a_compare(compare_id: str = "cmp-1", quote_id: str = "q1") -> Compare:
    return Compare(
        compare_id=compare_id,
        quote_id=quote_id,
        user=ALICE,
        chat=ChatRef(ALICE.platform, ALICE.id),
        locale="en",
        job_ids=tuple(job_id for job_id, _, _ in TIERS),
    )


async def test_one_press_holds_every_tier_and_links_the_jobs(storage):
    await wallet_of(storage, ALICE, 200)
    await storage.jobs.save_quote(quote("q1"))

    created = await storage.jobs.create_compare(a_compare(), tier_jobs(), max_active=7, now=NOW + 5)

    assert [j.job_id for j in created] == ["job-std", "job-hq", "job-mst"]
    assert all(j.state == "held" and j.created_at == NOW + 5 for j in created)
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 45, 155, 3)
    assert (await storage.jobs.get_quote("q1")).state == "used"
    own = await storage.jobs.get_quote("q1-1")
    assert (own.state, own.tiers, own.image_path) == (
        "used",
        ("high_quality",),
        quote("q1").image_path,
    )
    stored = await storage.jobs.get_compare("cmp-1")
    assert stored.job_ids == ("job-std", "job-hq", "job-mst")
    assert (stored.state, stored.user, stored.created_at) == ("open", ALICE, NOW + 5)
    assert await storage.jobs.compare_of("job-hq") == stored
    assert await storage.jobs.compare_of("job-other") is None
    with pytest.raises(QuoteTaken):  # a second press of the same quote
        await storage.jobs.create_compare(
            a_compare("cmp-2"),
            [job(f"{j.job_id}-2", f"{j.quote_id}-2", tier=j.tier, price=j.price) for j in created],
            max_active=7,
            now=NOW,
        )
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 45, 155, 3)


@pytest.mark.parametrize("refusal", ["too_poor", "queue_full", "no_wallet"])
async def test_a_refused_press_holds_nothing_at_all(storage, refusal):
    await wallet_of(storage, BOB, 100)
    if refusal != "no_wallet":
        # 154 covers the first two tiers, not the third: still no hold at all.
        await wallet_of(storage, ALICE, 154 if refusal == "too_poor" else 500)
    if refusal == "queue_full":
        await made(storage, "job-a")
    await storage.jobs.save_quote(quote("q1"))
    before = await storage.ledger.wallet(ALICE)
    expected = {"queue_full": QueueFull, "too_poor": InsufficientCredits, "no_wallet": NoWallet}

    with pytest.raises(expected[refusal]) as refused:
        await storage.jobs.create_compare(a_compare(), tier_jobs(), max_active=3, now=NOW)

    if refusal == "too_poor":
        assert (refused.value.balance, refused.value.needed) == (154, 155)
    if refusal == "queue_full":
        assert refused.value.active == 1
    assert (await storage.jobs.get_quote("q1")).state == "open"
    assert await storage.ledger.wallet(ALICE) == before
    for job_id, _, _ in TIERS:
        assert await storage.jobs.get_job(job_id) is None
        assert await storage.ledger.get_hold(job_id) is None
    assert await storage.jobs.get_compare("cmp-1") is None


async def test_the_side_by_side_is_claimed_once(storage):
    await wallet_of(storage, ALICE, 200)
    await storage.jobs.save_quote(quote("q1"))
    await storage.jobs.create_compare(a_compare(), tier_jobs(), max_active=7, now=NOW)
    claim = storage.jobs.claim_compare

    results = await asyncio.gather(
        *(claim("cmp-1", f"replica-{n}", now=NOW + 10, stale_before=NOW) for n in range(4))
    )

    assert sorted(results) == [False, False, False, True]
    winner = f"replica-{results.index(True)}"
    making = await storage.jobs.get_compare("cmp-1")
    assert (making.state, making.claimed_by, making.claimed_at) == ("making", winner, NOW + 10)
    assert await claim("cmp-1", winner, now=NOW + 11, stale_before=NOW)  # its own again
    assert not await storage.jobs.finish_compare("cmp-1", "someone", "sent", now=NOW + 12)
    # A claim as old as stale_before is a runner that died: another takes it over.
    assert await claim("cmp-1", "adopter", now=NOW + 100, stale_before=NOW + 11)
    assert not await storage.jobs.finish_compare("cmp-1", winner, "sent", now=NOW + 101)
    assert await storage.jobs.finish_compare("cmp-1", "adopter", "sent", now=NOW + 102)
    done = await storage.jobs.get_compare("cmp-1")
    assert (done.state, done.finished_at) == ("sent", NOW + 102)
    assert not await claim("cmp-1", "late", now=NOW + 10_000, stale_before=NOW + 9_999)
    assert not await claim("cmp-missing", "late", now=NOW, stale_before=NOW)
