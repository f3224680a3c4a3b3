"""What ``klingbot run`` adds around the adapters: health checks, the metrics server, shutdown.

Shutdown on SIGTERM (or SIGINT), in this order (``app.cli._serve``):

1. stop taking updates (Telegram's polling ends; Discord stays connected
   while its in-flight interactions are answered);
2. stop the job runner: running jobs stop where they are and stay in the
   database, to be resumed at the next start;
3. each adapter lets in-flight interactions and status edits finish, then
   disconnects;
4. the provider and the database close (the WAL is checkpointed).

:class:`ShutdownDeadline` bounds all of it: if the process is still
stopping :data:`SHUTDOWN_DEADLINE_S` after the signal, it exits at once
(status 1; nothing is lost, SQLite is crash-safe and jobs resume), so
``docker stop`` never needs its SIGKILL. A second signal exits at once too.

``klingbot health`` is in :mod:`app.health`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.metrics import Check, OperationsServer, PrometheusMetrics
from bot.commands import UserRef
from bot.deps import Deps
from bot.settings import ConfigError, Settings

log = logging.getLogger("klingbot")

SHUTDOWN_DEADLINE_S = 8.0
"""Seconds from the signal to a forced exit: inside Docker's default 10 s grace period."""


@dataclass
class Served:
    """What each started adapter contributes to health and shutdown."""

    checks: dict[str, Check] = field(default_factory=dict)
    stop_intake: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def watch_telegram(application: Any, served: Served) -> None:
    """The Telegram application's health check and how its intake stops."""
    from adapters.telegram import adapter_of

    adapter = adapter_of(application)

    async def connected() -> str | None:
        updater = application.updater
        if not application.running:
            return "the application is not running"
        if updater is not None and not updater.running and not adapter.standby:
            return "not polling for updates"
        return None

    async def stop_polling() -> None:
        await adapter.stop_intake()

    served.checks["telegram"] = connected
    served.stop_intake.append(stop_polling)


def watch_discord(client: Any, served: Served) -> None:
    """The Discord client's health check."""

    async def connected() -> str | None:
        if client.is_closed():
            return "the gateway connection is closed"
        if client.adapter.standby:
            return None  # another replica holds the gateway; this one sends through REST
        if not client.is_ready():
            return "the gateway is not ready (reconnecting)"
        return None

    served.checks["discord"] = connected


async def start_operations(
    settings: Settings, deps: Deps, served: Served
) -> OperationsServer | None:
    """With ``KLINGBOT_METRICS_LISTEN``: serve ``/metrics`` and ``/healthz``; else nothing."""
    if settings.metrics_listen is None or not isinstance(deps.metrics, PrometheusMetrics):
        return None
    server = OperationsServer(deps.metrics, settings.metrics_listen)
    assert deps.generation is not None
    runner = deps.generation.runner

    async def database() -> str | None:
        await deps.ledger.wallet(UserRef("health", "probe"))  # one read on the reader connection
        return None

    async def runner_alive() -> str | None:
        return None if runner.alive else "the job runner is stopped"

    links = runner.links
    if links is not None:
        from app.clip_links import ROUTE, ClipLinkRoute

        route = ClipLinkRoute(links, deps.generation.store, deps.clock)
        server.routes.append((ROUTE, route.serve))
    server.add_check("database", database)
    server.add_check("runner", runner_alive)
    for name, check in served.checks.items():
        server.add_check(name, check)
    try:
        await server.start()
    except OSError as error:
        raise ConfigError(
            f"cannot listen on KLINGBOT_METRICS_LISTEN={settings.metrics_listen}:"
            f" {error.strerror or error}"
        ) from None
    return server


class ShutdownDeadline:
    """Exits the process if stopping takes longer than ``seconds`` (a daemon timer thread)."""

    def __init__(self, seconds: float = SHUTDOWN_DEADLINE_S) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start counting (once)."""
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        """Stopped in time."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.error(
            "still stopping after %g s: exiting now (unfinished jobs resume at the next start)",
            self.seconds,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)


async def wait_for_stop(stop: asyncio.Event, watched: set[asyncio.Future]) -> bool:
    """Wait for the stop signal or a watched connection to end; True if it was the signal."""
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    return stopping in done
