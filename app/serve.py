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

``klingbot health`` (the image's HEALTHCHECK) asks ``/healthz`` when
``KLINGBOT_METRICS_LISTEN`` is set, and otherwise whether a klingbot process
holds the database's lease.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.lease import Lease
from app.metrics import Check, OperationsServer, PrometheusMetrics
from bot.commands import UserRef
from bot.deps import Deps
from bot.errors import StorageUnavailable
from bot.settings import Settings

log = logging.getLogger("klingbot")

SHUTDOWN_DEADLINE_S = 8.0
"""Seconds from the signal to a forced exit: inside Docker's default 10 s grace period."""
HEALTH_TIMEOUT_S = 3.0


@dataclass
class Served:
    """What each started adapter contributes to health and shutdown."""

    checks: dict[str, Check] = field(default_factory=dict)
    stop_intake: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def watch_telegram(application: Any, served: Served) -> None:
    """The Telegram application's health check and how its intake stops."""

    async def connected() -> str | None:
        updater = application.updater
        if not application.running:
            return "the application is not running"
        if updater is not None and not updater.running:
            return "not polling for updates"
        return None

    async def stop_polling() -> None:
        updater = application.updater
        if updater is not None and updater.running:
            await updater.stop()

    served.checks["telegram"] = connected
    served.stop_intake.append(stop_polling)


def watch_discord(client: Any, served: Served) -> None:
    """The Discord client's health check."""

    async def connected() -> str | None:
        if client.is_closed():
            return "the gateway connection is closed"
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

    server.add_check("database", database)
    server.add_check("runner", runner_alive)
    for name, check in served.checks.items():
        server.add_check(name, check)
    await server.start()
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


def health_command(settings: Settings) -> int:
    """``klingbot health``: 0 healthy, 1 not; one line on stdout."""
    if settings.metrics_listen is not None:
        return _ask_healthz(settings.metrics_listen)
    lease = Lease(settings.db)
    try:
        free = lease.take()
    except StorageUnavailable as error:
        print(f"unhealthy: {error}")
        return 1
    if free:
        lease.release()
        print(f"unhealthy: no klingbot process holds {settings.db}")
        return 1
    print(f"healthy: a klingbot process holds {settings.db}")
    return 0


def _ask_healthz(listen: str) -> int:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except ValueError:
            body = {"status": f"HTTP {error.code}"}
    except (OSError, ValueError) as error:
        print(f"unhealthy: {url} does not answer ({error})")
        return 1
    failing = {k: v for k, v in body.get("checks", {}).items() if v != "ok"}
    if body.get("status") == "ok":
        print(f"healthy: {', '.join(body.get('checks', {}))}")
        return 0
    shown = "; ".join(f"{k}: {v}" for k, v in failing.items()) or body.get("status")
    print(f"unhealthy: {shown}", file=sys.stdout)
    return 1


async def wait_for_stop(stop: asyncio.Event, watched: set[asyncio.Future]) -> bool:
    """Wait for the stop signal or a watched connection to end; True if it was the signal."""
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    return stopping in done
