"""Fixtures for every test: a clean environment (an operator's settings never leak in), a clip,
the Kling API stand-in (used by the provider tests and behind both chat platforms), and
PostgreSQL databases on the test server (tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.postgres.database import PgDatabase
from tests.providers.kling_standin import KlingStandin
from tests.providers.kling_support import make_clip
from tests.support import postgres
from tests.support.env import scrub
from tests.support.video import tiny_clip as make_tiny_clip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub(monkeypatch)


LOGGERS_SET_BY_THE_APP = ("httpx", "httpcore", "adapters.telegram.flood", "discord.http")
"""What ``app.logs.setup_logging`` and the metrics' rate-limit watcher set a level on."""


@pytest.fixture(autouse=True)
def logger_levels_restored() -> Iterator[None]:
    """Every named logger's level as it was before the test.

    A test that runs the production logging setup (``klingbot`` in-process,
    the metrics) quiets httpx and others at WARNING; left so, a later test on
    the same worker that reads their lines through ``caplog`` would see none
    (which test runs after which depends on how xdist shares them out).
    """
    manager = logging.Logger.manager
    for name in LOGGERS_SET_BY_THE_APP:
        logging.getLogger(name)
    levels = {
        name: logger.level
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }
    yield
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != levels.get(name, logger.level):
            logger.setLevel(levels[name])


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 256x144, 1 s H.264 clip, made once per worker, for providers that fetch a clip."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.mp4")


@pytest.fixture(scope="session")
def standin_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MP4 the Kling stand-in hands out as every task's result."""
    return make_clip(tmp_path_factory.mktemp("kling") / "result.mp4")


@pytest.fixture
async def standin(standin_clip: Path) -> AsyncIterator[KlingStandin]:
    """The Kling API stand-in on 127.0.0.1."""
    service = KlingStandin(standin_clip)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test run and xdist worker, dropped at the end.

    Skipped without a server (failed with KLINGBOT_REQUIRE_POSTGRES=1).
    """
    name = postgres.database_name(worker_id)
    url = postgres.make_database(name)
    yield url
    postgres.remove_database(name)


@pytest.fixture
async def pg_database(pg_url: str) -> AsyncIterator[PgDatabase]:
    """An open, migrated PgDatabase on this run's database, every table emptied first."""
    async with postgres.emptied_database(pg_url) as database:
        yield database


@pytest.fixture
async def pg_replicas(pg_database: PgDatabase, pg_url: str) -> AsyncIterator[list[PgDatabase]]:
    """Three open PgDatabases on this run's emptied database, each its own pool, as replicas.

    The first is ``pg_database``; the others have small pools (the server's slots are shared).
    """
    others = [PgDatabase(pg_url, min_size=3, max_size=3) for _ in range(2)]
    await asyncio.gather(*(database.open() for database in others))
    try:
        yield [pg_database, *others]
    finally:
        await asyncio.gather(*(database.close() for database in others))


@pytest.fixture(scope="session")
def _pg_empty_database(worker_id: str) -> Iterator[str]:
    name = postgres.database_name(worker_id) + "_empty"
    url = postgres.make_database(name)
    yield url
    postgres.remove_database(name)


@pytest.fixture
async def pg_empty_url(_pg_empty_database: str) -> str:
    """A second database of this run with nothing in it (no tables, no schema version)."""
    await postgres.reset_schema(_pg_empty_database)
    return _pg_empty_database
