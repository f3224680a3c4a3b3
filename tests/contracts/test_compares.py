"""The /compare side of the JobStore port, on SQLite, PostgreSQL and the fake (see conftest).

One press holds every tier's price in one transaction or none; the runner
that settles the last job claims the compare once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.commands import ChatRef
from bot.errors import InsufficientCredits, NoWallet
from bot.jobs.compares import CompareFinisher
from bot.jobs.model import Compare
from bot.jobs.store import QueueFull, QuoteTaken
from bot.ports import Outbox, Wallet
from bot.providers.local.sidebyside import GAP
from bot.replies import Reply
from bot.settings import Settings
from tests.contracts.test_job_store import ALICE, BOB, NOW, job, made, quote, wallet_of
from tests.support.video import probe
from tests.unit.fakes import FakeClock

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


async def test_unfinished_compares_oldest_first(storage):
    await wallet_of(storage, ALICE, 1000)
    for n, at in ((1, NOW + 5), (2, NOW), (3, NOW + 9)):
        await storage.jobs.save_quote(quote(f"q{n}"))
        jobs = [
            job(f"{job_id}-{n}", f"q{n}-{i}", tier=tier, price=price)
            for i, (job_id, tier, price) in enumerate(TIERS[:2])
        ]
        compare = Compare(
            compare_id=f"cmp-{n}",
            quote_id=f"q{n}",
            user=ALICE,
            chat=ChatRef(ALICE.platform, ALICE.id),
            locale="en",
            job_ids=tuple(j.job_id for j in jobs),
        )
        await storage.jobs.create_compare(compare, jobs, max_active=20, now=at)
    assert await storage.jobs.claim_compare("cmp-3", "r", now=NOW, stale_before=NOW - 1)
    assert await storage.jobs.finish_compare("cmp-3", "r", "sent", now=NOW)
    await storage.jobs.claim_compare("cmp-1", "r", now=NOW, stale_before=NOW - 1)

    found = await storage.jobs.unfinished_compares(10)

    assert [(c.compare_id, c.state) for c in found] == [("cmp-2", "open"), ("cmp-1", "making")]
    assert found[0].job_ids == ("job-std-2", "job-hq-2")
    assert [c.compare_id for c in await storage.jobs.unfinished_compares(1)] == ["cmp-2"]


# --- the side-by-side clip, finished exactly once -------------------------------------


class Recorded(Outbox):
    """A chat platform that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[Reply] = []

    async def send(self, chat, reply, locale) -> str:
        self.sent.append(reply)
        return str(len(self.sent))

    async def edit(self, chat, message_id, reply, locale) -> None:
        pass


async def ended_compare(storage, tiny_clip, states=("delivered", "delivered")) -> None:
    """A compare of two tiers whose jobs are over (``delivered`` with a clip, or ``failed``)."""
    await wallet_of(storage, ALICE, 200)
    await storage.jobs.save_quote(quote("q1"))
    jobs = tier_jobs()[:2]
    compare = replace(a_compare(), job_ids=tuple(j.job_id for j in jobs))
    await storage.jobs.create_compare(compare, jobs, max_active=7, now=NOW)
    for ended, state in zip(jobs, states, strict=True):
        if state == "failed":
            await storage.jobs.transition(ended.job_id, ("held",), "failed", now=NOW)
            continue
        await storage.jobs.transition(
            ended.job_id, ("held",), "succeeded", now=NOW, result_path=str(tiny_clip)
        )
        await storage.jobs.transition(ended.job_id, ("succeeded",), "delivered", now=NOW)


def finisher(storage, tmp_path, name: str, outbox: Outbox) -> CompareFinisher:
    return CompareFinisher(
        store=storage.jobs,
        outbox=outbox,
        catalog=Settings().catalog(),
        clock=FakeClock(NOW + 60),
        clips_dir=tmp_path / name,
        claimant=name,
    )


async def test_two_replicas_ending_the_last_jobs_send_one_side_by_side(
    storage, tmp_path, tiny_clip
):
    await ended_compare(storage, tiny_clip)
    outboxes = [Recorded(), Recorded()]
    finishers = [finisher(storage, tmp_path, f"replica-{n}", outboxes[n]) for n in (0, 1)]

    # Each replica ended one of the jobs and looks at once.
    done = await asyncio.gather(finishers[0].finish("job-std"), finishers[1].finish("job-hq"))

    assert sorted(done) == [False, True]
    [reply] = [reply for outbox in outboxes for reply in outbox.sent]
    assert reply.video is not None and reply.lines[0].key == "compare.video"
    assert probe(reply.video).width == 256 * 2 + GAP
    assert (await storage.jobs.get_compare("cmp-1")).state == "sent"
    assert not await finishers[0].finish("job-std")  # done: never again


async def test_a_start_finishes_what_no_runner_did(storage, tmp_path, tiny_clip):
    await ended_compare(storage, tiny_clip, states=("delivered", "failed"))
    # A runner claimed it, then died before it said anything.
    assert await storage.jobs.claim_compare("cmp-1", "dead", now=NOW + 59, stale_before=NOW)
    outbox = Recorded()
    replica = finisher(storage, tmp_path, "replica", outbox)
    replica.resume(sole=False)  # with replicas, a fresh claim is left to its holder
    await replica.drained()
    assert outbox.sent == [] and (await storage.jobs.get_compare("cmp-1")).state == "making"

    replica.resume(sole=True)  # alone on the database: the claim is a dead runner's
    await replica.drained()

    [reply] = outbox.sent
    assert (reply.lines[0].key, reply.video) == ("compare.too_few_made", None)
    assert (await storage.jobs.get_compare("cmp-1")).state == "too_few"
    assert await storage.jobs.unfinished_compares(10) == []

