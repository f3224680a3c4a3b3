"""Random sequences of ledger operations against a real SQLite file, checked against a model.

Hypothesis drives top-ups, holds, captures, releases, adjustments, links of
two identities' wallets and unlinks, with
keys and hold ids drawn from small pools so that retries, double clicks and
late callbacks happen all the time. After every step the database must agree
with a plain Python model, and the ledger invariants of docs/ARCHITECTURE.md must hold,
checked with SQL written here (not only through ``audit()``).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NotLinked
from bot.ports import LedgerEntry, Outcome, UserProfile
from storage.audit import audit
from storage.database import Database
from storage.ledger import SqliteLedger

NOW = 1_700_000_000
USERS = [UserRef("telegram", "1"), UserRef("telegram", "2"), UserRef("discord", "1")]

users = st.sampled_from(USERS)
topup_keys = st.sampled_from([f"topup:{n}" for n in range(6)])
adjust_keys = st.sampled_from([f"adjust:{n}" for n in range(4)])
hold_ids = st.sampled_from([f"job-{n}" for n in range(5)])
hold_amounts = st.integers(min_value=1, max_value=300)


@dataclass
class ModelHold:
    user: UserRef
    amount: int
    state: str = "open"
    ending: LedgerEntry | None = None


class LedgerMachine(RuleBasedStateMachine):
    """The SQLite ledger next to a model of what every wallet and hold should be."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.runner = asyncio.Runner()
        self.db = Database(self.folder / "ledger.db")
        self.runner.run(self.db.open())
        self.ledger = SqliteLedger(self.db)
        self.raw = sqlite3.connect(self.folder / "ledger.db", isolation_level=None)
        self.raw.execute("PRAGMA query_only = ON")
        self.start_model()

    def start_model(self) -> None:
        """Open every wallet, empty, and a model that knows they are."""
        for user in USERS:
            self.runner.run(self.ledger.open_wallet(UserProfile(user), welcome_credits=0, now=NOW))
        self.balance = dict.fromkeys(USERS, 0)
        self.held = dict.fromkeys(USERS, 0)
        self.holds: dict[str, ModelHold] = {}
        self.hold_entries: dict[str, LedgerEntry] = {}
        self.keyed: dict[str, LedgerEntry] = {}
        self.owner: dict[UserRef, UserRef] = {}
        """A linked identity -> the identity whose wallet it uses (absent: its own)."""
        self.codes = 0

    def wallet_of(self, user: UserRef) -> UserRef:
        return self.owner.get(user, user)

    def teardown(self) -> None:
        self.raw.close()
        self.runner.run(self.db.close())
        self.runner.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, coroutine):
        return self.runner.run(coroutine)

    # --- the model, one operation at a time ----------------------------------------

    def expect_change(self, user: UserRef, credits: int, key: str, outcome: Outcome | None) -> None:
        """Check a top-up or adjust outcome (None: it was refused) and update the model."""
        user = self.wallet_of(user)
        if key in self.keyed:
            event("change: retried key")
            assert outcome is not None and outcome.applied is False
            assert outcome.entry == self.keyed[key]
        elif self.balance[user] + credits < 0:
            event("change: refused below zero")
            assert outcome is None, "a change below zero must be refused"
        else:
            assert outcome is not None and outcome.applied is True
            assert (outcome.entry.user, outcome.entry.amount) == (user, credits)
            self.balance[user] += credits
            assert outcome.entry.balance_after == self.balance[user]
            self.keyed[key] = outcome.entry

    def expect_hold(
        self, user: UserRef, amount: int, hold_id: str, outcome: Outcome | None
    ) -> None:
        user = self.wallet_of(user)
        if hold_id in self.holds:
            event("hold: retried id")
            assert outcome is not None and outcome.applied is False
            assert outcome.entry == self.hold_entries[hold_id]
        elif self.balance[user] < amount:
            event("hold: refused, cannot afford")
            assert outcome is None, "a hold the wallet cannot afford must be refused"
        else:
            assert outcome is not None and outcome.applied is True
            self.balance[user] -= amount
            self.held[user] += amount
            assert (outcome.entry.balance_after, outcome.entry.held_after) == (
                self.balance[user],
                self.held[user],
            )
            self.holds[hold_id] = ModelHold(user, amount)
            self.hold_entries[hold_id] = outcome.entry

    async def try_hold(self, user: UserRef, amount: int, hold_id: str) -> Outcome | None:
        try:
            return await self.ledger.hold(
                user, amount, hold_id=hold_id, actor=str(user), reason="gen", now=NOW
            )
        except InsufficientCredits:
            return None

    # --- rules -----------------------------------------------------------------------

    @rule(user=users, credits=st.integers(min_value=1, max_value=500), key=topup_keys)
    def top_up(self, user: UserRef, credits: int, key: str) -> None:
        outcome = self.run(
            self.ledger.top_up(user, credits, key=key, actor="mod", reason="", now=NOW)
        )
        self.expect_change(user, credits, key, outcome)

    @rule(
        user=users,
        credits=st.integers(min_value=-400, max_value=400).filter(bool),
        key=adjust_keys,
    )
    def adjust(self, user: UserRef, credits: int, key: str) -> None:
        try:
            outcome: Outcome | None = self.run(
                self.ledger.adjust(user, credits, key=key, actor="mod", reason="", now=NOW)
            )
        except InsufficientCredits:
            outcome = None
        self.expect_change(user, credits, key, outcome)

    @rule(user=users, amount=hold_amounts, hold_id=hold_ids)
    def hold(self, user: UserRef, amount: int, hold_id: str) -> None:
        self.expect_hold(user, amount, hold_id, self.run(self.try_hold(user, amount, hold_id)))

    @rule(requests=st.lists(st.tuples(users, hold_amounts, hold_ids), min_size=2, max_size=6))
    def concurrent_holds(self, requests: list[tuple[UserRef, int, str]]) -> None:
        """Several users press a tier at once: the writer commits them in arrival order."""

        async def all_at_once() -> list[Outcome | None]:
            return await asyncio.gather(*(self.try_hold(*request) for request in requests))

        for request, outcome in zip(requests, self.run(all_at_once()), strict=True):
            self.expect_hold(*request, outcome)

    def end_hold(self, hold_id: str, kind: str) -> None:
        ending = getattr(self.ledger, kind)
        model = self.holds.get(hold_id)
        if model is None:
            with pytest.raises(KeyError):
                self.run(ending(hold_id, actor="runner", reason="", now=NOW))
            return
        outcome = self.run(ending(hold_id, actor="runner", reason="", now=NOW))
        if model.ending is not None:
            event(f"{kind}: hold already {model.state}")
            assert outcome.applied is False
            assert outcome.entry == model.ending
            return
        assert outcome.applied is True and outcome.entry.kind == kind
        model.state = "captured" if kind == "capture" else "released"
        model.ending = outcome.entry
        self.held[model.user] -= model.amount
        if kind == "release":
            self.balance[model.user] += model.amount
        assert (outcome.entry.balance_after, outcome.entry.held_after) == (
            self.balance[model.user],
            self.held[model.user],
        )

    @rule(hold_id=hold_ids)
    def capture(self, hold_id: str) -> None:
        self.end_hold(hold_id, "capture")

    @rule(hold_id=hold_ids)
    def release(self, hold_id: str) -> None:
        self.end_hold(hold_id, "release")

    @rule(issuer=users, redeemer=users)
    def link(self, issuer: UserRef, redeemer: UserRef) -> None:
        """``redeemer`` sends ``issuer``'s fresh code: their wallets become one, or nothing changes."""
        self.codes += 1
        code = f"code-{self.codes}"
        assert self.run(self.ledger.issue_link_code(issuer, code, now=NOW, ttl_s=600, per_hour=99))
        result = self.run(
            self.ledger.redeem_link_code(redeemer, code, now=NOW, failures_per_hour=99)
        )
        paired = set(self.owner) | set(self.owner.values())
        if issuer == redeemer:
            expected = "own"
        elif issuer.platform == redeemer.platform:
            expected = "same_platform"
        elif {issuer, redeemer} & paired:
            expected = "already_linked"
        else:
            expected = "linked"
        event(f"link: {expected}")
        assert result.status == expected
        if expected != "linked":
            return
        assert (result.moved, result.moved_held) == (self.balance[redeemer], self.held[redeemer])
        self.balance[issuer] += self.balance[redeemer]
        self.held[issuer] += self.held[redeemer]
        self.balance[redeemer] = self.held[redeemer] = 0
        for model in self.holds.values():
            if model.user == redeemer and model.state == "open":
                model.user = issuer
        self.owner[redeemer] = issuer

    @rule(user=users, credits=st.integers(min_value=0, max_value=300))
    def unlink(self, user: UserRef, credits: int) -> None:
        members = [m for m, o in self.owner.items() if user in (m, o)]
        try:
            split = self.run(
                self.ledger.unlink(user, credits=credits, actor="mod", reason="", now=NOW)
            )
        except NotLinked:
            assert not members
            return
        except InsufficientCredits:
            [left] = members
            assert self.balance[self.owner[left]] < credits
            event("unlink: refused, shared wallet short")
            return
        [left] = members
        kept = self.owner.pop(left)
        assert (split.kept, split.left, split.credits) == (kept, left, credits)
        self.balance[kept] -= credits
        self.balance[left] += credits
        assert split.kept_balance == self.balance[kept]
        event("unlink: split")

    # --- invariants ----------------------------------------------------------------------

    def sql(self, query: str) -> list[tuple]:
        return self.raw.execute(query).fetchall()

    @invariant()
    def wallets_match_the_model(self) -> None:
        for user in USERS:
            wallet = self.run(self.ledger.wallet(user))
            assert wallet is not None
            owner = self.wallet_of(user)
            open_holds = sum(
                1 for h in self.holds.values() if h.user == owner and h.state == "open"
            )
            assert (wallet.balance, wallet.held, wallet.open_holds) == (
                self.balance[owner],
                self.held[owner],
                open_holds,
            )
        for hold_id, model in self.holds.items():
            stored = self.run(self.ledger.get_hold(hold_id))
            assert stored is not None
            assert (stored.user, stored.amount, stored.state) == (
                model.user,
                model.amount,
                model.state,
            )

    @invariant()
    def balances_are_the_sums_of_their_entries(self) -> None:
        rows = self.sql(
            """
            SELECT w.platform, w.user_id, w.balance, w.held,
                   (SELECT coalesce(sum(amount), 0) FROM ledger l
                      WHERE l.platform = w.platform AND l.user_id = w.user_id),
                   (SELECT coalesce(sum(held_delta), 0) FROM ledger l
                      WHERE l.platform = w.platform AND l.user_id = w.user_id),
                   (SELECT coalesce(sum(amount), 0) FROM holds h WHERE h.state = 'open'
                      AND h.platform = w.platform AND h.user_id = w.user_id)
            FROM wallets w
            """
        )
        assert len(rows) == len(USERS)
        for platform, user_id, balance, held, entries, entries_held, open_holds in rows:
            who = f"{platform}:{user_id}"
            assert balance >= 0 and held >= 0, who
            assert balance == entries, who
            assert held == entries_held == open_holds, who
        assert self.sql("SELECT count(*) FROM ledger WHERE balance_after < 0") == [(0,)]

    @invariant()
    def every_hold_ends_at_most_once(self) -> None:
        rows = self.sql(
            """
            SELECT h.hold_id, h.state, h.amount,
                   (SELECT count(*) FROM ledger l WHERE l.hold_id = h.hold_id
                      AND l.kind = 'hold' AND l.held_delta = h.amount),
                   (SELECT count(*) FROM ledger l WHERE l.hold_id = h.hold_id
                      AND l.kind IN ('capture', 'release')),
                   (SELECT min(kind) FROM ledger l WHERE l.hold_id = h.hold_id
                      AND l.kind IN ('capture', 'release'))
            FROM holds h
            """
        )
        expected_ending = {
            "open": (0, None),
            "captured": (1, "capture"),
            "released": (1, "release"),
        }
        for hold_id, state, _amount, hold_entries, endings, ending in rows:
            assert hold_entries == 1, hold_id
            assert (endings, ending) == expected_ending[state], (hold_id, state, endings)
        assert self.sql(
            "SELECT count(*) FROM ledger WHERE hold_id IS NOT NULL"
            " AND hold_id NOT IN (SELECT hold_id FROM holds)"
        ) == [(0,)]

    @invariant()
    def credits_paid_in_are_all_accounted_for(self) -> None:
        [(paid_in, balances, open_holds, captured)] = self.sql(
            """
            SELECT (SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind IN ('topup', 'adjust')),
                   (SELECT coalesce(sum(balance), 0) FROM wallets),
                   (SELECT coalesce(sum(amount), 0) FROM holds WHERE state = 'open'),
                   (SELECT coalesce(-sum(held_delta), 0) FROM ledger WHERE kind = 'capture')
            """
        )
        assert paid_in == balances + open_holds + captured
        model_captured = sum(h.amount for h in self.holds.values() if h.state == "captured")
        assert (balances, captured) == (sum(self.balance.values()), model_captured)

    @invariant()
    def audit_finds_nothing(self) -> None:
        assert self.run(self.audit()) == []

    async def audit(self) -> list[str]:
        return await audit(self.db)


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_ledger_against_the_model = LedgerMachine.TestCase
