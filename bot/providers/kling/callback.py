"""The optional callback endpoint Kling posts task changes to (``KLING_CALLBACK_URL``).

A post only makes the runner poll that task at once: its body is never
trusted (anyone who finds the URL could post), so the task's state, result
URL and failure always come from an authenticated query. The server listens
on ``KLING_CALLBACK_LISTEN`` behind the operator's HTTPS proxy, on the path
of the callback URL.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiohttp import web

from bot.providers.kling.provider import KlingProvider
from bot.settings import ConfigError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class CallbackServer:
    """Serves ``POST <path of callback_url>``; :meth:`start` and :meth:`stop` it."""

    def __init__(self, provider: KlingProvider, callback_url: str, listen: str) -> None:
        self.provider = provider
        self.path = urlsplit(callback_url).path or "/"
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; ``port`` is the real one afterwards (when 0 was asked)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(self.path, self._posted)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise ConfigError(
                f"KLING_CALLBACK_LISTEN: cannot listen on {self.host}:{self.port}: {error.strerror}"
            ) from None
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        log.info("listening for Kling callbacks on %s:%d%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _posted(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False}, status=400)
        task_id = body.get("task_id") if isinstance(body, dict) else None
        if not isinstance(task_id, str | int) or not str(task_id):
            return web.json_response({"ok": False}, status=400)
        polled = self.provider.notify(str(task_id))
        log.debug("Kling callback for task %s (%s)", task_id, "polling" if polled else "unknown")
        return web.json_response({"ok": True})
