"""The Kling API provider: ``KLINGBOT_PROVIDER=kling`` (see docs/PROVIDERS.md).

- :mod:`.auth`: the HS256 JWT Kling wants, reused and renewed;
- :mod:`.client`: the HTTP client (one shared ``httpx.AsyncClient``) and Kling's envelope;
- :mod:`.errors`: Kling's codes mapped onto the port's error classes;
- :mod:`.download`: the result download, size cap and MP4 check;
- :mod:`.provider`: :class:`KlingProvider`, the port's implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
) -> KlingClient:
    """A client for the configured account; ConfigError if a key is missing."""
    access_key, secret_key = settings.require_kling_keys()
    tokens = TokenSource(access_key, secret_key, wall=wall)
    return KlingClient(settings.kling_base_url, tokens, http=http)


def kling_provider(settings: Settings, *, wall: Callable[[], float] = time.time) -> KlingProvider:
    """The provider ``KLINGBOT_PROVIDER=kling`` selects; ConfigError if a key is missing."""
    return KlingProvider(
        kling_client(settings, wall=wall),
        callback_url=settings.kling_callback_url,
        aspect_ratio=settings.kling_aspect_ratio,
        max_download_bytes=settings.kling_max_download_mb * MB,
    )
