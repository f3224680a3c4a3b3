"""The Kling provider end to end: the console chat, the real core and provider, the stand-in."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest

from storage.audit import audit
from tests.e2e.recovery_support import hold_entries
from tests.e2e.video import probe
from tests.providers.kling_support import kling_session, kling_settings

PROMPT = "a robot plays piano"


async def order(gen, chat, line: str, tier: str, topup: int | None = 300):
    if topup:
        await gen.push(chat, f"/topup me {topup}")
    await gen.push(chat, line)
    await gen.push(chat, gen.button(tier))
    [job, *_] = await gen.deps.generation.store.jobs_of(None, 1)
    return job


async def finish(gen, job):
    runner = gen.deps.generation.runner
    await asyncio.wait_for(runner.settled(job.job_id), 30)
    await gen.settle()
    return await gen.deps.generation.store.get_job(job.job_id)


async def sound(gen) -> None:
    assert await audit(gen.deps.ledger.db) == []
    for job in await gen.deps.generation.store.jobs_of(None, 100):
        assert job.state in ("delivered", "failed", "cancelled"), job


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
