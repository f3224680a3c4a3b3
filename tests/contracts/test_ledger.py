"""The in-memory fake ledger behaves like SQLite: the same scenarios, run against both.

Unit tests of the service trust ``tests/unit/fakes.InMemoryLedger``; these
keep it honest for user lookup and for top-ups that open a wallet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.commands import UserRef
from bot.errors import NoWallet
from bot.ports import Ledger, UserProfile
from bot.reasons import reason
from storage.database import Database
from storage.ledger import SqliteLedger
from tests.unit.fakes import InMemoryLedger

NOW = 1_700_000_000
MOD = "cli:root"


@pytest.fixture(params=["sqlite", "memory"])
async def ledger(request, tmp_path) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield InMemoryLedger()
        return
    async with Database(tmp_path / "ledger.db") as database:
        yield SqliteLedger(database)


async def meet(ledger: Ledger, platform: str, user_id: str, username: str | None) -> None:
    profile = UserProfile(UserRef(platform, user_id), f"user {user_id}", username)
    await ledger.open_wallet(profile, welcome_credits=0, now=NOW)


async def found(ledger: Ledger, platform: str, query: str) -> str | None:
    profile = await ledger.find_user(platform, query)
    return str(profile.user) if profile else None


async def test_an_id_wins_over_a_username_whoever_came_first(ledger):
    await meet(ledger, "telegram", "1", "2")  # a username that looks like an id
    await meet(ledger, "telegram", "2", "bob")

    assert await found(ledger, "telegram", "2") == "telegram:2"
    assert await found(ledger, "telegram", "@2") == "telegram:1"  # @ means a username
    assert await found(ledger, "telegram", "BOB") == "telegram:2"
    assert await found(ledger, "telegram", "@") is None
    assert await found(ledger, "discord", "2") is None


async def test_usernames_match_in_any_ascii_case_only(ledger):
    await meet(ledger, "console", "x", "Ärger")

    assert await found(ledger, "console", "ärger") is None  # COLLATE NOCASE folds ASCII only
    assert await found(ledger, "console", "äRGER") is None
    assert await found(ledger, "console", "ÄrGeR") == "console:x"


async def test_a_username_moves_to_its_newest_holder(ledger):
    await meet(ledger, "telegram", "1", "star")
    await meet(ledger, "telegram", "2", "STAR")

    assert await found(ledger, "telegram", "star") == "telegram:2"
    old = await ledger.find_user("telegram", "1")
    assert old is not None and old.username is None


async def test_a_top_up_may_open_the_wallet_of_an_unseen_user(ledger):
    user = UserRef("telegram", "404")
    with pytest.raises(NoWallet):
        await ledger.top_up(user, 5, key="topup:a", actor=MOD, reason="", now=NOW)

    outcome = await ledger.top_up(
        user,
        500,
        key="topup:b",
        actor=MOD,
        reason="refund for ticket 42",
        now=NOW,
        create_wallet=True,
        welcome_credits=30,
    )
    again = await ledger.top_up(
        user, 500, key="topup:b", actor=MOD, reason="", now=NOW, create_wallet=True
    )

    assert outcome.applied and not again.applied
    assert again.entry == outcome.entry
    assert await ledger.find_user("telegram", "404") == UserProfile(user, "", None, "en")
    wallet = await ledger.wallet(user)
    assert wallet is not None and (wallet.balance, wallet.held) == (530, 0)
    history = await ledger.history(user, 10)
    assert [(e.kind, e.amount, e.actor, e.reason) for e in history] == [
        ("topup", 500, MOD, "refund for ticket 42"),
        ("topup", 30, "system", reason("reason.welcome")),
    ]


async def test_opening_by_top_up_leaves_a_known_user_as_they_are(ledger):
    await meet(ledger, "telegram", "7", "alice")
    user = UserRef("telegram", "7")

    await ledger.top_up(
        user,
        5,
        key="topup:c",
        actor=MOD,
        reason="",
        now=NOW,
        create_wallet=True,
        welcome_credits=30,
    )

    assert await ledger.find_user("telegram", "alice") == UserProfile(user, "user 7", "alice")
    wallet = await ledger.wallet(user)
    assert wallet is not None and wallet.balance == 5  # no welcome: the wallet was not new
