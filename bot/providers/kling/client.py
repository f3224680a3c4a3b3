"""The Kling HTTP API over one shared ``httpx.AsyncClient``.

Every call has connect and read timeouts, carries ``Authorization: Bearer
<JWT>`` (see :mod:`bot.providers.kling.auth`) and unwraps Kling's
``{code, message, request_id, data}`` envelope: ``data`` on code 0,
:class:`~bot.providers.kling.errors.ApiFailure` otherwise,
:class:`~bot.providers.kling.errors.Unreachable` when no answer came. A 401 is
answered by renewing the token and retrying once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from bot.providers.kling.auth import TokenSource
from bot.providers.kling.errors import ApiFailure, Unreachable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
DOWNLOAD_READ_TIMEOUT_S = 60.0
"""Between two chunks of a result download (a slow CDN)."""


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http or httpx.AsyncClient(timeout=timeouts(), follow_redirects=False)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One API call; the answer's ``data``. Renews the token and retries once on a 401."""
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
