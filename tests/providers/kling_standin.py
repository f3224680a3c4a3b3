"""A stand-in for the Kling API on 127.0.0.1 (aiohttp), strict about what Kling checks.

It checks the JWT (signature, ``iss``, ``exp``, ``nbf``: 401 with 1001-1004),
the create bodies (model, mode, duration as a string, raw base64 images of
JPG/PNG at most 10 MB with sides of at least 300 px and an aspect ratio
within 1:2.5..2.5:1, prompt lengths, ``image`` required on image2video,
``kling-v2-1`` refused on text2video, no ``cfg_scale`` for 2.x models, a
duplicate ``external_task_id`` refused with 1201) and moves each task
``submitted -> processing -> succeed`` on its own clock, which runs ``speed``
times faster than real time and can be pushed forward with :meth:`advance`.
A finished task's URL serves a real MP4.

Always on, as at Kling: the account runs at most ``max_running`` tasks at
once (a create beyond them is refused with 1303 and makes nothing), and
takes at most ``rate_burst`` API requests at once, refilled at ``rate_per_s``
per second of real time (beyond: 1302; counted in ``throttled``, not in
``refused``). A method a route does not take is 1202.

Faults a test can ask for: ``create_faults`` / ``query_faults`` (codes to
answer next), ``drop_creates`` (create the task, then drop the connection
before answering), ``lose_creates`` (drop the connection without making the
task), ``stall_creates`` (a create waits for this event before anything is
made; ``stalled`` counts the creates that reached it), ``hold_creates`` (the
task is made, the answer waits for this event), ``fail_tasks_with`` (tasks
end ``failed`` with that message), ``never_finish``, ``expire_urls`` (result
URLs answer 404), ``costs_code`` (the account costs endpoint answers that
code).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from PIL import Image

STATUS_OF = {
    **dict.fromkeys(range(1000, 1005), 401),
    1100: 429,
    1101: 429,
    1102: 429,
    1103: 403,
    1200: 400,
    1201: 400,
    1202: 404,
    1203: 404,
    1300: 400,
    1301: 400,
    1302: 429,
    1303: 429,
    5000: 500,
    5001: 503,
    5002: 504,
}
MODELS = {"kling-v1", "kling-v1-5", "kling-v1-6", "kling-v2-master", "kling-v2-1", "kling-v2-1-master"}
IMAGE_ONLY = {"kling-v2-1"}
FIELDS = {
    "image2video": {
        "model_name", "mode", "duration", "image", "prompt", "negative_prompt",
        "cfg_scale", "external_task_id", "callback_url",
    },
    "text2video": {
        "model_name", "mode", "duration", "aspect_ratio", "prompt", "negative_prompt",
        "cfg_scale", "external_task_id", "callback_url",
    },
}  # fmt: skip


@dataclass
class StandinTask:
    task_id: str
    kind: str
    body: dict[str, Any]
    created: float
    polls: int = 0


@dataclass
class KlingStandin:
    """Start with :meth:`start` (gives ``url``), stop with :meth:`stop`."""

    clip: Path
    access_key: str = "ak-standin-0001"
    secret_key: str = "sk-standin-secret-0001-abcdefghijklmnop"
    speed: float = 1000.0
    queued_s: float = 5.0
    processing_s: float = 40.0
    jwt_clock: Callable[[], float] = time.time
    tasks: dict[str, StandinTask] = field(default_factory=dict)
    creates: list[dict[str, Any]] = field(default_factory=list)
    """Every create body Kling accepted (task made), in order."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(code, message) of every refusal, in order."""
    tokens: set[str] = field(default_factory=set)
    create_faults: deque[int] = field(default_factory=deque)
    query_faults: deque[int] = field(default_factory=deque)
    drop_creates: int = 0
    lose_creates: int = 0
    stall_creates: asyncio.Event | None = None
    stalled: int = 0
    hold_creates: asyncio.Event | None = None
    """When set: the task is made, then the answer waits for this event (still on the wire)."""
    fail_tasks_with: str | None = None
    never_finish: bool = False
    expire_urls: bool = False
    costs_code: int = 0
    max_running: int = 3
    """Tasks the account runs at once (submitted or processing); more creates: 1303."""
    rate_per_s: float = 200.0
    rate_burst: int = 20
    """API requests taken at once, refilled at ``rate_per_s`` per real second; more: 1302."""
    throttled: int = 0
    """Requests refused with 1302 for the rate."""
    downloads: int = 0
    queries: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(840_000_000_000_000_001)
        self._offset = 0.0
        self._t0 = time.monotonic()
        self._activity = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._bucket = float(self.rate_burst)
        self._refilled = time.monotonic()

    # --- control --------------------------------------------------------------------

    def clock(self) -> float:
        """The stand-in's task clock, in seconds."""
        return (time.monotonic() - self._t0) * self.speed + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    async def until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait, without sleeping, until ``condition()`` holds after some request."""

        async def watch() -> None:
            while not condition():
                self._activity.clear()
                await self._activity.wait()

        await asyncio.wait_for(watch(), timeout)

    def by_external(self, external: str) -> list[StandinTask]:
        return [t for t in self.tasks.values() if t.body["external_task_id"] == external]

    def running(self) -> list[StandinTask]:
        """The account's tasks that count against ``max_running`` now."""
        return [t for t in self.tasks.values() if self._state(t) in ("submitted", "processing")]

    async def start(self) -> str:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/v1/videos/{kind}", self._create)
        app.router.add_get("/v1/videos/{kind}", self._list)
        app.router.add_get("/v1/videos/{kind}/{id}", self._query)
        app.router.add_get("/account/costs", self._costs)
        app.router.add_get("/videos/{task_id}.mp4", self._video)
        app.router.add_route("*", "/v1/{tail:.*}", self._wrong_method)
        app.router.add_route("*", "/account/{tail:.*}", self._wrong_method)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- answers ----------------------------------------------------------------------

    def _answer(self, code: int = 0, message: str = "SUCCEED", data: Any = None) -> web.Response:
        self._activity.set()
        if code:
            self.refused.append((code, message))
        body = {"code": code, "message": message, "request_id": f"req-{next(self._ids)}"}
        if data is not None:
            body["data"] = data
        return web.json_response(body, status=STATUS_OF.get(code, 200 if code == 0 else 400))

    def _auth(self, request: web.Request) -> web.Response | None:
        """Refuses a request without a valid token (1001-1004) or over the rate (1302)."""
        if not self._take_token():
            self.throttled += 1
            self._activity.set()
            body = {"code": 1302, "message": "API request too fast", "request_id": "req-throttled"}
            return web.json_response(body, status=STATUS_OF[1302])
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return self._answer(1001, "Authorization is empty")
        token = header[7:].strip()
        try:
            head = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.secret_key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_nbf": False, "require": ["iss", "exp", "nbf"]},
            )
        except jwt.InvalidTokenError as error:
            return self._answer(1002, f"Authorization is invalid: {error}")
        if head.get("alg") != "HS256" or head.get("typ") != "JWT":
            return self._answer(1002, "Authorization is invalid: header")
        if claims["iss"] != self.access_key:
            return self._answer(1002, "Authorization is invalid: unknown access key")
        now = self.jwt_clock()
        if claims["nbf"] > now:
            return self._answer(1003, "Authorization is not yet valid")
        if claims["exp"] < now:
            return self._answer(1004, "Authorization has expired")
        self.tokens.add(token)
        return None

    def _take_token(self) -> bool:
        """One request out of the rate's bucket; False when it is empty."""
        now = time.monotonic()
        self._bucket = min(self.rate_burst, self._bucket + (now - self._refilled) * self.rate_per_s)
        self._refilled = now
        if self._bucket < 1:
            return False
        self._bucket -= 1
        return True

    # --- routes ---------------------------------------------------------------------

    async def _wrong_method(self, request: web.Request) -> web.Response:
        return self._answer(1202, f"Invalid request method {request.method}")

    async def _create(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind not in FIELDS:
            return self._answer(1202, "Invalid request path")
        refused = self._auth(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return self._answer(1200, "Invalid request body: not JSON")
        problem = self._check(kind, body)
        if problem is not None:
            return self._answer(*problem)
        if self.create_faults:
            return self._answer(self.create_faults.popleft(), "scripted fault")
        if len(self.running()) >= self.max_running:
            return self._answer(1303, "parallel tasks over the resource pack limit")
        if self.stall_creates is not None:
            self.stalled += 1
            self._activity.set()
            await self.stall_creates.wait()
        if self.lose_creates:
            self.lose_creates -= 1
            self._activity.set()
            assert request.transport is not None
            request.transport.close()  # lost on its way: nothing is made, no answer comes
            return web.Response()
        task = StandinTask(str(next(self._ids)), kind, body, self.clock())
        self.tasks[task.task_id] = task
        self.creates.append(body)
        if self.hold_creates is not None:
            self._activity.set()
            await self.hold_creates.wait()
        if self.drop_creates:
            self.drop_creates -= 1
            self._activity.set()
            assert request.transport is not None
            request.transport.close()  # the task exists; its answer never arrives
            return web.Response()
        return self._answer(data=self._describe(task))

    def _check(self, kind: str, body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict):
            return 1200, "body must be an object"
        unknown = set(body) - FIELDS[kind]
        if unknown:
            return 1200, f"unknown fields {sorted(unknown)}"
        model = body.get("model_name", "kling-v1")
        if model not in MODELS:
            return 1201, f"model_name {model!r} is invalid"
        if kind == "text2video" and model in IMAGE_ONLY:
            return 1201, f"model_name {model} does not support text2video"
        if "cfg_scale" in body and model.startswith("kling-v2"):
            return 1201, "cfg_scale is not supported by kling-v2.x models"
        if body.get("mode", "std") not in ("std", "pro"):
            return 1201, "mode is invalid"
        if body.get("duration", "5") not in ("5", "10"):  # an int 5 is refused too
            return 1201, f"duration {body.get('duration')!r} is invalid"
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str) or len(prompt) > 2500:
            return 1201, "prompt is invalid or longer than 2500 characters"
        if kind == "text2video" and not prompt.strip():
            return 1201, "prompt is required"
        negative = body.get("negative_prompt", "")
        if not isinstance(negative, str) or len(negative) > 2500:
            return 1201, "negative_prompt is invalid or longer than 2500 characters"
        if kind == "text2video" and body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
            return 1201, "aspect_ratio is invalid"
        if kind == "image2video":
            problem = _check_image(body.get("image"))
            if problem is not None:
                return 1201, problem
        external = body.get("external_task_id")
        if external is not None:
            if not isinstance(external, str) or not external:
                return 1201, "external_task_id is invalid"
            if self.by_external(external):
                return 1201, "external_task_id already exists"
        if "callback_url" in body and not str(body["callback_url"]).startswith("http"):
            return 1201, "callback_url is invalid"
        return None

    async def _query(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        self.queries += 1
        if self.query_faults:
            return self._answer(self.query_faults.popleft(), "scripted fault")
        kind, wanted = request.match_info["kind"], request.match_info["id"]
        task = self.tasks.get(wanted) or next(iter(self.by_external(wanted)), None)
        if task is None or task.kind != kind:
            return self._answer(1203, "task not found")
        task.polls += 1
        return self._answer(data=self._describe(task))

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        kind = request.match_info["kind"]
        size = int(request.query.get("pageSize", "30"))
        tasks = [t for t in self.tasks.values() if t.kind == kind][:size]
        return self._answer(data=[self._describe(t) for t in tasks])

    async def _costs(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        try:
            start, end = int(request.query["start_time"]), int(request.query["end_time"])
        except (KeyError, ValueError):
            return self._answer(1201, "start_time and end_time (Unix ms) are required")
        if not 10**12 < start < end:
            return self._answer(1201, "start_time/end_time must be Unix milliseconds, start < end")
        if self.costs_code:
            return self._answer(self.costs_code, "scripted fault")
        pack = {
            "resource_pack_name": "Video Generation - 100 units",
            "resource_pack_id": "pack-0001",
            "resource_pack_type": "decreasing_total",
            "total_quantity": 100.0,
            "remaining_quantity": 62.5,
            "purchase_time": start,
            "effective_time": start,
            "invalid_time": end + 30 * 86_400_000,
            "status": "online",
        }
        return self._answer(data={"code": 0, "resource_pack_subscribe_infos": [pack]})

    async def _video(self, request: web.Request) -> web.StreamResponse:
        self._activity.set()
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or self.expire_urls or self._state(task) != "succeed":
            return web.Response(status=404, text="NoSuchKey")
        if request.method == "GET":
            self.downloads += 1
        return web.Response(body=self.clip.read_bytes(), content_type="video/mp4")

    # --- tasks --------------------------------------------------------------------------

    def _state(self, task: StandinTask) -> str:
        age = self.clock() - task.created
        if age < self.queued_s:
            return "submitted"
        if self.never_finish or age < self.queued_s + self.processing_s:
            return "processing"
        return "failed" if self.fail_tasks_with else "succeed"

    def _describe(self, task: StandinTask) -> dict[str, Any]:
        state = self._state(task)
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": state,
            "task_info": {"external_task_id": task.body.get("external_task_id")},
            "created_at": int(task.created * 1000),
            "updated_at": int(self.clock() * 1000),
        }
        if state == "failed":
            data["task_status_msg"] = self.fail_tasks_with
        if state == "succeed":
            url = f"{self.url}/videos/{task.task_id}.mp4"
            video = {"id": f"v-{task.task_id}", "url": url, "duration": task.body.get("duration", "5")}
            data["task_result"] = {"videos": [video]}
        return data


def _check_image(image: Any) -> str | None:
    if image is None or image == "":
        return "image is required"
    if not isinstance(image, str):
        return "image must be a string"
    if image.startswith(("http://", "https://")):
        return None
    if image.startswith("data:"):
        return "image must be raw base64, without a data: prefix"
    try:
        raw = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        return "image is not valid base64"
    if len(raw) > 10 * 1024 * 1024:
        return "image is larger than 10 MB"
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            kind, (width, height) = picture.format, picture.size
    except Exception:
        return "image cannot be decoded"
    if kind not in ("JPEG", "PNG"):
        return f"image format {kind} is not supported"
    if min(width, height) < 300:
        return "image sides must be at least 300 px"
    if not 1 / 2.5 <= width / height <= 2.5:
        return "image aspect ratio must be between 1:2.5 and 2.5:1"
    return None
