"""The command handlers on in-memory fakes: what each user sees, and what the wallet records."""

from dataclasses import replace

import pytest

from bot.commands import Balance, Caller, Help, History, Paid, Price, Start, TopUp, UserRef
from bot.errors import StorageUnavailable
from bot.packs import Pack
from bot.ports import UserProfile
from bot.service import handle, respond_to_action, respond_to_text
from tests.unit.chat import shown


async def say(line, caller, deps, request_id=None):
    return shown(await respond_to_text(line, caller, deps, request_id=request_id), caller.locale)


# --- /price -------------------------------------------------------------------


async def test_price_for_a_stranger_lists_every_tier_without_touching_the_wallet(
    deps, member, ledger
):
    text = await say("/price", member, deps)
    assert text.splitlines() == [
        "Kling 2.1 prices for a 5 s clip (10 credits = ¥1):",
        "• Standard · 720p · 20 credits (¥2.00) · ~45 s · needs an image",
        "• High Quality · 1080p · 35 credits (¥3.50) · ~1 min · needs an image",
        "• Master · 1080p · 100 credits (¥10.00) · ~3 min · image or text only",
        "[Show 10 s prices]",
    ]
    assert ledger.users == {}  # /price is read-only


async def test_price_10s_in_chinese_with_balance(deps, member_zh, moderator):
    await say("/start", member_zh, deps)
    await say("/topup telegram:3 250", moderator, deps)
    text = await say("/price 10", member_zh, deps)
    assert "可灵 2.1 价格（10 秒视频，10 灵感值 = ¥1）：" in text
    # A 10 s clip's wait: twice the 5 s one (60 s, 200 s), as its price is.
    assert "• 高品质 · 1080p · 70 灵感值（¥7.00） · 约 2 分钟 · 需要图片" in text
    assert "• 大师 · 1080p · 200 灵感值（¥20.00） · 约 7 分钟 · 图片或纯文字均可" in text
    assert "你的余额：250 灵感值（¥25.00），可生成 6 条标准、3 条高品质、1 条大师。" in text
    assert "[查看 5 秒价格]" in text


async def test_price_button_edits_the_message_to_the_other_duration(deps, member):
    [reply] = await respond_to_action("price:10", member, deps)
    assert reply.edit and "10 s clip" in shown([reply])
    assert reply.buttons[0].action == "price:5"


# --- /topup and moderators ---------------------------------------------------------


async def test_moderator_tops_up_a_member_by_username(deps, member, moderator, ledger):
    await say("/start", member, deps)
    text = await say("/topup @ALICE 100 contest prize 🎉", moderator, deps)
    assert (
        text
        == "Added 100 credits (¥10.00) to Alice (telegram:2).\nNew balance: 100 credits (¥10.00)."
    )
    [entry] = ledger.entries
    assert (entry.kind, entry.amount, entry.actor, entry.reason) == (
        "topup",
        100,
        "telegram:1",
        "contest prize 🎉",
    )


async def test_a_moderator_tops_up_an_unseen_platform_id_and_opens_the_wallet(
    deps, moderator, ledger
):
    text = await say("/topup telegram:404 500 refund for ticket 42", moderator, deps)

    assert text.splitlines() == [
        "Added 500 credits (¥50.00) to telegram:404.",
        "telegram:404 had not talked to me yet: I opened their wallet.",
        "New balance: 500 credits (¥50.00).",
    ]
    assert ledger.users[UserRef("telegram", "404")] == UserProfile(UserRef("telegram", "404"))
    [entry] = [e for e in ledger.entries if e.user == UserRef("telegram", "404")]
    assert (entry.kind, entry.amount, entry.actor, entry.reason) == (
        "topup",
        500,
        "telegram:1",
        "refund for ticket 42",
    )


async def test_an_unseen_wallet_gets_its_welcome_credits_once_in_chinese(deps, ledger, member_zh):
    deps = replace(deps, welcome_credits=30)
    mod_zh = Caller(UserRef("telegram", "1"), "Mo", "mo", "zh-CN")

    text = await say("/topup telegram:404 500", mod_zh, deps)

    assert text.splitlines() == [
        "已为 telegram:404 充值 500 灵感值（¥50.00）。",
        "telegram:404 还没有和我说过话：已为其开通钱包，并发放了欢迎礼 30 灵感值（¥3.00）。",
        "充值后余额：530 灵感值（¥53.00）。",
    ]
    newcomer = Caller(UserRef("telegram", "404"), "Neo", "neo", "en")
    assert "530 credits" in await say("/balance", newcomer, deps)  # no second welcome
    assert ledger.users[newcomer.user].display_name == "Neo"  # their first message names them


async def test_a_member_cannot_open_a_wallet_by_topup(deps, member, ledger):
    text = await say("/topup telegram:404 5", member, deps)
    assert text == "Only moderators can do that."
    assert UserRef("telegram", "404") not in ledger.balances


async def test_topup_me_names_the_caller(deps, moderator, ledger):
    await say("/topup me 40", moderator, deps)
    assert ledger.balances[moderator.user] == 40


async def test_platform_admins_are_moderators(deps, ledger):
    admin = Caller(UserRef("telegram", "77"), "Group admin", is_platform_admin=True)
    await say("/topup me 5", admin, deps)
    assert ledger.balances[admin.user] == 5


async def test_non_moderator_topup_is_refused_and_changes_nothing(deps, member, ledger):
    text = await say("/topup me 100", member, deps)
    assert text == "Only moderators can do that."
    assert ledger.balances[member.user] == 0 and ledger.entries == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/topup me 100001", "One top-up adds at most 100,000 credits."),
        ("/topup me 0", "The amount must be a positive whole number of credits, not 0."),
        ("/topup me -5", "The amount must be a positive whole number of credits, not -5."),
        ("/topup me lots", "lots is not a whole number of credits."),
        ("/topup me 9223372036854775808", "9223372036854775808 is far more credits than a top-up"),
        ("/topup ghost 5", "I don't know the user ghost."),
        ("/topup discord:alice 5", "discord:alice is not a numeric id, and I know nobody on discord"),
        ("/topup 404 5", "I don't know the user 404."),
        ("/topup @ghost 5", "I don't know the user @ghost."),
        ("/topup nowhere:404 5", "nowhere:404: I don't know the platform nowhere. Name a user as"),
        ("/topup", "Usage: /topup <user> <credits> [reason]"),
    ],
)
async def test_bad_topups_cost_nothing(deps, moderator, ledger, line, message):
    text = await say(line, moderator, deps)
    assert message in text
    assert ledger.entries == []


async def test_a_retried_topup_message_pays_once(deps, moderator, ledger):
    for _ in range(3):
        await say("/topup me 100", moderator, deps, request_id="chat-9:msg-41")
    assert ledger.balances[moderator.user] == 100
    await say("/topup me 100", moderator, deps, request_id="chat-9:msg-42")
    assert ledger.balances[moderator.user] == 200


async def test_welcome_credits_once_per_wallet(deps, member, ledger):
    from dataclasses import replace

    deps = replace(deps, welcome_credits=30)
    await say("/start", member, deps)
    await say("/balance", member, deps)
    assert ledger.balances[member.user] == 30
    [entry] = ledger.entries
    assert (entry.kind, entry.actor) == ("topup", "system")
    assert (await say("/history", member, deps)).endswith("top-up +30 · balance 30 · welcome credits")


# --- /balance and /history ------------------------------------------------------


async def test_balance_shows_holds(deps, member, ledger, clock):
    await say("/start", member, deps)
    await ledger.top_up(member.user, 100, key="k", actor="t", reason="", now=clock.now())
    await ledger.hold(member.user, 35, hold_id="job-1", actor="t", reason="", now=clock.now())
    text = await say("/balance", member, deps)
    assert (
        text
        == "Your balance: 65 credits (¥6.50).\nOn hold for 1 running job: 35 credits (¥3.50)."
    )


async def test_only_moderators_see_other_wallets(deps, member, moderator):
    await say("/start", member, deps)
    assert await say("/balance @mo", member, deps) == "Only moderators can do that."
    assert (
        await say("/balance @alice", moderator, deps)
        == "Balance of Alice (telegram:2): 0 credits (¥0.00)."
    )
    assert await say("/balance me", member, deps) == "Your balance: 0 credits (¥0.00)."


async def test_history_lists_newest_first(deps, moderator, clock):
    await say("/topup me 100 first", moderator, deps)
    clock.advance(60)
    await say("/topup me 5 second", moderator, deps)
    text = await say("/history 2", moderator, deps)
    lines = text.splitlines()
    assert lines[0] == "Your last 2 wallet entries (newest first):"
    assert lines[1].endswith("top-up +5 · balance 105 · second")
    assert lines[2].endswith("top-up +100 · balance 100 · first")
    assert (
        await say("/history 1", moderator, deps)
        == "Your last wallet entry:\n" + lines[1]
    )


async def test_empty_history(deps, member):
    assert await say("/history", member, deps) == "Your wallet has no entries yet."


# --- help, errors ---------------------------------------------------------------


async def test_help_in_both_languages_and_moderator_extras(deps, member, member_zh, moderator):
    member_help = await say("/help", member, deps)
    assert "/price [5|10]" in member_help and "/topup" not in member_help
    assert "/topup <user> <credits> [reason]" in await say("/help", moderator, deps)
    assert "命令：" in await say("/help", member_zh, deps)


async def test_typed_commands_from_adapters(deps, moderator):
    """Adapters that parse commands themselves (Discord's slash commands) get the same answers."""
    replies = await handle(TopUp("me", 10), moderator, deps)
    assert shown(replies) == (
        "Added 10 credits (¥1.00) to Mo (telegram:1).\nNew balance: 10 credits (¥1.00)."
    )
    price = shown(await handle(Price(10), moderator, deps)).splitlines()
    assert price[0] == "Kling 2.1 prices for a 10 s clip (10 credits = ¥1):"
    assert price[-1] == "[Show 5 s prices]"
    assert shown(await handle(Balance(), moderator, deps)) == "Your balance: 10 credits (¥1.00)."
    history = shown(await handle(History(3), moderator, deps)).splitlines()
    assert history[0] == "Your last wallet entry:"
    assert history[1].endswith("top-up +10 · balance 10 · —")
    help_text = shown(await handle(Help(), moderator, deps))
    assert help_text.startswith("I make short videos with Kling 2.1 in three quality tiers.")
    assert "Moderator commands:\n/topup <user> <credits> [reason]" in help_text
    assert shown(await handle(Start(), moderator, deps)).startswith(
        "Hi! I turn an image and a prompt into a short video. Your balance: 10 credits (¥1.00)."
    )


async def test_storage_failure_is_a_calm_message(deps, member, ledger):
    ledger.fail_with = StorageUnavailable("database /secret/path.db is locked by another process")
    text = await say("/balance", member, deps)
    assert (
        text
        == "I can't reach my wallet records right now. Nothing was charged; please try again in a minute."
    )


async def test_unexpected_errors_never_reach_the_chat(deps, member, ledger, caplog):
    ledger.fail_with = RuntimeError("token=123456:SECRET in a stack trace")
    text = await say("/balance", member, deps)
    assert text == "Something went wrong on my side. Nothing was charged; please try again."
    assert "SECRET" not in text and "Traceback" not in text
    assert "SECRET" in caplog.text  # the operator's log keeps the details


# --- payments -------------------------------------------------------------------


async def test_a_payment_the_wallet_cannot_take_is_named_to_the_member_and_the_log(
    deps, member, ledger, caplog
):
    deps = replace(deps, stars_packs=(Pack(100, 50),))
    ledger.fail_with = StorageUnavailable("database is locked")
    paid = Paid("stxCHARGE1", "stars:100:50:2", "XTR", 50)

    text = shown(await handle(paid, member, deps))

    assert text == (
        "⚠️ Your payment stxCHARGE1 went through, but I could not add the 100 credits (¥10.00)"
        " to your wallet just now. Send this payment id to a moderator: they can add the"
        " credits or refund it."
    )
    assert "payment stxCHARGE1 by telegram:2 NOT credited (100 credits for 50 Stars)" in caplog.text
    ledger.fail_with = None
    assert await ledger.wallet(member.user) is None


async def test_buy_is_off_outside_telegram_and_without_packs(deps, member):
    console = Caller(UserRef("console", "local"), "Me")
    selling = replace(deps, stars_packs=(Pack(100, 50),))
    assert await say("/buy", member, deps) == (
        "Buying credits is not available here. Ask a moderator for credits."
    )
    assert await say("/buy", console, selling) == (
        "Buying credits is not available here. Ask a moderator for credits."
    )
    [reply] = await respond_to_action("buy:100:50", console, selling)
    assert shown([reply]) == (
        "That pack is no longer on sale. Send /buy to see the packs on sale now."
    )
    assert reply.invoice is None
