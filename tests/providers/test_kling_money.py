"""Kling money: a task Kling may bill is followed, never refunded; its limits are waited out.

Each test drives the real core and the real Kling provider through the
console chat against the Kling stand-in, and checks what the member sees,
the tasks Kling made and the member's wallet:

- a create that never got an answer is looked up once more before the job
  is refunded, and followed when Kling has it;
- a member who cancels while the create is on its way is told it is too
  late when Kling made the task (the clip comes and is paid for), and gets
  the credits back when it did not;
- Kling's concurrency cap (1303) and request rate (1302) only delay jobs:
  never a refund, never a second task;
- a 1202 (wrong request method) is our bug, logged, not a lost task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from bot.jobs.limits import RunnerSettings
from tests.e2e.recovery_support import hold_entries
from tests.providers.kling_support import finish, kling_session, kling_settings, order, sound

PROMPT = "a robot plays piano"
ATTEMPTS = RunnerSettings().submit_attempts


async def test_a_create_that_never_got_an_answer_is_followed_when_kling_has_the_task(
    tmp_path, standin, caplog
):
    standin.drop_creates = 1  # the task is made; its answer never arrives
    # Every look-up while the job is retried fails too (Kling's servers are in trouble)...
    standin.query_faults.extend([5000] * (ATTEMPTS - 1))
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        with caplog.at_level(logging.INFO):
            job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
            final = await finish(gen, job)
        # ...and the one more look before the refund finds the task: the job follows it.
        [task] = standin.tasks.values()
        assert len(standin.creates) == 1
        assert final.task_id == f"image2video/{task.task_id}"
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert "too busy" not in gen.transcript()
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await gen.push(chat, "/balance") == "Your balance: 280 credits (¥28.00)."
        assert f"job {job.job_id}: the provider has task image2video/{task.task_id}" in caplog.text
        await sound(gen)


async def test_a_create_lost_on_its_way_is_refunded_after_one_more_look(tmp_path, standin):
    standin.lose_creates = ATTEMPTS  # no create ever reaches Kling, and no answer comes
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "retryable")
        assert standin.tasks == {}
        # Attempts 2..N look before creating again; then one more look before the refund.
        assert standin.queries == ATTEMPTS
        assert "The video service is too busy right now" in gen.transcript()
        assert await hold_entries(gen, job.job_id) == ["hold", "release"]
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        await sound(gen)


async def test_a_cancel_while_the_create_is_on_its_way_follows_the_task_kling_made(
    tmp_path, standin
):
    standin.hold_creates = asyncio.Event()  # the task is made; its answer is still on the wire
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        await standin.until(lambda: len(standin.tasks) == 1)
        runner = gen.deps.generation.runner
        cancel = asyncio.create_task(gen.push(chat, gen.button("Cancel", action="cancel:")))
        await runner.between_steps()  # the press stopped the submit; the runner waits for the answer
        assert not cancel.done()
        standin.hold_creates.set()
        answer = await asyncio.wait_for(cancel, 10)
        assert answer == "The clip is already being made and can no longer be cancelled."
        final = await finish(gen, job)
        [task] = standin.tasks.values()
        assert len(standin.creates) == 1
        assert final.task_id == f"image2video/{task.task_id}"
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert standin.downloads == 1
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await gen.push(chat, "/balance") == "Your balance: 280 credits (¥28.00)."
        await sound(gen)


async def test_a_cancel_while_a_create_is_on_its_way_that_kling_never_got_refunds(
    tmp_path, standin
):
    standin.stall_creates = asyncio.Event()  # the create is on its way, nothing made yet
    standin.lose_creates = 1  # and then it is lost: Kling never makes the task
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        await standin.until(lambda: standin.stalled == 1)
        runner = gen.deps.generation.runner
        cancel = asyncio.create_task(gen.push(chat, gen.button("Cancel", action="cancel:")))
        await runner.between_steps()  # the press stopped the submit; the runner waits for the answer
        assert not cancel.done()
        standin.stall_creates.set()
        assert (await asyncio.wait_for(cancel, 10)).splitlines()[-2:] == [
            f"🚫 Standard · job {job.short_id} cancelled.",
            "20 credits (¥2.00) went back to your wallet.",
        ]
        final = await finish(gen, job)
        assert final.state == "cancelled"
        assert standin.tasks == {} and standin.queries == 1  # looked up once: nothing
        assert await hold_entries(gen, job.job_id) == ["hold", "release"]
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        await sound(gen)


async def test_the_accounts_concurrency_cap_delays_jobs_without_refund_or_second_task(
    tmp_path, standin
):
    standin.max_running = 1  # the resource pack runs one task at a time
    standin.speed = 100.0  # each task takes 0.45 s: the three jobs overlap
    settings = kling_settings(tmp_path, standin, max_jobs_per_user=3)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        jobs = [await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")]
        for n in (2, 3):
            jobs.append(
                await order(gen, chat, f"/gen sample {PROMPT} {n}", "Standard ·", topup=None)
            )
        for job in jobs:
            assert (await finish(gen, job)).state == "delivered"
        assert {code for code, _ in standin.refused} == {1303}
        assert [b["external_task_id"] for b in standin.creates] == [j.job_id for j in jobs]
        tasks = sorted(standin.tasks.values(), key=lambda t: t.created)
        for earlier, later in itertools.pairwise(tasks):  # never two at once
            assert later.created >= earlier.created + standin.queued_s + standin.processing_s
        for job in jobs:
            assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await gen.push(chat, "/balance") == "Your balance: 240 credits (¥24.00)."
        await sound(gen)


async def test_the_request_rate_delays_calls_without_refund_or_second_task(tmp_path, standin):
    standin.rate_per_s, standin.rate_burst = 20.0, 1  # one request at a time, 50 ms apart
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        jobs = [await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")]
        jobs.append(await order(gen, chat, f"/gen {PROMPT}", "Master ·", topup=None))
        for job in jobs:
            final = await finish(gen, job)
            assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert standin.throttled > 0
        assert gen.deps.generation.runner.provider.client.throttled == standin.throttled
        assert standin.refused == []
        assert len(standin.creates) == len(standin.tasks) == 2
        assert await gen.push(chat, "/balance") == "Your balance: 180 credits (¥18.00)."
        await sound(gen)


async def test_a_wrong_request_method_is_logged_as_our_bug_not_a_lost_task(
    tmp_path, standin, caplog
):
    standin.query_faults.append(1202)
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        with caplog.at_level(logging.INFO):
            job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
            final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "provider")
        assert "Kling code 1202" in final.error_detail
        assert len(standin.creates) == 1  # not "lost": never submitted again
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("a bug in klingbot" in line and "1202" in line for line in errors), errors
        assert "lost" not in caplog.text
        assert "The video service could not make this clip." in gen.transcript()
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        await sound(gen)


async def test_the_standin_answers_a_method_a_route_does_not_take_with_1202(standin):
    import httpx

    async with httpx.AsyncClient() as http:
        answer = await http.delete(f"{standin.url}/v1/videos/image2video/1")
    assert (answer.status_code, answer.json()["code"]) == (404, 1202)
