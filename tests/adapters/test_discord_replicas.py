"""Discord without shard settings and several replicas: one holds the gateway, any sends.

Two production clients (``build_client`` + ``running``, as ``klingbot run``
makes them), each with its own core, against the Discord stand-in; the
role ``discord-gateway`` is held on the real PostgreSQL test server (each
replica its own :class:`AdvisoryRoles`, lease scaled to 3 s). The standby
never opens a gateway session, yet posts and edits through REST; when the
holder's session ends it leaves the gateway, and the standby connects
within the lease and answers the members.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from contextlib import AsyncExitStack

import asyncpg

from adapters.discord.chats import chat_ref
from app.serve import Served, watch_discord
from bot.replies import Reply, text
from bot.roles import DISCORD_GATEWAY
from storage.postgres.locks import AdvisoryRoles
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import DiscordStandIn

LEASE_S = 3.0


async def within(event: asyncio.Event, seconds: float) -> None:
    await asyncio.wait_for(event.wait(), seconds)


async def kill_sessions(url: str, application_name: str) -> None:
    """pg_terminate_backend: the replica's session ends, as when its process dies."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()


def connected(api: DiscordStandIn) -> int:
    """Gateway sessions the stand-in is sending events to."""
    return sum(1 for session in api.live.values() if session.connection is not None)


async def test_one_replica_holds_the_gateway_and_a_standby_takes_it_over(tmp_path, pg_url, caplog):
    caplog.set_level(logging.INFO, "adapters.discord.client")
    roles = {name: AdvisoryRoles(pg_url, lease_s=LEASE_S, label=f"replica-{name}") for name in "ab"}
    async with DiscordStandIn(TOKEN) as api, AsyncExitStack() as stack:
        guild = api.add_guild("Creators", channels=("general",), premium_tier=2)  # 50 MB uploads
        alice = guild.add_member("alice")
        pack = api.add_sku("100 credits")
        replicas = {}
        for name, role_set in roles.items():
            stack.push_async_callback(role_set.close)
            replicas[name] = await stack.enter_async_context(
                discord_bot(
                    tmp_path / name,
                    api,
                    guild,
                    rewire=lambda deps, r=role_set: dataclasses.replace(deps, roles=r),
                    discord_sku_credits=f"{pack}:100",
                )
            )
        a, b = replicas["a"], replicas["b"]
        assert a.adapter.gateway_up.is_set() and b.adapter.gateway_down.is_set()
        assert len(api.connections) == 1 and connected(api) == 1  # the standby never connected
        assert "is up (standby: another replica holds the gateway)" in caplog.text
        served = Served()
        watch_discord(b.adapter.outbox.client, served)
        assert await served.checks["discord"]() is None  # a standby is healthy

        answer = await a.answered(alice.slash("price"))
        assert answer.content.startswith("Kling 2.1 prices for a 5 s clip")

        # The standby sends and edits through REST, as a job's owner does.
        channel = guild.text_channels[0]
        chat = chat_ref(int(guild.id), int(channel.id), int(alice.id))
        balance = lambda credits: Reply((text("balance.own", money=b.deps.money(credits)),))  # noqa: E731
        sent = await b.adapter.outbox.send(chat, balance(5), "en")
        await b.adapter.outbox.edit(chat, sent, balance(7), "en")
        await b.adapter.outbox.drain()
        [posted] = [m for m in api.messages_in(channel) if m.via == "channel"]
        assert posted.content == "Your balance: 7 credits (¥0.70)."
        # Without the gateway's server cache, the standby asked REST for the server's limit:
        # a 20 MB clip is uploaded from it as from the holder, not sent as a link.
        assert b.adapter.outbox.client.get_guild(int(guild.id)) is None
        assert b.adapter.outbox.fits(chat, 20 * 1024 * 1024)
        assert a.adapter.outbox.fits(chat, 20 * 1024 * 1024)
        assert not b.adapter.outbox.fits(chat, 60 * 1024 * 1024)

        # A payment whose ENTITLEMENT_CREATE nobody hears (sent while no replica listens).
        await a.adapter.purchases.scanned()
        await b.adapter.purchases.scanned()
        unheard = alice.buy(pack, dispatch=False)

        # Replica a's session ends: it leaves the gateway, b connects within the lease.
        lost = time.monotonic()
        await kill_sessions(pg_url, f"replica-a: role:{DISCORD_GATEWAY}")
        await within(a.adapter.gateway_down, LEASE_S)
        await within(b.adapter.gateway_up, LEASE_S)
        took = time.monotonic() - lost
        await api.wait_until(lambda: connected(api) == 1)
        answer = await b.answered(alice.slash("price"))
        assert answer.content.startswith("Kling 2.1 prices for a 5 s clip")
        answered = time.monotonic() - lost
        print(f"gateway taken over after {took:.2f} s; first answer {answered:.2f} s after")
        assert len(api.connections) == 2  # a's session, then b's: never two at once
        assert not a.adapter.gateway_up.is_set()
        assert not a.adapter.connection.done()  # leaving the role is not Discord giving up
        await b.adapter.purchases.scanned()  # taking the gateway over, b lists what it missed
        assert unheard.consumed and await b.balance(alice) == 100
