"""The JobLeases port's contract (bot/jobs/leases.py), on every backend (see conftest).

Who owns a job and until when, adoption of lapsed jobs, the slots the limits
count across replicas, and queue positions counted in the database.
"""

from __future__ import annotations

import pytest

from bot.jobs.leases import JobLeases
from tests.contracts.test_job_store import ALICE, BOB, NOW, made, wallet_of
from tests.unit.fakes import InMemoryJobLeases

LEASE = 30.0
T = float(NOW)
"""Lease times are wall-clock floats; the jobs are made at ``NOW``."""


def leases_of(storage) -> JobLeases:
    """The backend's JobLeases on the same data as its job store."""
    if storage.name == "memory":
        return InMemoryJobLeases(storage.jobs)
    if storage.name == "sqlite":
        from storage.leases import SqliteJobLeases

        return SqliteJobLeases(storage.jobs.db)
    from storage.postgres.leases import PgJobLeases

    return PgJobLeases(storage.jobs.db)


@pytest.fixture
async def leases(storage) -> JobLeases:
    await wallet_of(storage, ALICE, 1000)
    await wallet_of(storage, BOB, 1000)
    return leases_of(storage)


async def jobs_made(storage, count: int, *, user=ALICE, prefix: str = "job") -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(count)]
    for n, job_id in enumerate(ids):
        await made(storage, job_id, user=user, at=NOW + n)
    return ids


async def test_a_job_is_owned_by_one_replica_until_its_lease_lapses(storage, leases):
    [job_id] = await jobs_made(storage, 1)

    assert await leases.claim(job_id, "a", now=T, lease_s=LEASE)
    assert await leases.claim(job_id, "a", now=T + 1, lease_s=LEASE)  # its own: renewed
    assert not await leases.claim(job_id, "b", now=T + LEASE, lease_s=LEASE)  # still a's
    assert await leases.claim(job_id, "b", now=T + 1 + LEASE + 0.5, lease_s=LEASE)
    assert not await leases.claim(job_id, "a", now=T + LEASE + 2, lease_s=LEASE)
    assert not await leases.claim("nope", "a", now=T, lease_s=LEASE)


async def test_renewing_keeps_the_unfinished_jobs_and_says_which_were_lost(storage, leases):
    ids = await jobs_made(storage, 3)
    for job_id in ids:
        assert await leases.claim(job_id, "a", now=T, lease_s=LEASE)
    await storage.jobs.transition(ids[0], ("held",), "cancelled", now=NOW, finished_at=NOW)

    assert await leases.renew("a", now=T + 20, lease_s=LEASE) == {ids[1], ids[2]}
    # Renewed until T + 50: b cannot take them at T + 40.
    assert await leases.adopt("b", now=T + 40, lease_s=LEASE, limit=10) == []
    # a stalls; past its lease b adopts one; a's next renewal no longer names it.
    assert not await leases.claim(ids[1], "b", now=T + 49, lease_s=LEASE)
    assert await leases.claim(ids[1], "b", now=T + 51, lease_s=LEASE)
    assert await leases.renew("a", now=T + 52, lease_s=LEASE) == {ids[2]}
    assert await leases.renew("b", now=T + 52, lease_s=LEASE) == {ids[1]}
    assert await leases.renew("nobody", now=T + 52, lease_s=LEASE) == set()


async def test_adoption_takes_unowned_and_lapsed_jobs_oldest_first_naming_their_owner(
    storage, leases
):
    ids = await jobs_made(storage, 5)
    assert await leases.claim(ids[1], "a", now=T, lease_s=LEASE)
    assert await leases.claim(ids[2], "c", now=T + 20, lease_s=LEASE)  # live at T + 40
    assert await leases.claim(ids[3], "a", now=T, lease_s=LEASE)
    await storage.jobs.transition(ids[4], ("held",), "cancelled", now=NOW, finished_at=NOW)
    # Just made, not yet claimed by the replica admitting it: not an orphan yet.
    assert await leases.adopt("b", now=T + 1, lease_s=LEASE, limit=10) == []

    first = await leases.adopt("b", now=T + 40, lease_s=LEASE, limit=2)
    rest = await leases.adopt("b", now=T + 40, lease_s=LEASE, limit=10)

    assert [(a.job.job_id, a.previous_owner) for a in first] == [(ids[0], None), (ids[1], "a")]
    assert [(a.job.job_id, a.previous_owner) for a in rest] == [(ids[3], "a")]
    assert first[0].job.state == "held" and first[0].job.user == ALICE
    assert await leases.adopt("d", now=T + 41, lease_s=LEASE, limit=10) == []
    assert await leases.renew("b", now=T + 41, lease_s=LEASE) == {ids[0], ids[1], ids[3]}


async def test_a_restarted_replica_takes_its_own_jobs_back_at_once(storage, leases):
    ids = await jobs_made(storage, 2)
    assert await leases.claim(ids[0], "a", now=T, lease_s=LEASE)
    assert await leases.claim(ids[1], "b", now=T, lease_s=LEASE)

    again = await leases.adopt("a", now=T + 1, lease_s=LEASE, limit=10, own=True)

    assert [(a.job.job_id, a.previous_owner) for a in again] == [(ids[0], "a")]
    assert await leases.adopt("a", now=T + 1, lease_s=LEASE, limit=10) == []


async def test_a_stopping_replica_lets_its_jobs_go_at_once(storage, leases):
    ids = await jobs_made(storage, 2)
    for job_id in ids:
        assert await leases.claim(job_id, "a", now=T, lease_s=LEASE)
    await storage.jobs.transition(ids[1], ("held",), "cancelled", now=NOW, finished_at=NOW)

    assert await leases.release("a", now=T + 1) == 1
    adopted = await leases.adopt("b", now=T + 1, lease_s=LEASE, limit=10)
    assert [(a.job.job_id, a.previous_owner) for a in adopted] == [(ids[0], "a")]


async def test_an_adopted_made_clip_needs_no_slot_and_its_dead_owners_claim_is_dropped(
    storage, leases
):
    ids = await jobs_made(storage, 3)
    for job_id in ids:
        assert await leases.claim(job_id, "a", now=T, lease_s=LEASE)
        assert await leases.take_slot(job_id, "a", per_provider=9, per_user=9, now=T) != "gone"
        await storage.jobs.transition(job_id, ("held",), "submitted", now=NOW, task_id="t")
        await storage.jobs.transition(job_id, ("submitted",), "running", now=NOW)
        await storage.jobs.transition(job_id, ("running",), "succeeded", now=NOW)
    claim = storage.jobs.claim_delivery
    assert await claim(ids[0], "a", now=NOW, stale_before=NOW - 600)  # a died mid-send
    assert await claim(ids[1], "c", now=NOW, stale_before=NOW - 600)  # c sends it (Send again)

    adopted = await leases.adopt("b", now=T + 31, lease_s=LEASE, limit=10)

    assert [a.job.job_id for a in adopted] == ids
    assert await claim(ids[0], "b", now=NOW + 31, stale_before=NOW - 600)  # a's claim: gone
    assert not await claim(ids[1], "b", now=NOW + 31, stale_before=NOW - 600)  # c's stays
    # None of them counts against the limit any more: b starts another job at once.
    [other] = await jobs_made(storage, 1, prefix="other")
    assert await leases.claim(other, "b", now=T + 31, lease_s=LEASE)
    taken = await leases.take_slot(other, "b", per_provider=1, per_user=1, now=T + 31)
    assert not isinstance(taken, str) and taken.job_id == other


async def test_slots_hold_the_provider_limit_across_replicas(storage, leases):
    ids = await jobs_made(storage, 3)
    bobs = await jobs_made(storage, 1, user=BOB, prefix="bob")
    for job_id, owner in zip([*ids, *bobs], "abab", strict=True):
        assert await leases.claim(job_id, owner, now=T, lease_s=LEASE)
    take = leases.take_slot

    first = await take(ids[0], "a", per_provider=2, per_user=5, now=T)
    assert not isinstance(first, str) and first.job_id == ids[0] and first.state == "held"
    assert await take(ids[0], "a", per_provider=2, per_user=5, now=T) == first  # kept, not twice
    assert not isinstance(await take(ids[1], "b", per_provider=2, per_user=5, now=T), str)
    assert await take(bobs[0], "b", per_provider=2, per_user=5, now=T) == "provider"
    assert await take(ids[2], "a", per_provider=2, per_user=5, now=T) == "provider"
    assert await take(ids[2], "b", per_provider=9, per_user=5, now=T) == "gone"  # a's job
    # A job still at the provider keeps its slot; one that left gives it back.
    assert not await leases.free_slot(ids[0], "a")
    await storage.jobs.transition(ids[0], ("held",), "submitted", now=NOW, task_id="t")
    assert not await leases.free_slot(ids[0], "a")
    await storage.jobs.transition(ids[0], ("submitted",), "failed", now=NOW)
    assert not isinstance(await take(ids[2], "a", per_provider=2, per_user=5, now=T), str)
    assert await take(bobs[0], "b", per_provider=2, per_user=5, now=T) == "provider"
    await storage.jobs.transition(ids[1], ("held",), "submitted", now=NOW, task_id="t")
    await storage.jobs.transition(ids[1], ("submitted",), "running", now=NOW)
    await storage.jobs.transition(ids[1], ("running",), "succeeded", now=NOW)
    # Made, its clip not yet sent: the slot stays until the runner gives it back.
    assert await take(bobs[0], "b", per_provider=2, per_user=5, now=T) == "provider"
    assert not await leases.free_slot(ids[1], "a")  # b's job: a leaves its slot alone
    assert await leases.free_slot(ids[1], "b")
    assert not await leases.free_slot(ids[1], "b")
    assert not isinstance(await take(bobs[0], "b", per_provider=2, per_user=5, now=T), str)


async def test_slots_hold_the_per_user_limit_across_replicas(storage, leases):
    ids = await jobs_made(storage, 2)
    [bob] = await jobs_made(storage, 1, user=BOB, prefix="bob")
    for job_id, owner in ((ids[0], "a"), (ids[1], "b"), (bob, "b")):
        assert await leases.claim(job_id, owner, now=T, lease_s=LEASE)

    assert not isinstance(
        await leases.take_slot(ids[0], "a", per_provider=9, per_user=1, now=T), str
    )
    assert await leases.take_slot(ids[1], "b", per_provider=9, per_user=1, now=T) == "user"
    assert not isinstance(await leases.take_slot(bob, "b", per_provider=9, per_user=1, now=T), str)


async def test_the_oldest_queued_job_of_a_live_replica_starts_first(storage, leases):
    ids = await jobs_made(storage, 2)
    [bob] = await jobs_made(storage, 1, user=BOB, prefix="bob")
    assert await leases.claim(ids[0], "a", now=T, lease_s=LEASE)
    assert await leases.claim(ids[1], "b", now=T, lease_s=LEASE)
    assert await leases.claim(bob, "b", now=T, lease_s=LEASE)
    take = leases.take_slot

    assert await take(ids[1], "b", per_provider=9, per_user=9, now=T) == "older"
    # a's job goes first; then b's may.
    assert not isinstance(await take(ids[0], "a", per_provider=9, per_user=9, now=T), str)
    assert not isinstance(await take(ids[1], "b", per_provider=9, per_user=9, now=T), str)


async def test_an_older_job_that_cannot_start_does_not_hold_the_queue(storage, leases):
    ids = await jobs_made(storage, 3)
    [bob] = await jobs_made(storage, 1, user=BOB, prefix="bob")
    for job_id, owner in zip([*ids, bob], "aaab", strict=True):
        assert await leases.claim(job_id, owner, now=T, lease_s=LEASE)
    assert not isinstance(
        await leases.take_slot(ids[0], "a", per_provider=9, per_user=1, now=T), str
    )

    # Alice's next job is older, but Alice is at her limit: Bob's starts.
    assert not isinstance(await leases.take_slot(bob, "b", per_provider=9, per_user=1, now=T), str)
    # An older job whose owner's lease lapsed waits for its adopter instead.
    [late] = await jobs_made(storage, 1, user=BOB, prefix="late")
    assert await leases.claim(late, "b", now=T, lease_s=LEASE)
    await storage.jobs.transition(bob, ("held",), "cancelled", now=NOW, finished_at=NOW)
    assert not isinstance(
        await leases.take_slot(late, "b", per_provider=9, per_user=9, now=T + LEASE + 1), str
    )


async def test_queue_positions_count_every_replicas_queued_jobs(storage, leases):
    ids = await jobs_made(storage, 4)
    for job_id, owner in zip(ids, "abab", strict=True):
        assert await leases.claim(job_id, owner, now=T, lease_s=LEASE)

    assert await leases.positions("a") == {ids[0]: 1, ids[2]: 3}
    assert await leases.positions("b") == {ids[1]: 2, ids[3]: 4}
    assert await leases.position(ids[3]) == 4
    assert not isinstance(
        await leases.take_slot(ids[0], "a", per_provider=9, per_user=9, now=T), str
    )
    await storage.jobs.transition(ids[1], ("held",), "cancelled", now=NOW, finished_at=NOW)

    assert await leases.positions("a") == {ids[2]: 1}
    assert await leases.positions("b") == {ids[3]: 2}
    assert await leases.position(ids[0]) is None  # started
    assert await leases.position(ids[1]) is None  # cancelled
    assert await leases.position("nope") is None
