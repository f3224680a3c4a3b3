"""Expected waits: one figure per tier and clip length, from the configuration, then real runs."""

from __future__ import annotations

from bot.catalog import DEFAULT_TIERS, Catalog, Tier
from bot.jobs.waits import ExpectedWaits


def catalog() -> Catalog:
    return Catalog(tuple(Tier(key=key, **fields) for key, fields in DEFAULT_TIERS.items()))


def test_before_real_runs_a_10_s_clip_waits_twice_the_configured_wait_scaled():
    waits = ExpectedWaits(catalog(), time_scale=0.1)
    assert [waits.seconds(key, 5) for key in DEFAULT_TIERS] == [4, 6, 20]
    assert [waits.seconds(key, 10) for key in DEFAULT_TIERS] == [9, 12, 40]


def test_runs_of_both_lengths_inform_each_other():
    waits = ExpectedWaits(catalog())
    waits.record("standard", 30, 5)
    waits.record("standard", 70, 10)  # 35 s per 5 s of clip
    assert waits.seconds("standard", 5) == 45  # still the configured wait: two runs
    waits.record("standard", 40, 5)
    assert (waits.seconds("standard", 5), waits.seconds("standard", 10)) == (35, 70)
