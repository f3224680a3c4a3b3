"""The runner's side of Telegram: pacing per chat, status edits coalesced, clips sent right.

These drive the adapter's outbox directly (as the job runner does), through
the real PTB bot and the stand-in; the flood control's clock is virtual, so
its waits are measured, not waited.
"""

from __future__ import annotations

import os

import pytest

from adapters.telegram.outbox import TelegramOutbox
from bot.commands import ChatRef
from bot.replies import Button, Reply, text
from tests.adapters.conftest import GROUP, telegram_bot
from tests.adapters.standin import buttons
from tests.support.clock import GatedTime
from tests.support.video import write_mp4

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ALICE = 1001


@pytest.fixture(autouse=True)
def alice_started_the_bot(api):
    """The job runner writes only to members who talked to the bot: Alice did."""
    api.add_chat(ALICE)


def line(n: int) -> Reply:
    return Reply((text("status.bar", bar=f"update {n}"),))


async def send_times(telegram, chat_id: int, count: int) -> list[float]:
    """Send ``count`` messages one after another; the virtual time each went out."""
    outbox, clock = telegram.adapter.outbox, telegram.time
    start, times = clock.monotonic(), []
    for n in range(count):
        await outbox.send(ChatRef("telegram", str(chat_id)), line(n), "en")
        times.append(clock.monotonic() - start)
    return times


async def test_a_private_chat_gets_a_burst_then_one_message_a_second(telegram):
    assert await send_times(telegram, 1001, 6) == [0, 0, 0, 1, 2, 3]
    texts = [call.params["text"] for call in telegram.api.of("sendMessage", chat_id=1001)]
    assert texts == [f"update {n}" for n in range(6)]


async def test_a_group_gets_at_most_20_messages_a_minute(telegram):
    times = await send_times(telegram, GROUP, 24)
    assert times[:20] == [0, 0, 0, *range(1, 18)]
    assert times[20:] == [60, 60, 60, 61]
    assert all(later - earlier >= 60 for earlier, later in zip(times, times[20:], strict=False))
    assert len(telegram.api.of("sendMessage", chat_id=GROUP)) == 24


async def test_status_edits_coalesce_and_unchanged_ones_are_not_errors(telegram, caplog):
    api, outbox = telegram.api, telegram.adapter.outbox
    chat = ChatRef("telegram", "1001")
    message_id = await outbox.send(chat, line(0), "en")
    for n in range(1, 6):
        await outbox.edit(chat, message_id, line(n), "en")  # returns at once
    await outbox.drain()
    edits = api.of("editMessageText", message_id=int(message_id))
    assert [call.params["text"] for call in edits] == ["update 5"]

    await outbox.edit(chat, message_id, line(5), "en")  # the same text again
    await outbox.drain()
    [unchanged] = api.of("editMessageText", message_id=int(message_id))[1:]
    assert unchanged.status == 400
    assert "not edited" not in caplog.text


def delivery(path) -> Reply:
    return Reply(
        (text("status.bar", bar="🎞️ your clip"),),
        buttons=(
            Button(text("delivery.reroll_button"), "reroll:abcd1234"),
            Button(text("delivery.other_tier_button"), "again:abcd1234"),
        ),
        video=path,
    )


async def test_a_clip_goes_as_video_as_a_file_or_as_a_notice(telegram, tmp_path):
    api, bot = telegram.api, telegram.adapter.outbox.bot
    chat = ChatRef("telegram", "1001")
    mp4 = tmp_path / "clip.mp4"
    write_mp4(mp4)
    await telegram.adapter.outbox.send(chat, delivery(mp4), "en")
    [video] = api.of("sendVideo")
    assert video.files["video"] == mp4.read_bytes()
    assert (video.params["width"], video.params["height"], video.params["duration"]) == (
        320,
        240,
        2,
    )
    assert video.params["caption"] == "🎞️ your clip"
    assert buttons(video) == [("🎲 Reroll", "reroll:abcd1234"), ("🔁 Other tier", "again:abcd1234")]

    # Not something Telegram plays inline: sent as a file, with the same caption and buttons.
    odd = tmp_path / "clip.bin"
    odd.write_bytes(b"\x00\x00\x00\x18not a video at all")
    await telegram.adapter.outbox.send(chat, delivery(odd), "en")
    [document] = api.of("sendDocument")
    assert document.files["document"] == odd.read_bytes()
    assert document.params["caption"] == "🎞️ your clip" and len(buttons(document)) == 2

    # Over the upload limit: a clear message instead, buttons kept.
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(1_500_000))
    small_limit = TelegramOutbox(bot, upload_limit=1_000_000)
    await small_limit.send(chat, delivery(big), "en")
    notice = api.of("sendMessage", chat_id=1001)[-1]
    assert notice.params["text"] == (
        "🎞️ your clip\n\nThis clip is 1.5 MB, over the 1 MB a bot may upload to Telegram, so it"
        " cannot be shown here. It is paid for and kept: ask a moderator for the file, with the"
        " job id above."
    )
    assert len(buttons(notice)) == 2
    assert len(api.of("sendVideo")) == 1 and len(api.of("sendDocument")) == 1


async def test_a_stale_button_gets_an_alert(telegram):
    api = telegram.api
    carol = telegram.member(1003, "Carol", "carol")
    carol.send("/price")
    price = await api.wait_for("sendMessage", chat_id=1003)
    stale = dict(price.result, reply_markup={
        "inline_keyboard": [[{"text": "old", "callback_data": "tier:000000000000:gone"}]]
    })  # fmt: skip
    carol.press(stale, "old")
    answer = await api.wait_for("answerCallbackQuery")
    assert answer.params["show_alert"] is True
    assert answer.params["text"] == "That button no longer works. Send the command again."
    assert not api.of("editMessageText")


async def test_a_group_waiting_for_its_pace_never_stalls_other_chats(tmp_path, api):
    clock = GatedTime(monotonic_start=1_000.0)
    async with telegram_bot(tmp_path, api, clock=clock) as telegram:
        alice = telegram.member(1001, "Alice", "alice")
        # More group commands than the application handles at once (16): three replies
        # go out at once, the rest wait for the group's next slot, which never comes...
        for _ in range(20):
            alice.send("/price", chat_id=GROUP)
        await api.wait_for("sendMessage", chat_id=GROUP, count=3)
        # ...yet a private chat is answered meanwhile.
        telegram.member(1002, "Bob", "bob").send("/price")
        await api.wait_for("sendMessage", chat_id=1002)
        assert len(api.of("sendMessage", chat_id=GROUP)) == 3
        clock.gate.set()  # time moves again: the group gets its replies, paced
        await api.wait_for("sendMessage", chat_id=GROUP, count=20)
        assert clock.monotonic() - 1_000.0 == 17.0  # one a second after the burst of three
