"""The runner lease on PostgreSQL: one row and one advisory lock per replica.

Several replicas share one PostgreSQL database, each with its own
``KLINGBOT_REPLICA_ID``; what must stay unique is the id. A replica holds
the session advisory lock ``replica:<id>`` (:class:`~storage.postgres.locks.SessionLock`,
on a connection of its own) for as long as it runs, so a second process
started with the same id is refused in one line (exit 2) while the first
lives, and a restart after the first died (however it died: PostgreSQL drops
the lock with its connection) starts at once.

Beside the lock, the replica keeps its row in ``replicas`` (migration
0003): host, pid, when it started, its last heartbeat (every third of
``KLINGBOT_JOB_LEASE_S``) and when its lease expires. The refused process
reads that row to say who holds the id; operators and the other replicas
read it to see who is alive.

If the lock's connection ends while the replica lives (the server
restarted, an operator killed the session), the lease takes the lock again
at once; if another process took the id meanwhile, :attr:`PgRunnerLease.lost`
is set and ``klingbot run`` stops (exit 1) rather than run jobs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import asyncpg

from app.lease import RunnerLease
from storage.postgres.database import explain
from storage.postgres.locks import CONNECT_ERRORS, Connect, SessionLock

log = logging.getLogger(__name__)

UPSERT = """
INSERT INTO replicas (replica_id, host, pid, started_at, heartbeat_at, expires_at)
VALUES ($1, $2, $3, now(), now(), now() + make_interval(secs => $4))
ON CONFLICT (replica_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
"""
HEARTBEAT = """
UPDATE replicas SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $3)
WHERE replica_id = $1 AND pid = $2
"""
SIGNED = """
SELECT host, pid, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS since,
       extract(epoch FROM now() - heartbeat_at)::int AS seen_s
FROM replicas WHERE replica_id = $1
"""


class PgRunnerLease(RunnerLease):
    """``replica:<id>``'s advisory lock plus its ``replicas`` row; see the module's docstring."""

    def __init__(
        self,
        url: str,
        replica_id: str,
        *,
        lease_s: float,
        connect: Connect = asyncpg.connect,
    ) -> None:
        self.url = url
        self.replica_id = replica_id
        self.lease_s = lease_s
        self._connect = connect
        self.lock = SessionLock(
            url, f"replica:{replica_id}", lease_s=lease_s, label=f"klingbot {replica_id}",
            connect=connect,
        )  # fmt: skip
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.lost = asyncio.Event()
        """Set when another process took this replica id after our connection ended."""
        self.heartbeats = 0
        """Rows written (the first one included)."""
        self.beat = asyncio.Event()
        """Set at each row written (clear it to wait for the next one)."""
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        """Take ``replica:<id>`` at once or not; StorageUnavailable if the server is unreachable."""
        try:
            taken = await self.lock.take()
        except (*CONNECT_ERRORS, ValueError) as error:
            raise explain(error, self.url) from None  # one line, never the password
        if not taken:
            await self.lock.release()
            return False
        await self._beat(UPSERT)
        self._heartbeat = asyncio.create_task(self._keep(), name=f"replica {self.replica_id}")
        return True

    async def holder(self) -> str:
        """Who runs this replica id, from its row."""
        row = None
        with contextlib.suppress(*CONNECT_ERRORS):
            connection = await self._connect(self.url, timeout=10)
            try:
                row = await connection.fetchrow(SIGNED, self.replica_id)
            finally:
                await connection.close()
        if row is None:
            return f"replica {self.replica_id}"
        return (
            f"replica {self.replica_id}: pid {row['pid']} on {row['host']} since"
            f" {row['since']} UTC, last heartbeat {row['seen_s']} s ago"
        )

    async def wait_lost(self) -> None:
        """Return if another process took this replica id after our connection ended."""
        await self.lost.wait()

    def refusal(self, database: object, holder: str) -> str:
        """Why this process does not start: the id is taken, and what to do."""
        return (
            f"a klingbot replica with KLINGBOT_REPLICA_ID={self.replica_id} already runs on"
            f" this database ({holder}); each replica needs its own id: stop that one first,"
            " or give this one another KLINGBOT_REPLICA_ID"
        )

    async def release(self) -> None:
        """Stop the heartbeat, mark the row expired, and let the lock go."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self.lock.held:
            with contextlib.suppress(*CONNECT_ERRORS):
                await self.lock.connection.execute(
                    "UPDATE replicas SET expires_at = now() WHERE replica_id = $1 AND pid = $2",
                    self.replica_id,
                    self.pid,
                    timeout=self.lock.check_timeout,
                )
        await self.lock.release()

    async def _beat(self, sql: str) -> None:
        """Write the row (on the lock's connection); a database not yet migrated waits."""
        connection: Any = self.lock.connection
        args: tuple[Any, ...] = (self.replica_id, self.host, self.pid, self.lease_s)
        if sql is HEARTBEAT:
            args = (self.replica_id, self.pid, self.lease_s)
        try:
            status = await connection.execute(sql, *args, timeout=self.lock.check_timeout)
        except asyncpg.UndefinedTableError:
            return  # the first start on a new database: open_core migrates it next
        except CONNECT_ERRORS as error:
            log.warning("replica %s: no heartbeat: %s", self.replica_id, _reason(error))
            return
        if sql is HEARTBEAT and status == "UPDATE 0":
            await self._beat(UPSERT)  # the table is new since the start
            return
        self.heartbeats += 1
        self.beat.set()

    async def _keep(self) -> None:
        """Heartbeat every third of the lease; take the lock again if its connection ended."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lock.lost.wait(), self.lease_s / 3)
            if not await self.lock.alive():
                await self.lock.release()
                if await self.lock.try_take():
                    log.warning(
                        "replica %s: its lease connection ended; took it again", self.replica_id
                    )
                    await self._beat(UPSERT)
                    continue
                if self.lock.connection is not None:  # reachable, and the id is taken
                    log.error(
                        "replica %s: another process took this replica id; stopping",
                        self.replica_id,
                    )
                    await self.lock.release()
                    self.lost.set()
                    return
                continue  # unreachable: try again at the next beat
            await self._beat(HEARTBEAT)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def describe_replicas(connection: Any, roles: list[str]) -> str:
    """``klingbot doctor``'s line: the replicas whose lease is alive, and the roles each holds."""
    from storage.postgres.locks import role_holders

    try:
        rows = await connection.fetch(
            "SELECT replica_id, host, pid FROM replicas WHERE expires_at > now()"
            " ORDER BY replica_id"
        )
    except asyncpg.UndefinedTableError:
        rows = []
    holders = await role_holders(connection, roles)
    if not rows:
        return "none running"
    parts = []
    for row in rows:
        held = [role for role in roles if holders.get(role) == f"klingbot {row['replica_id']}"]
        what = f"holds {', '.join(held)}" if held else "no role"
        parts.append(f"{row['replica_id']} (pid {row['pid']} on {row['host']}; {what})")
    return f"{len(rows)} running: " + ", ".join(parts)
