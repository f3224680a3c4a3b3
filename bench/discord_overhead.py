"""Discord adapter overhead: /price interactions answered per second, ours vs bare discord.py.

Run ``.venv/bin/python bench/discord_overhead.py`` (part of ``make bench``);
``--quick`` for a smoke run, ``--interactions N`` and ``--concurrency C`` to
change the load. Both bots talk to the same Discord stand-in
(``tests/adapters/discord_standin.py``) in this process, one after the other,
under the same load:

- **ours**: the production client from :func:`adapters.discord.build_client`
  on a fresh SQLite database, run by :func:`adapters.discord.running`: every
  ``/price`` goes through the adapter (caller, moderator check, the command
  line parsed by the core), the core (a wallet read on the database thread,
  the price table, the translator) and back as an ephemeral message with its
  persistent button. Every member has a wallet, so the reply carries their
  balance line too.
- **bare**: a ``discord.Client`` with one ``app_commands`` command answering
  ``/price`` with a constant string, ephemeral too.

A run pushes N ``/price`` interactions from 200 members, keeping C
unanswered at once (a new one as soon as one is acknowledged), and times
until all are answered; each side gets a warm-up first. The stand-in shares
the process (and the core) with the bot being measured, the same for both
sides. Target: ours at least 0.9 of bare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the stand-in

import discord  # noqa: E402
from discord import app_commands  # noqa: E402

from adapters.discord import build_client, running  # noqa: E402
from app.bootstrap import open_core  # noqa: E402
from bot.commands import UserRef  # noqa: E402
from bot.ports import UserProfile  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.adapters.discord_standin import DiscordStandIn, Guild, Member, discord_py_pointed_at  # noqa: E402

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.YmVuY2g.bench-token-for-the-stand-in-only"
MEMBERS = 200
WARM_UP = 100


async def drive(api: DiscordStandIn, members: list[Member], count: int, concurrency: int) -> float:
    """Push ``count`` /price interactions, ``concurrency`` in flight; interactions per second."""
    pending: list = []

    def one_answered() -> bool:
        return any(i.acknowledged for i in pending)

    def all_answered() -> bool:
        return all(i.acknowledged for i in pending)

    start = time.perf_counter()
    for n in range(count):
        pending.append(members[n % len(members)].slash("price"))
        if len(pending) >= concurrency:
            await api.wait_until(one_answered, timeout=60)
            pending[:] = [i for i in pending if not i.acknowledged]
    await api.wait_until(all_answered, timeout=60)
    return count / (time.perf_counter() - start)


@asynccontextmanager
async def ours(api: DiscordStandIn, guild: Guild, members: list[Member]) -> AsyncIterator[None]:
    """The production client and core, every member with a wallet."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            db=Path(folder) / "bench.db",
            discord_token=TOKEN,
            discord_api_base=api.api_base,
            discord_gateway_url=api.gateway_url,
            discord_guild_ids=(int(guild.id),),
        )
        async with open_core(settings) as deps:
            for member in members:
                profile = UserProfile(UserRef("discord", member.id), member.name)
                await deps.ledger.open_wallet(profile, welcome_credits=100, now=0)
            client = build_client(settings, deps, guild_ready_timeout=0.05)
            async with running(client):
                yield


@asynccontextmanager
async def bare(api: DiscordStandIn, guild: Guild, members: list[Member]) -> AsyncIterator[None]:
    """A bare discord.py client whose /price replies a constant string."""
    client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)
    scope = discord.Object(int(guild.id))

    @tree.command(name="price", description="Prices", guild=scope)
    async def price(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Prices: see the website.", ephemeral=True)

    with discord_py_pointed_at(api.api_base, api.gateway_url):
        await client.login(TOKEN)
        await tree.sync(guild=scope)
        connection = asyncio.create_task(client.connect())
        await client.wait_until_ready()
        try:
            yield
        finally:
            await client.close()
            await asyncio.gather(connection, return_exceptions=True)


async def measure(
    side: Callable, api: DiscordStandIn, guild: Guild, members, count: int, concurrency: int
) -> float:
    async with side(api, guild, members):
        await drive(api, members, min(WARM_UP, count), concurrency)
        return await drive(api, members, count, concurrency)


async def main(count: int, concurrency: int) -> None:
    async with DiscordStandIn(TOKEN) as api:
        guild = api.add_guild("Bench")
        members = [guild.add_member(f"member{n}") for n in range(MEMBERS)]
        rates = {}
        for name, side in (("ours", ours), ("bare", bare)):
            rates[name] = await measure(side, api, guild, members, count, concurrency)
    print(f"/price interactions per second, {count} at concurrency {concurrency}:")
    print(f"  ours {rates['ours']:.0f}/s   bare {rates['bare']:.0f}/s")
    print(f"  ours / bare = {rates['ours'] / rates['bare']:.2f} (target >= 0.9)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 interactions")
    args = parser.parse_args()
    asyncio.run(main(100 if args.quick else args.interactions, args.concurrency))
