"""Restart recovery: stop the bot in each job state, start it again on the same database.

Each scenario runs the real core (``open_core``) twice on one SQLite file in
``tmp_path``: the first run is stopped with the job held, submitted, running,
or made but not delivered; the second run must finish the job the way a
member expects (refund, or the clip) and leave the ledger invariants intact.
The last test does the same to a real ``python -m app console`` process
with SIGKILL.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from bot.generation import new_job
from bot.jobs.model import Job
from storage.audit import audit
from tests.e2e.conftest import fast_settings, run_cli
from tests.e2e.recovery_support import (
    PROMPT,
    RefusingUploads,
    RemoteService,
    cli_env,
    hold_entries,
    kill_console,
    let_others_run,
    order,
    press_tier,
    read_until,
    session,
    start_console,
    state_of,
    wait,
)
from tests.e2e.video import probe


async def balance(gen, chat) -> str:
    return await gen.push(chat, "/balance")


# --- 1. held: never submitted -------------------------------------------------------


async def _hold_without_admit(gen, chat, tier_key: str) -> Job:
    """Press a tier the way ``choose`` does, but stop between the hold and the runner's ``admit``."""
    await gen.push(chat, f"/gen sample {PROMPT}")
    newest = max(
        n for n, (_, action, _) in chat.live_buttons().items() if action.startswith("tier:")
    )
    quote_id = chat.live_buttons()[newest][1].split(":")[1]
    deps, generation = gen.deps, gen.deps.generation
    quote = await generation.store.get_quote(quote_id)
    tier = deps.catalog.tier(tier_key)
    job = new_job(quote, tier, deps)
    return await generation.store.create_job(
        job, max_active=generation.runner.settings.max_active, now=deps.clock.now()
    )


async def test_a_held_job_is_queued_again_after_a_restart_not_refunded(tmp_path, remote_clip):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        await gen.deps.generation.runner.start()
        await gen.push(chat, "/topup me 100")
        job = await _hold_without_admit(gen, chat, "high_quality")
        assert await balance(gen, chat) == (
            "Your balance: 65 credits (¥6.50).\nOn hold for 1 running job: 35 credits (¥3.50)."
        )
    # The bot stopped after the hold, before the runner ever saw the job.
    assert remote.submits == []

    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        assert await state_of(gen, job.job_id) == "held"
        await runner.start()
        await wait(remote.poll_parked.wait())
        remote.finish(job.job_id)
        await wait(runner.settled(job.job_id))
        await wait(runner.idle())

        text = gen.transcript()
        assert "did not work" not in text and "went back to your wallet" not in text
        assert f"✅ High Quality · job {job.short_id} · done in" in text
        assert gen.clips() == [settings.clips_dir / f"{job.job_id}.mp4"]
        assert await balance(gen, chat) == "Your balance: 65 credits (¥6.50)."
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await audit(gen.deps.ledger.db) == []
    assert remote.submits == [job.job_id]  # sent once, after the restart


async def test_a_job_queued_at_the_stop_resumes_its_place_after_the_running_one(
    tmp_path, remote_clip
):
    # One provider slot: the Standard job runs, the High Quality job waits its turn, held.
    settings = fast_settings(tmp_path, max_jobs_per_provider=1)
    remote = RemoteService(remote_clip, running_polls=1)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        await gen.deps.generation.runner.start()
        running = await order(gen, chat)
        await wait(remote.poll_parked.wait())
        held = await order(gen, chat, "High Quality ·", topup=None)
        assert (
            f"⏳ High Quality · 5 s · job {held.short_id} · queued, position 1" in gen.transcript()
        )
    # The bot stopped; the queued job must not have been sent anywhere.
    assert remote.submits == [running.job_id]

    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        assert await state_of(gen, held.job_id) == "held"
        remote.poll_parked.clear()
        await runner.start()
        await wait(remote.poll_parked.wait())  # the running job's poll: one slot, taken
        assert remote.submits == [running.job_id]  # the queued one still waits its turn
        text = gen.transcript()
        assert (
            f"~ message {held.status_message} edited:\n⏳ High Quality · 5 s · job {held.short_id} · queued, position 1"
            in text
        )
        remote.finish(running.job_id)
        await wait(runner.settled(running.job_id))
        await wait(_parked(remote, held.job_id))
        remote.finish(held.job_id)
        await wait(runner.settled(held.job_id))
        await wait(runner.idle())

        text = gen.transcript()
        assert "did not work" not in text
        assert sorted(gen.clips()) == sorted(
            settings.clips_dir / f"{job.job_id}.mp4" for job in (running, held)
        )
        assert await balance(gen, chat) == "Your balance: 45 credits (¥4.50)."
        assert await hold_entries(gen, held.job_id) == ["hold", "capture"]
        assert await hold_entries(gen, running.job_id) == ["hold", "capture"]
        assert await audit(gen.deps.ledger.db) == []
    assert remote.submits == [running.job_id, held.job_id]


async def test_a_restart_starts_only_what_the_limits_allow_in_the_original_order(
    tmp_path, remote_clip
):
    """Six paid jobs of three members queued at the stop; two slots, one job per member."""
    settings = fast_settings(tmp_path, max_jobs_per_provider=2, max_jobs_per_user=1)
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:
        members = [gen.chat(user=name) for name in ("ann", "bob", "cy")]
        for member in members:
            await gen.push(member, "/balance")
            await gen.push(gen.chat(), f"/topup {member.caller.username} 100")
        jobs = []
        for _ in range(2):
            for member in members:
                jobs.append(await _hold_without_admit(gen, member, "standard"))
    assert remote.submits == []

    async with session(settings, provider=remote) as gen:
        for name in ("ann", "bob", "cy"):
            gen.chat(user=name)
        runner = gen.deps.generation.runner
        await runner.start()
        for expected in ([jobs[0], jobs[1]], [jobs[2], jobs[3]], [jobs[4], jobs[5]]):
            started = [job.job_id for job in expected]
            await wait(asyncio.gather(*(_parked(remote, job_id) for job_id in started)))
            await let_others_run(50)
            assert remote.submits[-2:] == started and len(remote.submits) == len(
                [j for j in jobs[: jobs.index(expected[-1]) + 1]]
            )
            assert runner.active_count() <= len(jobs)
            for job_id in started:
                remote.finish(job_id)
            await wait(asyncio.gather(*(runner.settled(job_id) for job_id in started)))
        await wait(runner.idle())
        assert remote.submits == [job.job_id for job in jobs]
        for job in jobs:
            assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await audit(gen.deps.ledger.db) == []


async def _parked(remote: RemoteService, job_id: str) -> None:
    while job_id not in remote.tasks:
        await let_others_run(1)
    await remote.tasks[job_id].parked.wait()


async def test_a_submit_in_flight_at_the_stop_is_found_after_the_restart(tmp_path, remote_clip):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, hold_submits=True)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        await gen.deps.generation.runner.start()
        job = await order(gen, chat, "High Quality ·")
        await wait(remote.submit_parked.wait())
    # The service accepted the task (its id is our job id); the bot stopped before the reply.
    assert list(remote.tasks) == [job.job_id]
    remote.submit_gate.set()
    remote.finish(job.job_id)

    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        await wait(runner.settled(job.job_id))
        await wait(runner.idle())
        assert "did not work" not in gen.transcript()
        assert gen.clips() == [settings.clips_dir / f"{job.job_id}.mp4"]
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await balance(gen, chat) == "Your balance: 65 credits (¥6.50)."
        assert await audit(gen.deps.ledger.db) == []
    assert list(remote.tasks) == [job.job_id]  # one task at the service, paid and delivered


# --- 2, 3. submitted / running ----------------------------------------------------------


async def _stop_in(settings, remote: RemoteService, stopped_in: str):
    """First run: order a Standard clip and stop the bot while the job is ``stopped_in``."""
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        await gen.deps.generation.runner.start()
        job = await order(gen, chat)
        await wait(remote.poll_parked.wait())
        assert await state_of(gen, job.job_id) == stopped_in
        if stopped_in == "running":
            assert f"🎬 Standard · 5 s · job {job.short_id} · generating" in gen.transcript()
        assert await balance(gen, chat) == (
            "Your balance: 80 credits (¥8.00).\nOn hold for 1 running job: 20 credits (¥2.00)."
        )
        assert (await gen.deps.ledger.get_hold(job.job_id)).state == "open"
    return job


async def _check_delivered_once(gen, chat, job, clip: Path, *, made_here: bool = True) -> None:
    text = gen.transcript()
    if made_here:
        assert f"✅ Standard · job {job.short_id} · done in" in text
        assert "20 credits (¥2.00) paid" in text
    assert gen.clips() == [clip]
    assert f"🎞️ Standard · 720p · 5 s · 20 credits (¥2.00) · job {job.short_id}" in text
    final = await gen.deps.generation.store.get_job(job.job_id)
    assert (final.state, final.delivery, final.result_path) == ("delivered", "uploaded", str(clip))
    assert (await gen.deps.ledger.get_hold(job.job_id)).state == "captured"
    assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
    assert await balance(gen, chat) == "Your balance: 80 credits (¥8.00)."
    assert (await gen.deps.ledger.wallet(job.user)).held == 0
    assert await audit(gen.deps.ledger.db) == []


@pytest.mark.parametrize("stopped_in", ["submitted", "running"])
async def test_a_task_lost_by_the_restart_is_submitted_again_and_delivered(
    tmp_path, remote_clip, stopped_in
):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0 if stopped_in == "submitted" else 1)
    job = await _stop_in(settings, remote, stopped_in)

    # The real local renderer keeps its tasks in memory: after the restart it has none.
    async with session(settings) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        await wait(runner.settled(job.job_id), 60)
        await wait(runner.idle())

        clip = settings.clips_dir / f"{job.job_id}.mp4"
        await _check_delivered_once(gen, chat, job, clip)
        assert (await gen.deps.generation.store.get_job(job.job_id)).attempts == 2
        video = probe(clip)
        assert (video.codec, video.width, video.height) == ("h264", 960, 720)
        assert abs(video.duration_s - 5) <= 0.1
    assert remote.submits == [job.job_id]  # the first run's service was asked once


@pytest.mark.parametrize(
    ("stopped_in", "finished_while_down"),
    [("submitted", True), ("running", True), ("running", False)],
)
async def test_a_task_the_service_still_has_is_polled_not_submitted_again(
    tmp_path, remote_clip, stopped_in, finished_while_down
):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=0 if stopped_in == "submitted" else 1)
    job = await _stop_in(settings, remote, stopped_in)
    polls_before = remote.polls
    remote.poll_parked.clear()
    if finished_while_down:
        remote.finish(job.job_id)

    # Like Kling: the task lives at the service, so the same provider knows it after the restart.
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        if not finished_while_down:
            await wait(remote.poll_parked.wait())
            assert await state_of(gen, job.job_id) == "running"
            remote.finish(job.job_id)
        await wait(runner.settled(job.job_id))
        await wait(runner.idle())

        clip = settings.clips_dir / f"{job.job_id}.mp4"
        await _check_delivered_once(gen, chat, job, clip)
        assert clip.read_bytes() == remote_clip.read_bytes()
        assert (await gen.deps.generation.store.get_job(job.job_id)).attempts == 1
    assert remote.submits == [job.job_id]
    assert remote.polls > polls_before


# --- 4. succeeded, not delivered ------------------------------------------------------------


@pytest.mark.parametrize(
    "upload", ["refused, and retried in the running process", "hung until the stop"]
)
async def test_a_clip_made_but_not_delivered_is_delivered_after_a_restart_without_a_second_charge(
    tmp_path, remote_clip, upload
):
    settings = fast_settings(tmp_path)
    hang = upload == "hung until the stop"
    remote = RemoteService(remote_clip, running_polls=0)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        uploads = RefusingUploads(gen.router, hang=hang)
        gen.deps.generation.outboxes.register("console", uploads)
        await runner.start()
        job = await order(gen, chat)
        await wait(remote.poll_parked.wait())
        remote.finish(job.job_id)
        if hang:
            await wait(uploads.upload_started.wait())
        else:
            await wait(uploads.refused_thrice.wait())  # tried again without a restart
            assert "I will send it as soon as it does." in gen.transcript()
            assert (await gen.deps.generation.store.get_job(job.job_id)).delivery_attempts >= 2
        assert await state_of(gen, job.job_id) == "succeeded"  # made, not yet delivered
        assert f"✅ Standard · job {job.short_id} · done in" in gen.transcript()
        assert gen.clips() == []
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
    clip = settings.clips_dir / f"{job.job_id}.mp4"
    assert clip.exists()

    # A platform that takes uploads again; the provider is the real local one, never asked.
    async with session(settings) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        await wait(runner.settled(job.job_id))
        await wait(runner.idle())
        await _check_delivered_once(gen, chat, job, clip, made_here=False)
        if hang:
            assert "done in" not in gen.transcript()  # "done" was said before the restart
        else:  # the status message that offered Send again says "done" again, without it
            assert f"✅ Standard · job {job.short_id} · done in" in gen.transcript()
        assert clip.read_bytes() == remote_clip.read_bytes()
    assert remote.submits == [job.job_id]


# --- 5. cancel racing completion ---------------------------------------------------------------


async def _complete(remote: RemoteService, job_id: str, *, on_cancel: bool, yields: int):
    """The service finishes the clip: right when the cancel reaches it, or on its own."""
    if on_cancel:
        await remote.tasks[job_id].cancel_requested.wait()
    await let_others_run(yields)
    remote.finish(job_id)


async def test_cancel_racing_completion_ends_every_hold_exactly_once(tmp_path, remote_clip):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, running_polls=1)
    outcomes: Counter[str] = Counter()
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        await gen.push(chat, "/topup me 1000")
        for i in range(30):
            remote.poll_parked.clear()
            job = await order(gen, chat, topup=None)
            await wait(remote.poll_parked.wait())
            assert await state_of(gen, job.job_id) == "running"
            # 0: the service accepts the cancel even though the clip is finishing;
            # 1: the service finishes first and honestly refuses the cancel;
            # 2: the finish and the press start together, no ordering at all.
            variant = i % 3
            remote.honest_cancel = variant == 1
            remote.cancel_yields = 3 if variant == 1 else 0
            button = gen.button("Cancel", chat, action=f"cancel:{job.job_id}")
            pressed, _ = await wait(
                asyncio.gather(
                    gen.push(chat, button),
                    _complete(remote, job.job_id, on_cancel=variant != 2, yields=i % 5),
                )
            )
            await wait(runner.settled(job.job_id))
            await wait(runner.idle())

            text = gen.transcript()
            final = await gen.deps.generation.store.get_job(job.job_id)
            entries = await hold_entries(gen, job.job_id)
            clip = settings.clips_dir / f"{job.job_id}.mp4"
            assert entries in (["hold", "capture"], ["hold", "release"]), (i, entries)
            outcomes[entries[-1]] += 1
            if entries[-1] == "capture":
                assert final.state == "delivered", (i, final.state)
                assert clip in gen.clips()
                # The press's answer; the clip may be printed while the press is handled.
                assert pressed.endswith(
                    (
                        "This job has already finished.",
                        "The clip is already being made and can no longer be cancelled.",
                    )
                ), (i, pressed)
                assert f"🚫 Standard · job {job.short_id} cancelled." not in text
            else:
                assert final.state == "cancelled", (i, final.state)
                assert clip not in gen.clips()
                assert f"🚫 Standard · job {job.short_id} cancelled." in pressed
                assert "20 credits (¥2.00) went back to your wallet." in pressed
                assert f"✅ Standard · job {job.short_id} · done" not in text
        spent = 20 * outcomes["capture"]
        assert await balance(gen, chat) == (
            f"Your balance: {1000 - spent} credits (¥{(1000 - spent) / 10:.2f})."
        )
        assert (await gen.deps.ledger.wallet(job.user)).held == 0
        assert await audit(gen.deps.ledger.db) == []
    assert sum(outcomes.values()) == 30
    assert outcomes["capture"] and outcomes["release"], outcomes  # both sides of the race ran


async def test_cancel_while_the_submit_is_on_the_wire_cancels_the_task_at_the_service(
    tmp_path, remote_clip
):
    settings = fast_settings(tmp_path)
    remote = RemoteService(remote_clip, hold_submits=True)
    async with session(settings, provider=remote) as gen:
        chat = gen.chat()
        runner = gen.deps.generation.runner
        await runner.start()
        job = await order(gen, chat, "High Quality ·")
        await wait(remote.submit_parked.wait())
        pressed = await gen.push(chat, gen.button("Cancel", chat, action=f"cancel:{job.job_id}"))
        assert f"🚫 High Quality · job {job.short_id} cancelled." in pressed
        assert "35 credits (¥3.50) went back to your wallet." in pressed
        remote.submit_gate.set()  # the service's answer arrives: it did create the task
        await wait(runner.idle())
        assert await hold_entries(gen, job.job_id) == ["hold", "release"]
        assert await balance(gen, chat) == "Your balance: 100 credits (¥10.00)."
        assert await audit(gen.deps.ledger.db) == []
    # Nobody pays for a clip nobody will get: the service was told to stop it.
    assert remote.tasks[job.job_id].cancel_requested.is_set()


# --- 6. SIGKILL of the real process -----------------------------------------------------------------


async def test_a_console_killed_mid_generation_delivers_the_clip_when_started_again(tmp_path):
    overrides = {
        "KLINGBOT_DB": str(tmp_path / "klingbot.db"),
        "KLINGBOT_TIME_SCALE": "0.05",  # High Quality's ~60 s becomes ~3 s
        "KLINGBOT_STATUS_INTERVAL_S": "0.2",
        "KLINGBOT_TIERS": '{"high_quality": {"resolution": 360}}',  # a quick render
    }
    first = await start_console(tmp_path, cli_env(overrides), tmp_path / "first.stderr")
    seen: list[str] = []
    try:
        first.stdin.write(f"/topup me 100\n/gen sample {PROMPT}\n".encode())
        await first.stdin.drain()
        await press_tier(first, "High Quality", seen)
        generating = await read_until(first, lambda line: "generating" in line, seen)
    finally:
        status = await kill_console(first)
    assert status == -signal.SIGKILL
    short_id = re.search(r"· job (\w+) · generating", generating).group(1)
    assert f"✅ High Quality chosen: 35 credits (¥3.50) held for job {short_id}." in seen

    # Started again with nothing to read: it resumes the job and waits for it before exiting.
    second = await asyncio.to_thread(run_cli, "console", cwd=tmp_path, env=overrides, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"✅ High Quality · job {short_id} · done in" in second.stdout, second.stdout
    assert "did not work" not in second.stdout
    clip_lines = [line for line in second.stdout.splitlines() if line.startswith("  🎞️ ")]
    assert len(clip_lines) == 1, second.stdout
    path = Path(clip_lines[0].strip().removeprefix("🎞️ "))
    assert path.name.startswith(short_id) and path.suffix == ".mp4"
    video = probe(path)
    assert (video.codec, video.height) == ("h264", 360)  # the tier's resolution
    assert abs(video.duration_s - 5) <= 0.1

    check = await asyncio.to_thread(run_cli, "db", "check", cwd=tmp_path, env=overrides)
    assert (check.returncode, check.stdout.strip()) == (0, "ledger OK"), check.stdout
    wallet = await asyncio.to_thread(
        run_cli, "wallet", "balance", "console:local", cwd=tmp_path, env=overrides
    )
    assert wallet.returncode == 0, wallet.stderr
    assert "Your balance: 65 credits (¥6.50)." in wallet.stdout, wallet.stdout


async def test_a_console_killed_again_and_again_delivers_every_paid_job(tmp_path):
    """Three paid jobs, one provider slot; SIGKILL while one renders and two wait, three times."""
    overrides = {
        "KLINGBOT_DB": str(tmp_path / "klingbot.db"),
        "KLINGBOT_TIME_SCALE": "0.02",  # Standard's ~45 s becomes ~1 s
        "KLINGBOT_STATUS_INTERVAL_S": "0.2",
        "KLINGBOT_MAX_JOBS_PER_PROVIDER": "1",
        "KLINGBOT_TIERS": '{"standard": {"resolution": 360}}',  # quick renders
    }
    env = cli_env(overrides)
    seen: list[str] = []
    console = await start_console(tmp_path, env, tmp_path / "stderr")
    try:
        console.stdin.write(b"/topup me 200\n")
        for prompt in ("a robot waves", "a cat sleeps", "a sun rises"):
            console.stdin.write(f"/gen sample {prompt}\n".encode())
            await console.stdin.drain()
            await press_tier(console, "Standard", seen)
            # The press is paid once its quote says so ("queued" comes before that line,
            # and job 1's "generating" edits can come in between).
            await read_until(console, lambda line: "held for job" in line, seen)
        await read_until(console, lambda line: "· generating" in line, seen)
    finally:
        await kill_console(console)
    paid = set(re.findall(r"held for job ([0-9a-f]{8})\.", "\n".join(seen)))
    assert len(paid) == 3, seen

    for _ in range(3):  # started again with the input open: it resumes, and is killed again
        console = await start_console(tmp_path, env, tmp_path / "stderr")
        try:
            await read_until(console, lambda line: "· generating" in line, seen)
        finally:
            await kill_console(console)

    final = await asyncio.to_thread(run_cli, "console", cwd=tmp_path, env=overrides, timeout=120)
    assert final.returncode == 0, final.stderr
    output = "\n".join(seen) + "\n" + final.stdout
    assert "did not work" not in output and "went back to your wallet" not in output
    for short_id in paid:
        assert len(re.findall(rf"✅ Standard · job {short_id} · done in", output)) >= 1, output
    check = await asyncio.to_thread(run_cli, "db", "check", cwd=tmp_path, env=overrides)
    assert (check.returncode, check.stdout.strip()) == (0, "ledger OK"), check.stdout
    wallet = await asyncio.to_thread(
        run_cli, "wallet", "balance", "console:local", cwd=tmp_path, env=overrides
    )
    assert "Your balance: 140 credits (¥14.00)." in wallet.stdout, wallet.stdout
    clips = sorted((tmp_path / "klingbot-data" / "clips").glob("*.mp4"))
    assert sorted(path.name[:8] for path in clips) == sorted(paid)
    for path in clips:
        assert probe(path).height == 360  # the tier's resolution
