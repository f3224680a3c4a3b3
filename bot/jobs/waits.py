"""Expected waits: the tier's configured default, then the median of this deployment's real runs.

One figure per tier and clip length, wherever a wait is shown in chat
(``/price``, quotes, status messages): a tier's ``expected_wait_s`` is for
a 5 s clip and a 10 s clip is expected to take twice as long, as it costs
twice as much. Both the configured wait and the real runs are scaled by the
deployment's ``time_scale`` (the local renderer's demo speed-up, 0.1 in the
console), so the figures are the waits this process really has.
"""

from __future__ import annotations

import statistics
from collections import deque

from bot.catalog import BASE_DURATION, Catalog
from bot.jobs.store import JobStore

SAMPLES = 20
"""How many recent runs of a tier the median is taken over."""

MIN_SAMPLES = 3
"""Below this many runs, the configured default is shown."""


class ExpectedWaits:
    """In-memory, so quotes never wait for the database.

    Before enough real runs, the tier's configured wait times ``time_scale``
    (the local renderer's demo speed-up); after that, what this deployment
    really took. Runs are kept as seconds per 5 s of clip, so 5 s and 10 s
    runs of a tier inform each other.
    """

    def __init__(self, catalog: Catalog, time_scale: float = 1.0) -> None:
        self._catalog = catalog
        self._time_scale = time_scale
        self._samples: dict[str, deque[float]] = {
            tier.key: deque(maxlen=SAMPLES) for tier in catalog.tiers
        }

    async def load(self, store: JobStore) -> None:
        """Read the recent real durations of every tier."""
        for tier in self._catalog.tiers:
            durations = await store.recent_durations(tier.key, SAMPLES)
            for seconds, clip_s in reversed(durations):
                self.record(tier.key, seconds, clip_s)

    def record(self, tier: str, seconds: int, clip_s: int = BASE_DURATION) -> None:
        """A ``clip_s``-second job of ``tier`` took ``seconds`` from start to finish."""
        if tier in self._samples:
            self._samples[tier].append(max(0, seconds) * BASE_DURATION / max(1, clip_s))

    def seconds(self, tier: str, clip_s: int = BASE_DURATION) -> int:
        """The wait to expect for a new ``clip_s``-second job of ``tier``."""
        samples = self._samples.get(tier)
        if samples is None or len(samples) < MIN_SAMPLES:
            configured = self._catalog.tier(tier).expected_wait(clip_s)
            return max(1, round(configured * self._time_scale))
        return max(1, round(statistics.median(samples) * clip_s / BASE_DURATION))
