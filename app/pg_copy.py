"""``klingbot db copy --to postgresql://…``: move an SQLite deployment to PostgreSQL.

The source is the SQLite database ``KLINGBOT_DB``, the target an *empty*
PostgreSQL database (``--to``, else ``KLINGBOT_DATABASE_URL``). In order:

1. The source's exclusive lease is taken (:class:`app.lease.Lease`), as for
   a restore: while a klingbot process uses the file the copy is refused, so
   nothing written after the copy is lost. The source is migrated to the
   current schema, then checked: ``integrity_check`` and the ledger audit
   (:func:`storage.audit.audit`). A damaged or inconsistent source is
   refused with its problems, never copied.
2. The target is migrated (``PgDatabase`` applies its migrations), then in
   ONE transaction: its tables are locked and must be empty (else refused),
   every SQLite table is copied with ``COPY`` (asyncpg's
   ``copy_records_to_table``) in foreign-key order, keeping every key and
   ledger ``seq`` (SQLite's rowid fills the ``seq`` of quotes and jobs), the
   identity sequences are moved past the copied numbers, and the copy is
   compared with the source: every wallet's balance and held credits, the
   number of ledger entries, their sums and their last ``seq``. Any
   difference rolls the whole transaction back: the target stays empty.
   The members' input images that open quotes and jobs still need (files in
   the data folder on SQLite) go into the target's ``inputs`` table in the
   same transaction, and their quotes and jobs name them there (``pg:``),
   so every replica reaches them; an image file that is not here keeps its
   path.
3. After the commit the ledger audit runs on the target
   (:func:`storage.postgres.audit.audit`).

Tables are matched by name and columns by name, so tables and columns added
by later migrations on both backends are copied without a change here; a
source column the target lacks is refused (that data would be lost).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from app.lease import Lease
from bot.media import MAX_IMAGE_BYTES
from bot.settings import mask_database_url

DATA_ONLY_HERE = ("inputs",)
"""Tables of the target's data that the source may not have (its images are files)."""

PG_INPUT = "pg:"
"""How quotes and jobs on PostgreSQL name an image kept in its ``inputs`` table."""

LOCK_TIMEOUT = "10s"
"""How long the copy waits for a lock on a target table (a replica started on it)."""


class CopyRefused(Exception):
    """The copy was not made (the target is as it was); the message says why, in one line."""

    def __init__(self, message: str, *, status: int = 2, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.details = tuple(details)


@dataclass
class Table:
    """One source table read for the copy."""

    name: str
    columns: list[str]
    """The source's columns, in the order of ``rows``."""
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowid: bool = False
    """Each row ends with SQLite's rowid (not a column): it fills the target's ``seq``."""


@dataclass(frozen=True)
class CopyResult:
    """What was copied, and how long it took."""

    counts: dict[str, int]
    """Rows per table."""
    seconds: float


@dataclass(frozen=True)
class Source:
    """Everything read from the SQLite file in one read transaction."""

    tables: dict[str, Table]
    wallets: dict[tuple[str, str], tuple[int, int]]
    ledger: tuple[int, int, int, int]
    """(entries, sum of amounts, sum of held deltas, last seq)."""
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Input images still needed, by the path quotes and jobs name: (row name, bytes)."""


async def copy_to_postgres(database: Path, url: str, *, busy_timeout_ms: int = 5000) -> CopyResult:
    """Copy the SQLite ``database`` into the empty PostgreSQL database at ``url``; see the module.

    Raises CopyRefused (nothing copied) or StorageUnavailable (a database
    cannot be used), each with one line an operator can act on.
    """
    started = time.monotonic()
    shown = mask_database_url(url)
    database = Path(database)
    if not database.is_file():
        raise CopyRefused(
            f"there is no SQLite database {database.absolute()} to copy: set KLINGBOT_DB to the"
            " bot's database"
        )
    lease = Lease(database)
    if not lease.take():
        raise CopyRefused(
            f"a klingbot process is using {database.absolute()} (klingbot run, console or a"
            " wallet command): stop it first, so that nothing it writes after the copy is lost"
        )
    try:
        await _check_source(database, busy_timeout_ms)
        source = await asyncio.to_thread(_read_source, database, busy_timeout_ms)
        counts = await _copy(source, url, shown)
    finally:
        lease.release()
    problems = await _audit_target(url)
    if problems:
        raise CopyRefused(
            f"copied, but the ledger audit of {shown} found {len(problems)} problem(s):"
            f" {problems[0]}; drop and recreate that database before trying again",
            status=1,
            details=problems,
        )
    return CopyResult(counts, time.monotonic() - started)


async def _check_source(database: Path, busy_timeout_ms: int) -> None:
    """Migrate the source to the current schema, then refuse it if damaged or inconsistent."""
    from storage.audit import audit
    from storage.database import Database

    async with Database(database, busy_timeout_ms=busy_timeout_ms, create=False) as source:
        rows = await source.read("PRAGMA integrity_check")
        damaged = [str(row[0]) for row in rows if str(row[0]) != "ok"]
        problems = [f"integrity: {problem}" for problem in damaged] or await audit(source)
    if problems:
        raise CopyRefused(
            f"not copied: the source {database.absolute()} fails its checks"
            f" ({len(problems)} problem(s)): {problems[0]}; klingbot db check lists them",
            status=1,
            details=problems,
        )


def _read_source(database: Path, busy_timeout_ms: int) -> Source:
    """Read every table, and the figures to compare, in one read transaction (in a thread)."""
    uri = f"{database.absolute().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        connection.execute("BEGIN")
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        tables = {}
        for name in names:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')]
            has_rowid = _has_rowid(connection, name)
            order = " ORDER BY rowid" if has_rowid else ""
            selected = ", ".join(f'"{column}"' for column in columns)
            rowid = has_rowid and "seq" not in columns
            if rowid:
                selected += ", rowid"
            rows = connection.execute(f'SELECT {selected} FROM "{name}"{order}').fetchall()
            tables[name] = Table(name, columns, rows, rowid)
        wallets = {
            (platform, user_id): (balance, held)
            for platform, user_id, balance, held in connection.execute(
                "SELECT platform, user_id, balance, held FROM wallets"
            )
        }
        ledger = connection.execute(
            "SELECT count(*), coalesce(sum(amount), 0), coalesce(sum(held_delta), 0),"
            " coalesce(max(seq), 0) FROM ledger"
        ).fetchone()
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        from storage.database import explain

        raise explain(error, database) from None
    finally:
        connection.close()
    return Source(tables, wallets, tuple(ledger), _needed_images(tables))


def _needed_images(tables: dict[str, Table]) -> dict[str, tuple[str, bytes]]:
    """The image files quotes and jobs still need (not removed by retention), read whole.

    Each becomes a row of the target's ``inputs`` table named by its file's
    name (``<quote id><extension>``), so every replica reaches it. A file
    that is not here (or is not an acceptable image size) is left out: its
    quotes and jobs keep the path, and say the image is gone if used.
    """
    paths: set[str] = set()
    for name in ("quotes", "jobs"):
        table = tables.get(name)
        if table is None or "image_path" not in table.columns:
            continue
        at = table.columns.index("image_path")
        columns = table.columns
        removed = columns.index("input_removed_at") if "input_removed_at" in columns else None
        for row in table.rows:
            if row[at] and not str(row[at]).startswith(PG_INPUT) and (
                removed is None or row[removed] is None
            ):
                paths.add(str(row[at]))
    images: dict[str, tuple[str, bytes]] = {}
    taken: set[str] = set()
    for path in sorted(paths):
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        if not 0 < len(data) <= MAX_IMAGE_BYTES:
            continue
        name = Path(path).name
        while name in taken:  # two folders, one file name: keep both
            name = f"copy-{name}"
        taken.add(name)
        images[path] = (name, data)
    return images


def _has_rowid(connection: sqlite3.Connection, table: str) -> bool:
    try:
        connection.execute(f'SELECT rowid FROM "{table}" LIMIT 0')
    except sqlite3.OperationalError:
        return False  # WITHOUT ROWID
    return True


async def _copy(source: Source, url: str, shown: str) -> dict[str, int]:
    """Migrate the target, then copy and compare in one transaction; the rows per table."""
    from storage.postgres.database import PgDatabase, explain

    async with PgDatabase(url, min_size=1, max_size=1) as target:
        try:
            async with target.transaction() as connection:
                return await _copy_into(connection, source, shown)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise explain(error, url) from None


async def _copy_into(connection: Any, source: Source, shown: str) -> dict[str, int]:
    target_columns = await _target_columns(connection)
    missing = sorted(set(source.tables) - set(target_columns))
    if missing:
        raise CopyRefused(
            f"not copied: {shown} has no table {', '.join(missing)}: is it migrated by this"
            " same klingbot?"
        )
    for table in source.tables.values():
        lacking = [c for c in table.columns if c not in target_columns[table.name]]
        if lacking:
            raise CopyRefused(
                f"not copied: the table {table.name} of {shown} has no column"
                f" {', '.join(lacking)}: is it migrated by this same klingbot?"
            )
    if "inputs" in target_columns and "inputs" not in source.tables and source.images:
        _move_images_to_table(source)
    order = await _insert_order(connection, list(source.tables))
    checked = order + [n for n in DATA_ONLY_HERE if n in target_columns and n not in order]
    quoted = ", ".join(f'"{name}"' for name in checked)
    await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await connection.execute(f"LOCK TABLE {quoted} IN EXCLUSIVE MODE")
    filled = []
    for name in checked:
        if await connection.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{name}")'):
            count = await connection.fetchval(f'SELECT count(*) FROM "{name}"')
            filled.append(f"{count} row{'' if count == 1 else 's'} in {name}")
    if filled:
        raise CopyRefused(
            f"not copied: {shown} is not empty ({', '.join(filled)}): copy into a new,"
            " empty database"
        )
    counts = {}
    for name in order:
        table = source.tables[name]
        types = target_columns[name]
        columns = list(table.columns)
        # quotes and jobs: PostgreSQL keeps SQLite's rowid order in a seq column.
        if table.rowid and "seq" in types:
            columns.append("seq")
        width = len(columns)
        convert = [_converter(types[column]) for column in columns]
        records = [
            tuple(
                None if value is None else fn(value)
                for fn, value in zip(convert, row[:width], strict=True)
            )
            for row in table.rows
        ]
        if records:
            await connection.copy_records_to_table(name, records=records, columns=columns)
        counts[name] = len(records)
    await _reset_sequences(connection, order, target_columns)
    await _compare(connection, source, shown)
    return counts


def _move_images_to_table(source: Source) -> None:
    """Make the images rows of an ``inputs`` table, and point quotes and jobs at them."""
    source.tables["inputs"] = Table(
        "inputs", ["name", "data"], [image for image in source.images.values()]
    )
    for name in ("quotes", "jobs"):
        table = source.tables.get(name)
        if table is None or "image_path" not in table.columns:
            continue
        at = table.columns.index("image_path")
        for number, row in enumerate(table.rows):
            image = source.images.get(row[at]) if row[at] else None
            if image is not None:
                table.rows[number] = (*row[:at], PG_INPUT + image[0], *row[at + 1 :])


async def _target_columns(connection: Any) -> dict[str, dict[str, str]]:
    """Every table of the target's schema: its columns and their types."""
    rows = await connection.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    )
    tables: dict[str, dict[str, str]] = {}
    for row in rows:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
    return tables


async def _insert_order(connection: Any, names: list[str]) -> list[str]:
    """``names`` ordered so that every table comes after the tables its foreign keys name."""
    rows = await connection.fetch(
        "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent"
        " FROM pg_constraint c WHERE c.contype = 'f'"
        " AND c.connamespace = current_schema()::regnamespace"
    )
    parents: dict[str, set[str]] = {name: set() for name in names}
    for row in rows:
        child, parent = row["child"].strip('"'), row["parent"].strip('"')
        if child in parents and parent in parents and parent != child:
            parents[child].add(parent)
    order: list[str] = []
    while parents:
        ready = sorted(name for name, needs in parents.items() if not needs - set(order))
        if not ready:  # a cycle: cannot be, the schema has none
            raise CopyRefused(f"not copied: the foreign keys of {sorted(parents)} form a cycle")
        order += ready
        for name in ready:
            del parents[name]
    return order


def _converter(data_type: str) -> Any:
    """How a value SQLite stores becomes what the target column takes."""
    if data_type in ("bigint", "integer", "smallint"):
        return int
    if data_type == "boolean":
        return bool
    if data_type in ("double precision", "real", "numeric"):
        return float
    if data_type == "bytea":
        return lambda value: value if isinstance(value, bytes) else str(value).encode()
    if data_type.startswith("timestamp"):
        return lambda value: (
            datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value
        )
    if data_type in ("text", "character varying"):
        return str
    return lambda value: value


async def _reset_sequences(
    connection: Any, order: list[str], columns: dict[str, dict[str, str]]
) -> None:
    """Move every identity sequence past the highest copied number (ledger seq and the rest)."""
    for table in order:
        for column in columns[table]:
            sequence = await connection.fetchval(
                "SELECT pg_get_serial_sequence($1, $2)", f'"{table}"', column
            )
            if sequence is None:
                continue
            highest = await connection.fetchval(f'SELECT max("{column}") FROM "{table}"')
            if highest is None:
                await connection.execute("SELECT setval($1::regclass, 1, false)", sequence)
            else:
                await connection.execute("SELECT setval($1::regclass, $2)", sequence, highest)


async def _compare(connection: Any, source: Source, shown: str) -> None:
    """Every wallet and the ledger's figures, in the target's transaction, against the source."""
    rows = await connection.fetch("SELECT platform, user_id, balance, held FROM wallets")
    copied = {(r["platform"], r["user_id"]): (r["balance"], r["held"]) for r in rows}
    differing = [
        f"wallet {':'.join(key)} (balance, held) {source.wallets.get(key)} -> {copied.get(key)}"
        for key in sorted(set(copied) | set(source.wallets))
        if copied.get(key) != source.wallets.get(key)
    ]
    figures = await connection.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(amount), 0) AS amount,"
        " coalesce(sum(held_delta), 0) AS held, coalesce(max(seq), 0) AS seq FROM ledger"
    )
    ledger = (figures["n"], int(figures["amount"]), int(figures["held"]), figures["seq"])
    if ledger != source.ledger:
        differing.append(f"ledger (entries, amounts, held, last seq) {source.ledger} -> {ledger}")
    if differing:
        raise CopyRefused(
            f"not copied: the copy in {shown} differs from the source ({len(differing)}"
            f" difference(s)): {differing[0]}; rolled back, the target is empty again",
            status=1,
            details=differing,
        )


async def _audit_target(url: str) -> list[str]:
    from storage.postgres import audit, database

    async with database.PgDatabase(url, min_size=1, max_size=2, read_only=True) as target:
        return await audit.audit(target)


def describe_counts(counts: dict[str, int]) -> str:
    """``3 users, 3 wallets, 120 ledger entries, ...`` for the copy's closing line."""
    names = {
        "users": ("user", "users"),
        "wallets": ("wallet", "wallets"),
        "holds": ("hold", "holds"),
        "ledger": ("ledger entry", "ledger entries"),
        "quotes": ("quote", "quotes"),
        "jobs": ("job", "jobs"),
        "inputs": ("input image", "input images"),
    }
    shown = []
    for table, (one, many) in names.items():
        if table in counts:
            shown.append(f"{counts[table]:,} {one if counts[table] == 1 else many}")
    others = sum(count for table, count in counts.items() if table not in names)
    if others:
        shown.append(f"{others:,} other row{'' if others == 1 else 's'}")
    return ", ".join(shown)

