"""Fixtures for the storage tests: a real SQLite file per test, opened through the project's code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.commands import UserRef
from bot.ports import UserProfile, Wallet
from storage.database import Database
from storage.ledger import SqliteLedger

NOW = 1_700_000_000
"""A fixed clock reading (seconds); the ledger only stores it."""

OpenWallet = Callable[..., Awaitable[Wallet]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
async def database(db_path: Path) -> AsyncIterator[Database]:
    async with Database(db_path) as db:
        yield db


@pytest.fixture
def ledger(database: Database) -> SqliteLedger:
    return SqliteLedger(database)


async def open_wallet_for(
    ledger: SqliteLedger,
    user: UserRef,
    *,
    username: str | None = None,
    display_name: str = "",
    welcome_credits: int = 0,
) -> Wallet:
    """Record ``user`` and open their wallet, as the bot does on a user's first message."""
    profile = UserProfile(user, display_name or f"user {user.id}", username)
    return await ledger.open_wallet(profile, welcome_credits=welcome_credits, now=NOW)


@pytest.fixture
def open_wallet(ledger: SqliteLedger) -> OpenWallet:
    """``await open_wallet(user, username=..., welcome_credits=...)`` on the test's ledger."""

    async def open_(user: UserRef, **options: object) -> Wallet:
        return await open_wallet_for(ledger, user, **options)  # type: ignore[arg-type]

    return open_
