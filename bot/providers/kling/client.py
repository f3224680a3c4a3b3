"""The Kling HTTP API over one shared ``httpx.AsyncClient``.

Every call has connect and read timeouts, carries ``Authorization: Bearer
<JWT>`` (see :mod:`bot.providers.kling.auth`) and unwraps Kling's
``{code, message, request_id, data}`` envelope: ``data`` on code 0,
:class:`~bot.providers.kling.errors.ApiFailure` otherwise,
:class:`~bot.providers.kling.errors.Unreachable` when no answer came. A 401 is
answered by renewing the token and retrying once. A 1302 (requests too fast
for the account) is waited out and the same call sent again, for as long as
it takes: a refused request did nothing at Kling, so it is never a reason to
fail (or refund) a job.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from bot.providers.kling.auth import TokenSource
from bot.providers.kling.errors import RATE_LIMIT, ApiFailure, Unreachable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
DOWNLOAD_READ_TIMEOUT_S = 60.0
"""Between two chunks of a result download (a slow CDN)."""

PAUSE_FIRST_S = 1.0
PAUSE_CAP_S = 30.0
"""Waits after a refusal for rate (1302) or capacity (1303): doubling from the first to the cap."""
WARN_AFTER = 5
"""A call refused this many times in a row for the rate says so once at warning level."""


def timeouts(read_s: float = READ_TIMEOUT_S) -> httpx.Timeout:
    """Connect and read timeouts for one call (write and pool: the same as read)."""
    return httpx.Timeout(read_s, connect=CONNECT_TIMEOUT_S)


class KlingClient:
    """Calls the Kling API at ``base_url``; :meth:`close` ends the shared HTTP client."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http or httpx.AsyncClient(timeout=timeouts(), follow_redirects=False)
        self.time_scale = time_scale
        """Multiplies every wait (tests run Kling's times a thousand times faster)."""
        self._sleep = sleep
        self.throttled = 0
        """Calls Kling refused for the rate (1302) and that were sent again."""

    async def pause(self, attempt: int) -> None:
        """Wait before sending again a call Kling refused for its rate or capacity.

        ``attempt`` counts the refusals in a row: the wait doubles from
        :data:`PAUSE_FIRST_S` up to :data:`PAUSE_CAP_S`, with jitter so that
        many waiting calls do not all come back at once.
        """
        seconds = min(PAUSE_CAP_S, PAUSE_FIRST_S * 2 ** min(attempt - 1, 8))
        await self._sleep(seconds * random.uniform(0.5, 1.0) * self.time_scale)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One API call; the answer's ``data``.

        Renews the token and retries once on a 401; waits and sends the call
        again after each 1302, however often Kling says it.
        """
        throttled = 0
        while True:
            try:
                return await self._call(method, path, json=json, params=params)
            except ApiFailure as failure:
                if failure.code != RATE_LIMIT:
                    raise
                throttled += 1
                self.throttled += 1
                if throttled == WARN_AFTER:
                    log.warning(
                        "Kling keeps refusing %s %s for the request rate (1302): still waiting",
                        method,
                        path,
                    )
                else:
                    log.debug("Kling refused %s %s for the request rate (1302)", method, path)
                await self.pause(throttled)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> Any:
        """One call as sent: the token renewed and the call retried once on a 401."""
        for attempt in (1, 2):
            try:
                response = await self.http.request(
                    method,
                    self.base_url + path,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {self.tokens.token()}"},
                    timeout=timeouts(),
                )
            except httpx.TimeoutException as error:
                raise Unreachable(f"{method} {path}: timed out ({type(error).__name__})") from None
            except httpx.HTTPError as error:
                raise Unreachable(f"{method} {path}: {type(error).__name__}: {error}") from None
            failure = _failure(response)
            if failure is None:
                return response.json().get("data")
            if response.status_code == 401 and attempt == 1:
                log.info("Kling refused the token (code %d); signing a new one", failure.code)
                self.tokens.renew()
                continue
            raise failure
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()


def _failure(response: httpx.Response) -> ApiFailure | None:
    """None for a successful answer, else what went wrong."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "code" not in body:
        snippet = response.text[:200].replace("\n", " ")
        return ApiFailure(response.status_code, 0, f"not a Kling API answer: {snippet!r}")
    code = body.get("code")
    if code == 0 and response.is_success:
        return None
    return ApiFailure(
        response.status_code,
        code if isinstance(code, int) else -1,
        str(body.get("message") or ""),
        str(body.get("request_id") or ""),
    )
