"""When the database cannot be used, the operator gets one clear sentence, not a traceback.

Each problem is made for real: a missing folder, a file that is not SQLite,
another process holding the lock, a read-only file owned by someone else.
``StorageUnavailable`` carries the message the CLI prints.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from bot.commands import UserRef
from bot.errors import StorageUnavailable
from bot.ports import UserProfile
from storage.audit import audit
from storage.database import Database
from storage.ledger import SqliteLedger

ALICE = UserRef("telegram", "1001")
NOBODY = 65534

LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute(sys.argv[2])
connection.execute(sys.argv[3])
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
connection.close()
"""


@contextmanager
def locked_by_another_process(path: Path, begin: str, write: str) -> Iterator[None]:
    """Another program holds the database's write lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path), begin, write],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()


async def test_a_missing_folder_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "ledger.db"

    with pytest.raises(StorageUnavailable) as error:
        await Database(path).open()

    assert str(error.value) == (
        f"cannot open database {path}: does its folder exist and is it writable?"
    )
    assert error.value.__cause__ is None and error.value.__suppress_context__


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    garbage = b"these are video bytes, not a database\x00\xff" * 200
    path.write_bytes(garbage)

    with pytest.raises(StorageUnavailable) as error:
        await Database(path).open()

    assert str(error.value).startswith(f"{path} is not a usable SQLite database")
    assert path.read_bytes() == garbage  # the operator's file is left as it was


async def test_a_database_locked_by_another_process_is_reported_then_opens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"

    with locked_by_another_process(path, "BEGIN EXCLUSIVE", "CREATE TABLE other_app (x)"):
        with pytest.raises(StorageUnavailable) as error:
            await Database(path, busy_timeout_ms=100).open()
        assert str(error.value) == f"database {path} is locked by another process"

    async with Database(path, busy_timeout_ms=100) as database:
        ledger = SqliteLedger(database)
        wallet = await ledger.open_wallet(UserProfile(ALICE), welcome_credits=30, now=0)
        assert wallet.balance == 30
        assert await database.read("SELECT * FROM other_app") == []


def open_as_nobody(path: Path, reply: Connection) -> None:
    """In a forked child: become an unprivileged user and try to open the database."""
    try:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        asyncio.run(Database(path).open())
        reply.send("opened without complaint")
    except StorageUnavailable as error:
        reply.send(f"StorageUnavailable: {error}")
    except BaseException as error:
        reply.send(f"{type(error).__name__}: {error}")
    finally:
        reply.close()


def test_a_read_only_database_is_reported_as_read_only() -> None:
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="klingbot-ro-"))
    path = folder / "ledger.db"
    try:
        folder.chmod(0o755)

        async def create() -> None:
            async with Database(path):
                pass

        asyncio.run(create())
        path.chmod(0o444)
        folder.chmod(0o555)

        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=open_as_nobody, args=(path, send))
        child.start()
        send.close()
        message = receive.recv()
        child.join(timeout=30)

        assert message == (
            f"StorageUnavailable: database {path} cannot be written: the file is read-only,"
            f" its folder {folder} is read-only (SQLite must create ledger.db-wal and"
            " ledger.db-shm there). Make them writable for the user running the bot,"
            " or set KLINGBOT_DB to a writable copy"
        )
        assert child.exitcode == 0
    finally:
        folder.chmod(0o755)
        if path.exists():
            path.chmod(0o644)
        shutil.rmtree(folder, ignore_errors=True)


async def test_a_write_blocked_by_another_process_fails_cleanly_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    async with Database(path, busy_timeout_ms=100) as database:
        ledger = SqliteLedger(database)
        await ledger.open_wallet(UserProfile(ALICE), welcome_credits=0, now=0)
        await ledger.top_up(ALICE, 10, key="topup:1", actor="mod", reason="", now=0)

        with locked_by_another_process(path, "BEGIN IMMEDIATE", "UPDATE users SET locale = locale"):
            with pytest.raises(StorageUnavailable) as error:
                await ledger.top_up(ALICE, 5, key="topup:2", actor="mod", reason="", now=0)
            assert str(error.value) == f"database {path} is locked by another process"
            # Reads still answer while the other process writes (WAL).
            wallet = await ledger.wallet(ALICE)
            assert wallet is not None and wallet.balance == 10

        retried = await ledger.top_up(ALICE, 5, key="topup:2", actor="mod", reason="", now=0)
        assert retried.applied is True and retried.entry.balance_after == 15
        await ledger.top_up(ALICE, 1, key="topup:3", actor="mod", reason="", now=0)
        wallet = await ledger.wallet(ALICE)
        assert wallet is not None and wallet.balance == 16
        assert await audit(database) == []


async def test_a_full_disk_fails_the_whole_batch_and_the_writer_keeps_going(
    tmp_path: Path,
) -> None:
    """A write that fills the disk loses its transaction; every caller hears so, none hangs."""

    def fill_the_disk(connection) -> None:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages + 2}")
        for number in range(10_000):
            connection.execute(
                "INSERT INTO users (platform, user_id, display_name, created_at)"
                " VALUES ('cli', ?, ?, 0)",
                (str(number), "x" * 500),
            )

    async with Database(tmp_path / "full.db") as database:
        with pytest.raises(StorageUnavailable, match="the disk is full"):
            await asyncio.wait_for(database.write(fill_the_disk), 30)
        assert await asyncio.wait_for(database.write(lambda connection: "still writing"), 30) == (
            "still writing"
        )
        rows = await database.read("SELECT count(*) AS n FROM users")
        assert rows[0]["n"] == 0
