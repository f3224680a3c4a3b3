"""KLINGBOT_DATABASE_POOL: how many PostgreSQL connections a replica's storage opens at most."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from app.backend import open_storage
from bot.settings import ConfigError, load_settings


async def test_the_pool_opens_at_most_the_configured_connections(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("KLINGBOT_DATABASE_URL", pg_url)
    monkeypatch.setenv("KLINGBOT_DATABASE_POOL", "3")
    monkeypatch.setenv("KLINGBOT_DATA_DIR", str(tmp_path))
    async with open_storage(load_settings()) as storage:
        pool = storage.database.pool
        async with AsyncExitStack() as held:
            pids = set()
            for _ in range(3):
                connection = await held.enter_async_context(pool.acquire())
                pids.add(await connection.fetchval("SELECT pg_backend_pid()"))
            assert len(pids) == 3
            with pytest.raises(asyncio.TimeoutError):  # a fourth waits for one of the three
                await pool.acquire(timeout=0.3)


def test_a_pool_too_small_for_a_replica_is_refused(monkeypatch):
    monkeypatch.setenv("KLINGBOT_DATABASE_POOL", "1")
    with pytest.raises(ConfigError, match="database_pool"):
        load_settings()
