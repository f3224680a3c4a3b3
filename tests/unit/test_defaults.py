"""Personal defaults in the core: what /gen and /compare read, and a settings store that fails."""

from __future__ import annotations

from dataclasses import replace

from bot.commands import Balance, UserRef
from bot.defaults import Defaults, member_defaults
from bot.preferences import Preferences
from bot.service import handle
from tests.unit.chat import shown
from tests.unit.fakes import InMemoryPreferences


class PoolClosing(Exception):
    """As asyncpg's InterfaceError: neither a StorageUnavailable nor an OSError."""


class BrokenPreferences(InMemoryPreferences):
    """A store whose reads fail the way a driver may (not a StorageUnavailable)."""

    async def get(self, user: UserRef) -> Preferences:
        raise PoolClosing("the pool is closing")


async def test_defaults_are_the_bots_own_until_the_member_sets_some(deps, ledger, member):
    deps = replace(deps, preferences=InMemoryPreferences(ledger))
    assert await member_defaults(deps, member.user) == Defaults(duration_s=5)
    await deps.preferences.change(member.user, "tier", "master", now=0)
    await deps.preferences.change(member.user, "duration_s", 10, now=0)
    await deps.preferences.change(member.user, "confirm_above", 100, now=0)
    got = await member_defaults(deps, member)
    assert (got.duration_s, got.tier, got.confirm_above) == (10, "master", 100)
    assert got.ordered(("standard", "high_quality", "master")) == (
        "master",
        "standard",
        "high_quality",
    )
    assert not got.asks_before(100) and got.asks_before(101)


async def test_a_tier_the_catalog_no_longer_has_is_no_default(deps, ledger, member):
    deps = replace(deps, preferences=InMemoryPreferences(ledger))
    await deps.preferences.change(member.user, "tier", "ultra", now=0)
    assert (await member_defaults(deps, member)).tier is None


async def test_a_settings_store_that_fails_never_costs_the_answer(deps, ledger, member_zh, caplog):
    deps = replace(deps, preferences=BrokenPreferences(ledger))
    replies = await handle(Balance(), member_zh, deps)
    assert shown(replies, "zh-CN") == "你的余额：0 灵感值（¥0.00）。"  # the platform's language
    assert "the settings of telegram:3 could not be read: the pool is closing" in caplog.text
