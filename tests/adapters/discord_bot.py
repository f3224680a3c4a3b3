"""The production Discord client, on a real database, talking to the Discord stand-in.

``discord_bot(tmp_path, api, guild)`` is what ``klingbot run`` builds
(``build_client`` + ``running``) with the fast generation settings of the
e2e tests, the job runner started. Tests act as members through the
stand-in (``Member.slash``, ``Member.press``) and wait on what it recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.discord import DiscordAdapter, build_client, running
from adapters.discord.pace import ChannelPace
from app.bootstrap import open_core
from bot.commands import UserRef
from bot.deps import Deps
from bot.pacing import ChatTurns
from bot.providers.base import Provider
from tests.adapters.discord_standin import DiscordStandIn, Guild, Interaction, Member, Message
from tests.e2e.conftest import fast_settings
from tests.support.clock import SkippingTime, VirtualTime

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.R2t5Zw.klingbot-test-token-for-the-stand-in"


@dataclass
class DiscordBot:
    """The running bot, the stand-in it talks to, and the core behind it."""

    api: DiscordStandIn
    deps: Deps
    adapter: DiscordAdapter
    time: VirtualTime
    """The clock the outbox paces channels on, and the stand-in counts its rate limits on."""

    async def balance(self, member: Member) -> int:
        wallet = await self.deps.ledger.wallet(UserRef("discord", member.id))
        return wallet.balance if wallet else 0

    async def settle(self) -> None:
        await asyncio.wait_for(self.deps.generation.runner.idle(), 60)

    async def answered(self, interaction: Interaction) -> Message:
        """The message the interaction's answer ended in, once it is no longer "thinking"."""
        await self.api.wait_until(
            lambda: (
                interaction.original is not None
                and (not interaction.original.loading or interaction.original.deleted)
            )
        )
        assert interaction.original is not None
        return interaction.original

    async def fund(self, member: Member, credits: int) -> None:
        """The member opens their wallet (/balance); the configured id's wallet tops it up."""
        await self.answered(member.slash("balance"))
        await self.deps.ledger.top_up(
            UserRef("discord", member.id),
            credits,
            key=f"test-fund-{member.id}-{credits}",
            actor="test",
            reason="test",
            now=0,
        )


@asynccontextmanager
async def discord_bot(
    tmp_path: Path,
    api: DiscordStandIn,
    guild: Guild | None = None,
    *,
    provider: Provider | None = None,
    clock: VirtualTime | None = None,
    settings_overrides: dict[str, object] | None = None,
    rewire: Callable[[Deps], Deps] | None = None,
    **overrides,
) -> AsyncIterator[DiscordBot]:
    """The production client connected to the stand-in, with the job runner started.

    ``overrides`` and ``settings_overrides`` both go to the settings; the
    latter also takes names that clash with this function's (``provider``).
    The outbox paces channels (and takes shared turns, when ``deps.pace``
    is set) on ``clock`` (by default real time whose sleeps are skipped), and the stand-in counts its rate-limit windows on
    the same clock: the pacing's waits pass at once, and the stand-in still
    answers 429 to any request let through too early. Interaction deadlines
    stay on the stand-in's own clock. ``rewire`` changes the core before the
    client is built (a job runner on virtual time, for instance).
    """
    values = dict(
        discord_token=TOKEN,
        discord_api_base=api.api_base,
        discord_gateway_url=api.gateway_url,
        discord_guild_ids=(int(guild.id),) if guild is not None else (),
    )
    values.update(overrides)
    values.update(settings_overrides or {})
    settings = fast_settings(tmp_path, **values)
    clock = clock or SkippingTime()
    api.rate_limits.clock = clock.monotonic
    pace = ChannelPace(monotonic=clock.monotonic, sleep=clock.sleep)
    async with open_core(settings, provider=provider) as deps:
        deps = rewire(deps) if rewire else deps
        turns = (
            ChatTurns(deps.pace, wall=clock.wall, sleep=clock.sleep)
            if deps.pace is not None
            else None
        )
        client = build_client(
            settings,
            deps,
            guild_ready_timeout=0.05,
            pace=pace,
            identify_spacing_s=0.01,
            turns=turns,
        )
        async with running(client) as adapter:
            await deps.generation.runner.start()
            try:
                yield DiscordBot(api, deps, adapter, clock)
            finally:
                await deps.generation.runner.stop()
