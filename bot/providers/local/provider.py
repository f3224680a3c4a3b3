"""The local renderer as a provider: it waits like the tier would, then renders a real clip.

The wait is the tier's expected wait times ``time_scale``, so Master takes
longer than Standard here too (the console demo uses a small scale; tests a
tiny one). Waiting tasks are plain records in a heap ordered by when their
wait ends, with one timer for the whole heap: thousands of waiting jobs cost
no asyncio task or timer each. Rendering runs on worker threads, at most
``max_renders`` at a time, because it is CPU-bound; when a render ends the
runner is told (:meth:`LocalProvider.listen`), so the clip is delivered at
once. Tasks live in memory: after a restart a task is ``lost`` and the
runner submits it again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.providers.base import (
    GenerationRequest,
    Provider,
    ProviderError,
    TaskStatus,
)

log = logging.getLogger(__name__)

WAIT_SHARE = 80
"""Progress (percent) reached by the end of the waiting phase; rendering fills the rest."""


class _Cancelled(Exception):
    """Raised from the progress callback to stop a render."""


_Waiting = tuple[float, float, float, str | None, str, int, int]
"""A task in its waiting phase, as plain values (which the garbage collector stops
tracking): loop time the wait ends, monotonic start, wait seconds, image path,
prompt, height, seconds of clip."""


@dataclass(slots=True)
class _Task:
    """A task past its wait: queued for a render slot, rendering, done or failed."""

    image_path: str | None
    prompt: str
    height: int
    duration_s: int
    phase: str = "waiting"
    render_fraction: float = 0.0
    cancelled: bool = False
    error: ProviderError | None = None
    runner: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def after(cls, waiting: _Waiting, **state: Any) -> _Task:
        """The task of a waiting record whose wait has ended (or was cancelled)."""
        _, _, _, image_path, prompt, height, duration_s = waiting
        return cls(image_path, prompt, height, duration_s, **state)


class LocalProvider(Provider):
    """Renders clips on this machine with PyAV; no account needed."""

    name = "local"
    remakes_clips = True  # rendering again costs only time

    def __init__(
        self,
        work_dir: Path,
        *,
        time_scale: float = 1.0,
        max_renders: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.time_scale = time_scale
        self._renders = asyncio.Semaphore(max_renders)
        self._monotonic = monotonic
        self._waiting: dict[str, _Waiting] = {}
        """Tasks in their waiting phase, by task id."""
        self._tasks: dict[str, _Task] = {}
        """Tasks past it."""
        self._waits: list[tuple[float, str]] = []
        """(loop time the wait ends, task id), a heap; entries of cancelled tasks are skipped."""
        self._timer: asyncio.TimerHandle | None = None
        """Fires when the earliest wait ends."""
        self._on_change: Callable[[str], None] | None = None
        self._leftovers: asyncio.Future[None] | None = None
        """Removing what an earlier process left in ``work_dir`` (see :meth:`_remove_leftovers`)."""

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Tell ``on_change`` when a render ends (done or failed)."""
        self._on_change = on_change

    async def submit(self, request: GenerationRequest) -> str:
        """Start waiting, then rendering; a second submit of the same job is the same task."""
        if self._leftovers is None:
            self._leftovers = asyncio.ensure_future(asyncio.to_thread(self._remove_leftovers))
        await self._leftovers
        task_id = request.external_id
        existing = self._tasks.get(task_id)
        if task_id in self._waiting or (existing is not None and not existing.cancelled):
            return task_id
        self._tasks.pop(task_id, None)
        loop = asyncio.get_running_loop()
        wait_s = request.expected_wait_s * self.time_scale
        due = loop.time() + wait_s
        image = str(request.image_path) if request.image_path else None
        self._waiting[task_id] = (
            due,
            self._monotonic(),
            wait_s,
            image,
            request.prompt,
            request.resolution,
            request.duration_s,
        )
        heapq.heappush(self._waits, (due, task_id))
        self._arm(loop)
        return task_id

    def _remove_leftovers(self) -> None:
        """Delete the clips and half-written files a stopped process left behind.

        Tasks live in memory, so none of them belongs to a task of this
        process: a lost task is rendered again from the start. Without this,
        every crash during a render would leave a file here for good.
        """
        if not self.work_dir.is_dir():
            return
        for path in [*self.work_dir.glob("*.mp4"), *self.work_dir.glob(".*.mp4.*.part")]:
            path.unlink(missing_ok=True)
            log.info("removed %s, left by an earlier run", path.name)

    def _output(self, task_id: str) -> Path:
        return self.work_dir / f"{task_id}.mp4"

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the one timer for the earliest wait that ends."""
        if not self._waits:
            return
        due = self._waits[0][0]
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        self._timer = loop.call_at(due, self._waits_end)

    def _waits_end(self) -> None:
        """Start the render of every task whose wait has ended."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waits and self._waits[0][0] <= now:
            due, task_id = heapq.heappop(self._waits)
            waiting = self._waiting.get(task_id)
            if waiting is None or waiting[0] != due:
                continue  # cancelled, or submitted again since
            del self._waiting[task_id]
            task = self._tasks[task_id] = _Task.after(waiting)
            name = f"local-render-{task_id}"
            task.runner = asyncio.create_task(self._run(task_id, task), name=name)
        self._arm(loop)

    async def poll(self, task_id: str) -> TaskStatus:
        """Progress of the waiting phase from the clock, then of the encoder."""
        waiting = self._waiting.get(task_id)
        if waiting is not None:
            _, started, wait_s, *_ = waiting
            share = (self._monotonic() - started) / wait_s if wait_s > 0 else 1
            return TaskStatus("running", progress=int(WAIT_SHARE * min(1.0, share)))
        task = self._tasks.get(task_id)
        if task is None:
            return TaskStatus("lost")
        if task.phase == "waiting":  # for a render slot
            return TaskStatus("running", progress=WAIT_SHARE)
        if task.phase == "rendering":
            progress = WAIT_SHARE + int((100 - WAIT_SHARE) * task.render_fraction)
            return TaskStatus("running", progress=min(99, progress))
        if task.phase == "done":
            return TaskStatus("succeeded", progress=100)
        return TaskStatus("failed", error=task.error or ProviderError("render failed"))

    async def fetch(self, task_id: str, destination: Path) -> Path:
        """Move the clip into place (once; later calls find it there)."""
        task = self._tasks.get(task_id)
        destination = Path(destination)
        output = self._output(task_id)
        if task is not None and output.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.move, output, destination)
        if not destination.exists():
            raise ProviderError(f"no clip for task {task_id}")
        self._tasks.pop(task_id, None)
        return destination

    async def cancel(self, task_id: str) -> bool:
        """Stop waiting or rendering; a finished clip cannot be cancelled."""
        waiting = self._waiting.pop(task_id, None)
        if waiting is not None:  # its heap entry is skipped when due
            self._tasks[task_id] = _Task.after(
                waiting, phase="failed", cancelled=True, error=ProviderError("cancelled")
            )
            return True
        task = self._tasks.get(task_id)
        if task is None:
            return True
        if task.phase in ("done", "failed"):
            return False
        task.cancelled = True
        if task.runner is not None and task.phase == "waiting":  # queued for a render slot
            task.runner.cancel()
        return True

    async def close(self) -> None:
        """Stop every task (renders in threads stop at their next frame)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waits.clear()
        self._waiting.clear()
        for task in self._tasks.values():
            task.cancelled = True
            if task.runner is not None:
                task.runner.cancel()
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        await asyncio.gather(*runners, return_exceptions=True)

    async def _run(self, task_id: str, task: _Task) -> None:
        try:
            async with self._renders:
                if task.cancelled:
                    return
                task.phase = "rendering"
                await asyncio.to_thread(self._render, task_id, task)
            task.phase = "done"
        except asyncio.CancelledError:
            task.phase = "failed"
            task.error = ProviderError("cancelled")
            raise
        except _Cancelled:
            task.phase = "failed"
            task.error = ProviderError("cancelled")
        except ValueError as error:
            # The inputs were checked before the quote; this is a render-side refusal.
            task.phase = "failed"
            task.error = ProviderError(f"render refused the input: {error}")
            log.warning("local render of %s refused: %s", task_id, error)
        except Exception as error:
            task.phase = "failed"
            task.error = ProviderError(f"render failed: {error}")
            log.exception("local render of %s failed", task_id)
        finally:
            if self._on_change is not None and task.phase in ("done", "failed"):
                self._on_change(task_id)

    def _render(self, task_id: str, task: _Task) -> None:
        # Imported here: PyAV, NumPy and Pillow take half a second to load, which
        # wallet, db and price commands never need (``klingbot run`` loads them at start).
        from bot.providers.local.render import RenderRequest, render_clip

        image = Path(task.image_path).read_bytes() if task.image_path else None

        def progress(fraction: float) -> None:
            # At 1.0 the clip is already in place: too late to cancel.
            if task.cancelled and fraction < 1.0:
                raise _Cancelled
            task.render_fraction = fraction

        render_clip(
            RenderRequest(
                image=image,
                prompt=task.prompt,
                height=task.height,
                duration_s=task.duration_s,
            ),
            self._output(task_id),
            progress,
        )
