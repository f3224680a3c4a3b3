"""The metrics port: what the core reports about its work, for an operator's dashboard.

The core calls a :class:`Metrics` where a command is handled and where a
tier is pressed. ``app.metrics`` implements it with the
Prometheus client when ``KLINGBOT_METRICS_LISTEN`` is set; everywhere else
:class:`NullMetrics` does nothing. The core never imports a metrics library.

The job, wallet and provider figures (quotes, jobs by final state,
generation time, credits held and captured, provider errors) are observed by
``app.metrics`` around the job store and the provider, where each fact is
committed, so the job code itself carries no metrics calls.

The job context (:data:`job_context`) is what log lines about a job carry:
the runner sets it in each job's task, and ``app.logs`` adds it to every
line logged from there.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol


class Metrics(Protocol):
    """What the core reports; every method is cheap and never raises."""

    def command(self, platform: str, command: str) -> None:
        """A command or button press was handled (``command`` is its snake_case name)."""

    def press(self, tier: str) -> None:
        """A tier button was pressed."""


class NullMetrics:
    """Reports nothing: the default when no metrics endpoint is configured."""

    def command(self, platform: str, command: str) -> None:
        """Nothing."""

    def press(self, tier: str) -> None:
        """Nothing."""


job_context: ContextVar[dict[str, str] | None] = ContextVar("klingbot_job", default=None)
"""In a job's task: ``{"job", "tier", "platform", "user"}`` for its log lines."""
