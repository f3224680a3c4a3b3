"""The ChatPace port's contract (bot/pacing.py), on SQLite, PostgreSQL and in memory.

Each backend is opened twice on one database, as two replicas would: what
one reserves the other sees, and reservations made at once from both never
share a slot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from bot.pacing import TELEGRAM_GROUP, ChatPace, MemoryChatPace, PaceRule
from storage.database import Database
from storage.pace import SqliteChatPace
from storage.postgres.pace import PgChatPace
from tests.contracts.conftest import BACKENDS
from tests.support.postgres import emptied_database

NOW = 1_764_000_000.0
TWO_A_SECOND = PaceRule(interval_s=0.5, burst=3)


@pytest.fixture(params=BACKENDS)
async def replicas(request, tmp_path) -> AsyncIterator[tuple[ChatPace, ChatPace]]:
    """Two handles on one backend's chat pacing, as two replicas have."""
    if request.param == "memory":
        shared = MemoryChatPace()
        yield shared, shared
        return
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        async with emptied_database(url) as first, emptied_database(url) as second:
            yield PgChatPace(first), PgChatPace(second)
        return
    async with Database(tmp_path / "pace.db") as first, Database(tmp_path / "pace.db") as second:
        yield SqliteChatPace(first), SqliteChatPace(second)


async def test_a_burst_goes_at_once_then_one_slot_per_interval(replicas):
    pace, _ = replicas
    waits = [await pace.reserve("telegram:1", TWO_A_SECOND, NOW) for _ in range(6)]
    assert waits == [0, 0, 0, 0.5, 1.0, 1.5]


async def test_chats_do_not_wait_for_each_other(replicas):
    pace, _ = replicas
    for _ in range(5):
        await pace.reserve("telegram:-100", TWO_A_SECOND, NOW)
    assert await pace.reserve("telegram:-200", TWO_A_SECOND, NOW) == 0
    assert await pace.reserve("discord:-100", TWO_A_SECOND, NOW) == 0  # keys are exact


async def test_a_quiet_chat_gets_its_burst_back(replicas):
    pace, _ = replicas
    for _ in range(5):
        await pace.reserve("discord:7", TWO_A_SECOND, NOW)  # slots up to NOW + 1.0
    assert await pace.reserve("discord:7", TWO_A_SECOND, NOW + 0.75) == pytest.approx(0.75)
    later = NOW + 10
    assert [await pace.reserve("discord:7", TWO_A_SECOND, later) for _ in range(4)] == [
        0,
        0,
        0,
        0.5,
    ]


async def test_what_one_replica_reserved_the_other_waits_for(replicas):
    first, second = replicas
    assert [await first.reserve("telegram:1", TWO_A_SECOND, NOW) for _ in range(3)] == [0] * 3
    assert await second.reserve("telegram:1", TWO_A_SECOND, NOW) == 0.5
    assert await first.reserve("telegram:1", TWO_A_SECOND, NOW + 0.25) == pytest.approx(0.75)


async def test_replicas_reserving_at_once_never_share_a_slot_nor_overfill_a_minute(replicas):
    first, second = replicas
    rng = random.Random(17)
    moments = sorted(NOW + rng.uniform(0, 120) for _ in range(40))

    async def send(pace: ChatPace, at: float) -> float:
        return at + await pace.reserve("telegram:-5", TELEGRAM_GROUP, at)

    slots: list[float] = []
    for at in moments:  # each moment, both replicas ask at once (real concurrency on PostgreSQL)
        slots += await asyncio.gather(send(first, at), send(second, at))
    one_by_one = MemoryChatPace()  # the same requests, one after the other
    expected = [await send(one_by_one, at) for at in moments for _ in range(2)]
    assert sorted(slots) == pytest.approx(sorted(expected))  # a lost update would differ
    most = max(sum(1 for s in slots if start <= s < start + 60) for start in slots)
    assert most == TELEGRAM_GROUP.most_in(60) == 19  # the stream is dense enough to hit it


async def test_forgetting_idle_chats_changes_no_slot(replicas):
    first, second = replicas
    for _ in range(5):
        await first.reserve("telegram:idle", TWO_A_SECOND, NOW)  # next slot at NOW + 1.0
        await first.reserve("telegram:busy", TWO_A_SECOND, NOW + 3600)
    assert await second.forget(NOW + 1000) == 1  # only the idle chat
    assert await second.forget(NOW + 1000) == 0
    assert await first.reserve("telegram:busy", TWO_A_SECOND, NOW + 3600) == 1.5
    assert [await first.reserve("telegram:idle", TWO_A_SECOND, NOW + 2000) for _ in range(4)] == [
        0,
        0,
        0,
        0.5,
    ]  # as a chat never seen, which is what an idle one is anyway
