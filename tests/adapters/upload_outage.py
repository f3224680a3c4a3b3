"""What the upload-outage tests of both platforms share."""

from __future__ import annotations

from pathlib import Path

from bot.commands import UserRef
from bot.deps import Deps
from bot.settings import Settings
from tests.e2e.conftest import fast_settings

OUTAGE_S = 45
"""Seconds (virtual) the platform refuses uploads after the press."""


def real_time(tmp_path: Path, **values: object) -> Settings:
    """The runner's real-life pacing (waits unscaled): the virtual clock makes them free."""
    return fast_settings(
        tmp_path, time_scale=1.0, status_interval_s=3.0, poll_interval_s=2.0, **values
    )


def no_server_path(texts: list[str], tmp_path: Path) -> None:
    """No message names a file or folder on the bot's server."""
    assert texts
    for text in texts:
        assert str(tmp_path) not in text and ".mp4" not in text and "/clips" not in text, text


async def paid_for(deps: Deps, user: UserRef, job_id: str) -> list[str]:
    """The ledger entries of the job's hold, oldest first, read back from the database."""
    history = await deps.ledger.history(user, 1000)
    return [e.kind for e in sorted(history, key=lambda e: e.seq) if e.hold_id == job_id]
