"""The Ledger port's contract, run against SQLite and the in-memory fake (see conftest).

Unit tests of the service trust ``tests/unit/fakes.InMemoryLedger``; these
keep it honest: user lookup, wallets, holds, idempotent keys, refusals.
"""

from __future__ import annotations

import pytest

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet
from bot.ports import Hold, Ledger, UserProfile, Wallet
from bot.reasons import reason

NOW = 1_700_000_000
MOD = "cli:root"


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


ALICE = UserRef("telegram", "1")


async def funded(ledger: Ledger, credits: int) -> None:
    await meet(ledger, "telegram", "1", "alice")
    await ledger.top_up(ALICE, credits, key="fund", actor=MOD, reason="", now=NOW)


async def test_welcome_credits_come_once_and_profiles_refresh(ledger):
    profile = UserProfile(ALICE, "Alice", "alice", "zh-CN")
    first = await ledger.open_wallet(profile, welcome_credits=30, now=NOW)
    again = await ledger.open_wallet(
        UserProfile(ALICE, "Alice B", "alice_b", "en"), welcome_credits=30, now=NOW + 1
    )

    assert first == again == Wallet(ALICE, 30, 0, 0)
    assert await ledger.find_user("telegram", "alice_b") == UserProfile(
        ALICE, "Alice B", "alice_b", "en"
    )
    assert await ledger.find_user("telegram", "alice") is None
    assert await ledger.wallet(UserRef("telegram", "2")) is None


async def test_a_hold_moves_credits_and_ends_exactly_once(ledger):
    await funded(ledger, 100)
    held = await ledger.hold(ALICE, 35, hold_id="job-1", actor="a", reason="r", now=NOW)
    assert held.applied and (held.entry.amount, held.entry.held_delta) == (-35, 35)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 65, 35, 1)
    assert await ledger.get_hold("job-1") == Hold("job-1", ALICE, 35, "open")
    repeated = await ledger.hold(ALICE, 35, hold_id="job-1", actor="a", reason="r", now=NOW)
    assert not repeated.applied and repeated.entry == held.entry

    captured = await ledger.capture("job-1", actor="runner", reason="c", now=NOW)
    late_release = await ledger.release("job-1", actor="runner", reason="x", now=NOW)
    assert captured.applied and (captured.entry.amount, captured.entry.held_delta) == (0, -35)
    assert not late_release.applied and late_release.entry == captured.entry
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 65, 0, 0)
    assert (await ledger.get_hold("job-1")).state == "captured"

    await ledger.hold(ALICE, 15, hold_id="job-2", actor="a", reason="r", now=NOW)
    released = await ledger.release("job-2", actor="runner", reason="r", now=NOW)
    assert (released.entry.amount, released.entry.balance_after) == (15, 65)
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 65, 0, 0)
    with pytest.raises(KeyError):
        await ledger.capture("no-such-hold", actor="runner", reason="", now=NOW)
    assert await ledger.get_hold("no-such-hold") is None


async def test_refusals_change_nothing(ledger):
    await funded(ledger, 10)
    with pytest.raises(InsufficientCredits) as short:
        await ledger.hold(ALICE, 11, hold_id="big", actor="a", reason="", now=NOW)
    assert (short.value.balance, short.value.needed) == (10, 11)
    with pytest.raises(InsufficientCredits):
        await ledger.adjust(ALICE, -11, key="fine", actor=MOD, reason="", now=NOW)
    with pytest.raises(NoWallet):
        await ledger.hold(UserRef("telegram", "9"), 1, hold_id="h", actor="a", reason="", now=NOW)
    with pytest.raises(NoWallet):
        await ledger.adjust(UserRef("telegram", "9"), 1, key="k9", actor=MOD, reason="", now=NOW)
    for bad in (
        lambda: ledger.top_up(ALICE, 0, key="zero", actor=MOD, reason="", now=NOW),
        lambda: ledger.top_up(ALICE, -5, key="negative", actor=MOD, reason="", now=NOW),
        lambda: ledger.adjust(ALICE, 0, key="nothing", actor=MOD, reason="", now=NOW),
        lambda: ledger.hold(ALICE, 0, hold_id="empty", actor="a", reason="", now=NOW),
    ):
        with pytest.raises(ValueError):
            await bad()
    assert await ledger.wallet(ALICE) == Wallet(ALICE, 10, 0, 0)
    assert await ledger.get_hold("big") is None and await ledger.get_hold("empty") is None
    assert [e.key for e in await ledger.history(ALICE, 10)] == ["fund"]


async def test_keys_are_idempotent_and_history_is_newest_first(ledger):
    await funded(ledger, 10)
    first = await ledger.adjust(ALICE, -4, key="fix", actor=MOD, reason="typo", now=NOW + 1)
    again = await ledger.adjust(ALICE, -4, key="fix", actor=MOD, reason="typo", now=NOW + 2)
    other = await ledger.top_up(ALICE, 7, key="fix", actor=MOD, reason="", now=NOW + 3)
    assert first.applied and not again.applied and not other.applied
    assert again.entry == other.entry == first.entry
    await ledger.top_up(ALICE, 1, key="last", actor=MOD, reason="", now=NOW + 4)

    history = await ledger.history(ALICE, 10)
    assert [(e.key, e.kind, e.amount, e.balance_after) for e in history] == [
        ("last", "topup", 1, 7),
        ("fix", "adjust", -4, 6),
        ("fund", "topup", 10, 10),
    ]
    assert history[0].seq > history[1].seq > history[2].seq
    assert await ledger.history(ALICE, 1) == history[:1]
