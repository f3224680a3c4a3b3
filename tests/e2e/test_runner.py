"""The job runner end to end: failures and refunds, retries, delivery, limits, status pacing, cancel.

The harness (``tests/support/runner_harness.py``) runs the real core on a
SQLite file with a scripted provider and, for most tests, virtual time.
Nothing here sleeps; waits are on events, under ``asyncio.wait_for`` guards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from bot.providers.base import ContentRefused, OperatorError, ProviderError
from bot.service import respond_to_action
from tests.e2e.scripted_provider import FOREVER, Script
from tests.support.clock import GatedTime, VirtualTime
from tests.support.runner_harness import GUARD_S, harness, service
from tests.support.video import probe

# --- 1. failures give the credits back, with the right message ---------------------------


async def test_content_refused_at_poll_says_why_and_refunds(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    provider.script(
        "a famous actor", Script(progress=(), poll_error=ContentRefused("faces of real people"))
    )
    async with harness(tmp_path, provider, virtual=False) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a famous actor", "High Quality ·")
        await gen.settle()

        [queued, refused] = await gen.status("a famous actor")
        assert "queued, position 1" in queued.text
        job = await gen.job("a famous actor")
        assert refused.text == (
            f"❌ High Quality · job {job.short_id} did not work.\n"
            "The video service refused this image or prompt: faces of real people\n"
            "35 credits (¥3.50) went back to your wallet."
        )
        assert (job.state, job.error_kind, job.error_detail) == (
            "failed",
            "content",
            "faces of real people",
        )
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert gen.clips() == [] and provider.fetched == []
        assert await gen.audit() == []


async def test_operator_error_is_logged_for_the_operator_and_not_shown(tmp_path, tiny_clip, caplog):
    detail = "Kling account balance is exhausted (code 1102, key ak-7f3e)"
    provider = service(tiny_clip, Script(submit_error=OperatorError(detail)))
    async with harness(tmp_path, provider, virtual=False) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        with caplog.at_level(logging.WARNING):
            await gen.order(chat, "a lighthouse at dusk")
            await gen.settle()

        job = await gen.job("a lighthouse at dusk")
        [*_, failed] = await gen.status("a lighthouse at dusk")
        assert failed.text == (
            f"❌ Standard · job {job.short_id} did not work.\n"
            "The video service is unavailable right now; the operators have been told.\n"
            "20 credits (¥2.00) went back to your wallet."
        )
        transcript = gen.transcript()
        assert (
            "1102" not in transcript
            and "ak-7f3e" not in transcript
            and "exhausted" not in transcript
        )
        [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.levelno == logging.ERROR
        assert detail in record.getMessage() and job.job_id in record.getMessage()
        assert provider.submit_calls == [job.job_id]  # not retried: only the operator can fix it
        assert (job.state, job.error_kind) == ("failed", "operator")
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert await gen.audit() == []


@pytest.mark.parametrize(
    "script",
    [
        Script(submit_error=ProviderError("invalid model kling-v9: 400 bad request")),
        Script(
            progress=(10, 40), poll_error=ProviderError("invalid model kling-v9: worker crashed")
        ),
        Script(progress=(10,), fail_with=ProviderError("invalid model kling-v9: task failed")),
    ],
    ids=["at-submit", "raised-at-poll", "reported-failed"],
)
async def test_a_generic_provider_error_could_not_make_the_clip(tmp_path, tiny_clip, script):
    provider = service(tiny_clip, script)
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "waves on rocks")
        await gen.settle()

        job = await gen.job("waves on rocks")
        [*_, failed] = await gen.status("waves on rocks")
        assert failed.text == (
            f"❌ Standard · job {job.short_id} did not work.\n"
            "The video service could not make this clip.\n"
            "20 credits (¥2.00) went back to your wallet."
        )
        assert "kling-v9" not in gen.transcript()
        assert (job.state, job.error_kind) == ("failed", "provider")
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert await gen.audit() == []


async def test_retryable_errors_at_submit_then_success_charge_once(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(submit_retryable=3))
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a paper boat")
        await gen.settle()

        job = await gen.job("a paper boat")
        assert provider.submit_calls == [job.job_id] * 4  # the job id is the idempotency key
        assert gen.time.sleeps[:3] == [2.0, 4.0, 8.0]  # exponential backoff between attempts
        assert (job.state, job.delivery, job.attempts) == ("delivered", "uploaded", 1)
        [clip] = gen.clips()
        assert probe(clip).codec == "h264"
        assert f"✅ Standard · job {job.short_id} · done in" in gen.transcript()
        assert "20 credits (¥2.00) paid" in gen.transcript()
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.entries(job) == ["hold", "capture"]
        assert await gen.audit() == []


async def test_retryable_errors_on_every_poll_end_as_too_busy_and_refund(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(poll_retryable=FOREVER))
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a snowy street", "High Quality ·")
        await gen.settle()

        job = await gen.job("a snowy street")
        assert provider.polls[job.task_id] == gen.runner.settings.poll_failures
        [*_, failed] = await gen.status("a snowy street")
        assert failed.text == (
            f"❌ High Quality · job {job.short_id} did not work.\n"
            "The video service is too busy right now.\n"
            "35 credits (¥3.50) went back to your wallet."
        )
        assert (job.state, job.error_kind) == ("failed", "retryable")
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert await gen.audit() == []


async def test_a_job_that_never_finishes_times_out_is_cancelled_and_refunded(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(progress=(), never_finishes=True))
    # Standard's expected wait is 45 s: the job is stopped after 2 × 45 s, no grace.
    async with harness(
        tmp_path, provider, runner=dict(timeout_factor=2.0, timeout_grace_s=0.0)
    ) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "an endless corridor")
        await gen.settle()

        job = await gen.job("an endless corridor")
        assert provider.cancel_calls == [job.task_id]
        assert 90 <= gen.time.monotonic() <= 92
        [*_, failed] = await gen.status("an endless corridor")
        assert failed.text == (
            f"❌ Standard · job {job.short_id} did not work.\n"
            "It took far longer than expected, so I stopped it.\n"
            "20 credits (¥2.00) went back to your wallet."
        )
        assert (job.state, job.error_kind) == ("failed", "timeout")
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert await gen.audit() == []


# --- 2. delivery ----------------------------------------------------------------------


def _no_server_path(gen, clips_dir: Path) -> None:
    """No message the member read names a file on the bot's server (the clip itself may go)."""
    for shown in gen.router.shown:
        assert str(clips_dir) not in shown.text and ".mp4" not in shown.text, shown.text


async def test_uploads_refused_for_a_while_then_the_clip_arrives_without_a_restart(
    tmp_path, tiny_clip, caplog
):
    provider = service(tiny_clip)
    async with harness(tmp_path, provider) as gen:
        gen.router.video_failures = 5
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        with caplog.at_level(logging.WARNING):
            await gen.order(chat, "a red kite")
            await gen.settle()

        job = await gen.job("a red kite")
        assert gen.router.failed_uploads == 5
        assert len([r for r in caplog.records if "sending the clip of job" in r.getMessage()]) == 5
        # Tried again in this process, sooner than every two minutes (virtual seconds).
        tries = [*gen.router.refused_at, gen.router.shown[-1].at]
        gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
        assert all(0 < gap <= 120 for gap in gaps), gaps
        [clip] = gen.clips()
        assert clip == Path(job.result_path) and probe(clip).frames == 8
        assert (job.state, job.delivery, job.delivery_attempts) == ("delivered", "uploaded", 5)
        status = [shown.text for shown in await gen.status("a red kite")]
        assert status[-2] == (
            f"✅ Standard · job {job.short_id} · your clip is ready (20 credits (¥2.00) paid)."
            " This chat did not accept it yet; I will send it as soon as it does."
        )
        assert status[-1].startswith(f"✅ Standard · job {job.short_id} · done in")
        _no_server_path(gen, tmp_path)
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.entries(job) == ["hold", "capture"]
        assert await gen.audit() == []


async def test_uploads_refused_for_the_whole_window_end_undeliverable_and_refundable(
    tmp_path, tiny_clip
):
    provider = service(tiny_clip)
    async with harness(tmp_path, provider, delivery_retry_h=24) as gen:
        gen.router.video_failures = 1_000_000
        chat = gen.chat()  # the console's own user, a moderator
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a blue kite")
        await gen.settle()

        job = await gen.job("a blue kite")
        refused = gen.router.refused_at
        gaps = [later - earlier for earlier, later in itertools.pairwise(refused)]
        first_hour = [gap for at, gap in zip(refused, gaps, strict=False) if at - refused[0] < 3600]
        assert first_hour and max(first_hour) <= 120
        assert max(gaps) <= 600
        assert 24 * 3600 <= refused[-1] - refused[0] <= 24 * 3600 + 600
        assert (job.state, job.delivery) == ("delivered", "undeliverable")
        assert (await gen.status("a blue kite"))[-1].text == (
            f"⚠️ Job {job.short_id}: your clip could not be delivered here, however often I"
            " tried. Ask a moderator for the file or a refund."
        )
        assert probe(Path(job.result_path)).codec == "h264"  # the clip exists and is kept
        assert gen.clips() == []
        _no_server_path(gen, tmp_path)
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.entries(job) == ["hold", "capture"]
        assert f"could not be delivered: ask a moderator for the file (job {job.short_id})" in (
            await gen.push(chat, "/jobs")
        )
        assert await gen.push(chat, f"/refund {job.short_id}") == (
            f"Refunded 20 credits (¥2.00) to console:local for job {job.short_id}."
        )
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.audit() == []


async def test_a_restart_resumes_the_retries_and_their_window_from_the_row(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(progress=()))
    first = GatedTime()  # the first send fails; the retry waits on the gate until the stop
    async with harness(tmp_path, provider, time=first) as gen:
        gen.router.video_failures = 1_000_000
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a grey kite")
        await asyncio.wait_for(gen.router.refused.wait(), GUARD_S)
        await asyncio.wait_for(gen.runner.between_steps(), GUARD_S)
        job = await gen.job("a grey kite")
        assert (job.state, job.delivery_attempts) == ("succeeded", 1)
        assert job.delivery_failing_since == first.now()
        assert job.delivery_retry_at == first.now() + 5
        # Still being sent: a refund now would pay the member back for a clip they get.
        assert await gen.push(chat, f"/refund {job.short_id}") == (
            f"Job {job.short_id} is made, not yet delivered; only delivered jobs can be refunded."
        )
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."

    # Down for 23 hours; the platform still refuses uploads after the restart.
    later = VirtualTime(start=first.now() + 23 * 3600)
    async with harness(tmp_path, provider, time=later) as gen:
        gen.router.video_failures = 1_000_000
        gen.chat()
        await gen.settle()

        job = await gen.job("a grey kite")
        refused = gen.router.refused_at
        assert refused[0] == 0  # tried at once after the restart
        # The window still counts from the first failure: one more hour, not another day.
        assert 3600 <= refused[-1] <= 3600 + 600
        assert (job.state, job.delivery) == ("delivered", "undeliverable")
        assert job.delivery_attempts == 1 + len(refused) - 1  # the last try gave up instead
        assert await gen.entries(job) == ["hold", "capture"]


async def test_send_again_tries_at_once_and_never_sends_a_clip_twice(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(progress=()))
    time = GatedTime()  # no retry falls due on its own: only the button sends
    async with harness(tmp_path, provider, time=time) as gen:
        gen.router.video_failures = 1
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a green kite")
        job = await gen.job("a green kite")
        await asyncio.wait_for(gen.router.refused.wait(), GUARD_S)
        await asyncio.wait_for(gen.runner.between_steps(), GUARD_S)
        assert (await gen.job("a green kite")).state == "succeeded"

        listed = await gen.push(chat, "/jobs")
        assert "made, not yet delivered" in listed
        assert f"Send again: {job.short_id}" in listed
        gen.router.hold_uploads = asyncio.Event()
        pressed = await gen.push(chat, gen.button("Send again", chat, action="resend:"))
        assert pressed == f"Sending the clip of job {job.short_id} again now."
        await asyncio.wait_for(gen.router.uploading.wait(), GUARD_S)
        again = gen.button(f"Send again: {job.short_id}", chat, action="resend:")
        assert await gen.push(chat, again) == (
            f"The clip of job {job.short_id} is being sent right now."
        )
        gen.router.hold_uploads.set()
        await asyncio.wait_for(gen.runner.settled(job.job_id), GUARD_S)
        assert await gen.push(chat, again) == (
            f"The clip of job {job.short_id} was already delivered."
        )
        await asyncio.wait_for(gen.runner.idle(), GUARD_S)

        assert time.elapsed == 0  # at once: no retry waited its turn
        job = await gen.job("a green kite")
        assert gen.router.uploaded == [Path(job.result_path)]  # one clip, sent once
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert await gen.entries(job) == ["hold", "capture"]


# --- 3. a hundred presses of one button ---------------------------------------------------


async def test_a_hundred_concurrent_presses_make_one_job(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    async with harness(tmp_path, provider, virtual=False) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.quote(chat, "a hundred clicks")
        _, action, _ = chat.live_buttons()[int(gen.button("Standard ·"))]
        assert action.startswith("tier:") and action.endswith(":standard")

        answers = await asyncio.gather(
            *(
                respond_to_action(action, chat.caller, gen.deps, request_id=f"press-{n}")
                for n in range(100)
            )
        )
        shown = [chat.translate.reply(reply).text for replies in answers for reply in replies]
        assert len(shown) == 100
        chosen = [
            text for text in shown if text.startswith("✅ Standard chosen: 20 credits (¥2.00)")
        ]
        already = [
            text
            for text in shown
            if text == "A tier was already chosen for this quote; your credits were held once."
        ]
        assert (len(chosen), len(already)) == (1, 99)
        await gen.settle()

        jobs = await gen.deps.generation.store.jobs_of(None, 10)
        assert len(jobs) == 1 and jobs[0].state == "delivered"
        history = await gen.deps.ledger.history(chat.caller.user, 1000)
        assert sorted(e.kind for e in history) == ["capture", "hold", "topup"]
        assert len(provider.submit_calls) == 1
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.audit() == []


# --- 4. queue limits ------------------------------------------------------------------------


async def test_per_user_limit_queue_positions_and_a_full_queue(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    gates = {n: asyncio.Event() for n in range(1, 9)}
    for n, gate in gates.items():
        provider.script(f"clip {n}", Script(progress=(10,), gate=gate))
    async with harness(tmp_path, provider, max_jobs_per_user=2, max_queue_per_user=5) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 200")
        pressed = [await gen.order(chat, f"clip {n}") for n in range(1, 9)]

        assert all("✅ Standard chosen: 20 credits (¥2.00)" in p for p in pressed[:7])
        assert pressed[7] == (
            "You already have 7 videos queued or in progress. Wait for one to finish,"
            " then try again. Nothing was charged."
        )
        assert await gen.balance(chat) == (
            "Your balance: 60 credits (¥6.00).\nOn hold for 7 running jobs: 140 credits (¥14.00)."
        )
        await provider.until(lambda: len(provider.blocked) == 2)
        assert sorted(t.request.prompt for t in provider.tasks.values()) == ["clip 1", "clip 2"]
        for n in (1, 2):
            assert "generating" in (await gen.status(f"clip {n}"))[-1].text
        for n in range(3, 8):
            [queued] = await gen.status(f"clip {n}")  # one version: nobody moved up yet
            job = await gen.job(f"clip {n}")
            assert queued.text.startswith(
                f"⏳ Standard · 5 s · job {job.short_id} · queued, position {n - 2}\n"
                "20 credits (¥2.00) held; nothing is spent until your clip is ready."
            )
            assert gen.runner.position(job.job_id) == n - 2

        # A slot frees: the first queued job starts, the others move up and keep waiting.
        gates[1].set()
        await asyncio.wait_for(gen.runner.settled((await gen.job("clip 1")).job_id), GUARD_S)
        await provider.until(lambda: provider.is_blocked("clip 3"))
        assert "generating" in (await gen.status("clip 3"))[-1].text
        for n in range(4, 8):
            assert "queued, position" in (await gen.status(f"clip {n}"))[-1].text
            assert gen.runner.position((await gen.job(f"clip {n}")).job_id) == n - 3
        assert len(provider.tasks) == 3

        # The refused press did not use up its quote: with room in the queue it works now.
        retried = await gen.push(chat, gen.button("Standard ·", chat))
        assert "✅ Standard chosen: 20 credits (¥2.00)" in retried

        for gate in gates.values():
            gate.set()
        await gen.settle()
        for n in range(1, 9):
            job = await gen.job(f"clip {n}")
            versions = [v.text for v in await gen.status(f"clip {n}")]
            assert job.state == "delivered", (n, job.state)
            assert "queued, position" in versions[0]
            assert versions[-1].startswith(f"✅ Standard · job {job.short_id} · done in")
        assert len(gen.clips()) == 8
        assert provider.max_in_flight == 2
        assert await gen.balance(chat) == "Your balance: 40 credits (¥4.00)."
        assert await gen.audit() == []


async def test_per_provider_limit_runs_one_job_at_a_time(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    gates = {name: asyncio.Event() for name in ("alice", "bob")}
    for name, gate in gates.items():
        provider.script(f"{name}'s clip", Script(progress=(10,), gate=gate))
    async with harness(tmp_path, provider, max_jobs_per_provider=1) as gen:
        local = gen.chat()
        alice, bob = gen.chat(user="alice"), gen.chat(user="bob")
        for member in (alice, bob):
            await gen.push(member, "/start")
            await gen.push(local, f"/topup {member.caller.user.id} 100")
        await gen.order(alice, "alice's clip")
        await gen.order(bob, "bob's clip")

        await provider.until(lambda: len(provider.blocked) == 1)
        assert [t.request.prompt for t in provider.tasks.values()] == ["alice's clip"]
        [bob_queued] = await gen.status("bob's clip")
        assert "queued, position 1" in bob_queued.text

        gates["alice"].set()
        await provider.until(lambda: len(provider.blocked) == 1 and len(provider.tasks) == 2)
        assert "generating" in (await gen.status("bob's clip"))[-1].text
        gates["bob"].set()
        await gen.settle()

        assert provider.max_in_flight == 1
        for member, prompt in ((alice, "alice's clip"), (bob, "bob's clip")):
            assert (await gen.job(prompt)).state == "delivered"
            assert await gen.balance(member) == "Your balance: 80 credits (¥8.00)."
        assert await gen.audit() == []


async def test_a_queued_job_that_moved_up_shows_generating_when_it_starts(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    gates = {name: asyncio.Event() for name in ("a", "b", "c")}
    for name, gate in gates.items():
        provider.script(name, Script(progress=(10,), gate=gate))
    async with harness(tmp_path, provider, max_jobs_per_user=1) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        for name in gates:
            await gen.order(chat, name)
        await provider.until(lambda: len(provider.blocked) == 1)
        assert "queued, position 2" in (await gen.status("c"))[0].text

        gates["a"].set()  # b starts, c moves up to position 1
        await provider.until(lambda: provider.is_blocked("b"))
        assert "generating" in (await gen.status("b"))[-1].text
        c = await gen.job("c")
        [*_, moved_up] = await gen.status("c")
        assert moved_up.kind == "edit"
        assert moved_up.text.startswith(f"⏳ Standard · 5 s · job {c.short_id} · queued, position 1\n")
        assert gen.runner.position(c.job_id) == 1

        gates["b"].set()  # c starts
        await provider.until(lambda: provider.is_blocked("c"))
        assert "generating" in (await gen.status("c"))[-1].text
        gates["c"].set()
        await gen.settle()


# --- 5. status edits are throttled ------------------------------------------------------------


async def test_status_edits_at_most_once_per_interval(tmp_path, tiny_clip):
    steps = tuple(range(3, 93, 3))  # 30 polls with progress, 1 s apart: 30 s of clock
    provider = service(tiny_clip, Script(progress=steps))
    async with harness(tmp_path, provider, status_interval_s=3.0, poll_interval_s=1.0) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a spinning top")
        await gen.settle()

        job = await gen.job("a spinning top")
        versions = await gen.status("a spinning top")
        edits = [v for v in versions if v.kind == "edit"]
        assert gen.transcript().count(f"~ message {job.status_message} edited:") == len(edits)
        span = edits[-1].at - edits[0].at
        assert span == 30
        # At most one edit per 3 s of clock, plus the forced ones (start, done) ...
        assert len(edits) <= span / 3 + 2
        # ... and no two unforced edits closer together than the interval.
        generating = [v for v in edits if "generating" in v.text]
        gaps = [b.at - a.at for a, b in itertools.pairwise(generating)]
        assert gaps and min(gaps) >= 3
        assert len(generating) >= 30 / 3  # it still kept the member informed
        assert generating[0].text.endswith("░░░░░░░░░░ 3%")  # the provider's progress
        assert edits[-1].text.startswith(f"✅ Standard · job {job.short_id} · done in 0:30")
        assert job.state == "delivered"


# --- 6. the expected wait -----------------------------------------------------------------------


async def test_the_expected_wait_is_the_median_of_real_runs(tmp_path, tiny_clip):
    provider = service(tiny_clip)
    # Polls every 5 s × time_scale 0.4 = 2 s of clock; k progress steps make a job of 2k s.
    for prompt, steps in (("first", 3), ("second", 6), ("third", 12)):
        provider.script(prompt, Script(progress=(50,) * steps))
    options = dict(time_scale=0.4, poll_interval_s=5.0)
    async with harness(tmp_path, provider, **options) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 1000")
        quote = await gen.quote(chat, "before any run")
        # The configured defaults times time_scale: 45 × 0.4, 60 × 0.4, 200 × 0.4.
        assert "Standard · 720p · 20 credits (¥2.00) · ~18 s" in quote
        assert "High Quality · 1080p · 35 credits (¥3.50) · ~24 s" in quote
        assert "Master · 1080p · 100 credits (¥10.00) · ~1 min" in quote
        for prompt in ("first", "second", "third"):
            assert "Standard · 720p · 20 credits (¥2.00) · ~18 s" in await gen.quote(chat, "again")
            await gen.order(chat, prompt)
            await gen.settle()

        durations = {}
        for prompt in ("first", "second", "third"):
            job = await gen.job(prompt)
            durations[prompt] = job.finished_at - job.started_at
        assert durations == {"first": 6, "second": 12, "third": 24}
        quote = await gen.quote(chat, "after three runs")
        assert "Standard · 720p · 20 credits (¥2.00) · ~12 s" in quote
        assert "High Quality · 1080p · 35 credits (¥3.50) · ~24 s" in quote  # no runs of it yet

    # After a restart the median comes from the store.
    async with harness(tmp_path, service(tiny_clip), **options) as gen:
        chat = gen.chat()
        assert "Standard · 720p · 20 credits (¥2.00) · ~12 s" in await gen.quote(chat, "restarted")


# --- 7. cancel --------------------------------------------------------------------------------------


async def test_cancelling_a_running_job_stops_it_and_refunds(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(progress=(20,), gate=asyncio.Event()))
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a slow sunrise")
        await provider.until(lambda: len(provider.blocked) == 1)
        job = await gen.job("a slow sunrise")
        assert job.state == "running"

        shown = await gen.push(chat, gen.button("Cancel", chat, action="cancel:"))
        assert shown == (
            f"~ message {job.status_message} edited:\n"
            f"🚫 Standard · job {job.short_id} cancelled.\n"
            "20 credits (¥2.00) went back to your wallet."
        )
        await gen.settle()
        assert provider.cancel_calls == [job.task_id]
        assert provider.blocked == set()  # the runner stopped polling
        job = await gen.job("a slow sunrise")
        assert job.state == "cancelled" and gen.clips() == []
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.entries(job) == ["hold", "release"]
        assert await gen.audit() == []


async def test_a_provider_that_refuses_cancel_finishes_and_charges_once(tmp_path, tiny_clip):
    gate = asyncio.Event()
    provider = service(tiny_clip, Script(progress=(20,), gate=gate, cancellable=False))
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a committed render")
        await provider.until(lambda: len(provider.blocked) == 1)

        shown = await gen.push(chat, gen.button("Cancel", chat, action="cancel:"))
        assert shown == "The clip is already being made and can no longer be cancelled."
        job = await gen.job("a committed render")
        assert job.state == "running" and provider.cancel_calls == [job.task_id]
        gate.set()
        await gen.settle()

        job = await gen.job("a committed render")
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert len(gen.clips()) == 1
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        assert await gen.entries(job) == ["hold", "capture"]
        assert await gen.audit() == []


async def test_only_the_owner_or_a_moderator_cancels_a_job(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(progress=(20,), gate=asyncio.Event()))
    async with harness(tmp_path, provider) as gen:
        local, alice, mallory = gen.chat(), gen.chat(user="alice"), gen.chat(user="mallory")
        for member in (alice, mallory):
            await gen.push(member, "/start")
        await gen.push(local, "/topup alice 100")
        await gen.order(alice, "alice's portrait")
        await provider.until(lambda: len(provider.blocked) == 1)
        cancel = gen.button("Cancel", alice, action="cancel:")

        assert await gen.press_as(mallory, alice, cancel) == "This is not your job."
        job = await gen.job("alice's portrait")
        assert job.state == "running" and provider.cancel_calls == []
        assert await gen.balance(alice) == (
            "Your balance: 80 credits (¥8.00).\nOn hold for 1 running job: 20 credits (¥2.00)."
        )

        # `local` owns the console and is a moderator: it may cancel anyone's job.
        await gen.press_as(local, alice, cancel)
        await gen.settle()
        job = await gen.job("alice's portrait")
        assert job.state == "cancelled" and provider.cancel_calls == [job.task_id]
        [*_, cancelled] = await gen.status("alice's portrait")
        assert cancelled.chat == "alice"
        assert cancelled.text == (
            f"🚫 Standard · job {job.short_id} cancelled.\n20 credits (¥2.00) went back to your wallet."
        )
        assert await gen.balance(alice) == "Your balance: 100 credits (¥10.00)."
        assert await gen.audit() == []


# --- 8. many jobs in flight ---------------------------------------------------------------------


async def test_jobs_between_polls_hold_no_task_and_one_loop_polls_them_all(tmp_path, tiny_clip):
    """Thirty jobs the provider is making are records between polls, not waiting coroutines."""
    provider = service(tiny_clip, Script(never_finishes=True))
    time = GatedTime()  # the clock stands still until the gate opens
    async with harness(
        tmp_path, provider, time=time, max_jobs_per_provider=30, max_jobs_per_user=30
    ) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 1000")
        for n in range(30):
            await gen.order(chat, f"clip {n}")
        await provider.until(lambda: len(provider.polls) == 30)
        await asyncio.wait_for(gen.runner.between_steps(), GUARD_S)

        assert gen.runner.running_count() == gen.runner.polling_count() == 30
        for n in range(30):
            assert "generating" in (await gen.status(f"clip {n}"))[-1].text
        job_tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("job-")]
        assert job_tasks == ["job-poller"]

        time.gate.set()  # two seconds pass: the one loop polls every job again
        await provider.until(lambda: all(polls >= 2 for polls in provider.polls.values()))
        assert gen.runner.running_count() == 30


async def test_cancelling_a_job_between_polls_refunds_it_and_starts_the_next(tmp_path, tiny_clip):
    provider = service(tiny_clip, Script(never_finishes=True))
    async with harness(tmp_path, provider, time=GatedTime(), max_jobs_per_provider=1) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "first")
        await gen.order(chat, "second")
        await provider.until(lambda: len(provider.polls) == 1)
        await asyncio.wait_for(gen.runner.between_steps(), GUARD_S)
        first = await gen.job("first")
        assert "queued, position 1" in (await gen.status("second"))[-1].text

        shown = await gen.push(chat, gen.button("Cancel", chat, action=f"cancel:{first.job_id}"))
        assert f"🚫 Standard · job {first.short_id} cancelled." in shown
        await provider.until(lambda: len(provider.polls) == 2)  # the second job started
        await asyncio.wait_for(gen.runner.between_steps(), GUARD_S)

        assert provider.cancel_calls == [first.task_id]
        assert (await gen.job("first")).state == "cancelled"
        assert "generating" in (await gen.status("second"))[-1].text
        assert gen.runner.running_count() == 1 and gen.runner.waiting_count() == 0
        assert await gen.balance(chat) == (
            "Your balance: 80 credits (¥8.00).\n"
            "On hold for 1 running job: 20 credits (¥2.00)."  # the second's; the first's is back
        )
        assert await gen.audit() == []


# --- bugs found while writing these tests -------------------------------------------------------


async def test_cancel_during_submit_cancels_the_task_at_the_provider(tmp_path, tiny_clip):
    answer = asyncio.Event()  # the service accepted the task; its answer is still on the wire
    provider = service(tiny_clip, Script(submit_gate=answer, gate=asyncio.Event()))
    async with harness(tmp_path, provider) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "cancel me quickly")
        await provider.until(lambda: len(provider.tasks) == 1)

        shown = await gen.push(chat, gen.button("Cancel", chat, action="cancel:"))
        assert "cancelled." in shown and "20 credits (¥2.00) went back to your wallet." in shown
        answer.set()
        await gen.settle()
        assert await gen.balance(chat) == "Your balance: 100 credits (¥10.00)."
        assert await gen.audit() == []
        # The service is still rendering (and billing the operator for) a cancelled job:
        [task] = provider.tasks.values()
        assert provider.cancel_calls == [task.task_id]
        assert provider.in_flight == set()


async def test_a_job_started_while_its_queued_message_is_sent_keeps_one_status_message(
    tmp_path, tiny_clip
):
    provider = service(tiny_clip)
    first_gate, second_gate = asyncio.Event(), asyncio.Event()
    provider.script("first", Script(progress=(10,), gate=first_gate))
    provider.script("second", Script(progress=(10,), gate=second_gate))
    async with harness(tmp_path, provider, max_jobs_per_provider=1) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "first")
        await provider.until(lambda: len(provider.blocked) == 1)

        await gen.quote(chat, "second")
        gen.router.hold_queued = asyncio.Event()  # the chat API is slow to answer
        press = asyncio.create_task(gen.push(chat, gen.button("Standard ·", chat)))
        await asyncio.wait_for(gen.router.holding.wait(), GUARD_S)
        first_gate.set()  # the first job finishes meanwhile, and frees the slot
        first = await gen.job("first")
        await asyncio.wait_for(gen.deps.generation.runner.settled(first.job_id), GUARD_S)
        assert not provider.is_blocked("second")  # it waits for its status message
        gen.router.hold_queued.set()
        await asyncio.wait_for(press, GUARD_S)
        second_gate.set()
        await gen.settle()

        job = await gen.job("second")
        assert job.state == "delivered"
        sends = [
            s
            for s in gen.router.shown
            if s.kind == "send" and s.video is None and f"job {job.short_id}" in s.text
        ]
        assert len(sends) == 1, [s.text for s in sends]  # one status message per job
        assert job.status_message == sends[0].message
        assert (await gen.status("second"))[-1].text.startswith(f"✅ Standard · job {job.short_id}")
