"""Telegram's webhook delivery through the balancer: what several replicas stand behind.

The Bot API stand-in posts each update to the webhook the bot set, with the
secret header, and posts it again while nobody answers; the balancer sends
each post to the next replica and past one that does not answer. Here one
production application (the one ``klingbot run`` builds) stands behind the
balancer, beside an address where nothing listens.
"""

from __future__ import annotations

import socket

import pytest
import telegram.error

from tests.adapters.conftest import telegram_bot
from tests.replicas.balancer import Balancer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

PRICE_FIRST_LINE = "Kling 2.1 prices for a 5 s clip (10 credits = ¥1):"


def dead_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_updates_reach_the_bot_past_a_replica_that_does_not_answer(tmp_path, api):
    async with (
        Balancer() as balancer,
        telegram_bot(
            tmp_path,
            api,
            telegram_webhook_url=balancer.url("/hook"),
            telegram_webhook_listen="127.0.0.1:0",
        ) as bot,
    ):
        live, dead = f"127.0.0.1:{bot.adapter.webhook.port}", dead_address()
        balancer.backends = [dead, live]
        alice, bob = bot.member(1001, "Alice"), bot.member(1002, "Bob")
        alice.send("/price")
        first = await api.wait_for("sendMessage", chat_id=1001)
        bob.send("/price")
        second = await api.wait_for("sendMessage", chat_id=1002)
        info = await bot.application.bot.get_webhook_info()
        with pytest.raises(telegram.error.Conflict):  # no polling while the webhook is set
            await bot.application.bot.get_updates()
        await bot.idle()

    assert first.params["text"].startswith(PRICE_FIRST_LINE)
    assert second.params["text"].startswith(PRICE_FIRST_LINE)
    # The first post went to the dead address first, then on; the second straight on.
    assert balancer.unanswered == {dead: 1} and balancer.forwarded == {live: 2}
    assert [d.status for d in api.deliveries] == [200, 200]
    assert (info.url, info.pending_update_count) == (balancer.url("/hook"), 0)
    assert info.last_error_message is None


async def test_telegram_posts_again_until_a_replica_answers(tmp_path, api):
    async with (
        Balancer() as balancer,
        telegram_bot(
            tmp_path,
            api,
            telegram_webhook_url=balancer.url("/hook"),
            telegram_webhook_listen="127.0.0.1:0",
        ) as bot,
    ):
        bot.member(1001, "Alice").send("/price")  # every replica is down
        await api.delivery(lambda d: d.status == 502)
        down = await bot.application.bot.get_webhook_info()
        assert not api.of("sendMessage")

        balancer.backends = [f"127.0.0.1:{bot.adapter.webhook.port}"]  # one is back
        reply = await api.wait_for("sendMessage", chat_id=1001)
        taken = await api.delivery()
        up = await bot.application.bot.get_webhook_info()
        await bot.idle()

    assert down.pending_update_count == 1
    assert down.last_error_message == "Wrong response from the webhook: 502"
    assert reply.params["text"].startswith(PRICE_FIRST_LINE)
    assert up.pending_update_count == 0
    assert balancer.refused >= 1 and taken.update_id == 1
    assert len(api.of("sendMessage")) == 1  # taken once, answered once
    assert all(d.status == 502 for d in api.deliveries if d is not taken)
