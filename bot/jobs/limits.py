"""The runner's limits and pacing, in a module of their own.

Both ``bot.jobs.runner`` (who runs next) and ``bot.jobs.lifecycle`` (one
started job) read them; keeping them here lets the lifecycle import them
without importing the runner, which imports the lifecycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunnerSettings:
    """Limits and pacing; every duration is multiplied by ``time_scale``."""

    per_user: int = 2
    queue_per_user: int = 5
    per_provider: int = 4
    status_interval_s: float = 3.0
    poll_interval_s: float = 2.0
    max_polls_per_s: float = 500.0
    time_scale: float = 1.0
    submit_attempts: int = 5
    poll_failures: int = 10
    delivery_claim_s: int = 600
    """Wall-clock seconds a delivery claim holds (unscaled): an older claim is a runner
    that died mid-send, and another runner may take the job over."""
    delivery_retry_s: float = 24 * 3600.0
    """How long (wall clock, unscaled) a clip whose sending keeps failing is tried again."""
    delivery_first_retry_s: float = 5.0
    """The first retry of a failed send comes this soon; each next one twice as late, up to:"""
    delivery_retry_cap_s: float = 120.0
    """the longest wait between two tries during the first hour of failures;"""
    delivery_late_retry_cap_s: float = 600.0
    """and after it."""
    backoff_s: float = 2.0
    timeout_factor: float = 5.0
    timeout_grace_s: float = 120.0
    """Added to ``expected × timeout_factor`` unscaled: rendering itself takes real time."""
    poll_backoff_cap_s: float = 0.0
    """Above ``poll_interval_s``: polls back off with jitter up to this (a remote provider)."""
    tier_timeouts_s: Mapping[str, float] = field(default_factory=dict)
    """A tier listed here fails after this long (scaled) instead of ``expected × factor``."""

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling, scaled, capped."""
        return self.backoff_s * 2 ** min(attempt - 1, 5) * self.time_scale

    def delivery_retry_in(self, failures: int, failing_for: float) -> float:
        """Seconds until the next try of a clip whose last ``failures`` sends failed, scaled.

        Doubling from ``delivery_first_retry_s``, capped at ``delivery_retry_cap_s``
        during the first hour of failures (``failing_for`` seconds so far), then at
        ``delivery_late_retry_cap_s``.
        """
        cap = self.delivery_retry_cap_s if failing_for < 3600 else self.delivery_late_retry_cap_s
        seconds = min(cap, self.delivery_first_retry_s * 2 ** min(max(failures, 1) - 1, 20))
        return seconds * self.time_scale

    @property
    def max_active(self) -> int:
        """Running plus queued jobs one user may have."""
        return self.per_user + self.queue_per_user
