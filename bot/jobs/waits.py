"""Expected waits: the tier's configured default, then the median of this deployment's real runs."""

from __future__ import annotations

import statistics
from collections import deque

from bot.catalog import Catalog
from bot.jobs.store import JobStore

SAMPLES = 20
"""How many recent runs of a tier the median is taken over."""

MIN_SAMPLES = 3
"""Below this many runs, the configured default is shown."""


class ExpectedWaits:
    """In-memory, so quotes never wait for the database.

    Before enough real runs, the tier's configured wait times ``time_scale``
    (the local renderer's demo speed-up); after that, what this deployment
    really took.
    """

    def __init__(self, catalog: Catalog, time_scale: float = 1.0) -> None:
        self._catalog = catalog
        self._time_scale = time_scale
        self._samples: dict[str, deque[int]] = {
            tier.key: deque(maxlen=SAMPLES) for tier in catalog.tiers
        }

    async def load(self, store: JobStore) -> None:
        """Read the recent real durations of every tier."""
        for tier in self._catalog.tiers:
            durations = await store.recent_durations(tier.key, SAMPLES)
            self._samples[tier.key].extend(reversed(durations))

    def record(self, tier: str, seconds: int) -> None:
        """A job of ``tier`` took ``seconds`` from start to finish."""
        if tier in self._samples:
            self._samples[tier].append(max(0, seconds))

    def seconds(self, tier: str) -> int:
        """The wait to expect for a new job of ``tier``."""
        samples = self._samples.get(tier)
        if samples is None or len(samples) < MIN_SAMPLES:
            return max(1, round(self._catalog.tier(tier).expected_wait_s * self._time_scale))
        return max(1, round(statistics.median(samples)))
