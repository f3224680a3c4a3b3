"""The Hypothesis ledger machine of test_ledger_stateful.py, on the PostgreSQL ledger.

The same random top-ups, holds, captures, releases and adjustments, with
retried keys and concurrent presses (here on several pool connections), the
same model and the same SQL invariants, run against the test server.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from bot.commands import UserRef
from bot.ports import Outcome
from storage.postgres.audit import audit
from storage.postgres.database import PgDatabase
from storage.postgres.ledger import PgLedger
from tests.storage.test_ledger_stateful import LedgerMachine, hold_amounts, hold_ids, users
from tests.support.postgres import POOL_SIZE, empty_tables


class PgLedgerMachine(LedgerMachine):
    """LedgerMachine on this run's PostgreSQL database, emptied before each example."""

    url = ""
    """Set by the autouse fixture below (a machine cannot ask for fixtures)."""

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        self.runner = asyncio.Runner()
        self.db = PgDatabase(self.url, min_size=POOL_SIZE, max_size=POOL_SIZE)
        self.run(self.db.open())
        self.run(self._empty())
        self.ledger = PgLedger(self.db)  # type: ignore[assignment]
        self.start_model()

    async def _empty(self) -> None:
        async with self.db.connection() as connection:
            await empty_tables(connection)

    @rule(requests=st.lists(st.tuples(users, hold_amounts, hold_ids), min_size=2, max_size=6))
    def concurrent_holds(self, requests: list[tuple[UserRef, int, str]]) -> None:
        """Several presses at once, on several connections: they commit in any order.

        The model takes the holds that applied in the order they committed
        (one wallet's entries are numbered in the order its row lock was
        taken); a refused one could not be afforded even after all of them
        (balances only fell) and its id was new before them, and a repeated
        id got the entry that applied.
        """

        async def all_at_once() -> list[Outcome | None]:
            return await asyncio.gather(*(self.try_hold(*request) for request in requests))

        held_before = set(self.holds)
        outcomes = list(zip(requests, self.run(all_at_once()), strict=True))
        applied = [(request, o) for request, o in outcomes if o is not None and o.applied]
        for request, outcome in sorted(applied, key=lambda pair: pair[1].entry.seq):
            self.expect_hold(*request, outcome)
        for (user, amount, hold_id), outcome in outcomes:
            if outcome is None:
                # Ordered before a press of the same id that applied meanwhile, if any.
                assert hold_id not in held_before and self.balance[user] < amount
            elif not outcome.applied:
                event("concurrent hold: repeated id")
                assert outcome.entry == self.hold_entries[hold_id]

    def teardown(self) -> None:
        self.runner.run(self.db.close())
        self.runner.close()

    def sql(self, query: str) -> list[tuple]:
        return [tuple(row) for row in self.run(self.db.fetch(query))]

    async def audit(self) -> list[str]:
        return await audit(self.db)


@pytest.fixture(autouse=True)
def _database(pg_url: str) -> None:
    PgLedgerMachine.url = pg_url


PgLedgerMachine.TestCase.settings = settings(max_examples=8, stateful_step_count=25, deadline=None)
test_pg_ledger_against_the_model = PgLedgerMachine.TestCase
