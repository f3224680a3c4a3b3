"""/settings on Discord end to end: the real discord.py client against the stand-in.

An English-speaking member opens /settings (privately), picks Chinese, 10 s clips, Master
and "ask above 100": the settings message, /balance and the /gen quote turn Chinese, the
quote is for 10 s with Master first and marked, and the Master press asks first, holding
nothing until its confirm button. A settings button whose data no longer means anything
(an older message, a forged id) is refused in the member's language and changes nothing.
"""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from bot.preferences import Preferences
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import UPDATE_MESSAGE, DiscordStandIn


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general",))


async def test_settings_language_quote_and_confirm(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild) as bot:
        alice = guild.add_member("alice", locale="en-US")
        me = UserRef("discord", alice.id)
        menu = await bot.answered(alice.slash("settings"))
        assert menu.ephemeral and menu.content.startswith("⚙️ Your settings")

        press = alice.press(menu, "中文")
        await api.wait_acknowledged(press)
        assert press.ack_type == UPDATE_MESSAGE
        assert menu.content.startswith("⚙️ 你的设置") and "✓ 中文" in menu.labels()
        for label in ("10 秒视频", "大师", "超过 100 时询问"):
            await api.wait_acknowledged(alice.press(menu, label))
        await api.wait_until(lambda: "✓ 超过 100 时询问" in menu.labels())
        assert await bot.deps.preferences.get(me) == Preferences("master", 10, "zh-CN", 100)

        balance = await bot.answered(alice.slash("balance"))
        assert balance.content == "你的余额：0 灵感值（¥0.00）。"
        await bot.fund(alice, 300)

        quote = await bot.answered(alice.slash("gen", {"prompt": "一只猫在月球上跳舞"}))
        assert quote.content.startswith("🎬 10 秒视频报价") and not quote.ephemeral
        assert quote.labels()[0].startswith("★ 大师 · 1080p · 200 灵感值")

        ask = await bot.answered(alice.press(quote, "★ 大师"))
        assert ask.content.startswith("大师 需要 200 灵感值（¥20.00），超过了你设置的确认额度")
        wallet = await bot.deps.ledger.wallet(me)
        assert (wallet.balance, wallet.held) == (300, 0)  # nothing held before the confirm

        confirm = alice.press(ask, "确认")
        await api.wait_acknowledged(confirm)
        await api.wait_until(lambda: ask.content.startswith("✅ 已选择大师"))
        wallet = await bot.deps.ledger.wallet(me)
        assert (wallet.balance, wallet.held) == (100, 200)
        await bot.settle()


async def test_stale_or_forged_settings_buttons_change_nothing(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild) as bot:
        ming = guild.add_member("ming", locale="zh-CN")
        me = UserRef("discord", ming.id)
        menu = await bot.answered(ming.slash("settings"))
        await api.wait_acknowledged(ming.press(menu, "10 秒视频"))
        await api.wait_until(lambda: "✓ 10 秒视频" in menu.labels())
        # Buttons whose data means nothing (a message of an older bot, or edited by hand).
        for forged, refusal in [
            (
                f"kb:set:dur:7:{ming.id}",
                "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。",
            ),
            (
                f"kb:set:lang:fr:{ming.id}",
                "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。",
            ),
            ("kb:set:dur:5:1234", "这是别人的设置。发送 /settings 查看你自己的。"),
        ]:
            menu.button("5 秒视频")["custom_id"] = forged
            answer = await bot.answered(ming.press(menu, forged))
            assert answer.content == refusal and answer.ephemeral, forged
            menu.button(forged)["custom_id"] = f"kb:set:dur:5:{ming.id}"
        assert await bot.deps.preferences.get(me) == Preferences(duration_s=10)
