"""Members' input images in PostgreSQL (table ``inputs``), reachable from every replica.

A saved image is a row named ``<quote id><extension>``; quotes and jobs
reference it as ``pg:<name>`` (:data:`PREFIX`). The replica that runs a job
copies the bytes into its own data folder (``input-cache/``, one file per
job, :class:`bot.inputs.InputCache`) before the provider needs them, and
deletes the copy when the job no longer needs the provider. The retention
sweep deletes the row.

A reference that is a path (an image saved before the database moved to
PostgreSQL, on this machine) is served by the file store given, as before
(``klingbot db copy --to``, ``app/pg_copy.py``, moves such images into
the table).
"""

from __future__ import annotations

from pathlib import Path

from bot.inputs import FileInputStore, InputCache, InputGone, InputStore, InputUsage
from bot.media import MAX_IMAGE_BYTES
from storage.postgres.database import PgDatabase

PREFIX = "pg:"
"""How an image kept in the ``inputs`` table is referenced in ``image_path``."""


class PgInputStore(InputStore):
    """:class:`bot.inputs.InputStore` on PostgreSQL; see the module docstring."""

    def __init__(self, database: PgDatabase, *, cache: Path, files: FileInputStore) -> None:
        self.db = database
        self.cache = InputCache(cache)
        """This replica's copies of the images of the jobs it runs."""
        self.files = files
        """Images referenced by a path (saved before the move to PostgreSQL)."""

    async def save(self, quote_id: str, extension: str, data: bytes) -> str:
        """Insert (or replace) the row; ``pg:<quote id><extension>``."""
        if not 0 < len(data) <= MAX_IMAGE_BYTES:
            raise ValueError(f"an input image has 1 to {MAX_IMAGE_BYTES} bytes, not {len(data)}")
        name = f"{quote_id}{extension}"
        await self.db.execute(
            "INSERT INTO inputs (name, data) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET data = excluded.data",
            name,
            data,
        )
        return PREFIX + name

    async def exists(self, reference: str) -> bool:
        """Whether the row is there."""
        name = _name(reference)
        if name is None:
            return await self.files.exists(reference)
        return bool(await self.db.fetchval("SELECT 1 FROM inputs WHERE name = $1", name))

    async def materialize(self, reference: str, key: str) -> Path:
        """Copy the row's bytes to this replica's cache as ``<key>-<name>``."""
        name = _name(reference)
        if name is None:
            return await self.files.materialize(reference, key)
        data = await self.db.fetchval("SELECT data FROM inputs WHERE name = $1", name)
        if data is None:
            raise InputGone(reference)
        return await self.cache.put(key, name, data)

    def release(self, key: str) -> None:
        """Delete the copy made for ``key``."""
        self.cache.release(key)

    async def remove(self, reference: str) -> None:
        """Delete the row (a copy in use stays until its job releases it)."""
        name = _name(reference)
        if name is None:
            await self.files.remove(reference)
            return
        await self.db.execute("DELETE FROM inputs WHERE name = $1", name)

    async def usage(self) -> InputUsage:
        """Rows and bytes of the table (sizes read from the rows' headers, not the images)."""
        row = await self.db.fetchrow(
            "SELECT count(*) AS files, coalesce(sum(octet_length(data)), 0) AS size FROM inputs"
        )
        assert row is not None
        return InputUsage(int(row["files"]), int(row["size"]))

    async def remove_unnamed(self) -> int:
        """Delete the rows no quote or job names, saved :data:`UNNAMED_AFTER_S` ago or more."""
        status = await self.db.execute(
            "DELETE FROM inputs WHERE created_at <= extract(epoch FROM now())::bigint - $1"
            " AND NOT EXISTS (SELECT 1 FROM quotes WHERE image_path = $2 || inputs.name)"
            " AND NOT EXISTS (SELECT 1 FROM jobs WHERE image_path = $2 || inputs.name)",
            UNNAMED_AFTER_S,
            PREFIX,
        )
        return int(status.rsplit(" ", 1)[-1])


UNNAMED_AFTER_S = 3600
"""An image no row names is left this long (server time): its quote may be on its way."""


def _name(reference: str) -> str | None:
    """The row a ``pg:`` reference names; None for a path."""
    return reference.removeprefix(PREFIX) if reference.startswith(PREFIX) else None
