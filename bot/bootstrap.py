"""The one place that wires settings, storage and the clock into the core's dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.clock import Clock, SystemClock
from bot.service import Deps
from bot.settings import Settings
from storage.database import Database
from storage.ledger import SqliteLedger


@asynccontextmanager
async def open_core(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Deps]:
    """Open the database (migrating it) and yield the core's dependencies; close on exit.

    Raises StorageUnavailable when the database cannot be opened or written.
    """
    async with Database(settings.db, busy_timeout_ms=settings.db_busy_timeout_ms) as database:
        yield Deps(
            catalog=settings.catalog(),
            ledger=SqliteLedger(database),
            clock=clock or SystemClock(),
            moderators=frozenset(settings.moderators),
            max_topup=settings.max_topup,
            welcome_credits=settings.welcome_credits,
        )
