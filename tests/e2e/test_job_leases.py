"""Jobs across replicas: two job runners on one database, one of them killed.

Each replica is a real JobRunner with its own connection to one real
database (an SQLite file, where the file runner lease is not involved as the
replicas live in one process; and this run's PostgreSQL database), sharing one remote video service whose tasks outlive any replica.
Leases are short (0.3 s, real time) so a failover takes a fraction of a
second; nothing sleeps in the tests, which wait on the service's and the
chats' events. What a member and an operator would check: every job
submitted once, delivered once, charged once, the ledger audit clean.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest

from bot.commands import UserRef
from bot.ports import UserProfile
from tests.e2e.recovery_support import let_others_run
from tests.support.postgres import emptied_database
from tests.support.replicas import (
    Backend,
    Service,
    all_settled,
    cluster,
    postgres_backend,
    settled_anywhere,
    sqlite_backend,
    submits_per_job,
)

LEASE = 0.3


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request, tmp_path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield sqlite_backend(tmp_path / "klingbot.db")
        return
    url = request.getfixturevalue("pg_url")
    async with emptied_database(url):  # this test's replicas open pools of their own
        yield postgres_backend(url)


@pytest.fixture
def service(remote_clip) -> Service:
    return Service(remote_clip)


async def charged_once(backend: Backend, replica, jobs) -> None:
    for job in jobs:
        assert await backend.kinds(replica.connection, job.job_id) == ["hold", "capture"]
    assert await backend.audit(replica.connection) == []


async def test_a_dead_replicas_jobs_are_adopted_within_the_lease_and_each_runs_once(
    backend, service, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="bot.jobs.replica")
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE, per_provider=3) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        jobs = [await c.order(a) for _ in range(5)]
        # Three render at the service (the limit), two wait in a's queue.
        await service.changed.until(lambda: len(service.tasks) == 3 and service.polls >= 3)
        assert a.runner.running_count() == 3 and a.runner.waiting_count() == 2
        in_flight = list(service.tasks)

        died = time.monotonic()
        await a.die()
        # The service finishes the clips a was following; nobody polls them until b adopts.
        service.finish_all()
        await c.adoptions.until(lambda: sum(n for _, n in b.adopted) == 5)
        adopted_after = b.adopted[-1][0] - died
        # b follows the three tasks (no new submission), then runs the two queued jobs.
        await service.changed.until(lambda: len(service.tasks) == 5)
        service.finish_all()
        await all_settled(b, jobs)

        assert submits_per_job(service) == {job.job_id: 1 for job in jobs}
        assert all(job_id in service.tasks for job_id in in_flight)
        assert c.clips_sent() == {job.job_id: 1 for job in jobs}
        assert a.chats.clips == {}
        await charged_once(backend, b, jobs)
        assert service.most_at_once <= 3
        said = re.findall(r"replica b adopted (\d+) jobs of replica a", caplog.text)
        assert sum(map(int, said)) == 5
        # a renewed at most a third of a lease before it died; b looks every third.
        assert LEASE * 2 / 3 - 0.05 <= adopted_after <= LEASE * 4 / 3 + 0.5  # a loaded machine
        polled_again = max(
            min(at for at in service.polled_at[task_id] if at > died) for task_id in in_flight
        )
        print(
            f"failover: adopted after {adopted_after / LEASE:.2f} leases,"
            f" every orphaned task polled again after {(polled_again - died) / LEASE:.2f}"
        )


async def test_a_replica_that_stalled_past_its_lease_lets_go_of_the_jobs_another_adopted(
    backend, service, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="bot.jobs.runner")
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE, per_provider=2) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        jobs = [await c.order(a) for _ in range(2)]
        await service.changed.until(lambda: len(service.tasks) == 2 and service.polls >= 2)
        a.stalled = True  # a's renewals stop reaching the database; a itself goes on

        await c.adoptions.until(lambda: sum(n for _, n in b.adopted) == 2)
        a.stalled = False
        await a.renewals.until(lambda: a.runner.running_count() == 0)
        service.finish_all()
        await all_settled(b, jobs)

        assert "replica a lost job" in caplog.text
        assert submits_per_job(service) == {job.job_id: 1 for job in jobs}
        assert c.clips_sent() == b.chats.clips == {job.job_id: 1 for job in jobs}
        await charged_once(backend, b, jobs)


async def test_a_replica_stopping_as_a_clip_goes_out_records_it_so_nobody_sends_it_again(
    backend, service, tmp_path
):
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        job = await c.order(a)
        await service.changed.until(lambda: job.job_id in service.tasks)
        a.recording.clear()  # the record of the delivery will be slow
        service.finish(job.job_id)
        await a.chats.changed.until(lambda: a.chats.clips[job.job_id] == 1)  # it went out
        stopping = asyncio.ensure_future(a.runner.stop())  # an operator stops a at that instant
        while a.runner.alive:
            await let_others_run(1)
        await let_others_run(50)  # the stop has cancelled a's steps by now
        a.recording.set()
        await asyncio.wait_for(stopping, 10)
        # b looks (several rounds: a's lease was let go at once) and finds nothing to send.
        looked = b.renewed
        await b.renewals.until(lambda: b.renewed >= looked + 3)

        final = await b.store.get_job(job.job_id)
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert c.clips_sent() == {job.job_id: 1} and b.adopted == []
        await charged_once(backend, b, [job])


async def test_a_slot_request_the_database_fails_leaves_the_job_queued_not_lost(
    backend, service, tmp_path
):
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE) as c:
        a = await c.replica("a")
        a.failing_takes = 2
        job = await c.order(a)
        await service.changed.until(lambda: job.job_id in service.tasks)  # a later tick
        service.finish(job.job_id)
        await all_settled(a, [job])

        assert a.failing_takes == 0
        assert c.clips_sent() == {job.job_id: 1} and submits_per_job(service) == {job.job_id: 1}


async def test_a_replica_keeps_its_jobs_while_its_adapters_connect_before_it_starts(
    backend, service, tmp_path
):
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE) as c:
        b = await c.replica("b")
        a = await c.replica("a", start=False)  # loaded; an adapter still connecting
        job = await c.order(a)  # a press it took meanwhile: queued, not started
        await a.renewals.until(lambda: a.renewed >= 6)  # two leases

        assert b.adopted == [] and service.submits == []
        await a.runner.start()
        await service.changed.until(lambda: job.job_id in service.tasks)
        service.finish(job.job_id)
        await all_settled(a, [job])
        assert c.clips_sent() == a.chats.clips == {job.job_id: 1}


async def test_a_replica_killed_mid_send_leaves_the_clip_to_its_adopter_who_sends_it_once(
    backend, service, tmp_path
):
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        a.chats.hang_uploads = True
        job = await c.order(a)
        await service.changed.until(lambda: job.job_id in service.tasks)
        service.finish(job.job_id)
        await asyncio.wait_for(a.chats.uploading.wait(), 20)  # a sends the clip, and dies
        await a.die()

        await all_settled(b, [job])

        assert c.clips_sent() == {job.job_id: 1}
        assert b.chats.clips == {job.job_id: 1}
        assert submits_per_job(service) == {job.job_id: 1}
        final = await b.store.get_job(job.job_id)
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        await charged_once(backend, b, [job])


async def test_a_replica_restarted_under_its_id_takes_its_jobs_back_at_once_and_none_twice(
    backend, service, tmp_path
):
    # Leases of a minute: only a replica's own id takes its jobs back before they lapse.
    async with cluster(backend, service, tmp_path / "clips", lease_s=60.0, per_provider=2) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        jobs = [await c.order(a) for _ in range(3)]
        await service.changed.until(lambda: len(service.tasks) == 2 and service.polls >= 2)
        await a.die()

        again = await c.replica("a")
        service.finish_all()
        await service.changed.until(lambda: len(service.tasks) == 3)
        service.finish_all()
        await all_settled(again, jobs)

        assert b.adopted == []  # the jobs were a's all along
        assert again.adopted and sum(n for _, n in again.adopted) == 3
        assert submits_per_job(service) == {job.job_id: 1 for job in jobs}
        assert c.clips_sent() == {job.job_id: 1 for job in jobs}
        await charged_once(backend, again, jobs)


async def test_two_replicas_taking_one_queue_at_once_start_each_job_once_within_the_limits(
    backend, service, tmp_path
):
    async with cluster(
        backend, service, tmp_path / "clips", lease_s=LEASE, per_provider=2, per_user=1
    ) as c:
        # Presses paid for while no replica ran: nobody owns these jobs yet.
        seed = await c.replica("seed", start=False)
        await seed.runner.stop()
        now = int(time.time())
        members = [UserRef("telegram", f"member-{n}") for n in range(4)]
        for member in members:
            await seed.ledger.open_wallet(UserProfile(member), welcome_credits=0, now=now)
            await seed.ledger.top_up(
                member, 100, key=f"fund:{member}", actor="t", reason="", now=now
            )
        # Made a while ago: orphans any replica may adopt at once.
        backlog = [await c.create(seed, member, now - 5) for member in members]

        a, b = await asyncio.gather(c.replica("a", start=False), c.replica("b", start=False))
        await asyncio.gather(a.runner.start(), b.runner.start())
        # Each job was taken by exactly one of them.
        assert sum(n for _, n in a.adopted) + sum(n for _, n in b.adopted) == 4
        # Meanwhile every member presses again at each replica.
        pressed = await asyncio.gather(
            *(c.order(replica, member.id) for member in members for replica in (a, b))
        )
        jobs = [*backlog, *pressed]

        while len(service.tasks) < len(jobs) or any(not t.done for t in service.tasks.values()):
            await service.changed.until(
                lambda: any(not t.done and t.parked.is_set() for t in service.tasks.values())
            )
            for task_id, task in list(service.tasks.items()):
                if not task.done and task.parked.is_set():
                    service.finish(task_id)
        await settled_anywhere([a, b], jobs)

        assert submits_per_job(service) == {job.job_id: 1 for job in jobs}
        assert service.most_at_once <= 2
        member_of = {job.job_id: job.user for job in jobs}
        for rendering in service.at_submits:  # never two of one member's jobs at once
            members = [member_of[job_id] for job_id in rendering]
            assert len(members) == len(set(members)), rendering
        assert c.clips_sent() == {job.job_id: 1 for job in jobs}
        await charged_once(backend, a, jobs)


async def test_the_provider_and_member_limits_hold_for_both_replicas_together(
    backend, service, tmp_path
):
    async with cluster(
        backend, service, tmp_path / "clips", lease_s=LEASE, per_provider=3, per_user=1
    ) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        ann_first, bob = await c.order(a, "ann"), await c.order(a, "bob")
        await service.changed.until(lambda: service.rendering() == 2)
        ann_again = await c.order(b, "ann")  # Ann renders at a: this waits, though b is idle
        cy = await c.order(b, "cy")  # the provider's third slot
        dee = await c.order(b, "dee")  # no fourth
        await service.changed.until(lambda: service.rendering() == 3)
        looked = b.renewed
        await b.renewals.until(lambda: b.renewed >= looked + 2)  # b tried again, several ticks

        assert service.rendering_now() == {ann_first.job_id, bob.job_id, cy.job_id}
        service.finish(ann_first.job_id)  # Ann's slot frees: her next job starts, at b
        await service.changed.until(lambda: ann_again.job_id in service.tasks)
        assert service.rendering_now() == {bob.job_id, cy.job_id, ann_again.job_id}
        service.finish_all()
        await service.changed.until(lambda: dee.job_id in service.tasks)
        service.finish_all()
        jobs = [ann_first, bob, ann_again, cy, dee]
        await settled_anywhere([a, b], jobs)

        assert service.most_at_once == 3
        assert submits_per_job(service) == {job.job_id: 1 for job in jobs}
        assert c.clips_sent() == {job.job_id: 1 for job in jobs}
        await charged_once(backend, a, jobs)


async def test_queue_positions_are_counted_across_replicas_and_the_oldest_job_starts_first(
    backend, service, tmp_path
):
    async with cluster(backend, service, tmp_path / "clips", lease_s=LEASE, per_provider=1) as c:
        a = await c.replica("a")
        b = await c.replica("b")
        first = await c.order(a)
        await service.changed.until(lambda: first.job_id in service.tasks)
        second = await c.order(a)
        third = await c.order(b)
        fourth = await c.order(a)

        assert a.chats.positions(second) == [1]
        assert b.chats.positions(third) == [2]  # one job of a's waits before it
        assert a.chats.positions(fourth) == [3]
        order = []
        for _ in range(4):
            await service.changed.until(lambda: len(service.tasks) > len(order))
            [started] = [task_id for task_id in service.tasks if task_id not in order]
            order.append(started)
            assert service.rendering() == 1  # one at a time across both replicas
            if started == second.job_id:  # the queue moved: each waiting member sees it
                await b.chats.changed.until(lambda: b.chats.positions(third)[-1] == 1)
                await a.chats.changed.until(lambda: a.chats.positions(fourth)[-1] == 2)
            if started == third.job_id:
                await a.chats.changed.until(lambda: a.chats.positions(fourth)[-1] == 1)
            service.finish(started)
        await all_settled(a, [first, second, fourth])
        await all_settled(b, [third])

        assert order == [first.job_id, second.job_id, third.job_id, fourth.job_id]
        assert b.chats.positions(third) == [2, 1]
        assert a.chats.positions(fourth) == [3, 2, 1]
        assert c.clips_sent() == {job.job_id: 1 for job in (first, second, third, fourth)}
