"""Members' /settings on SQLite, PostgreSQL and the fake: one row per wallet, shared when linked."""

from __future__ import annotations

import hashlib

import pytest

from bot.commands import UserRef
from bot.ports import UserProfile
from bot.preferences import NONE, Preferences, PreferenceStore
from storage.postgres.preferences import PgPreferences
from storage.preferences import SqlitePreferences
from tests.unit.fakes import InMemoryLedger, InMemoryPreferences

NOW = 1_700_000_000
TG = UserRef("telegram", "1")
DC = UserRef("discord", "2")


@pytest.fixture
def prefs(storage) -> PreferenceStore:
    if isinstance(storage.ledger, InMemoryLedger):
        return InMemoryPreferences(storage.ledger)
    if storage.name == "postgres":
        return PgPreferences(storage.ledger.db)
    return SqlitePreferences(storage.ledger.db)


async def meet(ledger, user: UserRef) -> None:
    await ledger.open_wallet(UserProfile(user, f"user {user.id}"), welcome_credits=0, now=NOW)


async def link(ledger, issuer: UserRef, redeemer: UserRef) -> None:
    code = hashlib.sha256(b"ABCD2345").hexdigest()
    assert await ledger.issue_link_code(issuer, code, now=NOW, ttl_s=600, per_hour=5)
    result = await ledger.redeem_link_code(redeemer, code, now=NOW + 1, failures_per_hour=10)
    assert result.status == "linked"


async def test_nothing_set_reads_as_no_preferences(prefs, ledger):
    assert await prefs.get(TG) == NONE
    await meet(ledger, TG)
    assert await prefs.get(TG) == NONE


async def test_each_setting_is_changed_alone_and_unset_with_none(prefs, ledger):
    await meet(ledger, TG)
    assert await prefs.change(TG, "tier", "master", now=NOW) == Preferences(tier="master")
    await prefs.change(TG, "duration_s", 10, now=NOW)
    await prefs.change(TG, "locale", "zh-CN", now=NOW)
    after = await prefs.change(TG, "confirm_above", 100, now=NOW)
    assert after == Preferences("master", 10, "zh-CN", 100)
    assert await prefs.get(TG) == after
    assert await prefs.change(TG, "locale", None, now=NOW) == Preferences("master", 10, None, 100)
    assert await prefs.get(DC) == NONE  # nobody else's


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_s", 7),
        ("locale", "fr"),
        ("confirm_above", 0),
        ("confirm_above", -5),
        ("balance", 1),
        ("tier", ""),
    ],
)
async def test_a_value_that_is_no_setting_is_refused_and_stores_nothing(
    prefs, ledger, field, value
):
    await meet(ledger, TG)
    await prefs.change(TG, "duration_s", 10, now=NOW)
    with pytest.raises(ValueError):
        await prefs.change(TG, field, value, now=NOW)
    assert await prefs.get(TG) == Preferences(duration_s=10)


async def test_linked_identities_share_the_issuers_settings_until_unlinked(prefs, ledger):
    await meet(ledger, TG)
    await meet(ledger, DC)
    await prefs.change(TG, "tier", "master", now=NOW)
    await prefs.change(DC, "locale", "zh-CN", now=NOW)
    await link(ledger, TG, DC)
    # The redeemer now sees (and changes) the shared wallet's settings: the issuer's.
    assert await prefs.get(DC) == Preferences(tier="master")
    await prefs.change(DC, "duration_s", 10, now=NOW)
    assert await prefs.get(TG) == Preferences(tier="master", duration_s=10)
    await ledger.unlink(DC, credits=0, actor="mod", reason="", now=NOW + 2)
    # Its own settings were kept as they were, and apply again.
    assert await prefs.get(DC) == Preferences(locale="zh-CN")
    assert await prefs.get(TG) == Preferences(tier="master", duration_s=10)
