"""A paid clip reaches its Discord member through an upload outage.

The real client talks to the Discord stand-in, which answers every request
carrying a file with 503 Service Unavailable for the first 45 seconds after
the press (a 502 would be retried by discord.py itself, with real sleeps)
and takes them again afterwards. The job runner runs on virtual time: the
clip must arrive in the same process, be paid for once (read back from the
ledger), and no message may name a path on the bot's server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.upload_outage import OUTAGE_S, no_server_path, paid_for
from tests.e2e.scripted_provider import Script, ScriptedProvider
from tests.support.clock import VirtualTime
from tests.support.runner_harness import on_virtual_time


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general", "showcase"))


async def test_a_discord_upload_outage_ends_with_the_clip_in_the_channel_paid_once(
    tmp_path, api, guild, tiny_clip
):
    time = VirtualTime(monotonic_start=1_000.0)
    provider = ScriptedProvider(tiny_clip, Script(progress=()))
    alice = guild.add_member("alice")
    channel = guild.text_channels[0]
    async with discord_bot(
        tmp_path,
        api,
        guild,
        provider=provider,
        clock=time,
        rewire=lambda deps: on_virtual_time(deps, time),
        time_scale=1.0,
        status_interval_s=3.0,
        poll_interval_s=2.0,
    ) as bot:
        await bot.fund(alice, 100)
        quote = await bot.answered(alice.slash("gen", {"prompt": "a robot waves"}, channel=channel))
        since = len(api.calls)
        outage_ends = time.elapsed + OUTAGE_S
        api.uploads_refused = lambda: time.elapsed < outage_ends
        pressed = alice.press(quote, "Master")
        await api.wait_acknowledged(pressed)
        await bot.settle()

        [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
        uploads = [call for call in api.calls[since:] if call.files]
        assert [call.status for call in uploads][:-1] == [503] * (len(uploads) - 1)
        assert uploads[-1].status == 200 and len(uploads) >= 3
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        [clip] = [m for m in api.messages_in(channel) if m.attachments]
        assert clip.attachments[0].data == Path(job.result_path).read_bytes()
        assert clip.content.startswith(f"{alice.mention} 🎞️ Master")

        texts = [m.content for m in api.messages_in(channel)]
        texts += [e.content or "" for m in api.messages_in(channel) for e in m.edits]
        assert any(
            f"job {job.short_id} · your clip is ready (100 credits (¥10.00) paid)" in text
            for text in texts
        )
        no_server_path(texts, tmp_path)

        assert await paid_for(bot.deps, UserRef("discord", alice.id), job.job_id) == [
            "hold",
            "capture",
        ]
        assert await bot.balance(alice) == 0
        assert await audit(bot.deps.ledger.db) == []
