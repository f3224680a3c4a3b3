"""Webhook mode: Telegram posts updates to us, for deployments behind a load balancer.

A small aiohttp server (PTB's "custom webhook" pattern, as in its starlette
example) accepts ``POST <path of TELEGRAM_WEBHOOK_URL>``, checks Telegram's
``X-Telegram-Bot-Api-Secret-Token`` header, and puts the update on the
application's queue, where polling would have put it. Without the secret a
forged post could claim to come from a moderator, so there always is one:
``TELEGRAM_WEBHOOK_SECRET``, or one derived from the token, the same on
every instance behind the balancer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1024 * 1024


def derived_secret(token: str) -> str:
    """A webhook secret from the bot token: 64 hex characters, stable across restarts."""
    return hmac.new(token.encode(), b"klingbot webhook", hashlib.sha256).hexdigest()


class WebhookServer:
    """Listens for Telegram's posts and feeds them to the application."""

    def __init__(
        self,
        application: Application,
        *,
        url: str,
        listen: str,
        secret: str,
        allowed_updates: list[str],
    ) -> None:
        self.application = application
        self.url = url
        self.path = urlsplit(url).path or "/"
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.secret = secret
        self.allowed_updates = allowed_updates
        self._runner = None

    async def start(self) -> None:
        """Start listening, then tell Telegram where to post."""
        from aiohttp import web  # only webhook deployments need the server

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        await self.application.bot.set_webhook(
            self.url, secret_token=self.secret, allowed_updates=self.allowed_updates
        )
        log.info("webhook listening on %s:%d%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        """Stop listening (the webhook stays set: another instance may still serve it)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request):
        from aiohttp import web

        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=403)
        try:
            data = await request.json()
            if not isinstance(data, dict):  # JSON, but not an object: no update
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            update = Update.de_json(data, self.application.bot)
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as error:
            log.warning("webhook post that is not an update: %s", error)
            return web.Response(status=400)
        await self.application.update_queue.put(update)
        return web.Response()
