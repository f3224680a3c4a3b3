"""``klingbot health``: whether the bot running here is healthy (the image's HEALTHCHECK).

With ``KLINGBOT_METRICS_LISTEN`` set it asks the bot's ``/healthz`` (the
database answers, the runner is alive, each adapter is connected); without
it, it asks whether a klingbot process holds the database's lease. It exits
0 when healthy, 1 when not, with one line on stdout. Only ``klingbot run``
serves ``/healthz``: when nothing answers there but another klingbot process
(the console, a wallet command) holds the lease, the line says so.

It never creates anything: where no klingbot process ever ran (no lease
file), nobody can hold the lease, and no ``klingbot.db.lock`` is left behind.

With ``KLINGBOT_DATABASE_URL`` (PostgreSQL) there is no lease file beside a
database to ask; without ``KLINGBOT_METRICS_LISTEN`` it asks the database
whether this replica (``KLINGBOT_REPLICA_ID``) holds its lease: its row in
``replicas`` (:mod:`app.replica_lease`) has not expired, its heartbeat is
recent. That reads one row and changes nothing.

The container runtime runs it every 30 seconds, so it is kept light: the
``klingbot`` script (:mod:`app.entry`) comes here without importing the
bot, the adapters or the renderer.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from app.lease import Lease, lease_path
from bot.errors import StorageUnavailable
from bot.settings import ConfigError, Settings, load_settings

HEALTH_TIMEOUT_S = 3.0


def main() -> int:
    """Load the settings and check; a bad configuration is unhealthy (exit 1)."""
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"unhealthy: {error}")
        return 1
    return health_command(settings)


def health_command(settings: Settings) -> int:
    """``klingbot health``: 0 healthy, 1 not; one line on stdout."""
    if settings.metrics_listen is not None:
        return _ask_healthz(settings.metrics_listen, settings)
    if settings.postgres:
        return _replica_health(settings)
    try:
        held = _lease_held(settings)
    except StorageUnavailable as error:
        print(f"unhealthy: {error}")
        return 1
    if not held:
        print(f"unhealthy: no klingbot process holds {settings.db.absolute()}")
        return 1
    print(f"healthy: a klingbot process holds {settings.db.absolute()}")
    return 0


REPLICA = """
SELECT host, pid, extract(epoch FROM now() - heartbeat_at)::int AS seen_s,
       extract(epoch FROM now() - expires_at)::int AS expired_s
FROM replicas WHERE replica_id = $1
"""


def _replica_health(settings: Settings) -> int:
    """PostgreSQL: whether this replica's lease row is alive (0) or not (1); one line."""
    import asyncio

    import asyncpg

    from storage.postgres.database import explain

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    replica = settings.replica

    async def ask() -> asyncpg.Record | None:
        connection = await asyncpg.connect(url, timeout=HEALTH_TIMEOUT_S)
        try:
            return await connection.fetchrow(REPLICA, replica, timeout=HEALTH_TIMEOUT_S)
        finally:
            await connection.close()

    try:
        row = asyncio.run(ask())
    except asyncpg.UndefinedTableError:
        row = None  # no replica ever ran on this database
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
        print(f"unhealthy: {explain(error, url)}")
        return 1
    where = f"on {settings.database_shown}"
    if row is None:
        print(f"unhealthy: no klingbot replica {replica} ever ran {where}")
        return 1
    holder = f"pid {row['pid']} on {row['host']}, last heartbeat {row['seen_s']} s ago"
    if row["expired_s"] >= 0:
        print(f"unhealthy: replica {replica} {where} does not hold its lease ({holder})")
        return 1
    print(f"healthy: replica {replica} holds its lease {where} ({holder})")
    return 0


def _lease_held(settings: Settings) -> bool:
    """Whether a klingbot process holds the (SQLite) database's lease; creates no lock file."""
    if settings.postgres or not lease_path(settings.db).exists():
        return False  # every holder creates it: nobody ever held it here
    lease = Lease(settings.db)
    if lease.take():
        lease.release()
        return False
    return True


def _ask_healthz(listen: str, settings: Settings) -> int:
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
        try:
            held = _lease_held(settings)
        except StorageUnavailable:
            held = False
        if held:
            print(
                f"unhealthy: {url} does not answer, though a klingbot process holds"
                f" {settings.db.absolute()}: the console and wallet commands serve no /healthz"
                " (klingbot run does, once started)"
            )
        else:
            print(f"unhealthy: {url} does not answer ({error})")
        return 1
    failing = {k: v for k, v in body.get("checks", {}).items() if v != "ok"}
    if body.get("status") == "ok":
        print(f"healthy: {', '.join(body.get('checks', {}))}")
        return 0
    shown = "; ".join(f"{k}: {v}" for k, v in failing.items()) or body.get("status")
    print(f"unhealthy: {shown}")
    return 1
