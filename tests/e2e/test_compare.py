"""/compare end to end through the console: a quote of every tier and the sum, one press that
holds it, a job per tier delivered as usual, then one labelled side-by-side clip."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from app.bootstrap import open_core
from bot.providers.base import ContentRefused
from storage.audit import audit
from tests.e2e.conftest import GenConsole, fast_settings
from tests.e2e.scripted_provider import Script, ScriptedByTier
from tests.support.video import probe

PROMPT = "a robot waves at the camera"


def label_widths(picture: np.ndarray, strip: int) -> list[int]:
    """The panels' widths, read from the label strip: dark strips split by black gaps."""
    row = picture[strip // 6]  # near the strip's top edge, above any label text
    lit = row.max(axis=1) > 12
    widths, run = [], 0
    for on in lit:
        if on:
            run += 1
        elif run:
            widths.append(run)
            run = 0
    return [*widths, run] if run else widths


def labelled(picture: np.ndarray, strip: int, panels: int) -> bool:
    """Every panel has white label text in the strip above it."""
    width = picture.shape[1] // panels
    return all(
        (picture[:strip, n * width : (n + 1) * width] > 200).all(axis=2).sum() > 20
        for n in range(panels)
    )


async def test_two_tiers_side_by_side_with_the_local_renderer(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    quote = await gen.push(chat, f"/compare sample {PROMPT}")
    assert f"🆚 Compare tiers for a 5 s clip of “{PROMPT}”:" in quote
    assert "Standard · 720p · 20 credits (¥2.00)" in quote
    assert "High Quality · 1080p · 35 credits (¥3.50)" in quote
    assert "Master · 1080p · 100 credits (¥10.00)" in quote
    assert "All 3 tiers: 155 credits (¥15.50)." in quote
    assert "All 3 tiers · 155 credits (¥15.50)" in quote  # a button
    chosen = await gen.push(chat, gen.button("Standard, High Quality · 55 credits (¥5.50)"))
    assert (
        "✅ Comparing Standard, High Quality: 55 credits (¥5.50) held, one job per tier." in chosen
    )
    await gen.settle()

    text = gen.transcript()
    assert "⏳ Standard · 5 s · job " in text and "⏳ High Quality · 5 s · job " in text
    assert "🆚 Standard, High Quality side by side · 5 s · 55 credits (¥5.50) paid" in text
    [side] = [path for path in gen.clips() if path.name.startswith("compare-")]
    tiers = [path for path in gen.clips() if path != side]
    assert sorted((probe(p).width, probe(p).height) for p in tiers) == [(960, 720), (1440, 1080)]
    clip = probe(side, pictures=True)
    # Both 4:3 panels at one height, 4 px apart, 1280 px wide in all, under a 48 px label
    # strip; as long as the tiers' clips (5 s at 24 fps).
    assert (clip.codec, clip.width, clip.height) == ("h264", 1280, 478 + 48)
    assert abs(clip.duration_s - 5) <= 0.1 and clip.frames == 120
    first = clip.pictures[0]
    assert label_widths(first, 48) == [638, 638]
    assert labelled(first, 48, 2)
    assert await gen.push(chat, "/balance") == "Your balance: 45 credits (¥4.50)."
    [job, *_] = await gen.deps.generation.store.jobs_of(None, 1)
    assert (await gen.deps.generation.store.compare_of(job.job_id)).state == "sent"
    assert await audit(gen.deps.ledger.db) == []


async def test_text_alone_offers_one_tier_only_and_costs_nothing(gen):
    english, chinese = gen.chat(), gen.chat(user="li", lang="zh-CN")
    await gen.push(english, "/topup me 100")
    refused = await gen.push(english, "/compare a cat dances on the moon")
    assert refused == (
        "Comparing needs two tiers or more, and from text alone only Master can make a clip."
        " Use /compare sample <prompt> for the bundled picture, or /compare <path to a JPG or"
        " PNG> <prompt>. Nothing was charged."
    )
    assert "对比至少需要两个档位" in await gen.push(chinese, "/compare 一只猫在月球上跳舞")
    assert await gen.push(english, "/balance") == "Your balance: 100 credits (¥10.00)."
    assert await gen.deps.generation.store.jobs_of(None, 10) == []


@asynccontextmanager
async def scripted(tmp_path: Path, tiny_clip: Path, *failing: str):
    settings = fast_settings(tmp_path)
    provider = ScriptedByTier(tiny_clip)
    for tier in failing:
        provider.script(tier, Script(fail_with=ContentRefused("refused")))
    async with open_core(settings, provider=provider) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        yield gen


async def test_a_failed_tier_is_refunded_and_left_out(tmp_path, tiny_clip):
    async with scripted(tmp_path, tiny_clip, "master") as gen:
        chat = gen.chat(lang="zh-CN")
        await gen.push(chat, "/topup me 200")
        quote = await gen.push(chat, f"/compare sample {PROMPT}")
        assert "全部 3 个档位合计：155 灵感值（¥15.50）。" in quote
        await gen.push(chat, gen.button("全部 3 个档位 · 155 灵感值"))
        await gen.settle()

        text = gen.transcript()
        assert "❌ 大师 · 任务" in text
        assert "🆚 标准、高品质 并排对比 · 5 秒 · 已支付 55 灵感值（¥5.50）" in text
        [side] = [path for path in gen.clips() if path.name.startswith("compare-")]
        assert len(gen.clips()) == 3
        clip = probe(side, pictures=True)
        # The scripted clips are 256x144 at 8 fps for 1 s: two panels, labelled in Chinese.
        assert (clip.width, clip.height, clip.frames) == (256 * 2 + 4, 144 + 24, 8)
        assert label_widths(clip.pictures[0], 24) == [256, 256]
        assert labelled(clip.pictures[0], 24, 2)
        assert await gen.push(chat, "/balance") == "你的余额：145 灵感值（¥14.50）。"
        assert await audit(gen.deps.ledger.db) == []


async def test_fewer_than_two_clips_means_no_side_by_side(tmp_path, tiny_clip):
    async with scripted(tmp_path, tiny_clip, "master", "high_quality") as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 200")
        await gen.push(chat, f"/compare sample {PROMPT}")
        await gen.push(chat, gen.button("All 3 tiers"))
        await gen.settle()
        text = gen.transcript()
        assert (
            "🆚 Only 1 of the 3 tiers made a clip, so there is nothing to put side by side."
            " The tiers that failed were refunded." in text
        )
        assert len(gen.clips()) == 1 and "side by side ·" not in text
        assert await gen.push(chat, "/balance") == "Your balance: 180 credits (¥18.00)."


async def test_one_press_holds_the_sum_or_nothing(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 150")
    await gen.push(chat, f"/compare sample {PROMPT}")
    refused = await gen.push(chat, gen.button("All 3 tiers"))
    assert refused == (
        "These tiers cost 155 credits (¥15.50) together, but your balance is 150 credits"
        " (¥15.00). Pick fewer or cheaper tiers, or ask a moderator for a top-up."
        " Nothing was held."
    )
    assert await gen.push(chat, "/balance") == "Your balance: 150 credits (¥15.00)."
    assert await gen.deps.generation.store.jobs_of(None, 10) == []


async def test_side_by_side_clips_go_when_the_tiers_clips_do(tmp_path):
    """The retention sweep removes them by age: no row names them."""
    from bot.jobs.retention import Retention, RetentionSettings
    from tests.unit.fakes import FakeClock, InMemoryJobStore, InMemoryLedger

    now = 1_764_000_000
    clips = tmp_path / "clips"
    clips.mkdir()
    ages = {"compare-old.mp4": 7 * 86_400, "compare-new.mp4": 86_400, "a.mp4": 30 * 86_400}
    for name, age in ages.items():
        (clips / name).write_bytes(b"mp4")
        os.utime(clips / name, (now - age, now - age))
    retention = Retention(
        InMemoryJobStore(InMemoryLedger()),
        FakeClock(now),
        inputs_dir=tmp_path / "inputs",
        clips_dir=clips,
        settings=RetentionSettings(clip_keep_s=7 * 86_400),
    )

    assert await retention.sweep_compare_clips() == 1
    # A job's clip goes by its row, not here.
    assert sorted(path.name for path in clips.iterdir()) == ["a.mp4", "compare-new.mp4"]
