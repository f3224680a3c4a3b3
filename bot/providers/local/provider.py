"""The local renderer as a provider: it waits like the tier would, then renders a real clip.

The wait is the tier's expected wait times ``time_scale`` (a timer, not a
task, so thousands of waiting jobs stay cheap), so Master takes
longer than Standard here too (the console demo uses a small scale; tests a
tiny one). Rendering runs on worker threads, at most ``max_renders`` at a
time, because it is CPU-bound. Tasks live in memory: after a restart a
task is ``lost`` and the runner submits it again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class _Task:
    request: GenerationRequest
    output: Path
    wait_s: float
    started: float
    phase: str = "waiting"
    render_fraction: float = 0.0
    cancelled: bool = False
    error: ProviderError | None = None
    runner: asyncio.Task[None] | None = field(default=None, repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class LocalProvider(Provider):
    """Renders clips on this machine with PyAV; no account needed."""

    name = "local"

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
        self._tasks: dict[str, _Task] = {}

    async def submit(self, request: GenerationRequest) -> str:
        """Start waiting, then rendering; a second submit of the same job is the same task."""
        task_id = request.external_id
        existing = self._tasks.get(task_id)
        if existing is not None and not existing.cancelled:
            return task_id
        task = _Task(
            request=request,
            output=self.work_dir / f"{task_id}.mp4",
            wait_s=request.expected_wait_s * self.time_scale,
            started=self._monotonic(),
        )
        self._tasks[task_id] = task
        # No asyncio task while waiting (thousands may wait): one timer starts the render.
        task.timer = asyncio.get_running_loop().call_later(task.wait_s, self._start_render, task)
        return task_id

    def _start_render(self, task: _Task) -> None:
        task.timer = None
        if task.cancelled:
            return
        name = f"local-render-{task.request.external_id}"
        task.runner = asyncio.create_task(self._run(task), name=name)

    async def poll(self, task_id: str) -> TaskStatus:
        """Progress of the waiting phase from the clock, then of the encoder."""
        task = self._tasks.get(task_id)
        if task is None:
            return TaskStatus("lost")
        if task.phase == "waiting":
            share = (self._monotonic() - task.started) / task.wait_s if task.wait_s > 0 else 1
            return TaskStatus("running", progress=int(WAIT_SHARE * min(1.0, share)))
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
        if task is not None and task.output.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.move, task.output, destination)
        if not destination.exists():
            raise ProviderError(f"no clip for task {task_id}")
        self._tasks.pop(task_id, None)
        return destination

    async def cancel(self, task_id: str) -> bool:
        """Stop waiting or rendering; a finished clip cannot be cancelled."""
        task = self._tasks.get(task_id)
        if task is None:
            return True
        if task.phase in ("done", "failed"):
            return False
        task.cancelled = True
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
            task.phase = "failed"
            task.error = ProviderError("cancelled")
        if task.runner is not None and task.phase == "waiting":  # queued for a render slot
            task.runner.cancel()
        return True

    async def close(self) -> None:
        """Stop every task (renders in threads stop at their next frame)."""
        for task in self._tasks.values():
            task.cancelled = True
            if task.timer is not None:
                task.timer.cancel()
                task.timer = None
            if task.runner is not None:
                task.runner.cancel()
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        await asyncio.gather(*runners, return_exceptions=True)

    async def _run(self, task: _Task) -> None:
        try:
            async with self._renders:
                if task.cancelled:
                    return
                task.phase = "rendering"
                await asyncio.to_thread(self._render, task)
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
            log.warning("local render of %s refused: %s", task.request.external_id, error)
        except Exception as error:
            task.phase = "failed"
            task.error = ProviderError(f"render failed: {error}")
            log.exception("local render of %s failed", task.request.external_id)

    def _render(self, task: _Task) -> None:
        # Imported here: PyAV, NumPy and Pillow take half a second to load, which
        # wallet, db and price commands never need (``klingbot run`` loads them at start).
        from bot.providers.local.render import RenderRequest, render_clip

        request = task.request
        image = request.image_path.read_bytes() if request.image_path else None

        def progress(fraction: float) -> None:
            # At 1.0 the clip is already in place: too late to cancel.
            if task.cancelled and fraction < 1.0:
                raise _Cancelled
            task.render_fraction = fraction

        render_clip(
            RenderRequest(
                image=image,
                prompt=request.prompt,
                height=request.resolution,
                duration_s=request.duration_s,
            ),
            task.output,
            progress,
        )
