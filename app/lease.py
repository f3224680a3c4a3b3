"""The database lease: how ``klingbot db restore`` knows that no bot is using the database.

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
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
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
