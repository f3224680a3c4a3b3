"""/settings on Telegram end to end: real PTB against the Bot API stand-in, a real database.

An English-speaking member picks Chinese, 10 s clips, Master and "ask above 100":
every answer turns Chinese, the quote is for 10 s with Master marked, a press
over the threshold asks first and holds nothing until its confirm button is
pressed; a forged settings button is refused (in Chinese) and changes nothing.
"""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from bot.preferences import Preferences
from tests.adapters.conftest import TelegramBot, telegram_bot
from tests.adapters.standin import Member, buttons
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ALICE = 1001


async def sent(telegram: TelegramBot, member: Member, line: str):
    since = len(telegram.api.calls)
    member.send(line)
    return await telegram.api.wait_for("sendMessage", since=since, chat_id=member.id)


async def pressed(telegram: TelegramBot, member: Member, message: dict, label: str):
    """Press a button whose answer edits the message: the edit."""
    since = len(telegram.api.calls)
    member.press(message, label)
    return await telegram.api.wait_for("editMessageText", since=since, chat_id=member.id)


def forged_press(member: Member, message: dict, data: str) -> None:
    """A callback query whose data no button of ours ever had (a modified client)."""
    member.api.push(
        {
            "callback_query": {
                "id": f"cb-forged-{next(member._ids)}",
                "from": member.user(),
                "chat_instance": f"ci-{message['chat']['id']}",
                "message": message,
                "data": data,
            }
        }
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> dict[str, object]:
    """The bot's settings for each database: SQLite in tmp_path, or this run's PostgreSQL."""
    if request.param == "sqlite":
        return {}
    request.getfixturevalue("pg_database")  # every table emptied first
    return {"database_url": request.getfixturevalue("pg_url")}


async def test_settings_change_language_quote_and_confirm(tmp_path, api, backend):
    provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script())
    async with telegram_bot(tmp_path, api, provider=provider, **backend) as telegram:
        alice = telegram.member(ALICE, "Alice", "alice", lang="en")
        me = UserRef("telegram", str(ALICE))
        menu = await sent(telegram, alice, "/settings")
        assert menu.params["text"].startswith("⚙️ Your settings")
        assert ("10 s clips", f"set:dur:10:{ALICE}") in buttons(menu)

        zh = await pressed(telegram, alice, menu.result, "中文")
        assert zh.params["text"].startswith("⚙️ 你的设置") and "语言：中文" in zh.params["text"]
        # The menu itself is Chinese now.
        await pressed(telegram, alice, menu.result, "10 秒视频")
        await pressed(telegram, alice, menu.result, "大师")
        await pressed(telegram, alice, menu.result, "超过 100 时询问")
        assert await telegram.deps.preferences.get(me) == Preferences("master", 10, "zh-CN", 100)

        balance = await sent(telegram, alice, "/balance")
        assert balance.params["text"] == "你的余额：0 灵感值（¥0.00）。"
        await telegram.deps.ledger.top_up(me, 300, key="fund", actor="t", reason="", now=0)

        quote = await sent(telegram, alice, "/gen 一只猫在月球上跳舞")
        assert quote.params["text"].startswith("🎬 10 秒视频报价")
        labels = [label for label, _ in buttons(quote)]
        assert labels[0].startswith("★ 大师 · 1080p · 200 灵感值")

        since = len(api.calls)
        alice.press(quote.result, "★ 大师")
        ask = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
        assert ask.params["text"].startswith(
            "大师 需要 200 灵感值（¥20.00），超过了你设置的确认额度"
        )
        wallet = await telegram.deps.ledger.wallet(me)
        assert (wallet.balance, wallet.held) == (300, 0)  # nothing held before the confirm

        chosen = await pressed(telegram, alice, ask.result, "确认")
        assert chosen.params["text"].startswith("✅ 已选择大师：为任务")
        wallet = await telegram.deps.ledger.wallet(me)
        assert (wallet.balance, wallet.held) == (100, 200)
        await telegram.settle()
        # The runner's messages follow the chosen language as well.
        captions = [c.params.get("caption", "") for c in api.of("sendVideo", chat_id=ALICE)]
        assert captions and all("大师" in caption for caption in captions)


async def test_forged_settings_buttons_are_refused_in_the_members_language(tmp_path, api):
    async with telegram_bot(tmp_path, api) as telegram:
        ming = telegram.member(ALICE, "Ming", "ming", lang="zh-hans")
        me = UserRef("telegram", str(ALICE))
        menu = await sent(telegram, ming, "/settings")
        await pressed(telegram, ming, menu.result, "10 秒视频")
        for data, alert in [
            (f"set:dur:7:{ALICE}", "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。"),
            (
                f"set:tier:ultra:{ALICE}",
                "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。",
            ),
            (f"set:ask:1:{ALICE}", "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。"),
            ("set:dur:5:999", "这是别人的设置。发送 /settings 查看你自己的。"),
            ("set:dur", "这个按钮已失效，请重新发送命令。"),
        ]:
            since = len(api.calls)
            forged_press(ming, menu.result, data)
            answer = await api.wait_for("answerCallbackQuery", since=since)
            assert answer.params.get("text") == alert, data
            assert answer.params.get("show_alert") is True
        await telegram.idle()
        assert await telegram.deps.preferences.get(me) == Preferences(duration_s=10)
