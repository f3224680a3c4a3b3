"""The Discord stand-in's rate limits and authorship rule, as Discord answers them.

Raw HTTP first (the headers are the point): every answer carries its bucket,
a request over a channel's message bucket is a 429 with ``retry_after`` and
the bucket headers, the 51st request in a second a global 429, and the
interaction callback none of these. Then a bare discord.py client: it may not
edit a member's message (50005).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest

from tests.adapters.discord_ratelimits import GLOBAL_PER_SECOND
from tests.adapters.discord_standin import DiscordStandIn, Guild
from tests.adapters.test_discord_standin import TOKEN, running

BUCKET_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
)


class Clock:
    """The stand-in's clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(clock: Clock) -> AsyncIterator[DiscordStandIn]:
    async with DiscordStandIn(TOKEN, now=clock) as standin:
        yield standin


@pytest.fixture
def guild(api: DiscordStandIn) -> Guild:
    return api.add_guild("Creators", channels=("general", "showcase"))


@pytest.fixture
async def http(api: DiscordStandIn) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api.port}", headers=headers) as session:
        yield session


async def post(http: aiohttp.ClientSession, channel_id: str, text: str) -> aiohttp.ClientResponse:
    async with http.post(f"/api/v10/channels/{channel_id}/messages", json={"content": text}) as r:
        await r.read()
        return r


async def test_a_channel_takes_five_messages_in_five_seconds_and_says_so(api, guild, clock, http):
    general, showcase = guild.text_channels
    answers = [await post(http, general.id, f"n{n}") for n in range(5)]
    assert [a.status for a in answers] == [200] * 5
    for answer in answers:
        assert all(name in answer.headers for name in BUCKET_HEADERS)
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"5"}

    clock.now += 2.0
    edit = f"/api/v10/channels/{general.id}/messages/{api.messages_in(general)[0].id}"
    async with http.patch(edit, json={"content": "edited"}) as refused:  # edits share the bucket
        body = await refused.json()
    assert refused.status == 429
    assert body == {"message": "You are being rate limited.", "retry_after": 3.0, "global": False}
    assert refused.headers["X-RateLimit-Scope"] == "user"
    assert refused.headers["X-RateLimit-Reset-After"] == "3.000"
    assert refused.headers["Retry-After"] == "3" and refused.headers["Via"]
    assert refused.headers["X-RateLimit-Bucket"] == answers[0].headers["X-RateLimit-Bucket"]
    assert "X-RateLimit-Global" not in refused.headers
    assert api.messages_in(general)[0].content == "n0"  # refused: nothing changed

    other = await post(http, showcase.id, "another channel, another count")
    assert other.status == 200 and other.headers["X-RateLimit-Remaining"] == "4"

    clock.now += 3.0  # the window is over
    again = await post(http, general.id, "n5")
    assert again.status == 200 and again.headers["X-RateLimit-Remaining"] == "4"
    assert [call.route for call in api.rate_limited] == [
        "PATCH /channels/{channel_id}/messages/{message_id}"
    ]


async def test_errors_carry_the_bucket_too(api, guild, http):
    async with http.get("/api/v10/channels/999/messages/1") as unknown:
        assert unknown.status == 404
    assert all(name in unknown.headers for name in BUCKET_HEADERS)


async def test_the_51st_request_in_a_second_is_a_global_429(api, guild, clock, http):
    for _ in range(GLOBAL_PER_SECOND):
        async with http.get("/api/v10/users/@me") as answer:
            assert answer.status == 200
    async with http.get(f"/api/v10/channels/{guild.text_channels[0].id}") as refused:
        body = await refused.json()
    assert refused.status == 429 and body["global"] is True
    assert refused.headers["X-RateLimit-Global"] == "true"
    assert refused.headers["X-RateLimit-Scope"] == "global"
    assert "X-RateLimit-Bucket" not in refused.headers
    clock.now += 1.0
    async with http.get("/api/v10/users/@me") as answer:
        assert answer.status == 200


async def test_interaction_callbacks_have_no_limit(api, guild, clock, http):
    for _ in range(GLOBAL_PER_SECOND):
        async with http.get("/api/v10/users/@me") as answer:
            assert answer.status == 200
    alice = guild.add_member("alice")
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api.port}") as anonymous:  # no bot token
        for n in range(6):  # six interactions answered in the same second, past the global limit
            asked = alice.slash("ping")
            callback = f"/api/v10/interactions/{asked.id}/{asked.token}/callback"
            body = {"type": 4, "data": {"content": f"pong {n}"}}
            async with anonymous.post(callback, json=body) as answer:
                assert answer.status == 204
                assert "X-RateLimit-Bucket" not in answer.headers
    assert not api.rate_limited


async def test_the_bot_cannot_edit_a_members_message(api, guild):
    alice = guild.add_member("alice")
    async with running(api, guild) as bot:
        said = alice.say("my own words")
        with pytest.raises(discord.Forbidden) as refused:
            channel = bot.get_partial_messageable(int(said.channel.id))
            await channel.get_partial_message(int(said.id)).edit(content="theirs")
        assert refused.value.code == 50005
        assert refused.value.text == "Cannot edit a message authored by another user"
        assert said.content == "my own words" and not said.edits
