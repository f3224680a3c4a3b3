"""Telegram with several replicas: one polls at a time and another takes over; webhooks reach all.

Real python-telegram-bot against the Bot API stand-in, which ends a waiting
``getUpdates`` with 409 Conflict when another one comes, as Telegram does
when two instances poll. The polling role is held on the real PostgreSQL
test server (each replica its own :class:`AdvisoryRoles`, lease scaled to
3 s); each replica keeps its own SQLite core, which is all the polling
needs here (a shared database is the multi-replica tests' matter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
import pytest

from app.metrics import PrometheusMetrics
from app.serve import Served, watch_telegram
from bot.commands import ChatRef
from bot.replies import Reply, text
from bot.roles import TELEGRAM_POLLING
from storage.postgres.locks import AdvisoryRoles
from tests.adapters.conftest import telegram_bot
from tests.adapters.standin import POLL_CONFLICT
from tests.ops.test_metrics import samples
from tests.replicas.balancer import Balancer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

LEASE_S = 3.0
PRICE_FIRST_LINE = "Kling 2.1 prices for a 5 s clip (10 credits = ¥1):"


async def price(member, api) -> str:
    """The member asks /price; the text of the answer."""
    since = len(api.calls)
    member.send("/price")
    reply = await api.wait_for("sendMessage", since=since, chat_id=member.id)
    return reply.params["text"]


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


async def test_one_replica_polls_and_a_standby_takes_over_when_it_loses_the_role(
    tmp_path, api, pg_url, caplog
):
    caplog.set_level(logging.INFO, "adapters.telegram.app")
    roles = {name: AdvisoryRoles(pg_url, lease_s=LEASE_S, label=f"replica-{name}") for name in "ab"}
    async with AsyncExitStack() as stack:
        replicas = {}
        for name, role_set in roles.items():
            stack.push_async_callback(role_set.close)
            replicas[name] = await stack.enter_async_context(
                telegram_bot(
                    tmp_path / name,
                    api,
                    rewire=lambda deps, r=role_set: dataclasses.replace(deps, roles=r),
                )
            )
        a, b = replicas["a"].adapter, replicas["b"].adapter
        assert a.polling.is_set() and b.not_polling.is_set()
        assert "is up (standby: another replica polls)" in caplog.text
        served = {name: Served() for name in "ab"}
        for name, bot in replicas.items():
            watch_telegram(bot.application, served[name])
        assert await served["b"].checks["telegram"]() is None  # a standby is healthy
        gauges = {name: PrometheusMetrics(bot.deps.catalog) for name, bot in replicas.items()}
        for name, metrics in gauges.items():
            metrics.watch_roles(roles[name])

        def held(name: str) -> float | None:
            """What replica ``name``'s /metrics says of the polling role."""
            return samples(gauges[name].exposition().decode()).get(
                ("klingbot_role_held", (("role", TELEGRAM_POLLING),))
            )

        assert (held("a"), held("b")) == (1, 0)
        alice = replicas["a"].member(1001, "Alice")
        assert (await price(alice, api)).startswith(PRICE_FIRST_LINE)
        # The standby sends through the Bot API all the same (a job it owns reports so).
        since = len(api.calls)
        reply = Reply((text("balance.own", money=replicas["b"].deps.money(5)),))
        await b.outbox.send(ChatRef("telegram", "1001"), reply, "en")
        sent = await api.wait_for("sendMessage", since=since, chat_id=1001)
        assert sent.params["text"] == "Your balance: 5 credits (¥0.50)."

        # Replica a's session ends: it stops polling at once, b polls within the lease.
        lost = time.monotonic()
        await kill_sessions(pg_url, f"replica-a: role:{TELEGRAM_POLLING}")
        await within(a.not_polling, LEASE_S)
        await within(b.polling, LEASE_S)
        took = time.monotonic() - lost
        assert (await price(alice, api)).startswith(PRICE_FIRST_LINE)
        answered = time.monotonic() - lost
        print(f"polling taken over after {took:.2f} s; first answer {answered:.2f} s after")
        assert not a.polling.is_set()  # a stands by now
        assert await served["a"].checks["telegram"]() is None
        assert (held("a"), held("b")) == (0, 1)

        # Replica b's roles go (as its death closes its connections): a polls again.
        await roles["b"].close()
        await within(b.not_polling, LEASE_S)
        await within(a.polling, LEASE_S)
        assert (await price(alice, api)).startswith(PRICE_FIRST_LINE)
        await replicas["a"].idle()

    assert len(api.of("sendMessage", chat_id=1001)) == 4  # each /price answered once, + b's
    # No replica's poll was ever ended by another's: PTB would have said so (a Conflict).
    # (The stand-in does end the long poll a stopping replica leaves behind, unanswered.)
    assert "polling Telegram failed" not in caplog.text
    assert "Conflict" not in caplog.text


async def test_a_second_poller_ends_the_first_with_a_conflict(api):
    """The stand-in does what Telegram does to two bot instances polling at once."""
    url = f"{api.base_url}{api.token}/getUpdates"
    async with aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(session.post(url, json={"timeout": 30}))
        await api.polled(1)  # the first one waits at the stand-in
        second = await session.post(url, json={"timeout": 0})
        ended = await asyncio.wait_for(first, 5)
        assert (ended.status, (await ended.json())["description"]) == (409, POLL_CONFLICT)
        assert second.status == 200


async def test_webhook_replicas_set_one_webhook_and_one_stopping_leaves_it_to_the_others(
    tmp_path, api
):
    async with Balancer() as balancer, AsyncExitStack() as outer:
        b = await outer.enter_async_context(
            telegram_bot(
                tmp_path / "b",
                api,
                telegram_webhook_url=balancer.url("/hook"),
                telegram_webhook_listen="127.0.0.1:0",
            )
        )
        async with telegram_bot(
            tmp_path / "a",
            api,
            telegram_webhook_url=balancer.url("/hook"),
            telegram_webhook_listen="127.0.0.1:0",
        ) as a:
            ports = [a.adapter.webhook.port, b.adapter.webhook.port]
            balancer.backends = [f"127.0.0.1:{port}" for port in ports]
            first, second = api.of("setWebhook")
            assert first.params == second.params  # the very same webhook, set twice: harmless
            assert first.status == second.status == 200
            alice, bob = a.member(1001, "Alice"), a.member(1002, "Bob")
            assert (await price(alice, api)).startswith(PRICE_FIRST_LINE)
            assert (await price(bob, api)).startswith(PRICE_FIRST_LINE)
            assert set(balancer.forwarded) == set(balancer.backends)  # both took updates
            await a.idle()
            stopping = len(api.calls)
        # Replica a stopped (a deploy, a scale-down): the webhook stays set for b.
        assert not api.of("deleteWebhook", since=stopping)
        assert not api.of("setWebhook", since=stopping)
        info = await b.application.bot.get_webhook_info()
        assert info.url == balancer.url("/hook")
        for _ in range(2):  # the balancer tries a first, finds nobody, and goes on to b
            assert (await price(alice, api)).startswith(PRICE_FIRST_LINE)
        await b.idle()
    assert len(api.of("sendMessage", chat_id=1001)) == 3
    assert all(delivery.ok for delivery in api.deliveries)  # no update waited for a retry
