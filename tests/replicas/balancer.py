"""A small round-robin HTTP balancer on 127.0.0.1, in front of the replicas' webhook servers.

It stands where the operator's reverse proxy stands (Caddy in
``compose.scale.yaml``), minus TLS: each request goes to the next replica in
turn, and when that replica does not answer (connection refused or reset, or
no answer within ``timeout_s``) to the one after it, until one answers or
every replica has been tried (then 502, and Telegram posts again later).
An answer, whatever its status, is passed back as it is: a replica that
refuses a post (403 for a wrong secret) is not "down".

``backends`` may change while it runs (a restarted replica listens on a new
port); ``forwarded`` counts the requests each backend answered.
"""

from __future__ import annotations

import socket
from collections import Counter

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)


class Balancer:
    """``async with Balancer(["127.0.0.1:8001", ...]) as balancer: balancer.url("/hook")``."""

    def __init__(self, backends: list[str] | None = None, *, timeout_s: float = 10.0) -> None:
        self.backends: list[str] = list(backends or [])
        self.timeout_s = timeout_s
        self.forwarded: Counter[str] = Counter()
        """Requests each backend answered."""
        self.unanswered: Counter[str] = Counter()
        """Attempts each backend did not answer (the balancer tried the next one)."""
        self.refused = 0
        """Requests no backend answered (502)."""
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def __aenter__(self) -> Balancer:
        # No pooled connections: a killed replica's sockets must not be reused, and the
        # balancer's own keep-alive would hide which replica answers.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _order(self) -> list[str]:
        """Every backend once, starting with the next in turn."""
        backends = list(self.backends)
        if not backends:
            return []
        start = self._next % len(backends)
        self._next = start + 1
        return backends[start:] + backends[:start]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for backend in self._order():
            target = f"http://{backend}{request.rel_url}"
            try:
                async with self._session.request(
                    request.method, target, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    payload = await answer.read()
                    kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                    self.forwarded[backend] += 1
                    return web.Response(status=answer.status, body=payload, headers=kept)
            except (aiohttp.ClientError, TimeoutError):
                self.unanswered[backend] += 1  # down, or not answering: try the next one
        self.refused += 1
        return web.Response(status=502, text="no replica answered")
