"""Discord shards: each replica connects its own shards and serves only their servers.

Two production clients (``build_client`` + ``running``, as ``klingbot run``
makes them), each with its own database, connect shard 0 and shard 1 of 2 to
the stand-in, which sends each shard only the events and interactions of the
servers it owns (``(guild_id >> 22) % 2``) and DMs to shard 0, as Discord
does. What a member did shows in the database of the replica that served
them. The stand-in refuses what Discord refuses: a shard id not below the
count (close 4010), too many servers on one session (close 4011).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import discord
import pytest

from adapters.discord import KlingShardedClient, build_client, running
from adapters.discord.client import syncs_commands
from app.bootstrap import open_core
from bot.commands import UserRef
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn, discord_py_pointed_at, shard_of
from tests.adapters.test_telegram_cli import environment
from tests.e2e.conftest import fast_settings


async def test_two_replicas_each_answer_only_their_shards_servers(tmp_path):
    async with DiscordStandIn(TOKEN) as api:
        first = api.add_guild("Zero", shard=(0, 2))
        second = api.add_guild("One", shard=(1, 2))
        assert (shard_of(first.id, 2), shard_of(second.id, 2)) == (0, 1)
        alice, bob = first.add_member("alice"), second.add_member("bob")
        carol = api.add_user("carol")
        both = dict(discord_shard_count=2, discord_guild_ids=(int(first.id), int(second.id)))
        async with discord_bot(tmp_path / "one", api, discord_shard_ids=(1,), **both) as one:
            one_client = one.adapter.outbox.client
            assert isinstance(one_client, KlingShardedClient)
            assert [g.id for g in one_client.guilds] == [int(second.id)]
            assert not syncs_commands(one_client)
            assert api.command_syncs == []  # shard 0's replica syncs, not this one
            async with discord_bot(tmp_path / "zero", api, discord_shard_ids=(0,), **both) as zero:
                zero_client = zero.adapter.outbox.client
                assert [g.id for g in zero_client.guilds] == [int(first.id)]
                assert sorted(s.guild_id for s in api.command_syncs) == sorted(
                    (first.id, second.id)
                )  # once per server, by shard 0's replica
                assert sorted(api.live) == [(0, 2), (1, 2)]

                answers = {
                    name: await bot_of.answered(member.slash("balance"))
                    for name, member, bot_of in (
                        ("alice", alice, zero),
                        ("bob", bob, one),
                        ("carol", carol, zero),
                    )
                }
                prices = await one.answered(bob.slash("price"))
                pressed = bob.press(prices, "Show 10 s prices")
                await api.wait_acknowledged(pressed)

                for member, served, other in (
                    (alice, zero, one),
                    (bob, one, zero),
                    (carol, zero, one),
                ):
                    user = UserRef("discord", member.id)
                    assert await served.deps.ledger.wallet(user) is not None, member.name
                    assert await other.deps.ledger.wallet(user) is None, member.name
        assert all("0 credits" in m.content for m in answers.values()), answers
        assert any(label.startswith("Show 5 s prices") for label in prices.labels())


async def test_discord_closes_a_shard_outside_the_count_with_4010(tmp_path):
    async with DiscordStandIn(TOKEN) as api:
        api.add_guild()
        client = discord.AutoShardedClient(
            intents=discord.Intents.none(), shard_count=2, shard_ids=[2]
        )
        with discord_py_pointed_at(api.api_base, api.gateway_url):
            await client.login(TOKEN)
            with pytest.raises(discord.ConnectionClosed) as closed:
                await asyncio.wait_for(client.connect(reconnect=True), 10)
            await client.close()
        assert closed.value.code == 4010
        assert api.closes == [(4010, "Invalid shard.")]
        assert api.sessions == []


async def test_too_many_servers_without_shards_is_4011_and_shards_fix_it(tmp_path):
    async with DiscordStandIn(TOKEN) as api:
        api.max_guilds_per_shard = 1
        guilds = [api.add_guild("Zero", shard=(0, 2)), api.add_guild("One", shard=(1, 2))]
        settings = fast_settings(
            tmp_path,
            discord_token=TOKEN,
            discord_api_base=api.api_base,
            discord_gateway_url=api.gateway_url,
        )
        async with open_core(settings) as deps:
            client = build_client(settings, deps, guild_ready_timeout=0.05)
            with pytest.raises(discord.ConnectionClosed) as closed:
                async with running(client, ready_timeout_s=10):
                    pass
        assert closed.value.code == 4011
        assert api.closes == [(4011, "Sharding required.")]

        sharded = settings.model_copy(update={"discord_shard_count": 2})
        async with open_core(sharded) as deps:
            client = build_client(sharded, deps, guild_ready_timeout=0.05, identify_spacing_s=0)
            async with running(client, ready_timeout_s=10):
                assert sorted(g.id for g in client.guilds) == sorted(int(g.id) for g in guilds)
                assert sorted(client.shards) == [0, 1]


async def run(tmp_path, api: DiscordStandIn, **env: str) -> asyncio.subprocess.Process:
    """``klingbot run`` serving Discord through the stand-in, as a real process."""
    tmp_path.mkdir(exist_ok=True)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "-v", "run",
        cwd=tmp_path,
        env=environment(
            tmp_path,
            DISCORD_TOKEN=TOKEN,
            DISCORD_API_BASE=api.api_base,
            DISCORD_GATEWAY_URL=api.gateway_url,
            **env,
        ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_two_processes_run_a_shard_each_on_one_database(tmp_path, pg_database, pg_url):
    """``klingbot run`` without shards says sharding is needed; two replicas on PostgreSQL, a
    shard each, serve both servers' members from one set of wallets and sync the commands once."""
    async with DiscordStandIn(TOKEN) as api:
        api.max_guilds_per_shard = 1
        first, second = api.add_guild("Zero", shard=(0, 2)), api.add_guild("One", shard=(1, 2))
        alice, bob = first.add_member("alice"), second.add_member("bob")
        both = f"{first.id},{second.id}"
        unsharded = await run(tmp_path / "alone", api)  # at the same time as the two below
        processes = [
            await run(
                tmp_path / f"shard{n}",
                api,
                KLINGBOT_DATABASE_URL=pg_url,
                KLINGBOT_REPLICA_ID=f"shard{n}",
                DISCORD_GUILD_IDS=both,
                DISCORD_SHARD_COUNT="2",
                DISCORD_SHARD_IDS=str(n),
            )
            for n in (0, 1)
        ]
        try:
            _, refused = await asyncio.wait_for(unsharded.communicate(), 60)
            await api.wait_until(lambda: len(api.live) == 2 and api.ready, timeout=60)
            asked = [alice.slash("balance"), bob.slash("balance")]
            for interaction in asked:
                await api.wait_until(lambda i=interaction: i.original is not None, timeout=60)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            logs = [(await asyncio.wait_for(p.communicate(), 60))[1].decode() for p in processes]
        assert unsharded.returncode == 2
        assert "Discord requires sharding for this many servers" in refused.decode()
        assert "DISCORD_SHARD_COUNT" in refused.decode()
        assert [p.returncode for p in processes] == [0, 0], logs
        assert "is up (1 servers, shards 0 of 2)" in logs[0]
        assert "is up (1 servers, shards 1 of 2)" in logs[1]
        assert [i.original.content for i in asked] == ["Your balance: 0 credits (¥0.00)."] * 2
        syncs = [s.guild_id for s in api.command_syncs if s.guild_id is not None]
        assert sorted(syncs) == sorted((first.id, second.id))  # once each, by shard 0's replica
        wallets = await pg_database.fetch("SELECT user_id FROM wallets ORDER BY user_id")
        assert [w["user_id"] for w in wallets] == sorted((alice.id, bob.id))  # one set of wallets
