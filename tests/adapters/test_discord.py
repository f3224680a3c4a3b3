"""The Discord adapter end to end: the real discord.py client against the stand-in, a real database.

Each test acts as Discord members (slash commands and button presses pushed
through the stand-in's gateway) and asserts what they would see: the
interaction answers and their visibility, the channel messages and their
edits, the uploaded MP4; then the money, through the ledger. Nothing sleeps:
the tests wait on the stand-in's records and on the job runner going idle.
"""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import (
    CHANNEL_MESSAGE,
    MANAGE_GUILD,
    UPDATE_MESSAGE,
    DiscordStandIn,
)

PRICE_EN = """Kling 2.1 prices for a 5 s clip (10 credits = ¥1):
• Standard · 720p · 20 credits (¥2.00) · ~45 s · needs an image
• High Quality · 1080p · 35 credits (¥3.50) · ~1 min · needs an image
• Master · 1080p · 100 credits (¥10.00) · ~3 min · image or text only"""

PRICE_ZH = """可灵 2.1 价格（5 秒视频，10 灵感值 = ¥1）：
• 标准 · 720p · 20 灵感值（¥2.00） · 约 45 秒 · 需要图片
• 高品质 · 1080p · 35 灵感值（¥3.50） · 约 1 分钟 · 需要图片
• 大师 · 1080p · 100 灵感值（¥10.00） · 约 3 分钟 · 图片或纯文字均可"""

NOT_MODERATOR = "Only moderators can do that."


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general", "showcase"))


@pytest.fixture
async def bot(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild) as running_bot:
        yield running_bot


async def test_price_in_english_and_chinese(bot, api, guild):
    commands = api.commands[guild.id]
    assert sorted(commands) == sorted(
        ["gen", "price", "balance", "history", "jobs", "topup", "refund", "help"]
    )
    gen = commands["gen"]
    assert gen["name_localizations"]["zh-CN"] == "生成"
    assert gen["description_localizations"]["zh-CN"] == "根据提示词生成视频，可附一张起始图片"
    assert [o["name"] for o in gen["options"]] == ["prompt", "image", "duration", "negative"]
    assert "default_member_permissions" not in commands["topup"] or (
        commands["topup"]["default_member_permissions"] is None
    )
    assert api.intents == 1  # GUILDS only: nothing privileged

    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    english = alice.slash("price")
    chinese = ming.slash("price")
    shown = await bot.answered(english)
    assert english.ack_type == CHANNEL_MESSAGE
    assert shown.content == PRICE_EN and shown.ephemeral
    assert shown.labels() == ["Show 10 s prices"]
    shown_zh = await bot.answered(chinese)
    assert shown_zh.content == PRICE_ZH and shown_zh.ephemeral
    assert shown_zh.labels() == ["查看 10 秒价格"]

    # The button turns the same message into the 10 s table.
    press = alice.press(shown, "Show 10 s prices")
    await api.wait_acknowledged(press)
    assert press.ack_type == UPDATE_MESSAGE
    assert shown.content.splitlines()[0] == "Kling 2.1 prices for a 10 s clip (10 credits = ¥1):"
    assert shown.labels() == ["Show 5 s prices"]


async def test_topup_needs_a_moderator(tmp_path, api, guild):
    moderators_role = guild.add_role("Mods")
    plain = guild.add_member("plain")
    listed = guild.add_member("listed")
    role_member = guild.add_member("rolemember", roles=[moderators_role])
    manager = guild.add_member("manager", roles=[guild.add_role("Managers", MANAGE_GUILD)])
    target = guild.add_member("target")
    async with discord_bot(
        tmp_path,
        api,
        guild,
        moderators=(UserRef("discord", listed.id),),
        discord_moderator_role="Mods",
    ) as bot:
        await bot.answered(target.slash("balance"))

        refused = await bot.answered(plain.slash("topup", {"user": target, "credits": 50}))
        assert refused.content == NOT_MODERATOR and refused.ephemeral
        assert await bot.balance(target) == 0

        for n, moderator in enumerate((listed, role_member, manager), start=1):
            done = await bot.answered(
                moderator.slash("topup", {"user": target, "credits": 10, "reason": "welcome"})
            )
            assert done.ephemeral
            assert done.content.startswith("Added 10 credits (¥1.00) to Target"), done.content
            assert await bot.balance(target) == 10 * n
