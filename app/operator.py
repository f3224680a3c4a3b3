"""The operator's data commands: ``db backup``, ``db restore`` and ``wallet export``.

The work itself is in :mod:`app.backup`; this turns it into printed lines
and exit statuses (0 done, 1 refused, 2 an unusable database or file).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app.backend import open_storage
from app.backup import (
    BACKUP_FOLDER,
    BackupRefused,
    RestoreRefused,
    backup_database,
    backup_destination,
    export_csv,
    restore_database,
)
from bot.errors import StorageUnavailable
from bot.i18n import Translator
from bot.settings import Settings


async def db_copy(settings: Settings, action: str, path: str | None) -> int:
    """``db backup [PATH]`` or ``db restore PATH``."""
    if action == "backup":
        assert settings.data_dir is not None
        try:
            destination = backup_destination(path, settings.db, settings.data_dir / BACKUP_FOLDER)
        except BackupRefused as error:
            print(f"klingbot: not backed up: {error}", file=sys.stderr)
            return 1
        result = await asyncio.to_thread(
            backup_database, settings.db, destination, busy_timeout_ms=settings.db_busy_timeout_ms
        )
        print(
            f"backed up {settings.db} to {result.path}"
            f" ({result.size:,} bytes, {_entries(result.entries)})"
        )
        return 0
    assert path is not None
    try:
        restored = await restore_database(
            Path(path), settings.db, busy_timeout_ms=settings.db_busy_timeout_ms
        )
    except RestoreRefused as error:
        print(f"klingbot: not restored: {error}", file=sys.stderr)
        return 1
    kept = f"; the previous database is kept as {restored.replaced}" if restored.replaced else ""
    print(f"restored {path} into {restored.restored} (integrity and ledger checked){kept}")
    return 0


async def export_command(settings: Settings, translate: Translator, output: str | None) -> int:
    """``wallet export --csv [-o FILE]``: the whole ledger, oldest entry first (either backend)."""
    async with open_storage(settings, create=False) as storage:
        if output is None:
            await export_csv(storage.ledger_entries(), settings.catalog(), translate)
            return 0
        try:
            with open(output, "w", encoding="utf-8", newline="") as file:
                count = await export_csv(
                    storage.ledger_entries(), settings.catalog(), translate, file
                )
        except OSError as error:
            raise StorageUnavailable(f"cannot write {output}: {error.strerror}") from None
    print(f"exported {_entries(count)} to {output}", file=sys.stderr)
    return 0


def _entries(count: int) -> str:
    """``1 ledger entry``, ``1,234 ledger entries``: the operator's English count."""
    return f"{count:,} ledger {'entry' if count == 1 else 'entries'}"
