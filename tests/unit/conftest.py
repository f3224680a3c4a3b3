"""Fixtures for unit tests: the core's dependencies on in-memory fakes."""

from __future__ import annotations

import pytest

from bot.commands import Caller, UserRef
from bot.deps import Deps
from bot.settings import Settings
from tests.unit.fakes import FakeClock, InMemoryLedger

MODERATOR = UserRef("telegram", "1")


@pytest.fixture
def ledger() -> InMemoryLedger:
    return InMemoryLedger()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deps(ledger: InMemoryLedger, clock: FakeClock) -> Deps:
    return Deps(
        catalog=Settings().catalog(),
        ledger=ledger,
        clock=clock,
        moderators=frozenset({MODERATOR}),
        max_topup=100_000,
    )


@pytest.fixture
def moderator() -> Caller:
    return Caller(MODERATOR, "Mo", "mo", "en")


@pytest.fixture
def member() -> Caller:
    return Caller(UserRef("telegram", "2"), "Alice", "alice", "en")


@pytest.fixture
def member_zh() -> Caller:
    return Caller(UserRef("telegram", "3"), "小明", "xiaoming", "zh-CN")
