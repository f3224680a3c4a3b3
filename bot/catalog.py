"""The tier catalog: tiers, clip prices and yuan conversion.

Everything here is a pure function over operator data (the ``tiers`` and
``credits_per_yuan`` settings), so it is cheap enough to run on every
``/price`` and easy to test without any storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

DURATIONS: tuple[int, ...] = (5, 10)
"""Clip lengths in seconds that every tier offers."""

BASE_DURATION = 5
"""The clip length a tier's listed price is for; longer clips cost proportionally more."""


@dataclass(frozen=True, slots=True)
class Tier:
    """One quality tier, as the operator configured it."""

    key: str
    name_en: str
    name_zh: str
    model: str
    mode: str | None
    resolution: int
    credits_per_5s: int
    requires_image: bool
    expected_wait_s: int

    def name(self, locale: str) -> str:
        """The tier's display name in ``locale`` (zh-CN or English)."""
        return self.name_zh if locale == "zh-CN" else self.name_en

    def expected_wait(self, duration_s: int) -> int:
        """Seconds a clip of ``duration_s`` is expected to take: ``expected_wait_s`` per 5 s."""
        if duration_s not in DURATIONS:
            raise ValueError(f"unsupported duration {duration_s!r}")
        return self.expected_wait_s * duration_s // BASE_DURATION

    def price(self, duration_s: int) -> int:
        """Credits for one clip of ``duration_s`` seconds (5 or 10)."""
        if duration_s not in DURATIONS:
            raise ValueError(f"unsupported duration {duration_s!r}")
        return self.credits_per_5s * (duration_s // BASE_DURATION)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The tiers on sale, cheapest first, and the credits-to-yuan rate."""

    tiers: tuple[Tier, ...]
    credits_per_yuan: int = 10
    _hash: int = field(init=False, repr=False, compare=False)
    """Worked out once: the catalog keys the /price caches, looked up on every call."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.tiers, self.credits_per_yuan)))

    def __hash__(self) -> int:
        return self._hash

    def tier(self, key: str) -> Tier:
        """The tier called ``key``; raises KeyError for an unknown key."""
        for tier in self.tiers:
            if tier.key == key:
                return tier
        raise KeyError(key)

    def yuan(self, credits: int) -> str:
        """``credits`` shown as yuan with two decimals, e.g. 35 -> ``¥3.50``."""
        return format_yuan(credits, self.credits_per_yuan)

    def yuan_amount(self, credits: int) -> Decimal:
        """``credits`` in yuan, to the fen: 35 -> ``Decimal("3.50")``."""
        return yuan_amount(credits, self.credits_per_yuan)

    def clips_affordable(self, balance: int, duration_s: int) -> dict[str, int]:
        """How many clips of each tier ``balance`` credits buys."""
        return {tier.key: balance // tier.price(duration_s) for tier in self.tiers}


def yuan_amount(credits: int, credits_per_yuan: int) -> Decimal:
    """Convert integer credits to yuan, rounding half up to the fen."""
    return (Decimal(credits) / Decimal(credits_per_yuan)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )


def format_yuan(credits: int, credits_per_yuan: int) -> str:
    """Integer credits as a plain yuan string, e.g. ``¥3.50`` (chat messages use Babel)."""
    return f"¥{yuan_amount(credits, credits_per_yuan)}"


DEFAULT_TIERS: dict[str, dict[str, object]] = {
    "standard": {
        "name_en": "Standard",
        "name_zh": "标准",
        "model": "kling-v2-1",
        "mode": "std",
        "resolution": 720,
        "credits_per_5s": 20,
        "requires_image": True,
        "expected_wait_s": 45,
    },
    "high_quality": {
        "name_en": "High Quality",
        "name_zh": "高品质",
        "model": "kling-v2-1",
        "mode": "pro",
        "resolution": 1080,
        "credits_per_5s": 35,
        "requires_image": True,
        "expected_wait_s": 60,
    },
    "master": {
        "name_en": "Master",
        "name_zh": "大师",
        "model": "kling-v2-1-master",
        "mode": None,
        "resolution": 1080,
        "credits_per_5s": 100,
        "requires_image": False,
        "expected_wait_s": 200,
    },
}
"""The Kling 2.1 tier table of README.md; operators override fields in their TOML config."""
