"""Job messages in one Discord channel take turns: a crowd generating at once draws no 429.

The stand-in answers 429 to a sixth post or edit in a channel within 5 s, as
Discord does; the outbox's pacing runs on a virtual clock that the stand-in's
rate-limit windows share, so its waits pass at once and are still checked.
"""

from __future__ import annotations

import asyncio
import dataclasses

from adapters.discord.pace import ChannelPace
from bot.commands import ChatRef, UserRef
from bot.pacing import MemoryChatPace
from bot.replies import Reply, text
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip
from tests.support.clock import ScaledTime, VirtualTime

MEMBERS = 8


async def test_a_channel_gets_four_turns_every_five_seconds_and_others_do_not_wait():
    clock = VirtualTime(monotonic_start=100.0)
    pace = ChannelPace(monotonic=clock.monotonic, sleep=clock.sleep)
    started: list[tuple[int, float]] = []

    async def message(channel: int) -> None:
        async with pace.turn(channel):
            started.append((channel, clock.monotonic() - 100.0))

    await asyncio.gather(*(message(1) for _ in range(9)))
    assert [at for _, at in started] == [0, 0, 0, 0, 5, 5, 5, 5, 10]
    await message(2)  # another channel has its own turns
    assert started[-1] == (2, 10)


async def test_a_request_on_the_wire_holds_its_turn_until_it_comes_back():
    clock = VirtualTime()
    pace = ChannelPace(per_window=1, monotonic=clock.monotonic, sleep=clock.sleep)
    upload_done = asyncio.Event()

    async def upload() -> None:
        async with pace.turn(1):
            await upload_done.wait()  # a long upload, still on the wire

    uploading = asyncio.create_task(upload())
    await asyncio.sleep(0)
    edit = asyncio.create_task(pace.take(1))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not edit.done() and clock.monotonic() == 0  # waits for the answer, not the clock
    clock.advance(7)
    upload_done.set()
    await uploading
    pace.give_back(await edit, used=True)
    assert clock.monotonic() == 12  # the window counts from the upload's answer


async def test_eight_members_generating_at_once_in_one_channel_draw_no_429(tmp_path):
    clip = render_tiny_clip(tmp_path / "tiny.mp4")
    provider = ScriptedProvider(clip, Script(progress=(20, 50, 80)))
    async with DiscordStandIn(TOKEN) as api:
        guild = api.add_guild("Creators", channels=("general",))
        channel = guild.text_channels[0]
        members = [guild.add_member(f"member{n}") for n in range(MEMBERS)]
        async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
            for member in members:
                await bot.fund(member, 100)
            asked = [m.slash("gen", {"prompt": f"a paper boat {n}"}) for n, m in enumerate(members)]
            quotes = await asyncio.gather(*(bot.answered(a) for a in asked))
            presses = [m.press(quote, "Master") for m, quote in zip(members, quotes, strict=True)]
            for pressed in presses:
                await api.wait_acknowledged(pressed)

            def clips():
                return [m for m in api.messages_in(channel) if m.attachments]

            await api.wait_until(lambda: len(clips()) == MEMBERS, timeout=60)
            await bot.settle()
            await bot.adapter.outbox.drain()

            assert api.rate_limited == []
            for member in members:
                [mine] = [m for m in clips() if m.content.startswith(member.mention)]
                assert mine.attachments[0].data == clip.read_bytes()
                jobs = await bot.deps.generation.store.jobs_of(UserRef("discord", member.id), 5)
                assert [(j.state, j.delivery) for j in jobs] == [("delivered", "uploaded")]
                assert await bot.balance(member) == 0
            statuses = [m for m in api.messages_in(channel) if m.via == "channel"]
            assert len(statuses) == 2 * MEMBERS  # a status and a clip each, nothing sent twice
            assert bot.adapter.outbox.pace.waits  # the crowd did have to take turns


async def test_job_messages_take_the_shared_turn_and_command_answers_do_not(tmp_path):
    clip = render_tiny_clip(tmp_path / "tiny.mp4")
    provider = ScriptedProvider(clip, Script(progress=(50,)))
    shared = MemoryChatPace()  # what replicas share on PostgreSQL, here in memory
    async with DiscordStandIn(TOKEN) as api:
        guild = api.add_guild("Creators", channels=("general",))
        channel = guild.text_channels[0]
        members = [guild.add_member(f"member{n}") for n in range(3)]
        rewire = lambda deps: dataclasses.replace(deps, pace=shared)  # noqa: E731
        async with discord_bot(tmp_path, api, guild, provider=provider, rewire=rewire) as bot:
            prices = await bot.answered(members[0].slash("price"))
            assert prices.content and shared.next_at == {}  # an interaction reply: not paced
            for member in members:
                await bot.fund(member, 100)
            quotes = [await bot.answered(m.slash("gen", {"prompt": "a boat"})) for m in members]
            for member, quote in zip(members, quotes, strict=True):
                await api.wait_acknowledged(member.press(quote, "Master"))
            await api.wait_until(
                lambda: sum(1 for m in api.messages_in(channel) if m.attachments) == 3, timeout=60
            )
            await bot.settle()
            await bot.adapter.outbox.drain()
        assert list(shared.next_at) == [f"discord:{channel.id}"]
        turns = bot.adapter.outbox.turns
        assert turns is not None and turns.waits  # three statuses, their edits, three clips
        assert api.rate_limited == []


EACH = 6
"""Job messages each replica posts at once: 12 together, over Discord's 5 in 5 s."""
USER = 4242
SCALE = 10
"""How much faster than real time the replicas' clock runs. The pacing keeps one
request below Discord's 5 in 5 s, so a 429 would take requests delayed on their
way by 1.8 s (180 ms real) more than the others: room for a loaded machine."""


class RecordedPace(MemoryChatPace):
    """The shared pacing, noting the slot (wall-clock time) each reservation got."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[float] = []

    async def reserve(self, chat, rule, now):
        delay = await super().reserve(chat, rule, now)
        self.slots.append(now + delay)
        return delay


def most_in_five_seconds(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 5) for start in times)


async def _two_replicas_post(tmp_path, pace, *, enforce: bool = True):
    """Two clients of one bot (two replicas, each its own core and local pacing) post
    ``EACH`` job messages each in one channel, all at once.

    Returns the stand-in, the channel, and the most posts answered in any 5 s
    (``enforce=False``: the stand-in answers every post, so that shows what
    the replicas would have sent). Time is real time, ``SCALE`` times faster:
    both replicas wait at the same time, as replicas do.
    """
    clock = ScaledTime(SCALE)
    answered: list[float] = []
    async with DiscordStandIn(TOKEN) as api:
        guild = api.add_guild("Creators", channels=("general",))
        channel = guild.text_channels[0]
        rewire = (lambda deps: dataclasses.replace(deps, pace=pace)) if pace else None
        async with (
            discord_bot(tmp_path / "a", api, guild, clock=clock, rewire=rewire) as first,
            discord_bot(tmp_path / "b", api, guild, clock=clock, rewire=rewire) as second,
        ):
            api.rate_limits.enabled = enforce
            chat = ChatRef("discord", f"{guild.id}/{channel.id}/{USER}")

            async def post(bot, n: int) -> None:
                reply = Reply((text("status.bar", bar=f"job {n}"),))
                await bot.adapter.outbox.send(chat, reply, "en")
                answered.append(clock.monotonic())

            await asyncio.gather(*(post(bot, n) for bot in (first, second) for n in range(EACH)))
    return api, channel, most_in_five_seconds(answered)


async def test_two_replicas_sharing_the_pacing_keep_a_channel_inside_discords_limit(tmp_path):
    pace = RecordedPace()
    api, channel, _ = await _two_replicas_post(tmp_path, pace)
    # The stand-in counts Discord's 5 in 5 s on the replicas' clock: no post refused.
    assert api.rate_limited == []
    assert sorted(m.content for m in api.messages_in(channel)) == sorted(
        f"job {n}" for n in range(EACH) for _ in range(2)
    )
    # The turns the two replicas got between them: 4 in any 5 s, one below Discord's 5
    # (when the answers came back depends on the machine's load, the turns do not).
    assert len(pace.slots) == 2 * EACH and most_in_five_seconds(pace.slots) == 4


async def test_without_the_shared_pacing_two_replicas_overfill_a_channel(tmp_path):
    _, _, most = await _two_replicas_post(tmp_path, None, enforce=False)
    assert most > 5, "each replica keeps to 4 in 5 s alone, but not both together"
