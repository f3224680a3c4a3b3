"""PgDatabase on the real test server: migrations, the schema's guarantees, one-line errors.

Each failure an operator can meet is made for real: nothing listening on the
port, a login the server refuses, a database that does not exist, a schema a
newer klingbot wrote. The URL's password never shows in the message.
"""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg
import pytest

from bot.errors import StorageUnavailable
from storage.postgres.database import PgDatabase, describe
from storage.postgres.migrate import migration_scripts
from tests.support.postgres import SERVER_URL, database_url

LATEST = migration_scripts()[-1][0]


async def versions(database: PgDatabase) -> list[int]:
    rows = await database.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


async def test_an_empty_database_is_migrated_once_on_open(pg_empty_url):
    async with PgDatabase(pg_empty_url) as database:
        assert database.migrated == [name for _, name, _ in migration_scripts()]
        assert await versions(database) == [v for v, _, _ in migration_scripts()]
    async with PgDatabase(pg_empty_url) as database:
        assert database.migrated == []


async def test_replicas_starting_at_once_apply_each_migration_once(pg_empty_url):
    databases = [PgDatabase(pg_empty_url) for _ in range(4)]
    await asyncio.gather(*(database.open() for database in databases))
    try:
        applied = [name for database in databases for name in database.migrated]
        assert sorted(applied) == sorted(name for _, name, _ in migration_scripts())
        assert await versions(databases[0]) == [v for v, _, _ in migration_scripts()]
    finally:
        await asyncio.gather(*(database.close() for database in databases))


async def test_a_schema_from_a_newer_klingbot_is_refused(pg_empty_url):
    async with PgDatabase(pg_empty_url) as database:
        await database.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')"
        )
    for options in ({}, {"read_only": True}):
        with pytest.raises(StorageUnavailable) as refused:
            await PgDatabase(pg_empty_url, **options).open()
        message = str(refused.value)
        assert message == (  # as SQLite says it
            f"PostgreSQL database {describe(pg_empty_url)} is at schema version 9999, newer than"
            f" this klingbot knows ({LATEST}): it was written by a newer klingbot; run that"
            " version, or restore a backup made by this one"
        )
        assert "\n" not in message and refused.value.__cause__ is None


async def test_reading_only_migrates_nothing_and_writes_nothing(pg_empty_url):
    for options in ({"read_only": True}, {"migrate": False}):
        with pytest.raises(StorageUnavailable, match="has no klingbot schema yet: run klingbot db"):
            await PgDatabase(pg_empty_url, **options).open()
    async with PgDatabase(pg_empty_url) as database:
        assert database.migrated
    async with PgDatabase(pg_empty_url, read_only=True) as database:
        assert await database.fetchval("SELECT count(*) FROM wallets") == 0
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await database.execute("INSERT INTO app_state VALUES ('k', 'v', 0)")


async def test_the_ledger_is_append_only_and_balances_never_negative(pg_database):
    async with pg_database.transaction() as connection:
        await connection.execute(
            "INSERT INTO users (platform, user_id, created_at) VALUES ('t', '1', 0)"
        )
        await connection.execute(
            "INSERT INTO wallets (platform, user_id, balance, created_at) VALUES ('t', '1', 5, 0)"
        )
        await connection.execute(
            "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
            " balance_after, held_after, actor, created_at)"
            " VALUES ('k', 't', '1', 'topup', 5, 0, 5, 0, 'test', 0)"
        )
    for statement in (
        "UPDATE ledger SET amount = 500",
        "DELETE FROM ledger",
        "TRUNCATE ledger CASCADE",
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="the ledger is append-only"):
            await pg_database.execute(statement)
    with pytest.raises(asyncpg.CheckViolationError):
        await pg_database.execute("UPDATE wallets SET balance = balance - 6")
    assert await pg_database.fetchval("SELECT amount FROM ledger") == 5
    assert await pg_database.fetchval("SELECT balance FROM wallets") == 5


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def refusal(url: str) -> str:
    with pytest.raises(StorageUnavailable) as refused:
        await PgDatabase(url, connect_timeout_s=5).open()
    message = str(refused.value)
    assert "\n" not in message and refused.value.__cause__ is None
    assert "s3cret" not in message
    return message


async def test_a_server_that_does_not_answer_is_one_line(pg_url):
    port = a_closed_port()
    message = await refusal(f"postgresql://klingbot:s3cret@127.0.0.1:{port}/bot")
    assert message == (
        f"PostgreSQL database postgresql://klingbot@127.0.0.1:{port}/bot: the server does not"
        " answer (connection refused); is PostgreSQL running?"
    )


async def test_a_refused_login_is_one_line_without_the_password(pg_url):
    url = pg_url.replace("://", "://no_such_role:s3cret@", 1).replace("postgres@", "", 1)
    message = await refusal(url)
    assert message.startswith(f"PostgreSQL database {describe(url)}: the server refused the login")
    assert "no_such_role" in message


async def test_a_missing_database_is_one_line(pg_url):
    url = database_url("kbt_no_such_database", SERVER_URL)
    message = await refusal(url)
    assert message == (
        f"PostgreSQL database {describe(url)} does not exist: create it (createdb) or fix the"
        " database name in KLINGBOT_DATABASE_URL"
    )


def test_urls_are_described_without_their_password():
    assert describe("postgresql://bot:pa%40ss@db.example:6543/klingbot?sslmode=require") == (
        "postgresql://bot@db.example:6543/klingbot"
    )
    assert describe("postgres://[::1]/x") == "postgres://[::1]:5432/x"


async def test_what_a_borrowed_connection_leaves_in_its_session_is_reset(pg_url):
    async with PgDatabase(pg_url, min_size=1, max_size=1) as database:  # one connection, reused
        async with database.connection() as connection:
            await connection.execute("SET application_name = 'borrowed'")
            await connection.execute("SELECT pg_advisory_lock(42)")

        assert await database.fetchval("SHOW application_name") == "klingbot"
        assert not await database.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )


async def test_a_connection_the_server_drops_mid_statement_is_one_line_and_the_pool_recovers(
    pg_url,
):
    async with (
        PgDatabase(pg_url, min_size=1, max_size=1) as database,
        PgDatabase(pg_url, min_size=2, max_size=2) as admin,
        admin.connection() as holder,
    ):
        pid = await database.fetchval("SELECT pg_backend_pid()")
        await holder.execute("SELECT pg_advisory_lock(7)")
        waiting = asyncio.create_task(database.fetchval("SELECT pg_advisory_lock(7)"))
        while not await admin.fetchval(  # until the statement waits on the server
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            pid,
        ):
            assert not waiting.done()
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

        with pytest.raises(StorageUnavailable) as lost:
            await waiting
        message = str(lost.value)
        assert message.startswith(f"PostgreSQL database {describe(pg_url)}: the connection was lost")
        assert "\n" not in message and lost.value.__cause__ is None
        assert await database.fetchval("SELECT 1") == 1  # a new connection, no restart


async def test_a_user_who_may_not_create_tables_is_told_who_may(pg_empty_url):
    role = f"kbt_no_create_{os.getpid()}"  # roles are the server's: made and dropped here
    admin = await asyncpg.connect(pg_empty_url)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN")
        url = pg_empty_url.replace("://postgres@", f"://{role}:s3cret@", 1)
        assert url != pg_empty_url

        message = await refusal(url)

        assert message == (
            f"PostgreSQL database {describe(url)}: permission denied while creating klingbot's"
            " tables (permission denied for schema public); the user in KLINGBOT_DATABASE_URL"
            " must own the database (or be granted CREATE on its schema)"
        )
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
