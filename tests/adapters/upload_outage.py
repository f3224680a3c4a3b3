"""What the upload-outage tests of both platforms share."""

from __future__ import annotations

from pathlib import Path

from bot.commands import UserRef
from bot.deps import Deps

OUTAGE_S = 45
"""Seconds (virtual) the platform refuses uploads after the press."""


def no_server_path(texts: list[str], tmp_path: Path) -> None:
    """No message names a file or folder on the bot's server."""
    assert texts
    for text in texts:
        assert str(tmp_path) not in text and ".mp4" not in text and "/clips" not in text, text


async def paid_for(deps: Deps, user: UserRef, job_id: str) -> list[str]:
    """The ledger entries of the job's hold, oldest first, read back from the database."""
    history = await deps.ledger.history(user, 1000)
    return [e.kind for e in sorted(history, key=lambda e: e.seq) if e.hold_id == job_id]
