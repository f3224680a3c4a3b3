"""Floods on Discord cost nothing: the real discord.py client against the Discord stand-in.

A burst of /gen with an image from one member leaves at most their
open-quote limit of inputs on disk, downloads only what the quote rate
admits, and tells the member privately, at once, to slow down; an image over
the size limit is named at its real size (Discord declares it) and never
downloaded.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from adapters.console.chat import sample_image
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DiscordStandIn

MB = 1024 * 1024
LIMIT = (
    " over the 10 MB limit. Send a smaller JPG or PNG (saving it at a lower quality or size"
    " usually does it)."
)


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general",))


async def test_a_burst_of_25_images_keeps_five_inputs_and_says_slow_down(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild, max_open_quotes=5, quotes_per_minute=8) as bot:
        alice = guild.add_member("alice")
        asked = [
            alice.slash(
                "gen",
                {"prompt": f"a cat, take {n}"},
                attachments={
                    "image": api.attachment(sample_image(), "cat.jpg", content_type="image/jpeg")
                },
            )
            for n in range(25)
        ]
        answers = await asyncio.gather(*(bot.answered(interaction) for interaction in asked))

        quotes = [a for a in answers if a.content.startswith("🎬 Quote for a 5 s clip")]
        slow = [(i, a) for i, a in zip(asked, answers, strict=True) if a.content.startswith("Slow")]
        assert (len(quotes), len(slow)) == (8, 17)
        assert all(not quote.ephemeral for quote in quotes)
        for interaction, refusal in slow:  # answered at once, only to Alice, nothing downloaded
            assert interaction.ack_type == CHANNEL_MESSAGE and refusal.ephemeral
            assert re.fullmatch(
                r"Slow down: 8 quotes a minute at most\. Try again in \d+ s\. Nothing was charged\.",
                refusal.content,
            )
        assert len(api.downloads) == 8
        assert len(list(bot.deps.generation.inputs_dir.iterdir())) == 5
        assert await bot.balance(alice) == 0


async def test_images_over_the_limit_are_named_at_their_real_size_unread(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild) as bot:
        alice = guild.add_member("alice")
        shown = []
        for size in (123 * MB // 10, 185 * MB // 10):
            big = api.attachment(sample_image(), "big.jpg", content_type="image/jpeg", size=size)
            asked = alice.slash("gen", {"prompt": "a cat"}, attachments={"image": big})
            answer = await bot.answered(asked)
            assert asked.ack_type == CHANNEL_MESSAGE and answer.ephemeral
            shown.append(answer.content)
        assert shown == [f"That image is 12.3 MB,{LIMIT}", f"That image is 18.5 MB,{LIMIT}"]
        assert api.downloads == []

        # An image the core takes is downloaded after the deferral, and quoted publicly.
        fine = api.attachment(sample_image(), "cat.jpg", content_type="image/jpeg")
        asked = alice.slash("gen", {"prompt": "a cat"}, attachments={"image": fine})
        quote = await bot.answered(asked)
        assert asked.ack_type == DEFERRED_CHANNEL_MESSAGE and not quote.ephemeral
        assert quote.content.startswith("🎬 Quote for a 5 s clip of “a cat”.")
        assert len(api.downloads) == 1
