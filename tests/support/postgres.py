"""PostgreSQL for tests: one fresh database per test run and xdist worker, on a real server.

The server comes from ``KLINGBOT_TEST_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), read when this module is
imported, before the autouse fixture scrubs every ``KLINGBOT_*`` variable.
A run creates its own database there (``kbt_<host>_<pid>_<worker>``), and
drops it at the end; databases a killed run of this host left behind are
dropped when the next run starts.

No server: the tests that need one are skipped with the reason, unless
``KLINGBOT_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it), which fails them.

Fixtures (wired in ``tests/conftest.py``):

- ``pg_url``: the URL of this run's database (session). ``pg_database``
  migrates it the first time it opens.
- ``pg_database``: an open, migrated :class:`PgDatabase` on it, every table
  emptied before the test (the ledger's append-only trigger is bypassed for
  that one transaction, by the test user; klingbot's own code cannot do so).
- ``pg_empty_url``: a second database of this run, with nothing in it (no
  tables, no schema version) at the start of each test that asks: for tests
  of migrations and of copying into an empty database.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from storage.postgres.database import PgDatabase

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
SERVER_URL = os.environ.get("KLINGBOT_TEST_DATABASE_URL") or DEFAULT_SERVER_URL
"""The server (and a database on it to connect to) where test databases are made."""
REQUIRED = os.environ.get("KLINGBOT_REQUIRE_POSTGRES", "") not in ("", "0")
"""True in CI: a missing server fails the PostgreSQL tests instead of skipping them."""

POOL_SIZE = 4
"""Connections per test pool: the server's slots are shared by every worker of every run."""

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
PREFIX = f"kbt_{_HOST}_"


def database_url(name: str, server_url: str = SERVER_URL) -> str:
    """``server_url`` with its database replaced by ``name``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_name(worker: str) -> str:
    """This run's database for an xdist worker (``master`` without xdist)."""
    return f"{PREFIX}{os.getpid()}_{worker}"


def unavailable(reason: str) -> None:
    """Skip the test for lack of a server, or fail it when CI requires PostgreSQL."""
    text = f"PostgreSQL test server unavailable ({reason}); set KLINGBOT_TEST_DATABASE_URL"
    if REQUIRED:
        pytest.fail(f"{text} (KLINGBOT_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(text)


async def _server() -> asyncpg.Connection:
    return await asyncpg.connect(SERVER_URL, timeout=5)


async def create_database(name: str) -> None:
    """Create database ``name`` (dropping one of that name first), and drop stale ones."""
    connection = await _server()
    try:
        await _drop_stale(connection)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        # Tests never crash the server, so waiting for each commit's WAL flush buys them
        # nothing; the benchmark measures durable commits on a database of its own.
        await connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    """Drop database ``name``, closing any connection still on it."""
    connection = await _server()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _drop_stale(connection: asyncpg.Connection) -> None:
    """Drop the databases that runs on this host left behind when they were killed."""
    rows = await connection.fetch(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", PREFIX
    )
    for row in rows:
        pid = row["datname"].removeprefix(PREFIX).split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            # Another worker starting now, or a run's dropper, may be dropping it too.
            with suppress(asyncpg.PostgresError):
                await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to the end on a loop of its own thread (a test's loop may be running)."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, coroutine).result()


def make_database(name: str) -> str:
    """Create database ``name`` for this run and return its URL; skip (or fail) without a server."""
    try:
        _run(create_database(name))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        unavailable(f"{SERVER_URL.split('@')[-1]}: {error}")
    return database_url(name)


_DROP_LATER = """
import asyncio, sys
import asyncpg

async def drop(server_url, name):
    connection = await asyncpg.connect(server_url, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()

asyncio.run(drop(sys.argv[1], sys.argv[2]))
"""


def remove_database(name: str) -> None:
    """Drop database ``name`` at the end of the run, in a process of its own.

    DROP DATABASE takes from half a second to several on a busy machine
    (it waits for the server to forget the files), and nothing needs to wait
    for it: the run ends at once. Should the drop fail, the next run on
    this host drops the database (:func:`create_database`).
    """
    subprocess.Popen(
        [sys.executable, "-c", _DROP_LATER, SERVER_URL, name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def empty_tables(connection: asyncpg.Connection) -> None:
    """Empty every table but ``schema_migrations``, in one transaction.

    A superuser (the test server's ``postgres`` and ``root``) deletes every
    row with triggers off for this transaction only (``session_replication_role``):
    the ledger's append-only trigger and the foreign keys stay out of the way,
    and on tables this small that takes well under a millisecond. Another
    owner truncates instead (about 0.2 s: each table gets a new file), with
    the ledger's trigger disabled inside the transaction.
    """
    async with connection.transaction():
        await connection.execute("SET LOCAL lock_timeout = '10s'")
        tables = await connection.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        names = [row["name"] for row in tables]
        if not names:
            return
        if await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("; ".join(f"DELETE FROM {name}" for name in names))
            return
        ledger = await connection.fetchval("SELECT to_regclass('ledger') IS NOT NULL")
        if ledger:
            await connection.execute("ALTER TABLE ledger DISABLE TRIGGER USER")
        await connection.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
        if ledger:
            await connection.execute("ALTER TABLE ledger ENABLE TRIGGER USER")


@asynccontextmanager
async def emptied_database(url: str) -> AsyncIterator[PgDatabase]:
    """An open, migrated PgDatabase at ``url`` with every table emptied (``pg_database``).

    For async fixtures, which cannot ask pytest for the async ``pg_database``:
    ``async with emptied_database(request.getfixturevalue("pg_url")) as db``.
    """
    async with PgDatabase(url, min_size=POOL_SIZE, max_size=POOL_SIZE) as database:
        async with database.connection() as connection:
            await empty_tables(connection)
        yield database


async def reset_schema(url: str) -> None:
    """Leave the database at ``url`` with nothing in it: no tables, functions or version."""
    connection = await asyncpg.connect(url, timeout=5)
    try:
        # As a new database has it: owned by the database's owner, usable by everyone.
        await connection.execute(
            "DROP SCHEMA IF EXISTS public CASCADE;"
            " CREATE SCHEMA public AUTHORIZATION pg_database_owner;"
            " GRANT USAGE ON SCHEMA public TO PUBLIC"
        )
    finally:
        await connection.close()
