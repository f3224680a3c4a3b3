"""The tier table: prices, durations, yuan, what a balance buys."""

import pytest

from bot.catalog import format_yuan
from bot.settings import Settings


@pytest.fixture
def catalog():
    return Settings().catalog()


def test_default_tiers_match_the_kling_table(catalog):
    assert [t.key for t in catalog.tiers] == ["standard", "high_quality", "master"]
    assert [t.price(5) for t in catalog.tiers] == [20, 35, 100]
    assert [t.price(10) for t in catalog.tiers] == [40, 70, 200]
    assert [t.resolution for t in catalog.tiers] == [720, 1080, 1080]
    assert [t.requires_image for t in catalog.tiers] == [True, True, False]
    assert [t.expected_wait_s for t in catalog.tiers] == [45, 60, 200]
    master = catalog.tier("master")
    assert (master.model, master.mode) == ("kling-v2-1-master", None)
    assert (catalog.tier("high_quality").model, catalog.tier("high_quality").mode) == (
        "kling-v2-1",
        "pro",
    )


def test_other_durations_have_no_price(catalog):
    with pytest.raises(ValueError):
        catalog.tier("standard").price(7)


@pytest.mark.parametrize(
    ("credits", "rate", "shown"),
    [
        (35, 10, "¥3.50"),
        (20, 10, "¥2.00"),
        (100, 10, "¥10.00"),
        (0, 10, "¥0.00"),
        (1, 10, "¥0.10"),
        (1, 3, "¥0.33"),
        (2, 3, "¥0.67"),
        (5, 1000, "¥0.01"),
        (10**12, 10, "¥100000000000.00"),
    ],
)
def test_yuan_has_two_decimals_and_rounds_half_up(credits, rate, shown):
    assert format_yuan(credits, rate) == shown


def test_clips_affordable(catalog):
    assert catalog.clips_affordable(120, 5) == {"standard": 6, "high_quality": 3, "master": 1}
    assert catalog.clips_affordable(120, 10) == {"standard": 3, "high_quality": 1, "master": 0}
    assert catalog.clips_affordable(0, 5) == {"standard": 0, "high_quality": 0, "master": 0}
