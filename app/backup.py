"""Online backups, checked restores, and the ledger as CSV for accounting.

``klingbot db backup [PATH]`` copies the database with SQLite's online backup
API in one step: the copy is one read transaction, so in WAL mode the bot
keeps writing while it runs and the copy is the database exactly as it was
at one commit (never a torn mix of two). The copy is written beside PATH,
switched to a self-contained rollback journal (no ``-wal`` file to forget),
checked (``integrity_check``), synced, and only then renamed to PATH.
A PATH ending in ``/``, or naming a folder, is a folder (created if missing)
that gets a timestamped copy, ``klingbot-20260101T120000Z.db``; without
PATH that folder is ``backups/`` in the data folder. The live database
itself is never a destination.

``klingbot db restore PATH`` refuses a folder, the live database itself,
and any restore while a klingbot process holds the database's lease
(:mod:`app.lease`), checks a copy of the backup first
(integrity, migrations, the ledger invariants of :mod:`storage.audit`),
checkpoints the current database and moves it aside as
``<db>.replaced-<UTC time>`` (kept, never deleted), then moves the checked
copy into place.

``klingbot wallet export --csv`` writes every ledger entry, oldest first:
who, what, the amounts, the balance after, the actor, the reason (the bot's
own reasons in the reader's language) and the idempotency key. A text cell
that a spreadsheet would read as a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return: a member's display name, a
moderator's reason) is written with a leading ``'``; numbers stay numbers.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from app.lease import Lease, lease_path
from bot.catalog import Catalog
from bot.errors import StorageUnavailable
from bot.i18n import Translator
from bot.reasons import reason_for
from storage.audit import audit
from storage.database import Database, explain

EXPORT_PAGE = 1000
"""Ledger entries read per query while exporting."""

CSV_COLUMNS = (
    "seq",
    "time_utc",
    "user",
    "display_name",
    "kind",
    "amount",
    "held_delta",
    "balance_after",
    "held_after",
    "hold_id",
    "actor",
    "reason",
    "key",
)


@dataclass(frozen=True)
class BackupResult:
    """What a backup wrote."""

    path: Path
    size: int
    entries: int
    """Ledger entries in the copy."""


def _connect_existing(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to an existing database (never creates one)."""
    if not path.exists():
        raise StorageUnavailable(
            f"there is no database {path.absolute()}: set KLINGBOT_DB to the bot's database"
        )
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True)
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.Error as error:
        raise explain(error, path) from None
    return connection


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _integrity_problems(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    return [] if [tuple(r) for r in rows] == [("ok",)] else [str(r[0]) for r in rows]


BACKUP_FOLDER = "backups"
"""The folder in the data folder that ``klingbot db backup`` without a path writes to."""


class BackupRefused(Exception):
    """The backup was not made; the message says why."""


def backup_destination(path: str | None, database: Path, default_folder: Path) -> Path:
    """The file a backup to ``path`` writes: a timestamped one when ``path`` means a folder.

    ``path`` means a folder when it is None (then ``default_folder``), ends
    with a slash, or names an existing folder. Raises BackupRefused when the
    file would be the live database or one of its companion files.
    """
    if path is None:
        folder: Path | None = default_folder
    elif path.endswith(("/", os.sep)) or Path(path).is_dir():
        folder = Path(path)
    else:
        folder = None
    if folder is None:
        destination = Path(path)  # type: ignore[arg-type]
    else:
        destination = _unused(folder / f"{database.stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db")
    live = database.resolve()
    companions = {live.with_name(live.name + suffix) for suffix in ("-wal", "-shm", "-journal")}
    if destination.resolve() in {live, *companions, lease_path(live)}:
        shown = path if folder is None else destination
        raise BackupRefused(
            f"{shown} is the live database (KLINGBOT_DB) or one of its files:"
            f" name another file, or a folder such as {BACKUP_FOLDER}/"
        )
    return destination


def _unused(path: Path) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``... when a backup of the same second exists."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def backup_database(
    source: Path, destination: Path, *, busy_timeout_ms: int = 5000
) -> BackupResult:
    """Copy ``source`` to the file ``destination`` consistently, even while a bot writes to it.

    Synchronous (run it in a thread from async code). Creates the
    destination's folder. Raises StorageUnavailable with an
    operator-readable reason.
    """
    source, destination = Path(source), Path(destination)
    if destination.is_dir():
        raise StorageUnavailable(f"{destination} is a folder, not a backup file")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageUnavailable(
            f"cannot create the folder {destination.parent}: {error.strerror or error}"
        ) from None
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    src = _connect_existing(source, busy_timeout_ms)
    try:
        dst = sqlite3.connect(partial)
        try:
            # pages=-1: the whole database in one step, i.e. one read transaction.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            problems = _integrity_problems(dst)
            entries = dst.execute("SELECT count(*) FROM ledger").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as error:
        partial.unlink(missing_ok=True)
        raise explain(error, source) from None
    finally:
        src.close()
    if problems:
        partial.unlink(missing_ok=True)
        raise StorageUnavailable(f"the copy of {source} is damaged: {'; '.join(problems[:5])}")
    _fsync(partial)
    os.replace(partial, destination)
    _fsync(destination.parent)
    return BackupResult(destination, destination.stat().st_size, entries)


async def check_database(path: Path, *, busy_timeout_ms: int = 5000) -> list[str]:
    """Integrity and ledger invariants of the database at ``path`` (migrated first)."""
    connection = _connect_existing(path, busy_timeout_ms)
    try:
        problems = _integrity_problems(connection)
    except sqlite3.Error as error:
        raise explain(error, path) from None
    finally:
        connection.close()
    if problems:
        return [f"integrity: {problem}" for problem in problems]
    async with Database(path, busy_timeout_ms=busy_timeout_ms, create=False) as database:
        return await audit(database)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did."""

    restored: Path
    replaced: Path | None
    """Where the previous database was moved (None: there was none)."""


class RestoreRefused(Exception):
    """The restore was not done; the message says why and what to do."""


async def restore_database(
    backup: Path, database: Path, *, busy_timeout_ms: int = 5000
) -> RestoreResult:
    """Replace ``database`` by a checked copy of ``backup``; keep the replaced file aside.

    Raises RestoreRefused while a klingbot process holds the database's
    lease, or when the backup fails its checks; the current database is
    untouched then.
    """
    backup, database = Path(backup), Path(database)
    if backup.is_dir():
        newest = max(backup.glob("*.db"), key=lambda file: file.name, default=None)
        example = f", such as {newest}" if newest is not None else ""
        raise RestoreRefused(f"{backup} is a folder: name a backup file in it{example}")
    if not backup.is_file():
        raise RestoreRefused(f"there is no backup file {backup}")
    if database.exists() and backup.samefile(database):
        raise RestoreRefused(
            f"{backup} is the live database itself (KLINGBOT_DB): name a backup file"
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    lease = Lease(database)
    if not lease.take():
        raise RestoreRefused(
            f"a klingbot process is using {database} (klingbot run, console or a wallet"
            " command): stop it, then restore"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = database.with_name(f".{database.name}.restoring")
    try:
        _discard(candidate)
        try:
            backup_database(backup, candidate, busy_timeout_ms=busy_timeout_ms)
            problems = await check_database(candidate, busy_timeout_ms=busy_timeout_ms)
        except StorageUnavailable as error:
            raise RestoreRefused(f"the backup {backup} cannot be used: {error}") from None
        if problems:
            listed = "; ".join(problems[:5])
            raise RestoreRefused(f"the backup {backup} fails its checks: {listed}")
        replaced = None
        if database.exists():
            _checkpoint(database, busy_timeout_ms)
            replaced = database.with_name(f"{database.name}.replaced-{stamp}")
            os.replace(database, replaced)
            for suffix in ("-wal", "-shm"):  # empty after the checkpoint; kept with their db
                side = database.with_name(database.name + suffix)
                if side.exists():
                    os.replace(side, replaced.with_name(replaced.name + suffix))
        os.replace(candidate, database)
        _fsync(database.parent)
        return RestoreResult(database, replaced)
    finally:
        _discard(candidate)
        lease.release()


def _discard(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _checkpoint(database: Path, busy_timeout_ms: int) -> None:
    """Move everything in the ``-wal`` file into the database before it is moved aside."""
    connection = _connect_existing(database, busy_timeout_ms)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as error:
        raise RestoreRefused(f"cannot checkpoint {database}: {error}") from None
    finally:
        connection.close()


async def ledger_entries(database: Database) -> AsyncIterator[sqlite3.Row]:
    """Every ledger entry with its user's display name, oldest first, a page at a time."""
    last = 0
    while True:
        rows = await database.read(
            """
            SELECT l.seq, l.created_at, l.platform, l.user_id, u.display_name, l.kind, l.amount,
                   l.held_delta, l.balance_after, l.held_after, l.hold_id, l.actor, l.reason,
                   l.idem_key
            FROM ledger l LEFT JOIN users u ON u.platform = l.platform AND u.user_id = l.user_id
            WHERE l.seq > ? ORDER BY l.seq LIMIT ?
            """,
            (last, EXPORT_PAGE),
        )
        for row in rows:
            yield row
        if len(rows) < EXPORT_PAGE:
            return
        last = rows[-1]["seq"]


async def export_csv(
    entries: AsyncIterator[Any],
    catalog: Catalog,
    translate: Translator,
    out: TextIO | None = None,
) -> int:
    """Write ``entries`` (:func:`ledger_entries`' rows) as CSV to ``out`` (stdout); count them."""
    # RFC 4180 line ends: the writer then quotes a cell holding a CR or LF, so a
    # display name with a line break stays in its row.
    writer = csv.writer(out or sys.stdout, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for row in entries:
        reason = reason_for(row["reason"], catalog, translate) if row["reason"] else ""
        when = datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        writer.writerow(
            spreadsheet_safe(
                row["seq"],
                when,
                f"{row['platform']}:{row['user_id']}",
                row["display_name"] or "",
                row["kind"],
                row["amount"],
                row["held_delta"],
                row["balance_after"],
                row["held_after"],
                row["hold_id"] or "",
                row["actor"],
                reason,
                row["idem_key"],
            )
        )
        count += 1
    return count


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (CSV injection)."""


def spreadsheet_safe(*cells: object) -> list[object]:
    """The cells with every text that starts like a formula prefixed by ``'``.

    Only text is changed: the integers of the ledger (a negative amount) are
    numbers, not formulas, and stay as they are.
    """
    return [
        f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell
        for cell in cells
    ]
