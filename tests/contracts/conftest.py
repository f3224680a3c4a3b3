"""One contract suite per storage port, run against every implementation.

Each fixture here is parametrized by backend: ``sqlite`` (the production
classes on a real file in ``tmp_path``), ``postgres`` (the production
classes on this run's PostgreSQL database, emptied before each test; see
``tests/support/postgres.py``) and ``memory`` (the fakes in
``tests/unit/fakes.py`` that the unit tests trust). A test in this package
states what the port promises; if the fake and SQLite ever differ, one of
the two parametrizations fails. After every test on a database the
ledger audit must find nothing wrong. A new database is one more entry in
``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.jobs.store import JobStore
from bot.ports import AppState, Ledger
from storage.app_state import SqliteAppState
from storage.audit import audit
from storage.database import Database
from storage.jobs import SqliteJobStore
from storage.ledger import SqliteLedger
from storage.postgres.app_state import PgAppState
from storage.postgres.audit import audit as postgres_audit
from storage.postgres.jobs import PgJobStore
from storage.postgres.ledger import PgLedger
from tests.support.postgres import emptied_database
from tests.unit.fakes import InMemoryAppState, InMemoryJobStore, InMemoryLedger

BACKENDS = ("sqlite", "postgres", "memory")


@dataclass(frozen=True)
class Storage:
    """The three ports on one backend, sharing its data (jobs hold credits in its ledger)."""

    name: str
    ledger: Ledger
    jobs: JobStore
    state: AppState


@pytest.fixture(params=BACKENDS)
async def storage(request, tmp_path) -> AsyncIterator[Storage]:
    if request.param == "memory":
        ledger = InMemoryLedger()
        yield Storage("memory", ledger, InMemoryJobStore(ledger), InMemoryAppState())
        return
    if request.param == "postgres":
        async with emptied_database(request.getfixturevalue("pg_url")) as database:
            yield Storage(
                "postgres", PgLedger(database), PgJobStore(database), PgAppState(database)
            )
            # Whatever a test did through the ports, the ledger still adds up.
            assert await postgres_audit(database) == []
        return
    async with Database(tmp_path / "contract.db") as database:
        yield Storage(
            "sqlite", SqliteLedger(database), SqliteJobStore(database), SqliteAppState(database)
        )
        assert await audit(database) == []


@pytest.fixture
def ledger(storage: Storage) -> Ledger:
    return storage.ledger


@pytest.fixture
def jobs(storage: Storage) -> JobStore:
    return storage.jobs


@pytest.fixture
def state(storage: Storage) -> AppState:
    return storage.state
