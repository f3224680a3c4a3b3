"""A stand-in for an external video service, told per job what to do.

``ScriptedProvider`` subclasses the real :class:`bot.providers.base.Provider`
port. Each job follows a :class:`Script`, picked by the job's prompt (or the
provider's default script): fail at submit or at poll with a given error,
raise :class:`RetryableError` a number of times first, report progress
steps, block on an :class:`asyncio.Event` until the test sets it, never
finish, refuse to be cancelled. A finished job's clip is a real (tiny) MP4,
rendered once by :func:`render_tiny_clip` and copied on every fetch.

Everything the runner asked is recorded (submits, polls, cancels, fetches)
and :meth:`ScriptedProvider.until` waits, without sleeping, for a condition
on those records.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.providers.base import (
    GenerationRequest,
    Provider,
    ProviderError,
    RetryableError,
    TaskStatus,
)
from tests.support.video import tiny_clip

FOREVER = math.inf
"""For ``Script.poll_retryable``: every poll fails with RetryableError."""


def render_tiny_clip(path: Path) -> Path:
    """A real H.264 MP4, 256x144, 1 s at 8 fps: small and fast to make (well under a second)."""
    return tiny_clip(path, "scripted")


@dataclass
class Script:
    """What the service does with one job, in the order the runner meets it.

    submit: ``submit_retryable`` RetryableErrors, then ``submit_error`` (raised
    on every later submit) or acceptance; with ``submit_gate`` the task is
    accepted at once but the answer is held back until the gate is set (a
    response still on the wire).

    poll: ``poll_retryable`` RetryableErrors; then one ``running`` answer per
    entry of ``progress``; then, with ``gate``, the poll blocks until it is set;
    then ``poll_error`` is raised, or ``fail_with`` is reported as a failed
    task, or (``never_finishes``) ``running`` is answered forever, or the task
    has succeeded.
    """

    submit_retryable: int = 0
    submit_error: ProviderError | None = None
    submit_gate: asyncio.Event | None = None
    poll_retryable: float = 0
    progress: tuple[int | None, ...] = (50,)
    gate: asyncio.Event | None = None
    poll_error: ProviderError | None = None
    fail_with: ProviderError | None = None
    never_finishes: bool = False
    cancellable: bool = True
    fetch_retryable: int = 0


@dataclass
class _Task:
    task_id: str
    request: GenerationRequest
    script: Script
    submits: int = 0
    polls: int = 0
    poll_failures: int = 0
    running_answers: int = 0
    fetch_failures: int = 0
    cancelled: bool = False
    finished: bool = False
    statuses: list[str] = field(default_factory=list)


class ScriptedProvider(Provider):
    """The external service, played from per-job scripts; records every call."""

    name = "scripted"

    def __init__(self, clip: Path, default: Script | None = None) -> None:
        self.clip = Path(clip)
        self.default = default or Script()
        self.scripts: dict[str, Script] = {}
        self.tasks: dict[str, _Task] = {}  # task id -> task
        self.submit_calls: list[str] = []  # external ids, one per call (errors included)
        self.polls: Counter[str] = Counter()
        self.cancel_calls: list[str] = []
        self.fetched: list[str] = []
        self.blocked: set[str] = set()  # task ids whose poll waits on a gate right now
        self.in_flight: set[str] = set()  # accepted, not yet finished, failed or cancelled
        self.max_in_flight = 0
        self.closed = False
        self._changed = asyncio.Event()

    # --- the test's side -------------------------------------------------------------

    def script(self, prompt: str, script: Script) -> Script:
        """Jobs whose prompt is ``prompt`` follow ``script``."""
        self.scripts[prompt] = script
        return script

    def task_of(self, prompt: str) -> _Task:
        """The accepted task of the (single) job with this prompt."""
        [task] = [t for t in self.tasks.values() if t.request.prompt == prompt]
        return task

    def is_blocked(self, prompt: str) -> bool:
        """The job with this prompt has been accepted and its poll waits on its gate."""
        return any(
            t.request.prompt == prompt and t.task_id in self.blocked for t in self.tasks.values()
        )

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after every call the runner makes."""

        async def wait() -> None:
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _script(self, request: GenerationRequest) -> Script:
        return self.scripts.get(request.prompt, self.default)

    def _finish(self, task: _Task) -> None:
        task.finished = True
        self.in_flight.discard(task.task_id)

    # --- the Provider port -------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> str:
        """Accept the job (idempotently by ``external_id``) or fail as scripted."""
        self.submit_calls.append(request.external_id)
        task_id = f"task-{request.external_id}"
        task = self.tasks.get(task_id)
        script = task.script if task else self._script(request)
        attempt = len([e for e in self.submit_calls if e == request.external_id])
        try:
            if attempt <= script.submit_retryable:
                raise RetryableError(f"429 too many requests (attempt {attempt})")
            if script.submit_error is not None:
                raise script.submit_error
            if task is None:
                task = self.tasks[task_id] = _Task(task_id, request, script)
                self.in_flight.add(task_id)
                self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
            task.submits += 1
        finally:
            self._notify()
        if script.submit_gate is not None:
            await script.submit_gate.wait()
        return task_id

    async def poll(self, task_id: str) -> TaskStatus:
        """The next answer of the task's script."""
        self.polls[task_id] += 1
        task = self.tasks.get(task_id)
        try:
            if task is None:
                return TaskStatus("lost")
            task.polls += 1
            script = task.script
            if task.cancelled:
                return TaskStatus("failed", error=ProviderError("cancelled"))
            if task.poll_failures < script.poll_retryable:
                task.poll_failures += 1
                raise RetryableError("503 service unavailable")
            if task.running_answers < len(script.progress):
                progress = script.progress[task.running_answers]
                task.running_answers += 1
                return TaskStatus("running", progress=progress)
            if script.gate is not None and not script.gate.is_set():
                self.blocked.add(task_id)
                self._notify()
                try:
                    await script.gate.wait()
                finally:
                    self.blocked.discard(task_id)
            if script.poll_error is not None:
                self._finish(task)
                raise script.poll_error
            if script.fail_with is not None:
                self._finish(task)
                return TaskStatus("failed", error=script.fail_with)
            if script.never_finishes:
                return TaskStatus("running")
            self._finish(task)
            return TaskStatus("succeeded", progress=100)
        finally:
            self._notify()

    async def fetch(self, task_id: str, destination: Path) -> Path:
        """Copy the tiny clip to ``destination``."""
        task = self.tasks[task_id]
        try:
            if task.fetch_failures < task.script.fetch_retryable:
                task.fetch_failures += 1
                raise RetryableError("download interrupted")
            destination = Path(destination)
            destination.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, self.clip, destination)
            self.fetched.append(task_id)
            return destination
        finally:
            self._notify()

    async def cancel(self, task_id: str) -> bool:
        """Stop the task unless its script refuses (the service already committed to it)."""
        self.cancel_calls.append(task_id)
        try:
            task = self.tasks.get(task_id)
            if task is None:
                return True
            if not task.script.cancellable or task.finished:
                return False
            task.cancelled = True
            self._finish(task)
            return True
        finally:
            self._notify()

    async def close(self) -> None:
        """Nothing to release; remembered so a test can see it was called."""
        self.closed = True


class ScriptedByTier(ScriptedProvider):
    """The scripted service with scripts picked by the job's tier, not its prompt.

    For /compare, whose jobs all share one prompt: ``script("master", ...)``.
    """

    def _script(self, request: GenerationRequest) -> Script:
        return self.scripts.get(request.tier, self.default)
