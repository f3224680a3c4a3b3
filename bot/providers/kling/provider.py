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
- A create on its way is never abandoned: when the job's submit is stopped
  (the member cancelled), the create still gets its answer, and
  :meth:`KlingProvider.find` reports the task it made. Before a job whose
  create got no answer is refunded, ``find`` asks Kling once more.
- A 1302 (request rate) is waited out by the client; a 1303 (too many
  parallel tasks for the resource pack) makes the create wait for a slot
  (:mod:`.capacity`) and go again. Neither ever fails a job: a refused
  request made nothing at Kling.
- Callback posts make the runner poll a task at once, at most once per poll
  interval (:mod:`.pokes`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from collections.abc import Awaitable, Callable
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
from bot.providers.kling.capacity import Capacity
from bot.providers.kling.client import KlingClient, timeouts
from bot.providers.kling.download import download_clip
from bot.providers.kling.errors import (
    BAD_REQUEST_CODES,
    TASK_NOT_FOUND,
    TOO_MANY_TASKS,
    ApiFailure,
    Unreachable,
    failed_task_error,
    to_port_error,
)
from bot.providers.kling.pokes import Pokes

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
    stops_tasks = False  # Kling's API has no cancel

    def __init__(
        self,
        client: KlingClient,
        *,
        callback_url: str | None = None,
        aspect_ratio: str = "16:9",
        max_download_bytes: int = 300 * MB,
        poke_spacing_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.callback_url = callback_url
        self.aspect_ratio = aspect_ratio
        self.max_download_bytes = max_download_bytes
        self.capacity = Capacity()
        """The tasks this process has at Kling, and the limit a 1303 set."""
        self.pokes = Pokes(poke_spacing_s, monotonic=monotonic, sleep=sleep)
        """Callback posts turned into polls (see :meth:`listen`)."""
        self._uncertain: set[str] = set()
        """External ids whose create got no answer: the task may exist."""
        self._creates: dict[str, asyncio.Task[str]] = {}
        """External id -> its create on the wire (it runs on if the submit is stopped)."""
        self._made: dict[str, str] = {}
        """External id -> the task its create made, until the submit (or :meth:`find`) takes it."""
        self._results: dict[str, str] = {}
        """Task id -> result URL, from the poll that saw it succeed."""

    # --- the port ---------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> str:
        """Create the job's task, or adopt the one Kling already has for it."""
        kind = _kind(request)
        if kind == TEXT2VIDEO and request.model in IMAGE_ONLY_MODELS:
            raise OperatorError(
                f"tier {request.tier} uses {request.model} for a text-only job, but Kling "
                "offers it for image-to-video only: set requires_image = true for the tier",
                condition=f"kling:text-only:{request.tier}",
            )
        external = request.external_id
        made = await self._answered_create(external)
        if made is not None:
            return made
        if request.attempt > 1 or external in self._uncertain:
            found = await self._find(kind, external)
            if found is not None:
                return found
        body = await asyncio.to_thread(self._body, request, kind)
        refusals = 0
        while True:
            await self.capacity.room()
            try:
                return await self._create(kind, body, external)
            except ApiFailure as failure:
                if failure.duplicate_external_id:
                    return await self._adopt_duplicate(kind, external)
                if failure.code != TOO_MANY_TASKS:
                    raise self._refused(failure, body) from None
            refusals += 1  # 1303: nothing was made; wait for a slot, then create again
            if not self.capacity.refused():
                if refusals == 1:
                    log.warning(
                        "Kling runs no more parallel tasks for this account (1303) and none "
                        "of them is ours: job %s waits and tries again",
                        external,
                    )
                await self.client.pause(refusals)

    async def find(self, request: GenerationRequest) -> str | None:
        """The task Kling has for this job, when a create of it may have made one.

        A create still on its way is waited for (its answer says); a create
        that got no answer is looked up once by ``external_task_id``. When
        every create of the job was answered (made nothing, or was never
        sent) there is nothing to ask: None. A look-up that fails is logged
        (Kling may bill a task nobody follows) and answers None.
        """
        external = request.external_id
        made = await self._answered_create(external)
        if made is not None or external not in self._uncertain:
            return made
        try:
            return await self._find(_kind(request), external)
        except ProviderError as error:
            log.warning(
                "could not ask Kling whether job %s has a task (%s): it is refunded, "
                "and Kling bills the task if it made one",
                external,
                error,
            )
            return None

    async def poll(self, task_id: str) -> TaskStatus:
        """Kling's ``task_status`` in the port's terms (Kling reports no progress)."""
        self.pokes.polled(task_id)
        data = await self._query(task_id)
        _, raw = split_task_id(task_id)
        if data is None:
            self._finished(raw, task_id)
            return TaskStatus("lost")
        state = data.get("task_status")
        if state == "submitted":
            self.capacity.running(raw, task_id)
            return TaskStatus("queued")
        if state == "processing":
            self.capacity.running(raw, task_id)
            return TaskStatus("running")
        self._finished(raw, task_id)
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
        """Kling's API cannot stop a task: False, and this process stops counting it.

        A job that goes on anyway (too late to cancel) is counted again at its next poll.
        """
        try:
            _, raw = split_task_id(task_id)
        except ProviderError:
            return False
        self._finished(raw, task_id)
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
        self.pokes.on_change = on_change

    def notify(self, raw_task_id: str) -> bool:
        """Kling posted a change of this task: poll it soon (its content is not trusted).

        Only tasks this process follows are passed on, at most one poll per
        poll interval however many posts arrive (:class:`.pokes.Pokes`); False
        for tasks that are not ours, which cost nothing.
        """
        task_id = self.capacity.active.get(raw_task_id)
        if task_id is None:
            return False
        self.pokes.heard(task_id)
        return True

    async def close(self) -> None:
        """Stop the pending pokes and creates, close the HTTP client."""
        await self.pokes.close()
        for create in list(self._creates.values()):
            create.cancel()
        await asyncio.gather(*self._creates.values(), return_exceptions=True)
        await self.client.close()

    # --- creating ---------------------------------------------------------------------

    async def _create(self, kind: str, body: dict[str, Any], external: str) -> str:
        """POST the create; our task id. The call runs to its answer even if the submit stops."""
        create = asyncio.ensure_future(self._post_create(kind, body, external))
        self._creates[external] = create
        create.add_done_callback(functools.partial(self._create_done, external))
        task_id = await asyncio.shield(create)
        self._made.pop(external, None)
        return task_id

    async def _post_create(self, kind: str, body: dict[str, Any], external: str) -> str:
        """The create call itself; records what it made (or that nobody knows)."""
        made: tuple[str, str] | None = None
        try:
            data = await self.client.call("POST", f"/v1/videos/{kind}", json=body)
            raw = str(data["task_id"])
            made = (raw, f"{kind}/{raw}")
        except Unreachable as error:
            # The task may have been created: look for it before creating again.
            self._uncertain.add(external)
            raise RetryableError(str(error)) from None
        except ApiFailure as failure:
            if failure.outcome_unknown:
                self._uncertain.add(external)
            raise
        finally:
            self.capacity.sent(*(made or (None, None)))
        self._uncertain.discard(external)
        self._made[external] = made[1]
        log.info("job %s is Kling task %s", external, made[1])
        return made[1]

    def _create_done(self, external: str, create: asyncio.Task[str]) -> None:
        if self._creates.get(external) is create:
            del self._creates[external]
        if not create.cancelled():
            create.exception()  # seen here when the submit that sent it was stopped

    async def _answered_create(self, external: str) -> str | None:
        """The task made by this job's last create, once that create is answered."""
        pending = self._creates.get(external)
        if pending is not None:
            await asyncio.wait({pending})
        return self._made.pop(external, None)

    async def _adopt_duplicate(self, kind: str, external: str) -> str:
        """Kling refused the create as a duplicate of our job id: follow the task it has."""
        found = await self._find(kind, external)
        if found is None:
            raise RetryableError(f"Kling has a task for job {external} but did not find it")
        return found

    def _refused(self, failure: ApiFailure, body: dict[str, Any]) -> ProviderError:
        """The port's error for a refused create; a refusal that is our bug is logged."""
        if failure.code in BAD_REQUEST_CODES:
            log.error(
                "Kling refused our request for job %s: %s; request: %s",
                body["external_task_id"],
                failure,
                redacted(body),
            )
        return to_port_error(failure)

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
        """One task by id or external id; None when Kling has no such task (1203)."""
        kind, raw = split_task_id(task_id)
        path = f"/v1/videos/{kind}/{raw}"
        try:
            data = await self.client.call("GET", path)
        except Unreachable as error:
            raise RetryableError(str(error)) from None
        except ApiFailure as failure:
            if failure.code == TASK_NOT_FOUND or (failure.code == 0 and failure.status == 404):
                return None
            if failure.code in BAD_REQUEST_CODES:  # 1202: the method or path is wrong, not the task
                log.error("Kling refused our query GET %s (a bug in klingbot): %s", path, failure)
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
        task_id = f"{kind}/{raw}"
        self._uncertain.discard(external)
        if data.get("task_status") in ("submitted", "processing"):
            self.capacity.running(raw, task_id)
        log.warning("job %s already had Kling task %s: adopting it", external, task_id)
        return task_id

    async def _fresh_url(self, task_id: str) -> str:
        data = await self._query(task_id)
        if data is None or data.get("task_status") != "succeed":
            raise ProviderError(f"Kling has no finished clip for task {task_id}")
        return _result_url(data)

    def _finished(self, raw: str, task_id: str) -> None:
        """The task needs no slot and no pokes any more."""
        self.capacity.finished(raw)
        self.pokes.forget(task_id)


def _kind(request: GenerationRequest) -> str:
    """The endpoint of the job's task: image2video with an image, text2video without."""
    return IMAGE2VIDEO if request.image_path is not None else TEXT2VIDEO


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
