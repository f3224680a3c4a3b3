"""The Kling API as a :class:`~bot.providers.base.Provider`: one Kling task per job.

- ``submit`` creates an ``image2video`` task (with the member's picture as raw
  base64) or a ``text2video`` one, with our job id as ``external_task_id``.
  When the job may already exist at Kling (a later attempt after a restart,
  or a create whose answer was lost), it first asks Kling for the task by
  that external id and adopts it; a create refused with "external_task_id
  already exists" is resolved the same way. So a job never has two tasks.
- The task id handed to the runner is ``<endpoint>/<Kling task id>``
  (``text2video/8401...``), so ``poll`` knows which endpoint to query,
  also after a restart, without a new database column.
- ``poll`` maps ``submitted``/``processing``/``succeed``/``failed``;
  ``fetch`` downloads the result at once (its URL expires) with a size cap
  and a playability check; ``cancel`` is not offered by Kling's API.
- A 1303 ("too many parallel tasks for the resource pack") lowers the number
  of tasks this process runs at once to what is running now, until one of
  them finishes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bot.providers.base import (
    GenerationRequest,
    OperatorError,
    Provider,
    ProviderError,
    RetryableError,
    TaskStatus,
)
from bot.providers.kling.client import KlingClient, timeouts
from bot.providers.kling.download import download_clip
from bot.providers.kling.errors import (
    BAD_REQUEST_CODES,
    NOT_FOUND_CODES,
    TOO_MANY_TASKS,
    ApiFailure,
    Unreachable,
    failed_task_error,
    to_port_error,
)

log = logging.getLogger(__name__)

IMAGE2VIDEO = "image2video"
TEXT2VIDEO = "text2video"
IMAGE_ONLY_MODELS = frozenset({"kling-v2-1"})
"""Models Kling offers for image-to-video only."""

MB = 1024 * 1024


def split_task_id(task_id: str) -> tuple[str, str]:
    """``"text2video/123"`` -> ``("text2video", "123")``."""
    kind, sep, raw = task_id.partition("/")
    if not sep or kind not in (IMAGE2VIDEO, TEXT2VIDEO) or not raw:
        raise ProviderError(f"not a Kling task id: {task_id!r}")
    return kind, raw


class KlingProvider(Provider):
    """Generates clips with the Kling API (see the module docstring)."""

    name = "kling"

    def __init__(
        self,
        client: KlingClient,
        *,
        callback_url: str | None = None,
        aspect_ratio: str = "16:9",
        max_download_bytes: int = 300 * MB,
    ) -> None:
        self.client = client
        self.callback_url = callback_url
        self.aspect_ratio = aspect_ratio
        self.max_download_bytes = max_download_bytes
        self._active: dict[str, str] = {}
        """Kling task id -> our task id (``kind/id``), for the tasks this process saw unfinished."""
        self._cap: int | None = None
        """After a 1303: at most this many tasks at once, until one finishes."""
        self._freed = asyncio.Event()
        self._uncertain: set[str] = set()
        """External ids whose create got no answer: the task may exist."""
        self._results: dict[str, str] = {}
        """Task id -> result URL, from the poll that saw it succeed."""
        self._on_change: Callable[[str], None] | None = None
        """The runner's "poll this task now" (see :meth:`listen`)."""

    # --- the port ---------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> str:
        """Create the job's task, or adopt the one Kling already has for it."""
        kind = IMAGE2VIDEO if request.image_path is not None else TEXT2VIDEO
        if kind == TEXT2VIDEO and request.model in IMAGE_ONLY_MODELS:
            raise OperatorError(
                f"tier {request.tier} uses {request.model} for a text-only job, but Kling "
                "offers it for image-to-video only: set requires_image = true for the tier",
                condition=f"kling:text-only:{request.tier}",
            )
        external = request.external_id
        if request.attempt > 1 or external in self._uncertain:
            found = await self._find(kind, external)
            if found is not None:
                return found
        await self._room()
        body = await asyncio.to_thread(self._body, request, kind)
        try:
            data = await self.client.call("POST", f"/v1/videos/{kind}", json=body)
        except Unreachable as error:
            # The task may have been created: look for it before creating again.
            self._uncertain.add(external)
            raise RetryableError(str(error)) from None
        except ApiFailure as failure:
            if failure.duplicate_external_id:
                found = await self._find(kind, external)
                if found is not None:
                    return found
                raise RetryableError(f"Kling has a task for job {external} but not found") from None
            if failure.code == TOO_MANY_TASKS:
                self._lower_cap()
            if failure.code in BAD_REQUEST_CODES:
                log.error(
                    "Kling refused our request for job %s: %s; request: %s",
                    external,
                    failure,
                    redacted(body),
                )
            raise to_port_error(failure) from None
        self._uncertain.discard(external)
        raw = str(data["task_id"])
        self._active[raw] = f"{kind}/{raw}"
        log.info("job %s is Kling task %s/%s", external, kind, raw)
        return f"{kind}/{raw}"

    async def poll(self, task_id: str) -> TaskStatus:
        """Kling's ``task_status`` in the port's terms (Kling reports no progress)."""
        data = await self._query(task_id)
        _, raw = split_task_id(task_id)
        if data is None:
            self._finished(raw)
            return TaskStatus("lost")
        state = data.get("task_status")
        if state == "submitted":
            self._active[raw] = task_id
            return TaskStatus("queued")
        if state == "processing":
            self._active[raw] = task_id
            return TaskStatus("running")
        self._finished(raw)
        if state == "succeed":
            self._results[task_id] = _result_url(data)
            return TaskStatus("succeeded", progress=100)
        if state == "failed":
            return TaskStatus("failed", error=failed_task_error(data.get("task_status_msg") or ""))
        return TaskStatus("failed", error=ProviderError(f"unknown Kling task status {state!r}"))

    async def fetch(self, task_id: str, destination: Path) -> Path:
        """Download the result (a fresh URL from Kling if the last one failed)."""
        url = self._results.pop(task_id, None)
        if url is None:
            url = await self._fresh_url(task_id)
        return await download_clip(
            self.client.http, url, Path(destination), max_bytes=self.max_download_bytes
        )

    async def cancel(self, task_id: str) -> bool:
        """Kling's API cannot stop a task: False, and this process stops counting it."""
        try:
            _, raw = split_task_id(task_id)
        except ProviderError:
            return False
        self._finished(raw)
        return False

    async def result_link(self, task_id: str) -> str | None:
        """Kling's result URL, if it still answers (it expires)."""
        try:
            url = await self._fresh_url(task_id)
            response = await self.client.http.head(url, timeout=timeouts(), follow_redirects=True)
        except (ProviderError, httpx.HTTPError):
            return None
        return url if response.status_code == 200 else None

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Tell ``on_change`` when a callback names one of our tasks (with a callback URL)."""
        self._on_change = on_change

    def notify(self, raw_task_id: str) -> bool:
        """Kling posted a change of this task: poll it now (its content is not trusted).

        Only tasks this process runs are passed on, so posts naming other
        tasks cost nothing; False for those.
        """
        task_id = self._active.get(raw_task_id)
        if task_id is None:
            return False
        if self._on_change is not None:
            self._on_change(task_id)
        return True

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.close()

    # --- helpers ------------------------------------------------------------------------

    def _body(self, request: GenerationRequest, kind: str) -> dict[str, Any]:
        """The create request's JSON (reads and encodes the image: run it in a thread)."""
        body: dict[str, Any] = {"model_name": request.model}
        if request.mode:
            body["mode"] = request.mode
        body["duration"] = str(request.duration_s)
        if kind == IMAGE2VIDEO:
            assert request.image_path is not None
            body["image"] = base64.b64encode(request.image_path.read_bytes()).decode("ascii")
        else:
            body["aspect_ratio"] = self.aspect_ratio
        body["prompt"] = request.prompt
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        body["external_task_id"] = request.external_id
        if self.callback_url:
            body["callback_url"] = self.callback_url
        return body

    async def _query(self, task_id: str) -> dict[str, Any] | None:
        """One task by id or external id; None when Kling has no such task."""
        kind, raw = split_task_id(task_id)
        try:
            data = await self.client.call("GET", f"/v1/videos/{kind}/{raw}")
        except Unreachable as error:
            raise RetryableError(str(error)) from None
        except ApiFailure as failure:
            if failure.code in NOT_FOUND_CODES or (failure.code == 0 and failure.status == 404):
                return None
            raise to_port_error(failure) from None
        if not isinstance(data, dict):
            raise ProviderError(f"Kling answered a query of {task_id} without data")
        return data

    async def _find(self, kind: str, external: str) -> str | None:
        """The task Kling has for our job id, as our task id; None if it has none."""
        data = await self._query(f"{kind}/{external}")
        if data is None or not data.get("task_id"):
            return None
        raw = str(data["task_id"])
        self._uncertain.discard(external)
        if data.get("task_status") in ("submitted", "processing"):
            self._active[raw] = f"{kind}/{raw}"
        log.warning("job %s already had Kling task %s/%s: adopting it", external, kind, raw)
        return f"{kind}/{raw}"

    async def _fresh_url(self, task_id: str) -> str:
        data = await self._query(task_id)
        if data is None or data.get("task_status") != "succeed":
            raise ProviderError(f"Kling has no finished clip for task {task_id}")
        return _result_url(data)

    async def _room(self) -> None:
        """After a 1303, wait until fewer tasks run than Kling allowed."""
        while self._cap is not None and len(self._active) >= self._cap:
            await self._freed.wait()

    def _lower_cap(self) -> None:
        self._cap = max(1, len(self._active))
        log.warning(
            "Kling has too many parallel tasks for the resource pack (1303): "
            "at most %d at once until one finishes",
            self._cap,
        )

    def _finished(self, raw: str) -> None:
        self._active.pop(raw, None)
        if self._cap is not None:
            self._cap = None
            freed, self._freed = self._freed, asyncio.Event()
            freed.set()


def _result_url(data: dict[str, Any]) -> str:
    videos = (data.get("task_result") or {}).get("videos") or []
    if not videos or not isinstance(videos[0], dict) or not videos[0].get("url"):
        raise ProviderError("Kling reported success without a video URL")
    return str(videos[0]["url"])


def redacted(body: dict[str, Any]) -> dict[str, Any]:
    """The request for a log line: the image's bytes replaced by their size."""
    shown = dict(body)
    if "image" in shown:
        shown["image"] = f"<{len(shown['image'])} base64 characters>"
    return shown
