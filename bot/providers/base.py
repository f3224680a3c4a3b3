"""The provider port: where clips are made (the embedded local renderer, or the Kling API).

A provider is asked to submit, is polled, and hands over the finished file.
Its errors say who can fix them, which decides what the runner does:

- :class:`RetryableError` (rate limit, timeout, server error): retried with backoff;
- :class:`ContentRefused` (the member's input was refused): the member is told, credits released;
- :class:`OperatorError` (provider out of balance, bad credentials): credits released, a
  neutral message to the member, an error-level log line for the operator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TaskState = Literal["queued", "running", "succeeded", "failed", "lost"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything a provider needs for one clip; ``external_id`` is our job id."""

    external_id: str
    tier: str
    model: str
    mode: str | None
    resolution: int
    duration_s: int
    prompt: str
    negative_prompt: str
    image_path: Path | None
    expected_wait_s: int
    attempt: int = 1
    """1 for the first submit of a job; more when it may already exist at the provider
    (a restart or a lost answer): a remote provider then looks for it before creating."""


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What the provider says about a task.

    ``lost`` means the provider has no such task (a local renderer restarted);
    ``error`` is set when ``state`` is ``failed``.
    """

    state: TaskState
    progress: int | None = None
    error: ProviderError | None = None


class ProviderError(Exception):
    """A provider problem; subclasses say who can fix it."""

    kind = "provider"


class RetryableError(ProviderError):
    """Try again later: rate limit, timeout, server error."""

    kind = "retryable"


class ContentRefused(ProviderError):
    """The provider refused the member's image or prompt; ``reason`` is safe to show."""

    kind = "content"

    def __init__(self, reason: str = "", *, reason_key: str | None = None) -> None:
        super().__init__(reason or "content refused")
        self.reason = reason
        self.reason_key = reason_key
        """An i18n key shown to the member instead of ``reason`` (which is then only logged)."""


class OperatorError(ProviderError):
    """Only the operator can fix this: credentials, provider balance, configuration."""

    kind = "operator"

    def __init__(self, message: str = "", *, condition: str | None = None) -> None:
        super().__init__(message)
        self.condition = condition or message
        """Names the problem (``kling:1102``): the runner logs it once until a submit works."""


class Provider(ABC):
    """A place that turns a :class:`GenerationRequest` into an MP4 file."""

    name: str = "provider"
    stops_tasks: bool = True
    """Whether :meth:`cancel` can stop a task the provider has started.

    A member's cancel during a submit is settled differently with a provider
    that cannot (Kling): see :meth:`find`.
    """
    remakes_clips: bool = False
    """Whether a finished clip :meth:`fetch` no longer has may be made again by a new submit.

    True for the local renderer: its tasks live in memory, so a job whose
    clip was made on another replica (or before a restart with another data
    folder) is rendered again, which costs nothing but time. False for a
    remote service: a new task there is billed again, so its clip is only
    ever fetched again (``bot.jobs.lifecycle.JobLifecycle.clip_here``).
    """

    @abstractmethod
    async def submit(self, request: GenerationRequest) -> str:
        """Start a task; return the provider's task id. Idempotent by ``external_id``."""

    @abstractmethod
    async def poll(self, task_id: str) -> TaskStatus:
        """The task's state and progress (0-100 where known)."""

    @abstractmethod
    async def fetch(self, task_id: str, destination: Path) -> Path:
        """Copy the finished clip to ``destination`` and return it."""

    @abstractmethod
    async def cancel(self, task_id: str) -> bool:
        """Stop the task if the provider allows it; True if it is stopped."""

    async def find(self, request: GenerationRequest) -> str | None:
        """The task the provider already has for this job, if a submit of it may have made one.

        Asked before a job that was sent is refunded: when its submits kept
        failing without an answer (the last one may have reached the
        provider), and, with a provider that cannot stop tasks
        (``stops_tasks`` False), when its member cancels while a submit is
        under way (the submit is stopped first; a create already sent is let
        finish). A task found is followed, not refunded: the provider will
        bill it. None when the provider has none or cannot say (then the job
        is refunded). The default: nothing to find. (A provider that can stop
        tasks has a cancel during a submit refunded at once, and the task the
        submit then returns is stopped.)
        """
        return None

    async def result_link(self, task_id: str) -> str | None:
        """A link the member can download the finished clip from, while it is valid.

        Used when the clip is over the chat's upload limit; None when the
        provider has no such link (the local renderer).
        """
        return None

    def listen(self, on_change: Callable[[str], None]) -> None:  # noqa: B027 - optional hook
        """Call ``on_change(task_id)`` whenever the provider hears that a task changed.

        The runner then polls that task at once instead of at the end of its
        interval (a Kling callback, a local render that finished). Providers
        that hear nothing between polls keep this default and are polled on
        the timer only. What the provider heard is never trusted: it only
        makes the next poll come sooner.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, worker tasks)."""
