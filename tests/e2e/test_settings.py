"""/settings end to end through the console: defaults shape the quote, the language follows the
member, a press over the threshold waits for its confirm button, and bad buttons change nothing."""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from bot.preferences import Preferences
from storage.audit import audit

ME = UserRef("console", "local")


async def test_the_preferred_tier_and_duration_shape_every_quote(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 300")
    shown = await gen.push(chat, "/settings")
    assert "Tier marked ★ and listed first in quotes: No tier in particular" in shown
    assert "Clip length /gen quotes: 5 s" in shown
    await gen.push(chat, gen.button("Master", action="set:"))
    changed = await gen.push(chat, gen.button("10 s clips"))
    assert "Tier marked ★ and listed first in quotes: Master" in changed
    assert "Clip length /gen quotes: 10 s" in changed and "✓ 10 s clips" in changed

    quote = await gen.push(chat, "/gen sample a robot waves")
    assert "🎬 Quote for a 10 s clip of “a robot waves”. Pick a tier:" in quote
    tiers = [line.strip() for line in quote.splitlines() if "· 1080p ·" in line or "720p" in line]
    assert tiers[0].endswith("★ Master · 1080p · 200 credits (¥20.00) · ~1 s")
    assert [t.split("] ", 1)[1].split(" ·")[0] for t in tiers] == [
        "★ Master",
        "Standard",
        "High Quality",
    ]
    # The command's own duration wins over the default.
    quote = await gen.push(chat, "/gen sample a robot waves --duration 5")
    assert "Quote for a 5 s clip" in quote and "★ Master · 1080p · 100 credits" in quote
    await gen.push(chat, gen.button("★ Master"))
    await gen.settle()
    assert "✅ Master chosen: 100 credits (¥10.00) held" in gen.transcript()
    # "No tier in particular" takes the mark away again.
    await gen.push(chat, "/settings")
    await gen.push(chat, gen.button("No tier in particular"))
    quote = await gen.push(chat, "/gen sample again")
    assert "★" not in quote and "Quote for a 10 s clip" in quote


async def test_the_chosen_language_answers_on_an_english_console(gen):
    chat = gen.chat(lang="en")
    await gen.push(chat, "/topup me 100")
    await gen.push(chat, "/settings")
    switched = await gen.push(chat, gen.button("中文"))
    # The answer to the press itself is already Chinese.
    assert "⚙️ 你的设置" in switched and "语言：中文" in switched and "✓ 中文" in switched
    assert await gen.push(chat, "/balance") == "你的余额：100 灵感值（¥10.00）。"
    # A refusal before any command runs is in the member's language too.
    assert await gen.push(chat, "/nonsense") == "我不认识命令 /nonsense。/help 列出了我能做的事。"
    quote = await gen.push(chat, "/gen sample 一只猫")
    assert "🎬 5 秒视频报价" in quote
    await gen.push(chat, gen.button("标准"))
    await gen.settle()
    text = gen.transcript()
    assert "✅ 已选择标准" in text  # the press
    assert "⏳ 标准 · 5 秒 · 任务" in text and "🎬 标准 · 5 秒 · 任务" in text  # status messages
    assert "Standard · 5 s" not in text
    # Back to the platform's language: the answer to that press is English again.
    await gen.push(chat, "/settings")
    back = await gen.push(chat, gen.button("跟随平台语言"))
    assert "⚙️ Your settings" in back and "Language: The platform's language" in back
    assert (await gen.push(chat, "/balance")).startswith("Your balance:")


async def test_a_press_over_the_threshold_holds_nothing_until_confirmed(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 300")
    await gen.push(chat, "/settings")
    await gen.push(chat, gen.button("Ask above 50"))
    # Under the threshold: held at once.
    await gen.push(chat, "/gen sample small")
    await gen.push(chat, gen.button("High Quality ·"))
    assert (await gen.deps.ledger.wallet(ME)).held == 35
    # Over it: a question, and nothing held.
    await gen.push(chat, "/gen sample big")
    asked = await gen.push(chat, gen.button("Master ·"))
    assert asked.startswith(
        "Master costs 100 credits (¥10.00), more than the 50 credits (¥5.00) you asked to"
        " confirm (/settings). Nothing is held yet"
    )
    wallet = await gen.deps.ledger.wallet(ME)
    assert (wallet.balance, wallet.held, wallet.open_holds) == (265, 35, 1)
    confirmed = await gen.push(chat, gen.button("Yes, hold 100 credits (¥10.00) for Master"))
    assert "✅ Master chosen: 100 credits (¥10.00) held" in confirmed
    wallet = await gen.deps.ledger.wallet(ME)
    assert (wallet.balance, wallet.held, wallet.open_holds) == (165, 135, 2)
    await gen.settle()
    assert await audit(gen.deps.ledger.db) == []


async def test_confirm_holds_once_and_only_for_its_member(gen):
    owner, stranger = gen.chat(), gen.chat(user="mallory")
    await gen.push(owner, "/topup me 300")
    await gen.deps.preferences.change(ME, "confirm_above", 50, now=0)
    await gen.push(owner, "/gen sample big")
    await gen.push(owner, gen.button("Master ·"))
    confirm = gen.button("Yes, hold", chat=owner)
    assert "This is not your quote" in await gen.press_as(stranger, owner, confirm)
    assert (await gen.deps.ledger.wallet(ME)).held == 0
    message, action, _ = owner.live_buttons()[int(confirm)]
    await gen.press_action(owner, message, action)
    again = await gen.press_action(owner, message, action)
    assert "already chosen" in again
    assert (await gen.deps.ledger.wallet(ME)).held == 100


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "en",
            "That setting button is not one I offer. Send /settings again; nothing was changed.",
        ),
        ("zh_CN.UTF-8", "这个设置按钮无效。请重新发送 /settings，设置没有任何改动。"),
    ],
)
async def test_forged_or_stale_settings_buttons_change_nothing(gen, lang, expected):
    chat = gen.chat(lang=lang)
    await gen.push(chat, "/settings")
    await gen.push(chat, gen.button("10 s" if lang == "en" else "10 秒"))
    before = await gen.deps.preferences.get(ME)
    assert before == Preferences(duration_s=10)
    message = next(iter(chat.live_buttons().values()))[0]
    for forged in (
        "set:dur:7:local",
        "set:dur:-5:local",
        "set:tier:bogus:local",
        "set:lang:fr:local",
        "set:ask:75:local",
        "set:ask:0:local",
    ):
        assert await gen.press_action(chat, message, forged) == expected, forged
    stale = "That button no longer works" if lang == "en" else "这个按钮已失效"
    for broken in ("set:dur", "set:dur:10", "set:colour:red:local", "set:dur:10:a b", "set:"):
        assert stale in await gen.press_action(chat, message, broken), broken
    # Someone else's settings message: the presser's own settings are not touched either.
    refused = await gen.press_action(chat, message, "set:dur:5:mallory")
    assert "someone else's settings" in refused or "别人的设置" in refused
    assert await gen.deps.preferences.get(ME) == before
    assert await gen.deps.preferences.get(UserRef("console", "mallory")) == Preferences()


async def test_compare_uses_the_defaults_and_asks_before_a_sum_over_the_threshold(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 300")
    for field, value in (("duration_s", 10), ("tier", "high_quality"), ("confirm_above", 100)):
        await gen.deps.preferences.change(ME, field, value, now=0)
    quote = await gen.push(chat, "/compare sample a robot waves")
    assert "🆚 Compare tiers for a 10 s clip of “a robot waves”:" in quote
    assert "★ High Quality · 1080p · 70 credits (¥7.00)" in quote
    asked = await gen.push(chat, gen.button("Standard, High Quality · 110 credits"))
    assert asked.startswith(
        "Comparing Standard, High Quality costs 110 credits (¥11.00), more than the"
        " 100 credits (¥10.00) you asked to confirm (/settings). Nothing is held yet"
    )
    wallet = await gen.deps.ledger.wallet(ME)
    assert (wallet.balance, wallet.held) == (300, 0)
    chosen = await gen.push(chat, gen.button("Yes, hold 110 credits (¥11.00) for the comparison"))
    assert "✅ Comparing Standard, High Quality: 110 credits (¥11.00) held" in chosen
    wallet = await gen.deps.ledger.wallet(ME)
    assert (wallet.balance, wallet.held) == (190, 110)
    await gen.settle()
    assert await audit(gen.deps.ledger.db) == []
