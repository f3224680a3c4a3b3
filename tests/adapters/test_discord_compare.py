"""/compare on Discord against the stand-in: the quote with its buttons, one press, a job per
tier (one failing and refunded), and the side-by-side clip uploaded in the channel."""

from __future__ import annotations

import pytest

from bot.providers.base import ContentRefused
from storage.audit import audit
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn
from tests.e2e.scripted_provider import Script, ScriptedByTier
from tests.support.video import probe

PROMPT = "a paper boat on a pond"


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


def jpeg_attachment(api):
    from adapters.console.chat import sample_image

    return api.attachment(sample_image(), "boat.jpg", content_type="image/jpeg")


@pytest.mark.parametrize(
    ("locale", "labels", "caption", "too_few"),
    [
        (
            "en-US",
            ["Standard, High Quality · 55 credits (¥5.50)", "Standard, Master · 120 credits"
             " (¥12.00)", "High Quality, Master · 135 credits (¥13.50)",
             "All 3 tiers · 155 credits (¥15.50)", "Cancel"],
            "🆚 Standard, High Quality side by side · 5 s · 55 credits (¥5.50) paid",
            "Comparing needs two tiers or more, and from text alone only Master can make a clip:"
            " add a picture in /compare's image option. Nothing was charged.",
        ),
        (
            "zh-CN",
            ["标准、高品质 · 55 灵感值（¥5.50）", "标准、大师 · 120 灵感值（¥12.00）",
             "高品质、大师 · 135 灵感值（¥13.50）", "全部 3 个档位 · 155 灵感值（¥15.50）", "取消"],
            "🆚 标准、高品质 并排对比 · 5 秒 · 已支付 55 灵感值（¥5.50）",
            "对比至少需要两个档位，而只用文字时只有大师档能生成视频：请在 /compare 的 image"
            " 选项中添加一张图片。没有扣费。",
        ),
    ],
)  # fmt: skip
async def test_compare_all_tiers_with_one_failing(
    tmp_path, api, tiny_clip, locale, labels, caption, too_few
):
    provider = ScriptedByTier(tiny_clip)
    provider.script("master", Script(fail_with=ContentRefused("refused")))
    guild = api.add_guild("Creators", channels=("general",))
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        assert "compare" in api.commands[guild.id]
        alice = guild.add_member("alice", locale=locale)
        await bot.fund(alice, 200)
        channel = guild.text_channels[0]

        refused = await bot.answered(alice.slash("compare", {"prompt": PROMPT}))
        assert refused.content == too_few and refused.ephemeral

        asked = alice.slash(
            "compare", {"prompt": PROMPT}, attachments={"image": jpeg_attachment(api)}
        )
        quote = await bot.answered(asked)
        assert not quote.ephemeral and quote.labels() == labels
        quote_id = quote.button(labels[3])["custom_id"].split(":")[2]
        assert quote.button(labels[3])["custom_id"] == f"kb:cmp:{quote_id}:0.1.2"

        pressed = alice.press(quote, labels[3])
        await api.wait_acknowledged(pressed)

        def uploads():
            return [m for m in api.messages_in(channel) if m.attachments]

        await api.wait_until(lambda: len(uploads()) == 3, timeout=60)
        await bot.settle()
        side = uploads()[-1]
        assert side.content == f"{alice.mention} {caption}"
        [upload] = side.attachments
        clip_file = tmp_path / "side.mp4"
        clip_file.write_bytes(upload.data)
        clip = probe(clip_file)
        assert (clip.codec, clip.width, clip.height, clip.frames) == ("h264", 516, 168, 8)
        assert await bot.balance(alice) == 145
        assert await audit(bot.deps.ledger.db) == []
