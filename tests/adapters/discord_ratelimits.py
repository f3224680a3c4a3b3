"""Discord's rate limits, as the Discord stand-in enforces them: per-route buckets and the global limit.

Discord answers every REST request with the state of the bucket it counted
against (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``, ``-Reset-After``,
``-Bucket``), and a request over a bucket's limit with ``429`` and the same
headers plus ``X-RateLimit-Scope: user``, ``Retry-After`` and a body
``{"message": "You are being rate limited.", "retry_after": s, "global": false}``.
Buckets count per top-level resource: the same bucket in two channels is two
counts. Above them, a bot may make 50 requests a second in all; over that,
``429`` with ``X-RateLimit-Global: true``, ``X-RateLimit-Scope: global`` and
``"global": true``, without bucket headers. Interaction endpoints (the
callback, and the webhook routes that take the interaction token) are not
bound by the global limit; the callback carries no bucket either.

The numbers here are what Discord announces for the routes the adapter uses
(Discord says to read them from the headers, not hard-code them, and so does
discord.py). Posting and editing messages in one channel share one bucket,
5 requests every 5 s, the strictest reading of Discord's message limit.
Every 429 also carries ``Via``, as Discord's answers do: discord.py retries a
429 only with it (without it, it takes the answer for a Cloudflare ban).

Windows run on the stand-in's clock: a window opens at the first request
counted in it and closes ``window_s`` later.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

GLOBAL_PER_SECOND = 50
"""Requests a bot may make in any one second, all routes together (interactions aside)."""


@dataclass(frozen=True)
class Bucket:
    """One of Discord's limits: ``limit`` requests every ``window_s`` per top-level resource."""

    hash: str
    """What ``X-RateLimit-Bucket`` says (Discord's is opaque; these name what they count)."""
    limit: int
    window_s: float


CHANNEL_MESSAGES = Bucket("channel-messages", 5, 5.0)
"""Posting and editing messages in one channel (create and edit share it)."""
MESSAGE_DELETES = Bucket("message-deletes", 5, 1.0)
INTERACTION_WEBHOOK = Bucket("interaction-webhook", 5, 2.0)
"""Follow-ups and edits through one interaction token."""

ROUTE_BUCKETS: dict[str, Bucket] = {
    "POST /channels/{channel_id}/messages": CHANNEL_MESSAGES,
    "PATCH /channels/{channel_id}/messages/{message_id}": CHANNEL_MESSAGES,
    "DELETE /channels/{channel_id}/messages/{message_id}": MESSAGE_DELETES,
}
"""The routes with a bucket of their own; every other bot-token route gets ``OTHER_LIMIT``."""
OTHER_LIMIT = (50, 1.0)
"""Requests and window of a route not listed above (its bucket is the route itself)."""

EXEMPT = frozenset({"POST /interactions/{interaction_id}/{token}/callback"})
"""Routes without any rate limit: the interaction callback."""

_MAJOR = ("channel_id", "guild_id", "application_id", "token")
"""The top-level resources a bucket counts per (a webhook counts per id and token)."""


@dataclass
class _Window:
    opened: float
    used: int = 0


@dataclass(frozen=True)
class Verdict:
    """What the limits say of one request: its headers, and whether it is refused (a 429)."""

    headers: dict[str, str]
    retry_after: float | None = None
    is_global: bool = False

    @property
    def refused(self) -> bool:
        return self.retry_after is not None

    def body(self) -> dict[str, object]:
        """The 429's JSON body."""
        assert self.retry_after is not None
        return {
            "message": "You are being rate limited.",
            "retry_after": round(self.retry_after, 3),
            "global": self.is_global,
        }


def too_many_headers(retry_after: float, *, is_global: bool) -> dict[str, str]:
    """The headers of any 429 besides the bucket's own."""
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return headers


def bucket_headers(bucket_hash: str, limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    """The headers Discord puts on every answer counted against a bucket."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket_hash,
    }


class RateLimits:
    """Counts requests per bucket and resource, and globally; decides which are 429s."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.clock = now
        """What the windows run on: the stand-in's clock, or the bot's pacing clock in tests
        that run that on virtual time (so the bot's waits and Discord's windows agree)."""
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: _Window | None = None
        self.enabled = True
        """Switch off for a test that counts nothing (a benchmark's flood of requests)."""

    def take(self, route: str, params: dict[str, str]) -> Verdict:
        """Count one request of ``route`` (a template) with its path values ``params``."""
        if not self.enabled or route in EXEMPT:
            return Verdict({})
        now = self.clock()
        interaction = "token" in params  # webhook routes with an interaction token
        if not interaction:
            refused = self._take_global(now)
            if refused is not None:
                return refused
        bucket = self._bucket(route, interaction)
        major = "/".join(params[name] for name in _MAJOR if name in params)
        key = (bucket.hash, major)
        window = self._windows.get(key)
        if window is None or now >= window.opened + bucket.window_s:
            window = self._windows[key] = _Window(now)
        reset_after = window.opened + bucket.window_s - now
        if window.used >= bucket.limit:
            headers = bucket_headers(bucket.hash, bucket.limit, 0, reset_after)
            headers |= too_many_headers(reset_after, is_global=False)
            return Verdict(headers, reset_after)
        window.used += 1
        remaining = bucket.limit - window.used
        return Verdict(bucket_headers(bucket.hash, bucket.limit, remaining, reset_after))

    def _take_global(self, now: float) -> Verdict | None:
        if self._global is None or now >= self._global.opened + 1.0:
            self._global = _Window(now)
        self._global.used += 1
        if self._global.used <= GLOBAL_PER_SECOND:
            return None
        retry_after = self._global.opened + 1.0 - now
        return Verdict(too_many_headers(retry_after, is_global=True), retry_after, is_global=True)

    @staticmethod
    def _bucket(route: str, interaction: bool) -> Bucket:
        if route in ROUTE_BUCKETS:
            return ROUTE_BUCKETS[route]
        if interaction:
            return INTERACTION_WEBHOOK
        limit, window_s = OTHER_LIMIT
        return Bucket(hashlib.sha1(route.encode()).hexdigest()[:16], limit, window_s)
