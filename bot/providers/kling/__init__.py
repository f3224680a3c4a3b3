"""The Kling API provider: ``KLINGBOT_PROVIDER=kling`` (see docs/PROVIDERS.md).

- :mod:`.auth`: the HS256 JWT Kling wants, reused and renewed;
- :mod:`.client`: the HTTP client (one shared ``httpx.AsyncClient``), Kling's envelope,
  the request rate (1302) waited out;
- :mod:`.errors`: Kling's codes mapped onto the port's error classes;
- :mod:`.capacity`: the parallel tasks Kling allows (1303);
- :mod:`.pokes`: callback posts turned into polls, spaced per task;
- :mod:`.download`: the result download, size cap and MP4 check;
- :mod:`.provider`: :class:`KlingProvider`, the port's implementation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from bot.providers.kling.auth import TokenSource
from bot.providers.kling.client import KlingClient
from bot.providers.kling.provider import MB, KlingProvider
from bot.settings import Settings

__all__ = ["KlingClient", "KlingProvider", "TokenSource", "kling_client", "kling_provider"]


def kling_client(
    settings: Settings,
    *,
    wall: Callable[[], float] = time.time,
    http: httpx.AsyncClient | None = None,
    time_scale: float = 1.0,
) -> KlingClient:
    """A client for the configured account; ConfigError if a key is missing."""
    access_key, secret_key = settings.require_kling_keys()
    tokens = TokenSource(access_key, secret_key, wall=wall)
    return KlingClient(settings.kling_base_url, tokens, http=http, time_scale=time_scale)


def kling_provider(
    settings: Settings,
    *,
    time_scale: float = 1.0,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> KlingProvider:
    """The provider ``KLINGBOT_PROVIDER=kling`` selects; ConfigError if a key is missing.

    ``time_scale`` multiplies its waits (after a 1302 or 1303, between two
    polls a callback causes); ``monotonic`` and ``sleep`` time the callback
    pokes (tests inject a virtual clock).
    """
    return KlingProvider(
        kling_client(settings, wall=wall, time_scale=time_scale),
        callback_url=settings.kling_callback_url,
        aspect_ratio=settings.kling_aspect_ratio,
        max_download_bytes=settings.kling_max_download_mb * MB,
        poke_spacing_s=settings.poll_interval_s * time_scale,
        monotonic=monotonic,
        sleep=sleep,
    )
