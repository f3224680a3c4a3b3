"""Floods on Telegram cost nothing: the real python-telegram-bot against the Bot API stand-in.

A burst of photos from one member leaves at most their open-quote limit of
inputs on disk, downloads only what the quote rate admits, and tells the
member to slow down; an image over the size limit is named at its real size
and never downloaded.
"""

from __future__ import annotations

import re

from adapters.console.chat import sample_image
from tests.adapters.conftest import telegram_bot

MB = 1024 * 1024
LIMIT = (
    " over the 10 MB limit. Send a smaller JPG or PNG (saving it at a lower quality or size"
    " usually does it)."
)


async def test_a_burst_of_25_photos_keeps_five_inputs_and_says_slow_down(tmp_path, api):
    async with telegram_bot(tmp_path, api, max_open_quotes=5, quotes_per_minute=8) as telegram:
        alice = telegram.member(1001, "Alice", "alice")
        photo = sample_image()
        for n in range(25):
            alice.send(f"/gen a cat, take {n}", photo=photo)
        await api.wait_for("sendMessage", chat_id=1001, count=25)
        await telegram.idle()

        texts = [call.params["text"] for call in api.of("sendMessage")]
        quotes = [t for t in texts if t.startswith("🎬 Quote for a 5 s clip")]
        slow = [t for t in texts if t.startswith("Slow down")]
        assert (len(quotes), len(slow)) == (8, 17)
        for refusal in slow:
            assert re.fullmatch(
                r"Slow down: 8 quotes a minute at most\. Try again in \d+ s\. Nothing was charged\.",
                refusal,
            )
        # Only the admitted eight were downloaded; five are kept, three were closed and removed.
        assert len(api.of("getFile")) == 8 and len(api.downloads) == 8
        assert len(list(telegram.deps.generation.inputs_dir.iterdir())) == 5
        assert await telegram.balance(1001) == 0


async def test_images_over_the_limit_are_named_at_their_real_size_unread(telegram):
    api = telegram.api
    alice = telegram.member(1001, "Alice", "alice")
    alice.send("/gen a cat", photo=sample_image(), reported_size=123 * MB // 10)
    await api.wait_for("sendMessage", chat_id=1001)
    alice.send(
        "/gen a cat", document=sample_image(), filename="cat.jpg", reported_size=185 * MB // 10
    )
    await api.wait_for("sendMessage", chat_id=1001, count=2)
    # A file whose message does not say its size: getFile says it, and nothing is downloaded.
    unsized = alice.message("/gen a cat", document=sample_image(), reported_size=14 * MB)
    del unsized["document"]["file_size"]
    api.push({"message": unsized})
    await api.wait_for("sendMessage", chat_id=1001, count=3)
    await telegram.idle()

    assert [call.params["text"] for call in api.of("sendMessage")] == [
        f"That image is 12.3 MB,{LIMIT}",
        f"That image is 18.5 MB,{LIMIT}",
        f"That image is 14.0 MB,{LIMIT}",
    ]
    assert len(api.of("getFile")) == 1 and api.downloads == []
    assert not telegram.deps.generation.inputs_dir.exists() or not any(
        telegram.deps.generation.inputs_dir.iterdir()
    )
