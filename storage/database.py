"""The SQLite database: one writer thread with group commit, one aiosqlite reader.

Writes are plain functions ``fn(connection) -> result`` that run on the one
writable connection, each inside ``BEGIN IMMEDIATE`` (as datasette does).
A ledger operation is therefore one round trip to the database thread, and
Python never reads a balance to write it back: the functions use atomic SQL.

Group commit: while the writer is busy, further writes queue up; the next
batch runs them all in one transaction, each in its own SAVEPOINT, so one
failing write (say, a hold the wallet cannot afford) rolls back alone while
the others commit together with a single WAL sync. Callers are answered only
after COMMIT returns, so nothing is ever reported that could still be undone.

Reads go through a separate aiosqlite connection (``PRAGMA query_only``), so
``/price`` and ``/balance`` never queue behind writes: WAL lets them read the
last committed state while a write is in progress.

A read-only database (``Database(..., read_only=True)``, for ``klingbot db
check``) has no writer: nothing is migrated or created, and a file this
process may not write is read as it is (:func:`read_only_uri`).

Before SQLite opens a database to write it, a file this process may not
write is refused (:func:`read_only_reason`): SQLite would first create
``-wal`` and ``-shm`` files beside it with the file's read-only mode, and
those would stop the next start even after the file itself is fixed.

Point reads (one row by its key, such as a wallet) run on the event loop's
own thread instead (:meth:`Database.read_point`), on a third connection,
also ``query_only``: SQLite answers them in tens of microseconds, less than
the hop to the reader thread and back costs. That connection never waits
for a lock (``busy_timeout`` 0): in the rare moment WAL makes a reader wait,
the read goes to the reader thread instead of blocking the loop. Each read
is its own read transaction, so it sees every write committed before it,
like the reader does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.errors import StorageUnavailable
from storage.migrate import migrate, schema_problem

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]

MAX_BATCH = 256
"""The most writes committed in one transaction."""


def _pragmas(busy_timeout_ms: int) -> tuple[str, ...]:
    return (
        f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
        "PRAGMA foreign_keys = ON",
        # FULL: a top-up the bot confirmed in chat survives a power cut.
        # Group commit is what keeps that affordable.
        "PRAGMA synchronous = FULL",
    )


def explain(error: sqlite3.Error, path: Path) -> StorageUnavailable:
    """Turn a low-level SQLite error into a message an operator can act on."""
    message = str(error).lower()
    code = getattr(error, "sqlite_errorname", "") or ""
    path = path.absolute()
    if path.is_dir():
        text = (
            f"database {path} is a folder: set KLINGBOT_DB to the database file,"
            f" such as {path / 'klingbot.db'}"
        )
    elif "disk is full" in message or "database or disk is full" in message:
        text = f"database {path}: the disk is full"
    elif "locked" in message or "busy" in message:
        text = f"database {path} is locked by another process"
    elif code.startswith("SQLITE_READONLY") or "readonly" in message or "read-only" in message:
        text = read_only_reason(path)
    elif "unable to open" in message:
        if _on_read_only_mount(path.parent):
            text = read_only_reason(path)
        else:
            text = f"cannot open database {path}: does its folder exist and is it writable?"
    elif "not a database" in message or "malformed" in message:
        text = f"{path} is not a usable SQLite database ({error})"
    else:
        text = f"database {path}: {error}"
    return StorageUnavailable(text)


def read_only_reason(path: Path) -> str:
    """Say why the database at ``path`` cannot be written, and what to do, in one line.

    SQLite only reports "readonly" (or "unable to open" on a read-only mount);
    which of the file, its folder (where WAL mode must create ``-wal`` and
    ``-shm`` files) or the mount is to blame is read from the file system.
    """
    path = path.absolute()
    if _on_read_only_mount(path.parent):
        return (
            f"database {path} cannot be written: it is on a read-only file system."
            " Mount it read-write, or set KLINGBOT_DB to a database on a writable disk"
        )
    blamed = []
    if path.exists() and not _writable(path):
        blamed.append("the file is read-only")
    if not _writable(path.parent):
        blamed.append(
            f"its folder {path.parent} is read-only"
            f" (SQLite must create {path.name}-wal and {path.name}-shm there)"
        )
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and not _writable(side):
            blamed.append(f"{side.name} is read-only")
    if not blamed:
        return f"database {path} is read-only (check the file and folder permissions)"
    return (
        f"database {path} cannot be written: {', '.join(blamed)}."
        " Make them writable for the user running the bot, or set KLINGBOT_DB to a writable copy"
    )


def read_only_uri(path: Path) -> str:
    """A URI that reads the database at ``path`` and writes nothing beside it.

    Normally a read-only connection (``mode=ro``) that shares the bot's
    locks, so it reads a consistent state while the bot writes. A WAL
    database's readers need its ``-shm`` file, which SQLite would create
    with the database file's mode; so when this process may not write the
    file and no ``-wal`` or ``-shm`` is there (no bot has it open: none can
    write it), it is opened ``immutable``, reading the file as it is.
    """
    path = path.absolute()
    uri = f"{path.as_uri()}?mode=ro"
    sides = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    if not may_write(path) and not any(side.exists() for side in sides):
        uri += "&immutable=1"
    return uri


def may_write(path: Path) -> bool:
    """Whether this process could write ``path`` (on a writable mount)."""
    return _writable(path) and not _on_read_only_mount(path.parent)


def _writable(path: Path) -> bool:
    """Whether this process may write ``path``, judged with its effective ids and capabilities."""
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def _on_read_only_mount(folder: Path) -> bool:
    """Whether ``folder`` (or its nearest existing ancestor) is on a read-only mount."""
    for candidate in (folder, *folder.parents):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


class Database:
    """Owns the writer thread and the reader connection; use ``async with Database(...)``."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.create = create and not read_only
        """False: refuse a database file that does not exist instead of creating it."""
        self.read_only = read_only
        """True: only read (no writer, no migration), and leave the files as they are."""
        self._queue: queue.SimpleQueue[tuple[WriteFn[Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: aiosqlite.Connection | None = None
        self._point_reader: sqlite3.Connection | None = None
        """On the event loop's thread: see :meth:`read_point`."""
        self.batches = 0
        """How many transactions the writer committed (the benchmark reports it)."""

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the writer, apply pending migrations, open the reader.

        Raises StorageUnavailable with an operator-readable reason.
        """
        self._loop = asyncio.get_running_loop()
        if self.read_only:
            await self._open_read_only()
            return
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready,), name="klingbot-sqlite-writer", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        try:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = sqlite3.Row
            for pragma in _pragmas(self.busy_timeout_ms):
                await self._reader.execute(pragma)
            await self._reader.execute("PRAGMA query_only = ON")
            self._point_reader = self._connect_point_reader()
        except sqlite3.Error as error:
            await self.close()
            raise explain(error, self.path) from None

    async def _open_read_only(self) -> None:
        """The reader and the point reader only, on a current schema; nothing is written."""
        if not self.path.exists():
            raise StorageUnavailable(self._missing())
        uri = read_only_uri(self.path)
        try:
            # A probe on this thread first: a file SQLite cannot read fails here, plainly.
            probe = sqlite3.connect(uri, uri=True, isolation_level=None)
            try:
                probe.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                version = int(probe.execute("PRAGMA user_version").fetchone()[0])
            finally:
                probe.close()
        except sqlite3.Error as error:
            raise explain(error, self.path) from None
        problem = schema_problem(version, where=f"database {self.path.absolute()}")
        if problem is not None:
            raise StorageUnavailable(problem)
        try:
            self._point_reader = self._connect_point_reader(uri)
            self._reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            self._reader.row_factory = sqlite3.Row
            for pragma in _pragmas(self.busy_timeout_ms):
                await self._reader.execute(pragma)
            await self._reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as error:
            await self.close()
            raise explain(error, self.path) from None

    def _connect_point_reader(self, uri: str | None = None) -> sqlite3.Connection:
        # The file exists by now (the writer made or found it): open it read-only.
        connection = sqlite3.connect(
            uri or f"{self.path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
        try:
            connection.row_factory = sqlite3.Row
            for pragma in _pragmas(0):  # never wait for a lock on the loop's thread
                connection.execute(pragma)
            connection.execute("PRAGMA query_only = ON")
        except BaseException:
            connection.close()
            raise
        return connection

    async def close(self) -> None:
        """Finish queued writes, then close the connections."""
        if self._point_reader is not None:
            self._point_reader.close()
            self._point_reader = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(connection)`` in a write transaction; return its result after COMMIT."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("the database is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, future))
        return await future

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run one SELECT on the reader connection."""
        if self._reader is None:
            raise RuntimeError("the database is not open")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.OperationalError as error:
            raise explain(error, self.path) from None

    async def read_one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """Run one SELECT and return its first row, if any."""
        rows = await self.read(sql, params)
        return rows[0] if rows else None

    async def read_point(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """Run a SELECT of one row by its key on the loop's thread; its first row, if any.

        Only for reads an index answers in a few page lookups (a wallet, a
        hold): anything that scans belongs on :meth:`read_one`. If SQLite
        would have to wait for a lock, the read goes to the reader thread.
        """
        if self._point_reader is None:
            raise RuntimeError("the database is not open")
        try:
            rows = self._point_reader.execute(sql, params).fetchall()  # done: no open snapshot
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise explain(error, self.path) from None
            return await self.read_one(sql, params)
        return rows[0] if rows else None

    # --- the writer thread ---------------------------------------------------

    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        try:
            connection = self._connect()
        except StorageUnavailable as error:
            self._resolve(ready, error=error)
            return
        self._resolve(ready, result=None)
        try:
            while (item := self._queue.get()) is not None:
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        following = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if following is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(following)
                self._run_batch(connection, batch)
        finally:
            connection.close()
            self._refuse_leftovers()

    def _refuse_leftovers(self) -> None:
        """Answer writes that arrived after close() began: they were not written."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._resolve(item[1], error=StorageUnavailable("the database is closing"))

    def _missing(self) -> str:
        return (
            f"there is no database {self.path.absolute()}: set KLINGBOT_DB to the bot's"
            " database (klingbot run creates a new one)"
        )

    def _connect(self) -> sqlite3.Connection:
        if not self.create and not self.path.exists():
            raise StorageUnavailable(self._missing())
        if self.path.exists() and not may_write(self.path):
            # Refused before SQLite leaves read-only -wal and -shm files beside it.
            raise StorageUnavailable(read_only_reason(self.path))
        try:
            if self.create:
                connection = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            else:
                # mode=rw opens an existing file read-write and never creates one.
                connection = sqlite3.connect(
                    f"{self.path.absolute().as_uri()}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
        except sqlite3.Error as error:
            raise explain(error, self.path) from None
        try:
            connection.row_factory = sqlite3.Row
            for pragma in _pragmas(self.busy_timeout_ms):
                connection.execute(pragma)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"attempt to write a readonly database ({mode})")
            migrate(connection, where=str(self.path.absolute()))
            prove_writable(connection)
        except sqlite3.Error as error:
            connection.close()
            raise explain(error, self.path) from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _run_batch(
        self, connection: sqlite3.Connection, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]
    ) -> None:
        """Run a batch in one transaction; every caller is answered, whatever happens."""
        try:
            outcomes = self._commit_batch(connection, batch)
        except sqlite3.Error as error:
            # The transaction as a whole is gone (disk full, I/O error): nothing
            # in this batch was written, so every caller hears so.
            if connection.in_transaction:
                connection.rollback()
            failure = explain(error, self.path)
            outcomes = [(future, None, failure) for _, future in batch]
        else:
            self.batches += 1
        for future, result, error in outcomes:
            self._resolve(future, result=result, error=error)

    def _commit_batch(
        self, connection: sqlite3.Connection, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        connection.execute("BEGIN IMMEDIATE")
        for fn, future in batch:
            connection.execute("SAVEPOINT write")
            try:
                result = fn(connection)
            except Exception as error:  # handed to the awaiting caller
                if not connection.in_transaction:
                    # SQLite rolled back the whole transaction, earlier writes included.
                    raise sqlite3.OperationalError(str(error)) from error
                connection.execute("ROLLBACK TO write")
                connection.execute("RELEASE write")
                if isinstance(error, sqlite3.OperationalError):
                    error = explain(error, self.path)
                outcomes.append((future, None, error))
            else:
                connection.execute("RELEASE write")
                outcomes.append((future, result, None))
        connection.execute("COMMIT")
        return outcomes

    def _resolve(
        self, future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        def settle() -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)


def prove_writable(connection: sqlite3.Connection) -> None:
    """Write for real inside a transaction that is rolled back; raise what SQLite raises.

    A read-only or locked database must stop the bot at start instead of
    failing its first top-up. Taking the write lock is not proof: on a file
    SQLite could only open read-only, ``BEGIN IMMEDIATE`` quietly becomes a
    read transaction and succeeds. Rewriting ``user_version`` with its own
    value dirties page 1, which SQLite refuses with SQLITE_READONLY on a
    read-only file, a read-only ``-wal``/``-shm`` or a read-only mount;
    the ROLLBACK then leaves the file exactly as it was.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        connection.execute(f"PRAGMA user_version = {version}")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
