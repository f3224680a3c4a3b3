"""Telegram paths the main flows do not reach: flood limits outside a chat and past the
retries, a status edit overtaken while it waits, webhook posts that are not updates or
carry an operator's own secret, and admin rights that expire from the cache.

Real PTB against the Bot API stand-in, on a virtual clock; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from adapters.console.chat import sample_image
from bot.commands import ChatRef
from bot.replies import Reply, text
from tests.adapters.conftest import GROUP, TOKEN, telegram_bot
from tests.support.clock import GatedTime

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PRICE_FIRST_LINE = "Kling 2.1 prices for a 5 s clip (10 credits = ¥1):"


def line(n: int) -> Reply:
    return Reply((text("status.bar", bar=f"update {n}"),))


async def test_a_429_outside_any_chat_holds_the_whole_bot_then_retries_the_same_call(telegram):
    api = telegram.api
    api.fail_next("getFile", retry_after=5)
    alice = telegram.member(1001, "Alice", "alice")
    alice.send("/gen a robot waves", photo=sample_image())

    quote = await api.wait_for("sendMessage", chat_id=1001)

    refused, retried = api.of("getFile")
    assert (refused.status, retried.status) == (429, 200)
    assert refused.params["file_id"] == retried.params["file_id"]  # the same request again
    assert telegram.adapter.flood.waits == [("getFile", 5.0)]
    assert 5.0 in telegram.time.sleeps
    assert quote.index > retried.index and quote.params["text"].startswith("🎬 Quote")


async def test_when_retries_run_out_the_member_gets_an_apology_and_nothing_is_sent_twice(
    telegram, caplog
):
    api = telegram.api
    for _ in range(6):  # the first try and all five retries
        api.fail_next(
            "sendMessage", retry_after=3, where=lambda p: p["text"].startswith("Kling 2.1")
        )
    with caplog.at_level(logging.WARNING):
        telegram.member(1001, "Alice", "alice").send("/price")
        apology = await api.wait_for(
            "sendMessage", chat_id=1001, where=lambda c: c.status == 200
        )
        await telegram.idle()

    assert apology.params["text"] == (
        "Sorry, something went wrong on my side. Nothing was charged; please try again."
    )
    tries = api.of("sendMessage", chat_id=1001, where=None)
    assert [c.status for c in tries] == [429] * 6 + [200]
    assert telegram.adapter.flood.waits == [("sendMessage", 3.0)] * 5
    assert "RetryAfter" in caplog.text


async def test_a_status_edit_overtaken_while_it_waits_is_dropped_for_the_newest(tmp_path, api):
    clock = GatedTime(monotonic_start=1_000.0)
    async with telegram_bot(tmp_path, api, clock=clock) as telegram:
        outbox, chat = telegram.adapter.outbox, ChatRef("telegram", "1001")
        api.add_chat(1001)  # Alice has started the bot
        message_id = await outbox.send(chat, line(0), "en")
        api.fail_next("editMessageText", retry_after=4)
        await outbox.edit(chat, message_id, line(1), "en")
        await api.wait_for("editMessageText", where=lambda c: c.status == 429)
        for n in (2, 3, 4):  # newer statuses arrive while the first edit waits out its 429
            await outbox.edit(chat, message_id, line(n), "en")
        clock.gate.set()
        await outbox.drain()
        await telegram.idle()

    edits = api.of("editMessageText", message_id=int(message_id))
    assert [(c.params["text"], c.status) for c in edits] == [("update 1", 429), ("update 4", 200)]
    assert telegram.adapter.flood.waits == [("editMessageText", 4.0)]


async def test_webhook_posts_that_are_not_updates_are_refused(tmp_path, api, caplog):
    async with telegram_bot(
        tmp_path,
        api,
        telegram_webhook_url="https://bot.example.com/hook",
        telegram_webhook_listen="127.0.0.1:0",
        telegram_webhook_secret="operator-chosen_secret-42",
    ) as telegram:
        [webhook] = api.of("setWebhook")
        assert webhook.params["secret_token"] == "operator-chosen_secret-42"
        endpoint = f"http://127.0.0.1:{telegram.adapter.webhook.port}/hook"
        good = {SECRET_HEADER: "operator-chosen_secret-42"}
        update = {"update_id": 1, "message": telegram.member(1001, "Alice").message("/price")}
        async with aiohttp.ClientSession() as session:
            derived = await session.post(
                endpoint, json=update, headers={SECRET_HEADER: "0" * 64}
            )
            missing = await session.post(endpoint, json=update)
            with caplog.at_level(logging.WARNING):
                not_json = await session.post(endpoint, data=b"{not json", headers=good)
                no_update = await session.post(endpoint, json=["a", "list"], headers=good)
            too_big = await session.post(endpoint, data=b"x" * (2 * 1024 * 1024), headers=good)
            posted = await session.post(endpoint, json=update, headers=good)
            statuses = [r.status for r in (derived, missing, not_json, no_update, too_big, posted)]
        reply = await api.wait_for("sendMessage", chat_id=1001)
        await telegram.idle()

    assert statuses == [403, 403, 400, 400, 413, 200]
    assert "webhook post that is not an update" in caplog.text
    assert reply.params["text"].startswith(PRICE_FIRST_LINE)
    assert len(api.of("sendMessage")) == 1  # only the real update was answered
    assert TOKEN not in caplog.text


async def test_a_demoted_admin_loses_the_right_when_the_cache_expires(telegram):
    api = telegram.api
    api.members[(GROUP, 3001)] = "administrator"
    ada = telegram.member(3001, "Ada", "ada")
    since = len(api.calls)
    ada.send("/topup me 5")
    done = await api.wait_for("sendMessage", since=since, chat_id=3001)
    assert done.params["text"].endswith("New balance: 5 credits (¥0.50).")

    api.members[(GROUP, 3001)] = "member"  # demoted; the bot still remembers her as admin
    telegram.time.advance(59)
    ada.send("/topup me 5")
    cached = await api.wait_for("sendMessage", since=since, chat_id=3001, count=2)
    assert cached.params["text"].endswith("New balance: 10 credits (¥1.00).")
    assert len(api.of("getChatMember", since=since, user_id=3001)) == 1

    telegram.time.advance(2)  # 61 s after the lookup: the answer has expired
    ada.send("/topup me 5")
    refused = await api.wait_for("sendMessage", since=since, chat_id=3001, count=3)
    await telegram.idle()
    assert refused.params["text"] == "Only moderators can do that."
    assert len(api.of("getChatMember", since=since, user_id=3001)) == 2
    assert await telegram.balance(3001) == 10
    await asyncio.wait_for(telegram.settle(), 10)
