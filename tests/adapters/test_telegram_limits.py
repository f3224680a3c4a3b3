"""Telegram's limits, as the stand-in enforces them, and the adapter staying inside them.

The first test asks the stand-in directly (through the production bot's PTB
``Bot``) and checks each refusal is the one the Bot API gives. The others
drive the adapter into each limit and check what the member sees: a long
text split, a long caption cut, a press answered too late still acted on, an
unchanged status not treated as an error, a clip over 50 MB never uploaded.
"""

from __future__ import annotations

import logging

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError

from bot.commands import ChatRef
from bot.replies import Reply, text
from tests.adapters.standin import MAX_CAPTION, MAX_TEXT, UPLOAD_LIMIT, buttons
from tests.support.video import write_mp4

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ALICE = 1001


def status(words: str) -> Reply:
    return Reply((text("status.bar", bar=words),))


async def test_the_stand_in_refuses_what_the_bot_api_refuses(telegram):
    api, bot = telegram.api, telegram.application.bot
    alice = telegram.member(ALICE, "Alice", "alice")

    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(ALICE, "hello")  # Alice never talked to the bot
    alice.send("/help")
    await api.wait_for("sendMessage", chat_id=ALICE)

    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "x" * (MAX_TEXT + 1))
    sent = await bot.send_message(ALICE, "x" * MAX_TEXT)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("x" * MAX_TEXT, chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(BadRequest, match="Message_too_long"):
        await bot.edit_message_text(
            "y" * (MAX_TEXT + 1), chat_id=ALICE, message_id=sent.message_id
        )
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_document(ALICE, b"data", caption="c" * (MAX_CAPTION + 1))
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_document(ALICE, b"\0" * (UPLOAD_LIMIT + 1))
    assert api.calls[-1].status == 413

    api.block(ALICE)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE, "still there?")


async def test_long_texts_are_split_and_long_captions_cut(telegram, tmp_path):
    api, outbox = telegram.api, telegram.adapter.outbox
    api.add_chat(ALICE)
    chat = ChatRef("telegram", str(ALICE))
    words = "\n".join(f"line {n:04d} " + "." * 60 for n in range(100))  # about 7,000 characters
    assert len(words) > MAX_TEXT

    await outbox.send(chat, status(words), "en")
    pieces = api.of("sendMessage", chat_id=ALICE)
    assert [c.status for c in pieces] == [200, 200]
    assert "\n".join(c.params["text"] for c in pieces) == words

    message_id = pieces[-1].result["message_id"]
    await outbox.edit(chat, str(message_id), status(words), "en")
    await outbox.drain()
    [edit] = api.of("editMessageText", chat_id=ALICE)
    assert edit.status == 200 and edit.params["text"] == words[:MAX_TEXT]

    clip = tmp_path / "clip.mp4"
    write_mp4(clip)
    await outbox.send(chat, Reply((text("status.bar", bar=words),), video=clip), "en")
    [video] = api.of("sendVideo", chat_id=ALICE)
    assert video.status == 200 and video.params["caption"] == words[:MAX_CAPTION]


async def test_a_press_answered_too_late_is_still_acted_on(telegram, caplog):
    api = telegram.api
    alice = telegram.member(ALICE, "Alice", "alice")
    alice.send("/price")
    prices = await api.wait_for("sendMessage", chat_id=ALICE)
    since = len(api.calls)
    with caplog.at_level(logging.INFO):
        alice.press(prices.result, "Show 10 s prices")
        api.advance(16)  # the bot is slower than Telegram's 15 s
        late = await api.wait_for("answerCallbackQuery", since=since)
        edit = await api.wait_for("editMessageText", since=since)
        await telegram.idle()
    assert late.status == 400
    assert edit.status == 200 and buttons(edit) == [("Show 5 s prices", "price:5")]
    assert not api.of("sendMessage", since=since)  # no apology: nothing went wrong for Alice
    assert "query is too old" in caplog.text.lower() and "Traceback" not in caplog.text


async def test_an_unchanged_status_is_not_an_error(telegram, caplog):
    api, outbox = telegram.api, telegram.adapter.outbox
    api.add_chat(ALICE)
    chat = ChatRef("telegram", str(ALICE))
    message_id = await outbox.send(chat, status("rendering"), "en")
    await outbox.edit(chat, message_id, status("rendering"), "en")
    await outbox.drain()
    await telegram.idle()
    assert "not edited" not in caplog.text
    assert api.messages[(ALICE, int(message_id))]["text"] == "rendering"


async def test_a_clip_over_50_mb_is_never_uploaded(telegram, tmp_path):
    api, outbox = telegram.api, telegram.adapter.outbox
    api.add_chat(ALICE)
    outbox.upload_limit = UPLOAD_LIMIT  # the public Bot API's, as without TELEGRAM_BASE_URL
    big = tmp_path / "big.mp4"
    with big.open("wb") as file:
        file.truncate(UPLOAD_LIMIT + 1)
    chat = ChatRef("telegram", str(ALICE))
    assert not outbox.fits(chat, UPLOAD_LIMIT + 1)
    await outbox.send(chat, Reply((text("status.bar", bar="your clip"),), video=big), "en")
    [notice] = api.of("sendMessage", chat_id=ALICE)
    assert notice.status == 200 and "over the 50 MB a bot may upload" in notice.params["text"]
    assert not api.of("sendVideo") and not api.of("sendDocument")
