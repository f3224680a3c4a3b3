"""A small Telegram Bot API stand-in on loopback, for driving the real PTB code path.

It speaks the Bot API's HTTP protocol (form or multipart posts to
``/bot<token>/<method>``, ``{"ok": true, "result": ...}`` answers) for the
methods the adapter uses, keeps the messages the bot sent so that members
can press their buttons, serves files for ``getFile`` downloads, and records
every request. Tests push updates (``Member.send``, ``Member.press``) and
wait on the recorded requests; nothing sleeps.

What it refuses, as the Bot API answers it (``{"ok": false, "error_code": N,
"description": ...}``):

* a text over 4,096 characters, or empty (400 "Bad Request: message is too
  long", "Bad Request: message text is empty"); an edit to a text over 4,096
  (400 "Bad Request: MESSAGE_TOO_LONG"); a caption over 1,024 (400 "Bad
  Request: message caption is too long");
* a chat it does not know (400 "Bad Request: chat not found"): a private chat
  exists once its member has sent the bot something, a group once an update
  came from it or the test said the bot is in it (``add_chat``);
* a private chat whose member blocked the bot (``block``: 403 "Forbidden: bot
  was blocked by the user");
* an uploaded file over 50 MB (``upload_limit``: 413 "Request Entity Too
  Large", as the Bot API's front end answers it);
* a callback query answered more than 15 s after the press, twice, or unknown
  (400 "Bad Request: query is too old and response timeout expired or query
  ID is invalid"), on the stand-in's clock (``now=``, ``advance``);
* an edit that changes nothing (400 "Bad Request: message is not modified:
  ...");
* a 21st message (sent or edited) in one group within 60 s on
  ``flood_clock`` (the stand-in's clock unless a test shares the bot's) (``group_per_minute``, 20 as Telegram's limit; None switches it off):
  429 "Too Many Requests: retry after N" with ``parameters.retry_after`` N,
  the whole seconds until the oldest of them is a minute old (``flooded``
  lists them);
* every upload while ``uploads_refused`` is true (or a function of the test's
  clock that returns true): 502 Bad Gateway, an HTML page from the front end;
* ``getUpdates`` while a webhook is set (409 "Conflict: can't use getUpdates
  method while webhook is active; use deleteWebhook to delete the webhook first");
* a ``getUpdates`` still waiting when another one comes (two bot instances
  polling): the waiting one ends with 409 "Conflict: terminated by other
  getUpdates request; make sure that only one bot instance is running", and
  is recorded with that status.

Payments in Telegram Stars, as strict as Telegram: ``sendInvoice`` only in
``XTR`` with no provider token (else 400 "Bad Request:
PAYMENT_PROVIDER_INVALID"), exactly one price (400 "Bad Request:
STARS_INVOICE_INVALID") of 1 to 10,000 Stars (400 "Bad Request:
CURRENCY_TOTAL_AMOUNT_INVALID"), a payload of 1 to 128 bytes, a title of 1
to 32 and a description of 1 to 255 characters. ``Member.pay`` presses Pay:
a ``pre_checkout_query`` goes to the bot, which must answer within
``pre_checkout_s`` (10 s) on the stand-in's clock; a late answer is 400
"query is too old", and a late or missing one fails the payment, as does a
no (``ok=False`` needs an ``error_message``). A yes takes the Stars and
pushes the ``successful_payment`` message with a new charge id (``charges``).
``refundStarPayment`` refuses an unknown charge, or one paid by someone else
(400 "Bad Request: CHARGE_NOT_FOUND"), and one refunded before (400 "Bad
Request: CHARGE_ALREADY_REFUNDED").

Webhook delivery, as Telegram does it: once the bot called ``setWebhook``,
every pending update (and every one pushed later) is posted as JSON to that
URL with the ``X-Telegram-Bot-Api-Secret-Token`` header, over at most
``max_connections`` connections at once (40 unless the bot said otherwise).
An update leaves the queue when the endpoint answers 2xx; a post that is
refused, times out or answers anything else is posted again after
``webhook_retry_s`` (its error shows in ``getWebhookInfo``). Every post is
recorded in ``deliveries``. ``deleteWebhook`` stops the posts (and with
``drop_pending_updates`` forgets the queue).

It binds to 127.0.0.1 on a free port and never listens anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

BOT_ID = 7_000_000_001
BOT_USERNAME = "klingbot_test_bot"

MAX_TEXT = 4096
"""Characters in a message's text (after entities parsing)."""
MAX_CAPTION = 1024
"""Characters in a media caption."""
UPLOAD_LIMIT = 50_000_000
"""Bytes of one uploaded file on the public Bot API (50 MB; a local server takes 2000 MB)."""
CALLBACK_ANSWER_S = 15.0
"""Seconds a bot has to answer a callback query."""

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PRE_CHECKOUT_S = 10.0
"""Seconds a bot has to answer a pre-checkout query before Telegram fails the payment."""
STARS = "XTR"
MAX_STARS = 10_000
"""The most Stars one invoice may ask."""
WEBHOOK_CONNECTIONS = 40
"""Telegram's default ``max_connections`` for a webhook."""
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

GROUP_PER_MINUTE = 20
"""Messages a bot may send (or edit) in one group in any 60 s."""
GROUP_COUNTED = frozenset(
    {"sendMessage", "sendVideo", "sendDocument", "editMessageText", "editMessageReplyMarkup"}
)
"""The methods that count against a group's minute."""

UPLOADS = frozenset({"sendVideo", "sendDocument"})
"""The methods that carry a clip."""

BAD_GATEWAY = "<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
"""What nginx in front of the Bot API answers when the server behind it fails."""

_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "callback_query_id",
        "url",
        "secret_token",
        "file_id",
        "language_code",
        "title",
        "description",
        "payload",
        "currency",
        "provider_token",
        "pre_checkout_query_id",
        "error_message",
        "telegram_payment_charge_id",
    }
)
"""Parameters PTB sends as plain strings; everything else is JSON."""


@dataclass
class ApiCall:
    """One request the bot made."""

    index: int
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200
    result: Any = None


@dataclass
class Delivery:
    """One webhook post of an update: what the endpoint answered, or why it did not."""

    update_id: int
    url: str
    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Charge:
    """A Stars payment Telegram took: who paid, how much, and whether it went back."""

    charge_id: str
    user_id: int
    amount: int
    payload: str
    refunded: bool = False


@dataclass
class Payment:
    """How a member's attempt to pay ended.

    ``ok``: the bot said yes in time and Telegram took the Stars (``charge_id``,
    and ``message`` the ``successful_payment`` message pushed to the bot);
    otherwise ``error`` says why not: the bot's own ``error_message``, or
    that it did not answer within :data:`PRE_CHECKOUT_S`.
    """

    ok: bool
    query_id: str
    charge_id: str | None = None
    error: str | None = None
    message: dict[str, Any] | None = None


@dataclass
class Webhook:
    """What the bot set with ``setWebhook``."""

    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None


@dataclass
class Failure:
    """An error to answer instead of the real result, once, to the first call that matches."""

    method: str
    error_code: int
    description: str
    retry_after: int | None = None
    where: Callable[[dict[str, Any]], bool] | None = None


class BotApiStandIn:
    """The stand-in server; ``async with BotApiStandIn(token) as api: ...``."""

    def __init__(
        self,
        token: str,
        *,
        now: Callable[[], float] | None = None,
        upload_limit: int = UPLOAD_LIMIT,
        webhook_retry_s: float = 0.05,
        webhook_timeout_s: float = 10.0,
    ) -> None:
        self.token = token
        self.webhook: Webhook | None = None
        """The webhook the bot set; None while it polls."""
        self.webhook_retry_s = webhook_retry_s
        """Telegram's pause before it posts an update again (scaled down)."""
        self.webhook_timeout_s = webhook_timeout_s
        """How long a post may wait for its answer."""
        self.deliveries: list[Delivery] = []
        """Every webhook post, in the order they ended."""
        self._webhook_error: tuple[int, str] | None = None
        self._in_flight: set[int] = set()
        self._posters: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.upload_limit = upload_limit
        self._clock = now or time.monotonic
        self._offset = 0.0
        self.chats: set[int] = set()
        """Chats the bot may write in (see ``add_chat``); others are "chat not found"."""
        self.blocked: set[int] = set()
        """Members who blocked the bot: sends to their private chat are 403."""
        self._queries: dict[str, float] = {}  # callback query id -> when it was pressed
        self.pre_checkout_s = PRE_CHECKOUT_S
        """How long the bot has to answer a pre-checkout query (Telegram: 10 s)."""
        self._checkouts: dict[str, float] = {}  # pre-checkout query id -> when it was sent
        self.checkout_answers: dict[str, dict[str, Any]] = {}
        """Each pre-checkout query's answer, as the bot gave it in time."""
        self.invoices: dict[tuple[int, int], dict[str, Any]] = {}
        """Every invoice the bot sent, by (chat id, message id): its parameters."""
        self.charges: dict[str, Charge] = {}
        """Every payment Telegram took, by charge id."""
        self._charge_ids = itertools.count(1)
        self.calls: list[ApiCall] = []
        self.downloads: list[str] = []
        self.members: dict[tuple[int, int], str] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self._failures: list[Failure] = []
        self.group_per_minute: int | None = GROUP_PER_MINUTE
        """Messages per group in any 60 s of the stand-in's clock; None: no limit."""
        self.flood_clock: Callable[[], float] = self.now
        """What the group minutes run on: the stand-in's clock, or the bot's flood control
        clock in tests that run that on virtual time (so its waits and these minutes agree)."""
        self.group_sends: dict[int, list[float]] = {}
        """When each message counted against each group's minute was answered."""
        self.uploads_refused: bool | Callable[[], bool] = False
        """While true (or while it returns true), every upload (sendVideo, sendDocument)
        answers 502 Bad Gateway, as Telegram's front end does in an upload outage; other
        methods work."""
        self._files: dict[str, tuple[bytes, int]] = {}  # file_id -> (data, size reported)
        self._polls = 0
        """getUpdates requests so far (the latest one is the one waiting)."""
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- server -----------------------------------------------------------------------

    async def __aenter__(self) -> BotApiStandIn:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        async with self._changed:
            self._changed.notify_all()
        await self._stop_posting()
        if self._session is not None:
            await self._session.close()
        assert self._runner is not None
        await self._runner.cleanup()

    def add_routes(self, app: web.Application) -> None:
        """More routes on the same server (the benchmark adds its control routes here)."""

    @property
    def base_url(self) -> str:
        """What TELEGRAM_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """What TELEGRAM_BASE_FILE_URL should be."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- clock ----------------------------------------------------------------------------

    def now(self) -> float:
        """The stand-in's clock: the injected ``now()`` plus everything ``advance`` added."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward (callback queries age with it)."""
        self._offset += seconds

    # --- what tests set up --------------------------------------------------------------

    def add_chat(self, chat_id: int) -> None:
        """The bot is in this group (or this member has started it): it may write there."""
        self.chats.add(chat_id)

    def block(self, user_id: int) -> None:
        """The member blocks the bot: sends to their private chat answer 403."""
        self.blocked.add(user_id)

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update for the bot's next getUpdates (its chat becomes known)."""
        update["update_id"] = next(self._update_ids)
        message = update.get("message") or (update.get("callback_query") or {}).get("message")
        if message is not None:
            self.chats.add(int(message["chat"]["id"]))
        if "callback_query" in update:
            self._queries[update["callback_query"]["id"]] = self.now()
        self.updates.append(update)
        task = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_file(self, data: bytes, *, reported_size: int | None = None) -> tuple[str, str]:
        """Store a file; returns (file_id, file_unique_id)."""
        number = next(self._file_ids)
        file_id = f"file-{number}"
        self._files[file_id] = (data, len(data) if reported_size is None else reported_size)
        return file_id, f"unique-{number}"

    def fail_next(
        self,
        method: str,
        *,
        retry_after: int | None = None,
        error_code: int | None = None,
        description: str = "",
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next matching ``method`` call with a 429 (``retry_after``) or an error."""
        if retry_after is not None:
            failure = Failure(
                method, 429, f"Too Many Requests: retry after {retry_after}", retry_after, where
            )
        else:
            failure = Failure(method, error_code or 400, description, None, where)
        self._failures.append(failure)

    # --- what tests read --------------------------------------------------------------

    def of(self, method: str, *, since: int = 0, **params: Any) -> list[ApiCall]:
        """Calls of ``method`` from index ``since`` whose params include ``params``."""
        return [
            call
            for call in self.calls[since:]
            if call.method == method and all(call.params.get(k) == v for k, v in params.items())
        ]

    async def wait_for(
        self,
        method: str,
        *,
        since: int = 0,
        where: Callable[[ApiCall], bool] | None = None,
        count: int = 1,
        timeout: float = 30.0,
        **params: Any,
    ) -> ApiCall:
        """The ``count``-th call of ``method`` (from ``since``) matching; fail after ``timeout``."""
        found: list[ApiCall] = []
        scanned = since

        def enough() -> bool:
            nonlocal scanned
            for call in self.calls[scanned:]:  # only the calls that came since the last look
                if (
                    call.method == method
                    and all(call.params.get(k) == v for k, v in params.items())
                    and (where is None or where(call))
                ):
                    found.append(call)
            scanned = len(self.calls)
            return len(found) >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(enough), timeout)
            except TimeoutError:
                seen = "\n".join(f"  {c.method} {c.params}" for c in self.calls[since:])
                raise AssertionError(
                    f"no {method} {params} within {timeout}s; saw:\n{seen}"
                ) from None
            return found[count - 1]

    async def polled(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``count`` getUpdates requests have come in all (answered or waiting)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._polls >= count), timeout)

    async def acknowledged(self, timeout: float = 30.0) -> None:
        """Wait until the bot confirmed every update pushed: by the offset of its next poll,
        or (webhook) by answering its post."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: not self.updates), timeout)

    async def delivery(
        self, where: Callable[[Delivery], bool] | None = None, timeout: float = 30.0
    ) -> Delivery:
        """The first webhook post (recorded so far or to come) matching ``where`` (default: taken)."""

        def found() -> Delivery | None:
            return next((d for d in self.deliveries if (where or _taken)(d)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"no such webhook post within {timeout}s; saw {self.deliveries}"
                ) from None
        result = found()
        assert result is not None
        return result

    # --- webhook delivery ---------------------------------------------------------------

    def _start_posting(self) -> None:
        """Enough posters for the webhook's connections (they end when it is deleted)."""
        assert self.webhook is not None
        self._posters = [task for task in self._posters if not task.done()]
        loop = asyncio.get_running_loop()
        for _ in range(self.webhook.max_connections - len(self._posters)):
            self._posters.append(loop.create_task(self._post_updates()))
        task = loop.create_task(self._notify())  # wake them for what is already queued
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_posting(self) -> None:
        for task in self._posters:
            task.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)
        self._posters.clear()

    def _next_to_post(self) -> dict[str, Any] | None:
        for update in self.updates:
            if update["update_id"] not in self._in_flight:
                return update
        return None

    async def _post_updates(self) -> None:
        """One connection: post the oldest update nobody is posting, until the webhook goes."""
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: (
                        self._closing or self.webhook is None or self._next_to_post() is not None
                    )
                )
                if self._closing or self.webhook is None:
                    return
                update = self._next_to_post()
                assert update is not None
                self._in_flight.add(update["update_id"])
            delivery = await self._post(self.webhook, update)
            async with self._changed:
                self._in_flight.discard(update["update_id"])
                self.deliveries.append(delivery)
                if delivery.ok:
                    self.updates = [u for u in self.updates if u is not update]
                else:
                    self._webhook_error = (int(time.time()), delivery.error)
                self._changed.notify_all()
            if not delivery.ok:
                await asyncio.sleep(self.webhook_retry_s)  # Telegram's back-off, scaled down

    async def _post(self, webhook: Webhook, update: dict[str, Any]) -> Delivery:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout_s)
            )
        headers = {SECRET_HEADER: webhook.secret_token} if webhook.secret_token else {}
        try:
            async with self._session.post(webhook.url, json=update, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            return Delivery(update["update_id"], webhook.url, None, type(error).__name__)
        error = "" if 200 <= status < 300 else f"Wrong response from the webhook: {status}"
        return Delivery(update["update_id"], webhook.url, status, error)

    # --- the Bot API ----------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = ApiCall(len(self.calls), method, params, files)
        if any(len(data) > self.upload_limit for data in files.values()):
            call.status = 413
            await self._record(call)
            return web.json_response(
                {"ok": False, "error_code": 413, "description": "Request Entity Too Large"},
                status=413,
            )
        if method == "getUpdates":
            if self.webhook is not None:
                call.status = 409
                await self._record(call)
                return web.json_response(
                    {"ok": False, "error_code": 409, "description": WEBHOOK_CONFLICT},
                    status=409,
                )
            try:
                result = await self._get_updates(params)
            except _ApiError as error:
                call.status = error.code
                await self._record(call)
                return web.json_response(
                    {"ok": False, "error_code": error.code, "description": error.description},
                    status=error.code,
                )
            return web.json_response({"ok": True, "result": result})
        refused = self.uploads_refused
        if method in UPLOADS and (refused() if callable(refused) else refused):
            call.status = 502
            await self._record(call)
            return web.Response(status=502, text=BAD_GATEWAY, content_type="text/html")
        failure = self._take_failure(method, params)
        if failure is not None:
            body: dict[str, Any] = {
                "ok": False,
                "error_code": failure.error_code,
                "description": failure.description,
            }
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            call.status = failure.error_code
            await self._record(call)
            return web.json_response(body, status=failure.error_code)
        flooded = self._group_flood(method, params)
        if flooded is not None:
            call.status = 429
            await self._record(call)
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {flooded}",
                    "parameters": {"retry_after": flooded},
                },
                status=429,
            )
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            call.status = 404
            await self._record(call)
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                status=404,
            )
        try:
            call.result = handler(params, files)
        except _ApiError as error:
            call.status = error.code
            await self._record(call)
            return web.json_response(
                {"ok": False, "error_code": error.code, "description": error.description},
                status=error.code,
            )
        if method in GROUP_COUNTED and _group_of(params) is not None:
            self.group_sends.setdefault(_group_of(params), []).append(self.flood_clock())
        await self._record(call)
        return web.json_response({"ok": True, "result": call.result})

    @property
    def flooded(self) -> list[ApiCall]:
        """Every call answered 429 (by the group limit, or injected by ``fail_next``)."""
        return [call for call in self.calls if call.status == 429]

    def _group_flood(self, method: str, params: dict[str, Any]) -> int | None:
        """The retry_after of a message over its group's minute, or None if it may go."""
        group = _group_of(params)
        if self.group_per_minute is None or method not in GROUP_COUNTED or group is None:
            return None
        now = self.flood_clock()
        recent = [at for at in self.group_sends.get(group, []) if now - at < 60.0]
        if len(recent) < self.group_per_minute:
            return None
        return max(1, math.ceil(recent[-self.group_per_minute] + 60.0 - now))

    async def _record(self, call: ApiCall) -> None:
        self.calls.append(call)
        await self._notify()

    def _take_failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        for failure in self._failures:
            if failure.method == method and (failure.where is None or failure.where(params)):
                self._failures.remove(failure)
                return failure
        return None

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        pending = len(self.updates)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if len(self.updates) < pending:
            await self._notify()  # someone may wait for the bot to confirm its updates
        timeout = float(params.get("timeout") or 0)
        self._polls += 1
        poll = self._polls  # a later getUpdates ends this one
        async with self._changed:
            self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: bool(self.updates) or self._closing or self._polls != poll
                    ),
                    timeout,
                )
        if self._polls != poll and not self._closing:
            raise _ApiError(409, POLL_CONFLICT)
        return list(self.updates[:100])

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.downloads.append(path)
        file_id = path.rsplit("/", 1)[-1].split(".", 1)[0]
        if file_id not in self._files:
            return web.Response(status=404)
        return web.Response(body=self._files[file_id][0])

    # --- methods ----------------------------------------------------------------------------

    def _getMe(self, params, files):
        return bot_user()

    def _deleteWebhook(self, params, files):
        self.webhook = None  # the posters see it and stop
        self._webhook_error = None
        if params.get("drop_pending_updates"):
            self.updates = [u for u in self.updates if u["update_id"] in self._in_flight]
        return True

    def _setWebhook(self, params, files):
        url = params.get("url") or ""
        if not url:
            return self._deleteWebhook(params, files)
        if not url.startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: an HTTPS URL must be provided")
        self.webhook = Webhook(
            url,
            params.get("secret_token"),
            int(params.get("max_connections") or WEBHOOK_CONNECTIONS),
            params.get("allowed_updates"),
        )
        self._webhook_error = None
        if params.get("drop_pending_updates"):
            self.updates.clear()
        self._start_posting()
        return True

    def _getWebhookInfo(self, params, files):
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
        if self._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _setMyCommands(self, params, files):
        return True

    def _answerCallbackQuery(self, params, files):
        pressed = self._queries.pop(params["callback_query_id"], None)
        if pressed is None or self.now() - pressed > CALLBACK_ANSWER_S:
            raise _ApiError(400, QUERY_TOO_OLD)
        return True

    def _sendInvoice(self, params, files):
        """An invoice, as strict as Telegram is for one in Stars."""
        currency = params.get("currency") or ""
        prices = params.get("prices") or []
        payload = params.get("payload") or ""
        title, description = params.get("title") or "", params.get("description") or ""
        if not 1 <= len(title) <= 32:
            raise _ApiError(400, "Bad Request: invoice title length must be 1-32 characters")
        if not 1 <= len(description) <= 255:
            raise _ApiError(400, "Bad Request: invoice description length must be 1-255 characters")
        if not 1 <= len(payload.encode()) <= 128:
            raise _ApiError(400, "Bad Request: invoice payload length must be 1-128 bytes")
        if currency != STARS or params.get("provider_token"):
            # Without a payments provider only Stars can be sold; Stars take no provider.
            raise _ApiError(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
        if not isinstance(prices, list) or len(prices) != 1:
            raise _ApiError(400, "Bad Request: STARS_INVOICE_INVALID")
        amount = prices[0].get("amount")
        if not isinstance(amount, int) or not 1 <= amount <= MAX_STARS:
            raise _ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        if not str(prices[0].get("label") or ""):
            raise _ApiError(400, "Bad Request: LABEL_INVALID")
        invoice = {
            "title": title,
            "description": description,
            "start_parameter": "",
            "currency": currency,
            "total_amount": amount,
        }
        message = self._new_message(params, invoice=invoice)
        self.invoices[(int(params["chat_id"]), message["message_id"])] = dict(params)
        return message

    def _answerPreCheckoutQuery(self, params, files):
        query_id = params.get("pre_checkout_query_id") or ""
        sent = self._checkouts.pop(query_id, None)
        if sent is None or self.now() - sent > self.pre_checkout_s:
            raise _ApiError(400, QUERY_TOO_OLD)
        ok = bool(params.get("ok"))
        if not ok and not (params.get("error_message") or "").strip():
            raise _ApiError(400, "Bad Request: ERROR_MESSAGE_EMPTY")
        self.checkout_answers[query_id] = params
        return True

    def _refundStarPayment(self, params, files):
        charge = self.charges.get(params.get("telegram_payment_charge_id") or "")
        if charge is None or charge.user_id != int(params.get("user_id") or 0):
            raise _ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge.refunded:
            raise _ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        return True

    async def checkout(
        self,
        user: dict[str, Any],
        *,
        payload: str,
        currency: str,
        total_amount: int,
        timeout: float | None = None,
    ) -> Payment:
        """Telegram's side of a member pressing Pay: ask the bot, then take the Stars.

        A ``pre_checkout_query`` goes to the bot; it must answer within
        ``pre_checkout_s`` on the stand-in's clock (``timeout``, real seconds,
        bounds the wait: no answer by then fails the payment, as a late one
        does). A yes takes the Stars and pushes the ``successful_payment``
        message with a new charge id.
        """
        query_id = f"pcq-{next(self._charge_ids)}"
        self._checkouts[query_id] = self.now()
        since = len(self.calls)
        self.push(
            {
                "pre_checkout_query": {
                    "id": query_id,
                    "from": user,
                    "currency": currency,
                    "total_amount": total_amount,
                    "invoice_payload": payload,
                }
            }
        )
        try:
            answered = await self.wait_for(
                "answerPreCheckoutQuery",
                since=since,
                pre_checkout_query_id=query_id,
                timeout=self.pre_checkout_s if timeout is None else timeout,
            )
        except AssertionError:
            answered = None
        if answered is None or answered.status != 200:
            self._checkouts.pop(query_id, None)
            return Payment(False, query_id, error="the bot did not answer in time")
        answer = self.checkout_answers[query_id]
        if not answer.get("ok"):
            return Payment(False, query_id, error=answer.get("error_message"))
        charge_id = f"stxT{next(self._charge_ids):06d}{query_id[-3:].replace('-', 'x')}"
        self.charges[charge_id] = Charge(charge_id, int(user["id"]), total_amount, payload)
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat(int(user["id"])),
            "from": user,
            "successful_payment": {
                "currency": currency,
                "total_amount": total_amount,
                "invoice_payload": payload,
                "telegram_payment_charge_id": charge_id,
                "provider_payment_charge_id": "",
            },
        }
        self.push({"message": message})
        return Payment(True, query_id, charge_id=charge_id, message=message)

    async def pending_checkout(self, timeout: float = 30.0) -> str:
        """The id of a pre-checkout query still waiting for the bot's answer (waits for one)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._checkouts)), timeout)
        return next(iter(self._checkouts))

    def _getChatMember(self, params, files):
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        self._writable(chat_id)
        status = self.members.get((chat_id, user_id), "left")
        user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        if status == "administrator":
            rights = [
                "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
                "can_manage_video_chats", "can_restrict_members", "can_promote_members",
                "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
                "can_delete_stories",
            ]  # fmt: skip
            return {"status": status, "user": user, **dict.fromkeys(rights, False)}
        if status == "creator":
            return {"status": status, "user": user, "is_anonymous": False}
        return {"status": status, "user": user}

    def _getFile(self, params, files):
        file_id = params["file_id"]
        if file_id not in self._files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        size = self._files[file_id][1]
        if size > 20_000_000:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": size,
            "file_path": f"documents/{file_id}.bin",
        }

    def _writable(self, chat_id: int) -> None:
        """Refuse a chat the bot does not know, or a member who blocked it."""
        if chat_id not in self.chats:
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")

    def _new_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        self._writable(chat_id)
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat(chat_id),
            "from": bot_user(),
            **content,
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        if params.get("message_thread_id"):
            message["message_thread_id"] = params["message_thread_id"]
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _sendMessage(self, params, files):
        text = params.get("text") or ""
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise _ApiError(400, "Bad Request: message is too long")
        return self._new_message(params, text=text)

    def _editMessageText(self, params, files):
        message = self._message(params)
        text = params.get("text") or ""
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        if "text" not in message:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = params.get("reply_markup")
        if message.get("text") == text and message.get("reply_markup") == markup:
            raise _ApiError(400, NOT_MODIFIED)
        message["text"] = text
        message["edit_date"] = int(time.time())
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    def _editMessageReplyMarkup(self, params, files):
        message = self._message(params)
        if message.get("reply_markup") == (params.get("reply_markup") or None):
            raise _ApiError(400, NOT_MODIFIED)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        return message

    def _sendVideo(self, params, files):
        _check_caption(params)
        data = files.get("video", b"")
        file_id, unique = self.add_file(data)
        video = {
            "file_id": file_id,
            "file_unique_id": unique,
            "width": int(params.get("width") or 0),
            "height": int(params.get("height") or 0),
            "duration": int(params.get("duration") or 0),
            "file_size": len(data),
            "mime_type": "video/mp4",
        }
        return self._new_message(params, video=video, caption=params.get("caption", ""))

    def _sendDocument(self, params, files):
        _check_caption(params)
        data = files.get("document", b"")
        file_id, unique = self.add_file(data)
        document = {"file_id": file_id, "file_unique_id": unique, "file_size": len(data)}
        return self._new_message(params, document=document, caption=params.get("caption", ""))

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        self._writable(key[0])
        if key not in self.messages:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return self.messages[key]


def _taken(delivery: Delivery) -> bool:
    return delivery.ok


def _group_of(params: dict[str, Any]) -> int | None:
    """The group a request writes in (its negative ``chat_id``), or None."""
    try:
        chat_id = int(params.get("chat_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return chat_id if chat_id < 0 else None


def _check_caption(params: dict[str, Any]) -> None:
    if len(params.get("caption") or "") > MAX_CAPTION:
        raise _ApiError(400, "Bad Request: message caption is too long")


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """PTB posts form fields whose values are JSON, except plain strings; files are parts."""
    if request.content_type == "application/json":
        return await request.json(), {}
    form = await request.post()
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            files[name] = value.file.read()
        elif name in _STRING_PARAMS:
            params[name] = value
        else:
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = value
    return params, files


def bot_user() -> dict[str, Any]:
    """The bot, as getMe describes it."""
    return {
        "id": BOT_ID,
        "is_bot": True,
        "first_name": "Klingbot",
        "username": BOT_USERNAME,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def chat(chat_id: int) -> dict[str, Any]:
    """A private chat for positive ids, a supergroup for negative ones."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"user{chat_id}"}
    return {"id": chat_id, "type": "supergroup", "title": "Creators"}


# --- members: how tests talk to the bot ---------------------------------------------------


@dataclass
class Member:
    """A Telegram user who sends messages and presses buttons through the stand-in."""

    api: BotApiStandIn
    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(100_000))

    def user(self) -> dict[str, Any]:
        """The member as Telegram describes them in updates."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def send(self, text: str | None = None, **options: Any) -> dict[str, Any]:
        """Send a message (see :meth:`message`) through the stand-in's update queue."""
        message = self.message(text, **options)
        self.api.push({"message": message})
        return message

    def message(
        self,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        photo: bytes | None = None,
        document: bytes | None = None,
        filename: str = "image.png",
        reported_size: int | None = None,
        size: tuple[int, int] = (400, 300),
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A message from this member (a photo or file with ``text`` as caption).

        Writing it opens the chat on Telegram's side: the bot may answer there.
        """
        chat_id = self.id if chat_id is None else chat_id
        self.api.add_chat(chat_id)
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat(chat_id),
            "from": self.user(),
        }
        body_key, entities_key = "text", "entities"
        if photo is not None:
            file_id, unique = self.api.add_file(photo, reported_size=reported_size)
            width, height = size
            message["photo"] = [
                {
                    "file_id": file_id,
                    "file_unique_id": unique,
                    "width": width,
                    "height": height,
                    "file_size": reported_size if reported_size is not None else len(photo),
                }
            ]
            body_key, entities_key = "caption", "caption_entities"
        if document is not None:
            file_id, unique = self.api.add_file(document, reported_size=reported_size)
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": unique,
                "file_name": filename,
                "mime_type": "image/png" if filename.endswith(".png") else "image/jpeg",
                "file_size": reported_size if reported_size is not None else len(document),
            }
            body_key, entities_key = "caption", "caption_entities"
        if text is not None:
            message[body_key] = text
            if text.startswith("/"):
                length = len(text.split(maxsplit=1)[0])
                message[entities_key] = [{"type": "bot_command", "offset": 0, "length": length}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return message

    async def pay(
        self,
        invoice: dict[str, Any] | ApiCall | None = None,
        *,
        payload: str | None = None,
        currency: str | None = None,
        total_amount: int | None = None,
        timeout: float | None = None,
    ) -> Payment:
        """Press Pay under ``invoice`` (a sent invoice message, or its sendInvoice call).

        ``payload``, ``currency`` and ``total_amount`` replace the invoice's
        own, as a forged or outdated invoice would carry them.
        """
        if invoice is not None:
            message = invoice.result if isinstance(invoice, ApiCall) else invoice
            sent = self.api.invoices[(message["chat"]["id"], message["message_id"])]
            payload = sent["payload"] if payload is None else payload
            currency = message["invoice"]["currency"] if currency is None else currency
            if total_amount is None:
                total_amount = message["invoice"]["total_amount"]
        assert payload is not None and total_amount is not None
        return await self.api.checkout(
            self.user(),
            payload=payload,
            currency=currency or STARS,
            total_amount=total_amount,
            timeout=timeout,
        )

    def press(self, message: dict[str, Any], label: str) -> str:
        """Press the button of ``message`` whose label starts with ``label``; returns its action."""
        action = button(message, label)
        self.api.push(
            {
                "callback_query": {
                    "id": f"cb-{next(self._ids)}",
                    "from": self.user(),
                    "chat_instance": f"ci-{message['chat']['id']}",
                    "message": message,
                    "data": action,
                }
            }
        )
        return action


def buttons(message: dict[str, Any] | ApiCall) -> list[tuple[str, str]]:
    """(label, callback_data) of every inline button, row by row."""
    params = message.params if isinstance(message, ApiCall) else message
    markup = params.get("reply_markup") or {}
    return [
        (key["text"], key["callback_data"])
        for row in markup.get("inline_keyboard", [])
        for key in row
    ]


def button(message: dict[str, Any] | ApiCall, label: str) -> str:
    """The action of the button whose label starts with ``label``."""
    found = [action for text, action in buttons(message) if text.startswith(label)]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} buttons start with {label!r}: {buttons(message)}")
    return found[0]
