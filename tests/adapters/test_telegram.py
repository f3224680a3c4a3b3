"""The Telegram adapter end to end: real PTB polling the Bot API stand-in, a real database.

Each test acts as Telegram members (updates pushed into the stand-in) and
asserts what they would see: the exact texts of sendMessage and
editMessageText, the inline keyboards, the alerts of answerCallbackQuery,
the clip uploaded by sendVideo; then the money, through the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

import aiohttp
import pytest

from adapters.console.chat import sample_image
from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.conftest import GROUP, MODERATOR_ID, TOKEN, telegram_bot
from tests.adapters.standin import BOT_USERNAME, buttons
from tests.e2e.video import probe
from tests.unit.images import png

# PTB 22 warns when it builds a RetryAfter (its retry_after is becoming a timedelta);
# the adapter reads both forms.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # Telegram's name for it (Bot API docs)

PROMPT = "一个金属机器人专注地弹奏黑色钢琴，围绕主体运镜"

# The test bots run at a tiny time scale: /price shows the waits they really have.
PRICE_EN = """Kling 2.1 prices for a 5 s clip (10 credits = ¥1):
• Standard · 720p · 20 credits (¥2.00) · ~1 s · needs an image
• High Quality · 1080p · 35 credits (¥3.50) · ~1 s · needs an image
• Master · 1080p · 100 credits (¥10.00) · ~1 s · image or text only"""

PRICE_ZH = """可灵 2.1 价格（5 秒视频，10 灵感值 = ¥1）：
• 标准 · 720p · 20 灵感值（¥2.00） · 约 1 秒 · 需要图片
• 高品质 · 1080p · 35 灵感值（¥3.50） · 约 1 秒 · 需要图片
• 大师 · 1080p · 100 灵感值（¥10.00） · 约 1 秒 · 图片或纯文字均可"""

NOT_YOURS = "This is not your quote. Send /gen to get your own."


async def fund(telegram, member, credits: int) -> None:
    """The member opens their wallet with /start; the configured moderator tops it up."""
    api = telegram.api
    since = len(api.calls)
    member.send("/start")
    await api.wait_for("sendMessage", since=since, chat_id=member.id, count=2)
    moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
    moderator.send(f"/topup telegram:{member.id} {credits}")
    await api.wait_for("sendMessage", since=since, chat_id=MODERATOR_ID)


async def test_price_in_english_and_chinese(telegram):
    api = telegram.api
    menus = api.of("setMyCommands")
    assert [menu.params.get("language_code") for menu in menus] == [None, "zh"]
    assert [c["command"] for c in menus[0].params["commands"]] == [
        "start", "help", "price", "balance", "history", "gen", "compare", "jobs", "buy", "link",
        "settings", "topup", "refund", "unlink",
    ]  # fmt: skip
    assert menus[0].params["commands"][5]["description"] == (
        "Send a photo with /gen and a prompt as its caption"
    )
    assert menus[1].params["commands"][2]["description"] == "各档位价格（/price 10 查看 10 秒视频）"

    alice = telegram.member(1001, "Alice", "alice", "en-US")
    ming = telegram.member(1002, "小明", lang="zh-hans")
    alice.send("/price")
    ming.send("/price")
    english = await api.wait_for("sendMessage", chat_id=1001)
    chinese = await api.wait_for("sendMessage", chat_id=1002)
    assert english.params["text"] == PRICE_EN
    assert buttons(english) == [("Show 10 s prices", "price:10")]
    assert chinese.params["text"] == PRICE_ZH
    assert buttons(chinese) == [("查看 10 秒价格", "price:10")]
    assert "reply_parameters" not in english.params  # private chats need no quoting

    # The button turns the same message into the 10 s table.
    since = len(api.calls)
    alice.press(english.result, "Show 10 s prices")
    answer = await api.wait_for("answerCallbackQuery", since=since)
    assert "text" not in answer.params and not answer.params.get("show_alert")
    edit = await api.wait_for("editMessageText", since=since)
    assert edit.params["message_id"] == english.result["message_id"]
    assert (
        edit.params["text"].splitlines()[0] == "Kling 2.1 prices for a 10 s clip (10 credits = ¥1):"
    )
    assert (
        "• High Quality · 1080p · 70 credits (¥7.00) · ~1 s · needs an image"
        in (edit.params["text"])
    )
    assert buttons(edit) == [("Show 5 s prices", "price:5")]
    await telegram.idle()
    assert not api.of("getChatMember")  # /price never waits for an admin lookup


async def test_photo_gen_to_a_delivered_clip(telegram, tmp_path):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    await fund(telegram, alice, 100)

    since = len(api.calls)
    alice.send(f"/gen {PROMPT}", photo=sample_image(), size=(1280, 960))
    quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
    assert quote.params["text"] == (
        f"🎬 Quote for a 5 s clip of “{PROMPT}”. Pick a tier:\n"
        "Your balance: 100 credits (¥10.00). Credits are held when you press a tier and only"
        " spent when the clip is made.\n"
        "This quote is valid for 10 min."
    )
    quote_id = buttons(quote)[0][1].split(":")[1]
    assert buttons(quote) == [
        ("Standard · 720p · 20 credits (¥2.00) · ~1 s", f"tier:{quote_id}:standard"),
        ("High Quality · 1080p · 35 credits (¥3.50) · ~1 s", f"tier:{quote_id}:high_quality"),
        ("Master · 1080p · 100 credits (¥10.00) · ~1 s", f"tier:{quote_id}:master"),
        ("Cancel", f"qcancel:{quote_id}"),
    ]
    assert len(quote.params["reply_markup"]["inline_keyboard"]) == 4  # one tier per row
    assert len(api.of("getFile", since=since)) == 1 and len(api.downloads) == 1

    since = len(api.calls)
    alice.press(quote.result, "High Quality")
    answer = await api.wait_for("answerCallbackQuery", since=since)
    assert "text" not in answer.params
    chosen = await api.wait_for("editMessageText", since=since)
    assert chosen.params["message_id"] == quote.result["message_id"]
    match = re.fullmatch(
        r"✅ High Quality chosen: 35 credits \(¥3\.50\) held for job ([0-9a-f]{8})\.",
        chosen.params["text"],
    )
    assert match and buttons(chosen) == []
    job = match.group(1)
    status = await api.wait_for("sendMessage", since=since, chat_id=1001)
    assert status.params["text"] == (
        f"⏳ High Quality · 5 s · job {job} · queued, position 1\n"
        "35 credits (¥3.50) held; nothing is spent until your clip is ready."
    )
    [(label, cancel)] = buttons(status)
    assert label == "Cancel" and re.fullmatch(rf"cancel:{job}[0-9a-f]{{24}}", cancel)
    job_id = cancel.removeprefix("cancel:")

    video = await api.wait_for("sendVideo", since=since, timeout=90)
    status_id = status.result["message_id"]
    done = await api.wait_for(
        "editMessageText",
        since=since,
        message_id=status_id,
        where=lambda call: call.params["text"].startswith("✅"),
    )
    assert re.fullmatch(
        rf"✅ High Quality · job {job} · done in \d+:\d\d · 35 credits \(¥3\.50\) paid",
        done.params["text"],
    )
    generating = api.of("editMessageText", since=since, message_id=status_id)[0]
    assert generating.params["text"].startswith(f"🎬 High Quality · 5 s · job {job} · generating\n")
    assert "elapsed · about" in generating.params["text"] and "%" in generating.params["text"]
    assert buttons(generating) == [("Cancel", f"cancel:{job_id}")]

    assert video.params["caption"] == (
        f"🎞️ High Quality · 1080p · 5 s · 35 credits (¥3.50) · job {job}"
    )
    assert video.params["reply_markup"]["inline_keyboard"] == [
        [
            {"text": "🎲 Reroll", "callback_data": f"reroll:{job_id}"},
            {"text": "🔁 Other tier", "callback_data": f"again:{job_id}"},
        ]
    ]
    assert (video.params["width"], video.params["height"]) == (1440, 1080)
    assert video.params["supports_streaming"] is True
    clip_file = tmp_path / "delivered.mp4"
    clip_file.write_bytes(video.files["video"])
    clip = probe(clip_file)
    assert (clip.codec, clip.width, clip.height, clip.frames) == ("h264", 1440, 1080, 120)
    assert not api.of("sendDocument")

    await telegram.settle()
    assert await telegram.balance(1001) == 65
    entries = await telegram.deps.ledger.history(UserRef("telegram", "1001"), 10)
    assert [entry.kind for entry in entries] == ["capture", "hold", "topup"]
    assert await audit(telegram.deps.ledger.db) == []
    since = len(api.calls)
    alice.send("/balance")
    balance = await api.wait_for("sendMessage", since=since, chat_id=1001)
    assert balance.params["text"] == "Your balance: 65 credits (¥6.50)."

    # Reroll: the same image and tier, quoted afresh in a new message.
    since = len(api.calls)
    alice.press(video.result, "🎲 Reroll")
    reroll = await api.wait_for("sendMessage", since=since, chat_id=1001)
    assert reroll.params["text"].startswith(f"🎬 Quote for a 5 s clip of “{PROMPT}”.")
    assert [label for label, _ in buttons(reroll)] == [
        "High Quality · 1080p · 35 credits (¥3.50) · ~1 s",
        "Cancel",
    ]


async def test_a_press_by_another_member_gets_an_alert(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    bob = telegram.member(2002, "Bob", "bob")
    gen = alice.send("/gen a robot waves", chat_id=GROUP, photo=sample_image())
    quote = await api.wait_for("sendMessage", chat_id=GROUP)
    assert quote.params["reply_parameters"]["message_id"] == gen["message_id"]
    assert buttons(quote)[0][0] == "Standard · 720p · 20 credits (¥2.00) · not enough credits"

    for label, count in (("Standard", 1), ("Cancel", 2)):
        bob.press(quote.result, label)
        answer = await api.wait_for("answerCallbackQuery", count=count)
        assert (answer.params["text"], answer.params["show_alert"]) == (NOT_YOURS, True)
    await telegram.idle()
    assert not api.of("editMessageText")
    assert len(api.of("sendMessage", chat_id=GROUP)) == 1
    assert await telegram.deps.generation.store.jobs_of(None, 10) == []
    assert await telegram.balance(1001) == 0


async def test_a_429_on_a_status_edit_is_waited_out_and_the_edit_sent_again(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    await fund(telegram, alice, 100)
    api.fail_next(
        "editMessageText", retry_after=7, where=lambda params: params["text"].startswith("🎬")
    )
    since = len(api.calls)
    alice.send("/gen a robot waves", photo=sample_image())
    quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
    alice.press(quote.result, "Standard")
    await api.wait_for("sendVideo", since=since, timeout=90)
    await telegram.settle()

    [refused] = [call for call in api.calls if call.status == 429]
    assert refused.method == "editMessageText"
    status_id = refused.params["message_id"]
    retry = api.of("editMessageText", since=refused.index + 1, message_id=status_id)[0]
    assert retry.status == 200 and retry.params["text"].startswith("🎬 Standard")
    # Waited exactly as long as Telegram said, and sent nothing new meanwhile.
    assert telegram.adapter.flood.waits == [("editMessageText", 7.0)]
    assert 7.0 in telegram.time.sleeps
    between = api.calls[refused.index + 1 : retry.index]
    assert not [call for call in between if call.method.startswith("send")]
    statuses = api.of("sendMessage", since=since, chat_id=1001)
    assert len(statuses) == 2  # the quote and the one status message
    assert await telegram.balance(1001) == 80


async def test_a_group_admin_tops_up_by_reply_by_username_and_by_id(telegram):
    api = telegram.api
    api.members[(GROUP, 3001)] = "administrator"
    api.members[(GROUP, 2002)] = "member"
    ada = telegram.member(3001, "Ada", "ada")
    bob = telegram.member(2002, "Bob", "bob")
    hello = bob.send("/start", chat_id=GROUP)
    await api.wait_for("sendMessage", chat_id=GROUP, count=2)

    since = len(api.calls)
    command = ada.send("/topup 50 welcome gift", chat_id=GROUP, reply_to=hello)
    done = await api.wait_for("sendMessage", since=since, chat_id=GROUP)
    assert done.params["text"] == (
        "Added 50 credits (¥5.00) to Bob (telegram:2002).\nNew balance: 50 credits (¥5.00)."
    )
    assert done.params["reply_parameters"]["message_id"] == command["message_id"]
    assert len(api.of("getChatMember", chat_id=GROUP, user_id=3001)) == 1

    since = len(api.calls)
    ada.send("/topup @Bob 20", chat_id=GROUP)
    done = await api.wait_for("sendMessage", since=since, chat_id=GROUP)
    assert done.params["text"].endswith("New balance: 70 credits (¥7.00).")
    assert len(api.of("getChatMember", chat_id=GROUP, user_id=3001)) == 1  # cached

    since = len(api.calls)
    ada.send("/topup 2002 5")  # by numeric id, in a private chat: still a moderator
    done = await api.wait_for("sendMessage", since=since, chat_id=3001)
    assert done.params["text"].endswith("New balance: 75 credits (¥7.50).")

    assert await telegram.balance(2002) == 75
    entries = await telegram.deps.ledger.history(UserRef("telegram", "2002"), 5)
    assert [(e.kind, e.amount, e.actor) for e in entries] == [
        ("topup", 5, "telegram:3001"),
        ("topup", 20, "telegram:3001"),
        ("topup", 50, "telegram:3001"),
    ]
    assert entries[2].reason == "welcome gift"
    assert await audit(telegram.deps.ledger.db) == []


async def test_a_member_who_is_not_an_admin_cannot_top_up(telegram):
    api = telegram.api
    api.members[(GROUP, 2002)] = "member"
    bob = telegram.member(2002, "Bob", "bob")
    bob.send("/start", chat_id=GROUP)
    await api.wait_for("sendMessage", chat_id=GROUP, count=2)
    since = len(api.calls)
    bob.send("/topup @bob 100", chat_id=GROUP)
    refused = await api.wait_for("sendMessage", since=since, chat_id=GROUP)
    assert refused.params["text"] == "Only moderators can do that."
    bob.send("/topup me 100")
    refused = await api.wait_for("sendMessage", since=since, chat_id=2002)
    assert refused.params["text"] == "Only moderators can do that."
    await telegram.idle()
    assert await telegram.balance(2002) == 0
    assert not [c for c in api.of("sendMessage", since=since) if "Added" in c.params["text"]]


async def test_an_oversized_photo_is_refused_before_download(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    alice.send("/gen a cat", photo=sample_image(), reported_size=12 * 1024 * 1024)
    refused = await api.wait_for("sendMessage", chat_id=1001)
    assert refused.params["text"] == (
        "That image is 12.0 MB, over the 10 MB limit. Send a smaller JPG or PNG (saving it at a"
        " lower quality or size usually does it)."
    )
    await telegram.idle()
    assert not api.of("getFile") and api.downloads == []
    assert await telegram.deps.generation.store.jobs_of(None, 10) == []


async def test_a_text_only_gen_offers_only_master(telegram):
    api = telegram.api
    ming = telegram.member(1002, "小明", lang="zh")
    ming.send("/gen 一只猫在月球上跳舞 --duration 10")
    quote = await api.wait_for("sendMessage", chat_id=1002)
    assert quote.params["text"] == (
        "🎬 10 秒视频报价：“一只猫在月球上跳舞”。请选择档位：\n"
        "标准和高品质需要一张图片：发送照片，并把 /gen 和提示词写在说明文字里即可使用。大师档也可以只用文字。\n"
        "你的余额 0 灵感值（¥0.00） 还不够任何档位，请联系管理员充值。\n"
        "本报价 10 分钟内有效。"
    )
    [(master, action), (cancel, _)] = buttons(quote)
    assert (master, cancel) == ("大师 · 1080p · 200 灵感值（¥20.00） · 灵感值不足", "取消")
    assert action.endswith(":master")
    await telegram.idle()
    assert not api.of("getFile")


async def test_an_image_as_a_file_and_a_reply_to_a_photo(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    alice.send("/gen --duration 10 a robot waves", document=png(600, 400), filename="robot.png")
    quote = await api.wait_for("sendMessage", chat_id=1001)
    assert quote.params["text"].startswith("🎬 Quote for a 10 s clip of “a robot waves”.")
    assert len(buttons(quote)) == 4

    photo = alice.send(None, photo=sample_image())
    hint = await api.wait_for("sendMessage", chat_id=1001, count=2)
    assert hint.params["text"].startswith("To make a video from this picture, send it again")
    alice.send("/gen the camera circles the robot", reply_to=photo)
    quote = await api.wait_for("sendMessage", chat_id=1001, count=3)
    assert quote.params["text"].startswith("🎬 Quote for a 5 s clip of “the camera circles")
    assert [label.split(" · ")[0] for label, _ in buttons(quote)] == [
        "Standard", "High Quality", "Master", "Cancel"
    ]  # fmt: skip
    assert len(api.downloads) == 2

    alice.send("/gen this is not a picture", document=b"%PDF-1.7 ...", filename="a.pdf")
    refused = await api.wait_for("sendMessage", chat_id=1001, count=4)
    assert refused.params["text"].startswith("That looks like a PDF.")


async def test_groups_hear_only_our_commands(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    alice.send("/gen@otherbot a cat", chat_id=GROUP)
    alice.send("/weather Paris", chat_id=GROUP)
    alice.send("hello everyone", chat_id=GROUP)
    alice.send(f"/price@{BOT_USERNAME}", chat_id=GROUP)
    price = await api.wait_for("sendMessage", chat_id=GROUP)
    assert price.params["text"] == PRICE_EN
    alice.send("/weather")
    unknown = await api.wait_for("sendMessage", chat_id=1001)
    assert unknown.params["text"] == "I don't know the command /weather. /help lists what I can do."
    alice.send("hello")
    chatter = await api.wait_for("sendMessage", chat_id=1001, count=2)
    assert chatter.params["text"] == "I only understand commands that start with /. Try /help."
    await telegram.idle()
    assert len(api.of("sendMessage", chat_id=GROUP)) == 1


async def test_an_adapter_error_is_logged_without_the_token_and_apologised_for(
    tmp_path, api, caplog
):
    caplog.set_level(logging.DEBUG)
    async with telegram_bot(tmp_path, api) as telegram:
        api.fail_next(
            "sendMessage",
            error_code=400,
            description="Bad Request: chat not found",
            where=lambda params: params["text"].startswith("Kling"),
        )
        telegram.member(1001, "Alice", "alice").send("/price")
        apology = await api.wait_for("sendMessage", chat_id=1001, where=lambda c: c.status == 200)
    assert apology.params["text"] == (
        "Sorry, something went wrong on my side. Nothing was charged; please try again."
    )
    assert "error while handling an update:\nTraceback" in caplog.text
    assert "telegram.error.BadRequest: Chat not found" in caplog.text
    assert "/bot<token>/sendMessage" in caplog.text  # httpx logs request URLs: redacted
    assert TOKEN not in caplog.text and TOKEN.partition(":")[2] not in caplog.text


WEBHOOK_URL = "https://bot.example.com/telegram/hook"
DERIVED_SECRET = hmac.new(TOKEN.encode(), b"klingbot webhook", hashlib.sha256).hexdigest()
"""What every instance with this token registers (HMAC-SHA256 of a fixed label, keyed by the token)."""


async def test_webhook_mode_checks_the_secret(tmp_path, api):
    url = WEBHOOK_URL
    async with telegram_bot(
        tmp_path, api, telegram_webhook_url=url, telegram_webhook_listen="127.0.0.1:0"
    ) as telegram:
        [webhook] = api.of("setWebhook")
        assert webhook.params == {
            "url": url,
            "secret_token": DERIVED_SECRET,
            "allowed_updates": ["message", "callback_query", "pre_checkout_query"],
        }
        assert re.fullmatch(r"[0-9a-f]{64}", DERIVED_SECRET)  # within Telegram's alphabet
        assert not api.of("getUpdates")
        port = telegram.adapter.webhook.port
        update = {"update_id": 1, "message": telegram.member(1001, "Alice").message("/price")}
        endpoint = f"http://127.0.0.1:{port}/telegram/hook"
        async with aiohttp.ClientSession() as session:
            forged = await session.post(endpoint, json=update, headers={SECRET_HEADER: "guess"})
            assert forged.status == 403
            posted = await session.post(
                endpoint, json=update, headers={SECRET_HEADER: DERIVED_SECRET}
            )
            assert posted.status == 200
        reply = await api.wait_for("sendMessage", chat_id=1001)
        assert reply.params["text"] == PRICE_EN
        await telegram.idle()
        assert len(api.of("sendMessage")) == 1


@pytest.mark.parametrize(
    ("lang", "tier", "refusal"),
    [
        (
            "en",
            "High Quality",
            "High Quality costs 35 credits (¥3.50), but your balance is 30 credits (¥3.00)."
            " Pick a cheaper tier or ask a moderator for a top-up.",
        ),
        (
            "zh-CN",
            "高品质",
            "高品质 需要 35 灵感值（¥3.50），你的余额是 30 灵感值（¥3.00）。"
            "请选择更便宜的档位，或联系管理员充值。",
        ),
    ],
)
async def test_an_unaffordable_tier_is_refused_with_an_alert(telegram, lang, tier, refusal):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice", lang)
    await fund(telegram, alice, 30)
    since = len(api.calls)
    alice.send("/gen a robot waves", photo=sample_image())
    quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
    alice.press(quote.result, tier)
    answer = await api.wait_for("answerCallbackQuery", since=since)
    assert (answer.params["text"], answer.params["show_alert"]) == (refusal, True)
    await telegram.idle()
    assert not api.of("editMessageText", since=since)
    assert await telegram.balance(1001) == 30


async def test_a_member_who_blocked_the_bot_has_the_job_recorded_undeliverable(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    await fund(telegram, alice, 100)
    blocked = "Forbidden: bot was blocked by the user"
    api.fail_next("sendVideo", error_code=403, description=blocked)
    since = len(api.calls)
    alice.send("/gen a robot waves", photo=sample_image())
    quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
    alice.press(quote.result, "Standard")
    await api.wait_for("sendVideo", since=since, timeout=90)
    await telegram.settle()

    [job] = await telegram.deps.generation.store.jobs_of(UserRef("telegram", "1001"), 5)
    assert (job.state, job.delivery) == ("delivered", "undeliverable")
    [refused] = api.of("sendVideo", since=since)  # refused for good: not tried again
    assert refused.status == 403
    assert not [c for c in api.of("sendMessage", since=since) if "saved at" in c.params["text"]]
    assert await telegram.balance(1001) == 80  # paid: the clip exists and is kept

    since = len(api.calls)
    alice.send("/jobs")  # unblocked, the member looks for the clip
    listing = await api.wait_for("sendMessage", since=since, chat_id=1001)
    assert listing.params["text"].splitlines()[1].split(" · ")[4] == (
        f"could not be delivered: ask a moderator for the file (job {job.short_id})"
    )


@pytest.mark.parametrize(
    ("lang", "gen_line"),
    [
        (
            "en",
            '/gen [--duration 10] [--negative "..."] <prompt> — as the caption of a photo (or in'
            " reply to one): quote every tier, then make the video; a prompt alone: Master only",
        ),
        (
            "zh",
            '/gen [--duration 10] [--negative "..."] <提示词> — 作为照片的说明文字发送（或回复一张照片）：'
            "先报价各档位，再生成视频；只有提示词时仅提供大师档",
        ),
    ],
)
async def test_help_says_how_gen_works_on_telegram(telegram, lang, gen_line):
    api = telegram.api
    telegram.member(1003, "Lin", lang=lang).send("/help")
    help_ = await api.wait_for("sendMessage", chat_id=1003)
    lines = help_.params["text"].splitlines()
    assert gen_line in lines
    assert not any("sample" in line for line in lines)
