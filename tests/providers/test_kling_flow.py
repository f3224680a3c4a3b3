"""The Kling provider end to end: the console chat, the real core and provider, the stand-in."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import pytest

from tests.e2e.recovery_support import hold_entries
from tests.e2e.video import probe
from tests.providers.kling_support import finish, kling_session, kling_settings, order, sound

PROMPT = "a robot plays piano"


@pytest.mark.parametrize(
    ("tier", "line", "kind", "model", "mode", "price"),
    [
        ("Standard ·", f"/gen sample {PROMPT}", "image2video", "kling-v2-1", "std", 20),
        ("High Quality ·", f"/gen sample {PROMPT}", "image2video", "kling-v2-1", "pro", 35),
        ("Master ·", f"/gen sample {PROMPT}", "image2video", "kling-v2-1-master", None, 100),
        ("Master ·", f"/gen {PROMPT}", "text2video", "kling-v2-1-master", None, 100),
    ],
)
async def test_each_tier_makes_one_kling_task_with_the_exact_request(
    tmp_path, standin, tier, line, kind, model, mode, price
):
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, line, tier)
        final = await finish(gen, job)

        [body] = standin.creates
        expected = {"model_name": model, "duration": "5", "prompt": PROMPT}
        expected["external_task_id"] = job.job_id
        if mode:
            expected["mode"] = mode
        if kind == "image2video":
            expected["image"] = base64.b64encode(Path(job.image_path).read_bytes()).decode()
        else:
            expected["aspect_ratio"] = "16:9"
        assert body == expected
        [task] = standin.tasks.values()
        assert task.kind == kind
        assert final.task_id == f"{kind}/{task.task_id}"
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        clip = settings.clips_dir / f"{job.job_id}.mp4"
        assert gen.clips() == [clip]
        assert clip.read_bytes() == standin.clip.read_bytes()
        assert probe(clip).codec == "h264"
        assert standin.downloads == 1
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await gen.push(chat, "/balance") == (
            f"Your balance: {300 - price} credits (¥{(300 - price) / 10:.2f})."
        )
        assert len(standin.tokens) == 1  # one token, reused for every call
        await sound(gen)


async def test_ten_seconds_with_a_negative_prompt(tmp_path, standin):
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        line = f'/gen sample --duration 10 --negative "blurry, text" {PROMPT}'
        job = await order(gen, chat, line, "High Quality ·")
        final = await finish(gen, job)
        [body] = standin.creates
        assert (body["duration"], body["negative_prompt"], body["mode"]) == ("10", "blurry, text", "pro")
        assert final.state == "delivered"
        assert await gen.push(chat, "/balance") == "Your balance: 230 credits (¥23.00)."
        await sound(gen)


async def test_a_lost_create_answer_adopts_the_task_kling_made(tmp_path, standin):
    standin.drop_creates = 1
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        [task] = standin.tasks.values()  # one task, found again by external_task_id
        assert len(standin.creates) == 1
        assert final.task_id == f"image2video/{task.task_id}"
        assert (final.state, final.delivery) == ("delivered", "uploaded")
        assert await hold_entries(gen, job.job_id) == ["hold", "capture"]
        assert await gen.push(chat, "/balance") == "Your balance: 280 credits (¥28.00)."
        await sound(gen)


async def test_a_create_refused_as_duplicate_adopts_the_existing_task(tmp_path, standin):
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        await finish(gen, job)
        provider = gen.deps.generation.runner.provider
        # The same job submitted again (as after a crash, without the attempt count):
        request = gen.deps.generation.runner._life._request(job)
        task_id = await provider.submit(request)
        assert standin.refused[-1] == (1201, "external_task_id already exists")
        assert task_id == f"image2video/{next(iter(standin.tasks))}"
        assert len(standin.tasks) == 1


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_content_refused_at_create_is_told_and_refunded(tmp_path, standin, lang):
    standin.create_faults.append(1301)
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat(lang=lang)
        tier = "Standard ·" if lang == "en" else "标准 ·"
        job = await order(gen, chat, f"/gen sample {PROMPT}", tier)
        final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "content")
        text = gen.transcript()
        if lang == "en":
            assert (
                "The video service refused this image or prompt: "
                "it did not pass the video service's content safety check" in text
            )
            assert "20 credits (¥2.00) went back to your wallet." in text
        else:
            assert "视频服务拒绝了这张图片或提示词：未通过视频服务的内容安全审核" in text
        assert standin.tasks == {}
        assert await hold_entries(gen, job.job_id) == ["hold", "release"]
        await sound(gen)


async def test_a_task_that_ends_failed_is_refunded(tmp_path, standin):
    standin.fail_tasks_with = "Internal error, please try again"
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        assert final.state == "failed"
        assert "Internal error" in final.error_detail
        assert "The video service could not make this clip." in gen.transcript()
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        assert standin.downloads == 0
        await sound(gen)


async def test_a_task_failed_by_the_content_check_says_so(tmp_path, standin):
    standin.fail_tasks_with = "Failure to pass the risk control system"
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "content")
        assert "content safety check" in gen.transcript()
        await sound(gen)


async def test_out_of_balance_refunds_every_job_with_one_operator_line(tmp_path, standin, caplog):
    standin.create_faults.extend([1102, 1102, 1102])
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        with caplog.at_level(logging.INFO):
            jobs = [
                await order(gen, chat, f"/gen sample {PROMPT} {i}", "Standard ·", topup=100 if i == 0 else None)
                for i in range(3)
            ]
            for job in jobs:
                final = await finish(gen, job)
                assert (final.state, final.error_kind) == ("failed", "operator")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert "no resource packs or balance left" in errors[0]
        assert standin.secret_key not in caplog.text and standin.access_key not in caplog.text
        text = gen.transcript()
        assert text.count("The video service is unavailable right now; the operators have been told.") == 3
        assert "1102" not in text
        assert await gen.push(chat, "/balance") == "Your balance: 100 credits (¥10.00)."
        # The account is topped up: the next job works, and a new outage is reported again.
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·", topup=None)
        assert (await finish(gen, job)).state == "delivered"
        assert "the provider accepts jobs again" in caplog.text
        await sound(gen)


async def test_a_task_that_never_finishes_times_out_and_refunds(tmp_path, standin):
    standin.never_finish = True
    settings = kling_settings(tmp_path, standin, kling_timeouts_s={"standard": 200})
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "timeout")
        assert "It took far longer than expected, so I stopped it." in gen.transcript()
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        [task] = standin.tasks.values()
        assert task.polls >= 1  # polled while it ran: how often depends on the machine's speed
        await sound(gen)


async def test_an_expired_result_url_is_retried_then_refunded(tmp_path, standin):
    standin.expire_urls = True
    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        assert (final.state, final.error_kind) == ("failed", "fetch")
        assert "The video service could not make this clip." in gen.transcript()
        assert await gen.push(chat, "/balance") == "Your balance: 300 credits (¥30.00)."
        assert not (settings.clips_dir / f"{job.job_id}.mp4").exists()
        assert list(settings.clips_dir.glob("*.part")) == []
        await sound(gen)


async def test_a_clip_over_the_upload_limit_is_sent_as_klings_link(tmp_path, standin):
    from tests.e2e.conftest import ChatsById

    class TinyUploads(ChatsById):
        def fits(self, chat, size_bytes):
            return size_bytes <= 1_000

    settings = kling_settings(tmp_path, standin)
    async with kling_session(settings) as gen:
        gen.router = TinyUploads()
        gen.deps.generation.outboxes.register("console", gen.router)
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        final = await finish(gen, job)
        [task] = standin.tasks.values()
        assert (final.state, final.delivery) == ("delivered", "link")
        assert (
            f"Your clip for job {job.short_id} is too large to upload here. Download it from the "
            f"video service (the link works for a limited time): {standin.url}/videos/{task.task_id}.mp4"
        ) in gen.transcript()
        assert await gen.push(chat, "/balance") == "Your balance: 280 credits (¥28.00)."
        await sound(gen)


async def test_the_token_is_renewed_across_a_long_poll_and_after_a_1004(tmp_path, standin):
    from bot.providers.kling import kling_provider

    world = [time.time()]  # Kling's and our wall clock, pushed forward by the test
    standin.jwt_clock = lambda: world[0]
    standin.never_finish = True
    settings = kling_settings(tmp_path, standin, kling_timeouts_s={"master": 50_000})
    provider = kling_provider(settings, wall=lambda: world[0])
    async with kling_session(settings, provider=provider) as gen:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen {PROMPT}", "Master ·")
        [task] = await _tasks(standin)
        await standin.until(lambda: task.polls >= 1)
        for hour in (1, 2):  # an hour of Master queue: two token lifetimes
            world[0] += 1700
            polls = task.polls
            await standin.until(lambda polls=polls: task.polls > polls)
            assert len(standin.tokens) == 1 + hour
        standin.query_faults.append(1004)  # Kling says expired anyway: renew, retry once
        polls = task.polls
        await standin.until(lambda: task.polls > polls)
        standin.never_finish = False
        assert (await finish(gen, job)).state == "delivered"
        assert [code for code, _ in standin.refused] == [1004]
        assert provider.client.tokens.issued == 4
        await sound(gen)


async def _tasks(standin):
    await standin.until(lambda: len(standin.tasks) == 1)
    return list(standin.tasks.values())


async def test_a_callback_makes_the_runner_poll_at_once_but_is_not_trusted(tmp_path, standin):
    import socket

    import httpx

    from bot.providers.kling import kling_provider
    from tests.support.clock import GatedTime

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    # Timer polls 60 s apart (600 s x 0.1): without a callback the clip would wait a minute.
    settings = kling_settings(
        tmp_path,
        standin,
        time_scale=0.1,
        poll_interval_s=600,
        kling_poll_cap_s=600,
        kling_callback_url="https://bot.example.com/kling/callback",
        kling_callback_listen=f"127.0.0.1:{port}",
    )
    standin.speed = 0.0  # Kling's clock moves only by advance(): the clip is not done by itself
    clock = GatedTime()  # the provider's clock for spacing the polls posts cause
    provider = kling_provider(settings, time_scale=0.1, monotonic=clock.monotonic, sleep=clock.sleep)
    async with kling_session(settings, provider=provider) as gen, httpx.AsyncClient() as http:
        chat = gen.chat()
        job = await order(gen, chat, f"/gen sample {PROMPT}", "Standard ·")
        [task] = await _tasks(standin)
        assert task.body["callback_url"] == "https://bot.example.com/kling/callback"
        await standin.until(lambda: task.polls == 1)
        url = f"http://127.0.0.1:{port}/kling/callback"
        # Posts naming a task that is not ours change nothing.
        assert (await http.post(url, json={"task_id": "840000000000009999"})).status_code == 200
        assert clock.sleeps == []
        # A flood of forged "succeed" posts right after a poll: one poll when the interval is up.
        forged = {"task_id": task.task_id, "task_status": "succeed", "task_result": {"videos": [{"url": "http://evil.example/x.mp4"}]}}
        for _ in range(20):
            assert (await http.post(url, json=forged)).status_code == 200
        assert clock.sleeps == [60.0]  # one poke waits for the task's poll interval to pass
        assert task.polls == 1
        clock.gate.set()  # the interval passes
        await standin.until(lambda: task.polls == 2)
        assert (await gen.deps.generation.store.get_job(job.job_id)).state in ("submitted", "running")
        standin.advance(100)  # Kling finishes the clip and says so
        assert (await http.post(url, json={"task_id": task.task_id, "task_status": "succeed"})).status_code == 200
        final = await asyncio.wait_for(finish(gen, job), 10)
        assert (final.state, task.polls) == ("delivered", 3)
        assert (await http.post(url, content=b"not json")).status_code == 400
        await sound(gen)


async def test_the_callback_server_listens_on_this_machine_only_by_default(tmp_path, standin):
    import httpx

    settings = kling_settings(tmp_path, standin, kling_callback_url="https://bot.example.com/kling")
    assert settings.kling_callback_listen == "127.0.0.1:8090"
    async with kling_session(settings), httpx.AsyncClient() as http:
        listening = [line.split()[1] for line in _proc_net_tcp() if line.split()[3] == "0A"]
        assert "0100007F:1F9A" in listening  # 127.0.0.1:8090
        assert "00000000:1F9A" not in listening  # not 0.0.0.0:8090
        posted = await http.post("http://127.0.0.1:8090/kling", json={"task_id": "1"})
        assert posted.status_code == 200  # a task that is not ours: nothing happens


def _proc_net_tcp() -> list[str]:
    """The kernel's table of this machine's IPv4 TCP sockets (state 0A: listening)."""
    return Path("/proc/net/tcp").read_text().splitlines()[1:]
