"""Kling behind both chat platforms: the real adapters, the real Kling provider, both stand-ins.

The console tests of the Kling provider (tests/providers) cover every fault;
these check that a member on Telegram and a member on Discord each get a
Kling clip: one create with the exact request shape, the clip uploaded to
their chat, the price captured once.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from adapters.console.chat import sample_image
from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.conftest import telegram_bot
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.standin import BotApiStandIn
from tests.adapters.test_telegram import fund
from tests.e2e.video import probe
from tests.providers.kling_standin import KlingStandin

PROMPT = "a robot plays piano"


def kling_overrides(kling: KlingStandin) -> dict[str, object]:
    return dict(
        provider="kling",
        kling_access_key=kling.access_key,
        kling_secret_key=kling.secret_key,
        kling_base_url=kling.url,
    )


def assert_one_pro_create(kling: KlingStandin, image: bytes, job_id: str) -> None:
    [body] = kling.creates
    assert body == {
        "model_name": "kling-v2-1",
        "mode": "pro",
        "duration": "5",
        "prompt": PROMPT,
        "external_task_id": job_id,
        "image": base64.b64encode(image).decode(),
    }
    assert kling.downloads == 1


async def test_a_telegram_member_gets_a_kling_clip(tmp_path, standin):
    kling = standin
    async with (
        BotApiStandIn("123456789:AAH-test-token-for-the-stand-in-only") as api,
        telegram_bot(tmp_path, api, settings_overrides=kling_overrides(kling)) as telegram,
    ):
        alice = telegram.member(1001, "Alice", "alice")
        await fund(telegram, alice, 100)
        since = len(api.calls)
        alice.send(f"/gen {PROMPT}", photo=sample_image(), size=(1280, 960))
        quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
        alice.press(quote.result, "High Quality")
        video = await api.wait_for("sendVideo", since=since, timeout=60)
        await telegram.settle()

        [job] = await telegram.deps.generation.store.jobs_of(UserRef("telegram", "1001"), 1)
        assert_one_pro_create(kling, Path(job.image_path).read_bytes(), job.job_id)
        assert video.files["video"] == kling.clip.read_bytes()
        assert re.match(r"🎞️ High Quality · 1080p · 5 s · 35 credits", video.params["caption"])
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert await telegram.balance(1001) == 65
        assert await audit(telegram.deps.ledger.db) == []


async def test_a_discord_member_gets_a_kling_clip(tmp_path, standin):
    kling = standin
    async with DiscordStandIn(TOKEN) as api:
        guild = api.add_guild("Creators", channels=("general",))
        async with discord_bot(
            tmp_path, api, guild, settings_overrides=kling_overrides(kling)
        ) as bot:
            alice = guild.add_member("alice")
            await bot.fund(alice, 100)
            image = api.attachment(sample_image(), "robot.jpg", content_type="image/jpeg")
            quote = await bot.answered(
                alice.slash("gen", {"prompt": PROMPT}, attachments={"image": image})
            )
            pressed = alice.press(quote, "High Quality")
            await api.wait_acknowledged(pressed)
            channel = guild.text_channels[0]
            await api.wait_until(
                lambda: any(m.attachments for m in api.messages_in(channel)), timeout=60
            )
            await bot.settle()

            [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 1)
            assert_one_pro_create(kling, Path(job.image_path).read_bytes(), job.job_id)
            [delivered] = [m for m in api.messages_in(channel) if m.attachments]
            [upload] = delivered.attachments
            assert upload.data == kling.clip.read_bytes()
            clip = tmp_path / "delivered.mp4"
            clip.write_bytes(upload.data)
            assert probe(clip).codec == "h264"
            assert delivered.content.endswith(
                f"🎞️ High Quality · 1080p · 5 s · 35 credits (¥3.50) · job {job.short_id}"
            )
            assert (job.state, job.delivery) == ("delivered", "uploaded")
            assert await bot.balance(alice) == 65
            assert await audit(bot.deps.ledger.db) == []
