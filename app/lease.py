"""The database leases: no restore under a running bot, and one job runner per database.

Every process that opens the bot's database through :func:`app.bootstrap.open_core`
(``klingbot run``, ``console``, the wallet commands) holds a *shared*
``flock`` on ``<database>.lock`` beside it for as long as it runs;
``klingbot db restore`` takes an *exclusive* one without waiting, and so
fails at once while any of them runs, and a bot that starts during a
restore fails at once too. The kernel drops a lock when its process ends
however it ends (even SIGKILL), so a crash never leaves a stale lease.

A separate lock file, not the database file: SQLite keeps POSIX locks on the
database, and closing any other descriptor of that file in the same process
would silently drop them.

The runner lease (:class:`RunnerLease`, :class:`FileRunnerLease` on
``<database>.runner.lock``) is exclusive: ``klingbot run`` and ``klingbot
console`` hold it while their job runner lives, and a second one on the same
database says so in one line and exits 2.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import StorageUnavailable

log = logging.getLogger(__name__)

SHARE_PATIENCE_S = 1.0
"""How long a starting bot waits for an exclusive holder before it gives up."""


def lease_path(database: Path) -> Path:
    """``klingbot.db`` -> ``klingbot.db.lock``."""
    database = Path(database)
    return database.with_name(database.name + ".lock")


class Lease:
    """One hold on a database's lock file; ``release()`` (or process exit) lets go."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = lease_path(self.database)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _open(self) -> int | None:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            try:  # a lock file someone else made: a read-only descriptor locks it as well
                return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        except OSError:
            return None

    def share(self) -> None:
        """Hold the lease with other bots; StorageUnavailable while a restore runs.

        A folder where the lock file cannot be made (read-only, with a
        writable database in it) only costs the restore its protection: it
        is logged, not fatal.
        """
        fd = self._open()
        if fd is None:
            log.warning(
                "cannot create %s: klingbot db restore will not see that this bot runs", self.path
            )
            return
        deadline = time.monotonic() + SHARE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # ``klingbot health`` holds it alone for an instant; a restore for long.
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            os.close(fd)
            raise StorageUnavailable(
                f"database {self.database.absolute()} is being restored (klingbot db restore);"
                " start the bot again when the restore has finished"
            ) from None
        self._fd = fd

    def take(self) -> bool:
        """Hold the lease alone, without waiting; False while any bot holds it."""
        fd = self._open()
        if fd is None:
            raise StorageUnavailable(
                f"cannot create the lock file {self.path}: is its folder writable?"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go (the file stays: removing it would race with a process opening it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunnerBusy(StorageUnavailable):
    """Another process runs the job runner on this database (one runner per database)."""


class RunnerLease(ABC):
    """The right to run the job runner on one database: at most one holder at a time.

    ``klingbot run`` and ``klingbot console`` take it before they load a
    job (:func:`app.bootstrap.open_core` with ``runner_lease``) and keep it
    until they stop, so two processes never drive the same jobs. SQLite
    uses :class:`FileRunnerLease`; PostgreSQL uses
    :class:`app.replica_lease.PgRunnerLease`, one ``replicas`` row and one
    advisory lock per ``KLINGBOT_REPLICA_ID`` (the calls are async for it).
    """

    @abstractmethod
    async def acquire(self) -> bool:
        """Take the lease without waiting; False while another process holds it."""

    @abstractmethod
    async def holder(self) -> str:
        """Who holds the lease (for the refusal), as the holder described itself."""

    @abstractmethod
    async def release(self) -> None:
        """Let go (a crashed holder lets go by dying)."""

    async def wait_lost(self) -> None:
        """Return if another process took the lease while this one holds it (never, here)."""
        await asyncio.Event().wait()

    def refusal(self, database: object, holder: str) -> str:
        """The one line a refused process prints (``holder``: what :meth:`holder` said)."""
        return (
            f"a klingbot runner already uses the database {database} ({holder});"
            " one runner per database: stop it first, or use klingbot wallet while it runs"
        )


def runner_lease_path(database: Path) -> Path:
    """``klingbot.db`` -> ``klingbot.db.runner.lock``."""
    database = Path(database)
    return database.with_name(database.name + ".runner.lock")


class FileRunnerLease(RunnerLease):
    """The SQLite runner lease: an exclusive ``flock`` on ``<database>.runner.lock``.

    A file of its own, not ``<database>.lock``: every process holds that one
    shared (see :class:`Lease`), and one file cannot carry a second, exclusive
    lock beside the shared ones. The holder writes its pid, host and start
    time into the file, which a refused process reads back. The kernel drops
    the lock when the holder dies, however it dies.
    """

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = runner_lease_path(self.database)
        self._fd: int | None = None

    async def acquire(self) -> bool:
        """Lock the file alone, without waiting, and sign it.

        A folder where the lock file cannot be made (read-only, with a
        writable database in it) only costs this protection: it is logged,
        not fatal, as for :meth:`Lease.share`.
        """
        signable = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            signable = False
            try:  # a lock file someone else made: a read-only descriptor locks it as well
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                log.warning(
                    "cannot create %s (%s): a second runner on this database would not be refused",
                    self.path,
                    error.strerror or error,
                )
                return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if signable:
            since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            signature = f"pid {os.getpid()} on {socket.gethostname()} since {since}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, signature.encode(), 0)
        self._fd = fd
        return True

    async def holder(self) -> str:
        """What the holder wrote into the lock file."""
        try:
            signed = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            signed = ""
        return signed.splitlines()[0][:200] if signed else "another process"

    async def release(self) -> None:
        """Unlock (the file stays: removing it would race with a process opening it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def take_runner_lease(lease: RunnerLease, database: object) -> None:
    """Acquire ``lease`` or raise :class:`RunnerBusy` naming its holder, in one line."""
    if not await lease.acquire():
        raise RunnerBusy(lease.refusal(database, await lease.holder()))
