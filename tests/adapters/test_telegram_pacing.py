"""Two replicas sending job messages to one Telegram group stay inside its 20 a minute together.

Each replica is the production application (``build_application``) with its
own core and its own flood control; they share only the chat pacing
(``bot.pacing``), in one SQLite file or on the PostgreSQL test
server. The stand-in answers a 21st message in a group within a minute with
429 and ``retry_after``, as Telegram does, counting on the same clock the
replicas wait on (real time run 100 times faster: both replicas wait at
once). Without the shared pacing the same two replicas draw 429s: each
keeps only its own 20 a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from adapters.telegram import build_application
from adapters.telegram.app import adapter_of
from app.bootstrap import open_core
from bot.commands import ChatRef
from bot.pacing import ChatPace, MemoryChatPace
from bot.replies import Reply, text
from storage.database import Database
from storage.pace import SqliteChatPace
from storage.postgres.pace import PgChatPace
from tests.adapters.conftest import TOKEN, telegram_bot
from tests.adapters.standin import BotApiStandIn
from tests.e2e.conftest import fast_settings
from tests.support.clock import ScaledTime
from tests.support.postgres import emptied_database

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

GROUP = -1_005_550_001
EACH = 12
"""Job messages each replica sends: 24 together, more than the group's minute."""
SCALE = 100
"""Time runs 100 times faster: the 76 s the shared pacing spreads them over take 0.8 s."""


def status(n: int) -> Reply:
    return Reply((text("status.bar", bar=f"job {n}"),))


@asynccontextmanager
async def shared_pace(kind: str, request, tmp_path) -> AsyncIterator[ChatPace | None]:
    if kind == "sqlite":
        async with Database(tmp_path / "pace.db") as database:
            yield SqliteChatPace(database)
    else:
        async with emptied_database(request.getfixturevalue("pg_url")) as database:
            yield PgChatPace(database)


async def send_from_two_replicas(tmp_path, pace: ChatPace | None) -> BotApiStandIn:
    """Each replica sends ``EACH`` statuses to the group and edits the first; all at once."""
    clock = ScaledTime(SCALE, monotonic_start=1_000.0)
    async with BotApiStandIn(TOKEN) as api, AsyncExitStack() as stack:
        api.add_chat(GROUP)
        api.flood_clock = clock.monotonic
        outboxes = []
        for name in ("a", "b"):
            settings = fast_settings(
                tmp_path / name, telegram_token=TOKEN, telegram_base_url=api.base_url
            )
            deps = await stack.enter_async_context(open_core(settings))
            deps = dataclasses.replace(deps, pace=pace)
            application = build_application(settings, deps, timing=clock.timing())
            await stack.enter_async_context(application)  # getMe; no polling
            outboxes.append(adapter_of(application).outbox)
        chat = ChatRef("telegram", str(GROUP))

        async def replica(outbox, name: str) -> None:
            ids = await asyncio.gather(*(outbox.send(chat, status(n), "en") for n in range(EACH)))
            await outbox.edit(chat, ids[0], Reply((text("status.bar", bar=f"{name} done"),)), "en")
            await outbox.drain(timeout=30)

        await asyncio.gather(*(replica(o, n) for o, n in zip(outboxes, "ab", strict=True)))
        assert len(api.of("sendMessage", chat_id=GROUP)) >= 2 * EACH
        return api


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_replicas_sharing_the_pacing_never_draw_a_429_in_a_group(kind, request, tmp_path):
    async with shared_pace(kind, request, tmp_path) as pace:
        api = await send_from_two_replicas(tmp_path, pace)
    assert api.flooded == []
    sent = [c for c in api.calls if c.params.get("chat_id") == GROUP and c.status == 200]
    assert len(sent) == 2 * EACH + 2  # every status once, and both edits
    texts = sorted(m["text"] for (chat, _), m in api.messages.items() if chat == GROUP)
    assert texts == sorted(["a done", "b done"] + [f"job {n}" for n in range(1, EACH)] * 2)


async def test_without_the_shared_pacing_two_replicas_overfill_the_groups_minute(tmp_path):
    api = await send_from_two_replicas(tmp_path, None)
    assert api.flooded, "each replica kept to 20 a minute alone, but not both together"
    assert all(c.params["chat_id"] == GROUP for c in api.flooded)


async def test_command_answers_take_no_shared_turn_and_job_messages_do(tmp_path, api):
    shared = MemoryChatPace()
    rewire = lambda deps: dataclasses.replace(deps, pace=shared)  # noqa: E731
    async with telegram_bot(tmp_path, api, rewire=rewire) as bot:
        alice = bot.member(1001, "Alice", "alice")
        alice.send("/price", chat_id=GROUP)
        await api.wait_for("sendMessage", chat_id=GROUP)
        await bot.idle()
        assert shared.next_at == {}  # /price went without a database round trip
        chat = ChatRef("telegram", str(GROUP))
        await bot.adapter.outbox.send(chat, status(1), "en")
    assert list(shared.next_at) == [f"telegram:{GROUP}"]
