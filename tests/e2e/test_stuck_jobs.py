"""No paid job stuck until the next restart: a storage failure at every step of a job.

The real core on a real SQLite file, with the job store's writes failing on
cue: :class:`FullDiskStore` is the real ``SqliteJobStore`` whose chosen
write runs a statement that fails inside the real writer's transaction, as
a full disk does (SQLite's "database or disk is full", turned by the
database layer into the ``StorageUnavailable`` the bot sees). Whatever the
step (hold, admit, submit, capture, release, claim, deliver), the running
process must end the job by itself: the member's credits are either spent
on a clip they were sent once, or back in their wallet; the ledger
invariants hold, and nothing waits for a restart.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from bot.jobs.model import TERMINAL
from bot.providers.base import GenerationRequest, ProviderError
from storage.jobs import SqliteJobStore
from tests.e2e.scripted_provider import Script, ScriptedProvider
from tests.support.runner_harness import harness, service

PROMPT = "a robot waves"


def _disk_full(connection: sqlite3.Connection) -> None:
    raise sqlite3.OperationalError("database or disk is full")


class FullDiskStore(SqliteJobStore):
    """The SQLite job store; the write of ``step`` fails ``times`` times, then works again."""

    def __init__(self, database: Any, step: str, times: int) -> None:
        super().__init__(database)
        self.step = step
        self.left = times
        self.failures = 0

    async def _write_of(self, step: str) -> None:
        if step == self.step and self.left > 0:
            self.left -= 1
            self.failures += 1
            await self.db.write(_disk_full)  # raises what a full disk raises

    async def create_job(self, job, *, max_active, now):
        await self._write_of("hold")
        return await super().create_job(job, max_active=max_active, now=now)

    async def update(self, job_id, state, **fields):
        await self._write_of("admit" if "status_message" in fields else "bookkeeping")
        return await super().update(job_id, state, **fields)

    async def transition(self, job_id, from_states, to_state, *, now, **fields):
        step = {
            "submitted": "submit",
            "succeeded": "capture",
            "failed": "release",
            "cancelled": "release",
            "delivered": "deliver",
        }.get(to_state, "move")
        await self._write_of(step)
        return await super().transition(job_id, from_states, to_state, now=now, **fields)

    async def claim_delivery(self, job_id, claimant, *, now, stale_before):
        await self._write_of("claim")
        return await super().claim_delivery(job_id, claimant, now=now, stale_before=stale_before)


# step, failures in a row, the provider's script, and how the job must end
CASES = [
    ("admit", 1, None, "delivered"),
    ("submit", 1, None, "delivered"),  # the task is stored on the second try
    ("submit", 5, None, "refunded"),  # never stored: the task is stopped, the job released
    ("capture", 1, None, "refunded"),
    ("release", 1, Script(fail_with=ProviderError("render crashed")), "refunded"),
    # the failure handler's own release fails too
    ("release", 3, Script(fail_with=ProviderError("render crashed")), "refunded"),
    ("claim", 3, None, "delivered"),
    ("deliver", 3, None, "delivered"),
]


@pytest.mark.parametrize(
    ("step", "times", "script", "ending"),
    CASES,
    ids=[f"{step}-x{times}" for step, times, _, _ in CASES],
)
async def test_a_storage_failure_at_a_step_still_ends_the_job_in_the_running_process(
    tmp_path, tiny_clip, step, times, script, ending
):
    provider = service(tiny_clip, script)
    stores: list[FullDiskStore] = []

    def full_disk(wired):
        stores.append(FullDiskStore(wired.db, step, times))
        return stores[0]

    async with harness(tmp_path, provider, store=full_disk) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, PROMPT)
        await gen.settle()

        assert stores[0].failures == times  # the failure did happen, as often as asked
        job = await gen.job(PROMPT)
        assert job.state in TERMINAL, job.state  # nothing left for a restart
        wallet = await gen.deps.ledger.wallet(job.user)
        assert wallet.held == 0
        clips = [s for s in gen.router.shown if s.video is not None]
        if ending == "delivered":
            assert job.state == "delivered"
            assert await gen.entries(job) == ["hold", "capture"]
            assert wallet.balance == 80
            assert len(clips) == 1 and clips[0].text.startswith("🎞️ Standard")
        else:
            assert job.state == "failed"
            assert await gen.entries(job) == ["hold", "release"]
            assert wallet.balance == 100
            assert clips == []
            [*_, last] = await gen.status(PROMPT)
            assert "20 credits (¥2.00) went back to your wallet." in last.text
        if ending == "refunded" and step == "submit":  # the service had it: told to stop
            assert provider.cancel_calls == list(provider.tasks)
        assert await gen.audit() == []


async def test_a_storage_failure_at_the_hold_charges_nothing_and_the_press_works_again(
    tmp_path, tiny_clip
):
    provider = service(tiny_clip)
    async with harness(
        tmp_path, provider, store=lambda wired: FullDiskStore(wired.db, "hold", 1)
    ) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.quote(chat, PROMPT)
        pressed = await gen.push(chat, gen.button("Standard ·", chat))
        assert "I can't reach my wallet records right now. Nothing was charged" in pressed
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.deps.generation.store.jobs_of(None, 10) == []

        pressed = await gen.push(chat, gen.button("Standard ·", chat))  # the disk has room again
        assert "Standard chosen: 20 credits (¥2.00) held" in pressed
        await gen.settle()
        job = await gen.job(PROMPT)
        assert job.state == "delivered"
        assert await gen.entries(job) == ["hold", "capture"]
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.audit() == []


class CannotStopTasks(ScriptedProvider):
    """A service like Kling: a task it made cannot be stopped, and it can be looked up."""

    stops_tasks = False

    async def find(self, request: GenerationRequest) -> str | None:
        task_id = f"task-{request.external_id}"
        return task_id if task_id in self.tasks else None


async def test_a_task_that_could_not_be_stored_is_followed_when_the_service_bills_it(
    tmp_path, tiny_clip
):
    """The store never takes the task id; the service cannot stop it: the clip is made and paid."""
    provider = CannotStopTasks(tiny_clip)
    async with harness(
        tmp_path, provider, store=lambda wired: FullDiskStore(wired.db, "submit", 5)
    ) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, PROMPT)
        await gen.settle()

        job = await gen.job(PROMPT)
        assert (job.state, job.task_id) == ("delivered", f"task-{job.job_id}")
        assert provider.cancel_calls == [] and provider.submit_calls == [job.job_id]
        assert await gen.entries(job) == ["hold", "capture"]
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert len([s for s in gen.router.shown if s.video is not None]) == 1
        assert await gen.audit() == []
