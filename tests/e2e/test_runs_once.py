"""Each job runs once: presses before the runner starts, and two runners on one database.

The real core (``open_core``) on a real SQLite file; :class:`RemoteService`
plays the video service and counts every submit, the console chat counts
every clip it is sent. A press can reach the core before the runner starts
(an adapter hands over its backlog while another is still connecting): it
must be queued and run once the runner starts, never a second time. Two
cores on one database (two processes) must never both send a clip.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from app.bootstrap import open_core
from app.lease import FileRunnerLease
from bot.commands import ChatRef
from bot.ports import Outbox
from bot.replies import Reply
from storage.audit import audit
from tests.e2e.conftest import GenConsole, fast_settings
from tests.e2e.recovery_support import (
    RefusingUploads,
    RemoteService,
    hold_entries,
    let_others_run,
    order,
    session,
    state_of,
    wait,
)


def clips_per_job(gen) -> Counter[str]:
    """How many clips the member was sent, per job (by the job id in the clip's file name)."""
    return Counter(path.stem for path in gen.clips())


async def test_a_press_before_the_runner_starts_waits_for_it_and_runs_once(tmp_path, remote_clip):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        # The adapter takes the press; the runner has not started yet.
        job = await order(gen, chat)
        await let_others_run(50)  # whatever the press set off has run as far as it can
        assert f"⏳ Standard · 5 s · job {job.short_id} · queued, position 1" in gen.transcript()
        assert remote.submits == [] and await state_of(gen, job.job_id) == "held"

        await runner.start()
        await wait(remote.poll_parked.wait())
        remote.finish(job.job_id)
        await wait(runner.settled(job.job_id))
        await wait(runner.idle())

        assert remote.submits == [job.job_id]  # one submission
        assert clips_per_job(gen) == {job.job_id: 1}  # one delivery
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await audit(gen.deps.ledger.db) == []


async def test_a_backlog_of_presses_made_while_down_runs_each_job_once(tmp_path, remote_clip):
    """Quotes open at the stop; their presses arrive at the next start before the runner does."""
    settings = fast_settings(tmp_path, max_jobs_per_provider=2)
    remote = RemoteService(remote_clip, running_polls=0)
    members = ("ann", "bob", "cy")
    async with session(settings, provider=remote) as gen:
        await gen.deps.generation.runner.start()
        for name in members:
            member = gen.chat(user=name)
            await gen.push(member, "/balance")
            await gen.push(gen.chat(), f"/topup {name} 100")
            await gen.push(member, "/gen sample a robot waves")
        # And one job still rendering at the service when the bot stops.
        earlier = await order(gen, gen.chat(user="ann"), topup=None)
        await wait(remote.poll_parked.wait())
    assert remote.submits == [earlier.job_id]

    async with session(settings, provider=remote) as gen:
        runner = gen.deps.generation.runner
        # The first adapter hands over the presses made while the bot was down;
        # the second adapter is still connecting, so the runner has not started.
        jobs = []
        for name in members:
            chat = gen.chat(user=name)
            [row] = await gen.deps.ledger.db.read(
                "SELECT quote_id FROM quotes WHERE user_id = ? AND state = 'open'", (name,)
            )
            pressed = await gen.press_action(chat, "1", f"tier:{row['quote_id']}:standard")
            assert "Standard chosen: 20 credits (¥2.00) held" in pressed
            [job] = await gen.deps.generation.store.jobs_of(chat.caller.user, 1)
            jobs.append(job)
        await let_others_run(50)
        assert remote.submits == [earlier.job_id]  # nothing new starts before the runner
        # The second adapter is ready: the runner starts.
        await runner.start()
        everyone = [earlier, *jobs]
        for job in everyone:
            await wait(_parked(remote, job.job_id))
            remote.finish(job.job_id)
        await wait(asyncio.gather(*(runner.settled(job.job_id) for job in everyone)))
        await wait(runner.idle())

        # The earlier job's task lives at the service: polled again, not submitted again.
        assert Counter(remote.submits) == {job.job_id: 1 for job in everyone}
        assert clips_per_job(gen) == {job.job_id: 1 for job in everyone}
        for job in everyone:
            assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await audit(gen.deps.ledger.db) == []


async def _parked(remote: RemoteService, job_id: str) -> None:
    while job_id not in remote.tasks:
        await let_others_run(1)
    await remote.tasks[job_id].parked.wait()


class GatedUploads(Outbox):
    """A chat platform whose clip uploads wait for ``gate``; counts every upload it took."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.uploading = asyncio.Event()
        self.uploads = 0

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        if reply.video is not None:
            self.uploads += 1
            self.uploading.set()
            await self.gate.wait()
        return await self.inner.send(chat, reply, locale)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        await self.inner.edit(chat, message_id, reply, locale)


async def test_two_runners_on_one_database_never_both_send_a_clip(tmp_path, remote_clip):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:  # made, then every upload refused
        chat = gen.chat()
        refusing = RefusingUploads(gen.router)
        gen.deps.generation.outboxes.register("console", refusing)
        await gen.deps.generation.runner.start()
        job = await order(gen, chat)
        await wait(remote.poll_parked.wait())
        remote.finish(job.job_id)
        await wait(refusing.refused_thrice.wait())  # retried until this process stops
        assert await state_of(gen, job.job_id) == "succeeded"

    # Two processes start on the database; the first is mid-upload when the second looks.
    async with (
        session(settings, provider=remote) as first,
        session(settings, provider=remote) as second,
    ):
        first.chat(), second.chat()
        uploads = [GatedUploads(first.router), GatedUploads(second.router)]
        first.deps.generation.outboxes.register("console", uploads[0])
        second.deps.generation.outboxes.register("console", uploads[1])
        uploads[1].gate.set()
        await first.deps.generation.runner.start()
        await wait(uploads[0].uploading.wait())
        await second.deps.generation.runner.start()
        await wait(second.deps.generation.runner.idle())
        assert uploads[1].uploads == 0  # the first runner holds the claim
        uploads[0].gate.set()
        await wait(first.deps.generation.runner.settled(job.job_id))
        await wait(first.deps.generation.runner.idle())

        assert [u.uploads for u in uploads] == [1, 0]
        assert clips_per_job(first) == {job.job_id: 1} and clips_per_job(second) == {}
        final = await first.deps.generation.store.get_job(job.job_id)
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert await hold_entries(first, job.job_id) == ["hold", "capture"]
        assert await audit(first.deps.ledger.db) == []
    assert remote.submits == [job.job_id]


async def test_a_runner_killed_mid_send_leaves_a_claim_the_next_runner_takes_over(
    tmp_path, remote_clip
):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:  # made, then every upload refused
        chat = gen.chat()
        refusing = RefusingUploads(gen.router)
        gen.deps.generation.outboxes.register("console", refusing)
        await gen.deps.generation.runner.start()
        job = await order(gen, chat)
        await wait(remote.poll_parked.wait())
        remote.finish(job.job_id)
        await wait(refusing.refused_thrice.wait())  # retried until this process stops
        await gen.deps.generation.runner.stop()
        # The process is killed while it sends the clip: its claim stays in the database.
        now = gen.deps.clock.now()
        store = gen.deps.generation.store
        assert await store.claim_delivery(job.job_id, "killed", now=now, stale_before=now - 600)

    # A process without the runner lease respects the fresh claim: nothing is sent.
    async with session(settings, provider=remote) as gen:
        gen.chat()
        await gen.deps.generation.runner.start()
        await wait(gen.deps.generation.runner.idle())
        assert gen.clips() == [] and await state_of(gen, job.job_id) == "succeeded"

    # The next runner holds the lease: no other runner lives, the claim is a dead one's.
    lease = FileRunnerLease(settings.db)
    async with open_core(settings, provider=remote, runner_lease=lease) as deps:
        gen = GenConsole(settings, deps)
        gen.chat()
        await deps.generation.runner.start()
        await wait(deps.generation.runner.settled(job.job_id))
        assert clips_per_job(gen) == {job.job_id: 1}
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await audit(deps.ledger.db) == []
