"""Session advisory locks on connections of their own: roles and the replica lease on PostgreSQL.

A :class:`SessionLock` holds one ``pg_try_advisory_lock`` on a dedicated
connection (never one of the pool's: a pooled connection goes back to the
pool and to other work, and its lock with it). PostgreSQL lets go of a
session lock when that session ends, however it ends: the holder's process
exits or is killed (the server sees the socket close at once), the holder's
host or network goes away (the server's TCP keepalives, set on the
connection from the lease, notice within about two thirds of it), or an
operator runs ``pg_terminate_backend``. The holder notices too: the
connection reports its end at once (a termination listener), and a check
every sixth of the lease (each allowed a third of it) catches a connection
that hangs without ending.
It then stops acting in the role before the server can give the lock to
another replica.

:class:`AdvisoryRoles` implements :class:`bot.roles.Roles` with them: each
role a replica campaigns for is one lock, tried again every third of
``KLINGBOT_JOB_LEASE_S`` by the standbys, so when the holder dies another
replica holds the role within the lease (a third of it when the holder's
process died and its host lives on).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bot.roles import Role, Roles

log = logging.getLogger(__name__)

CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What reaching the server or talking to it can raise (nothing here is a bug of ours)."""


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of a klingbot lock name (stable across versions and hosts)."""
    digest = hashlib.sha256(f"klingbot:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def keepalives(lease_s: float) -> dict[str, str]:
    """Server settings so the server notices a vanished client within ~2/3 of the lease."""
    idle = max(1, math.floor(lease_s / 3))
    interval = max(1, math.floor(lease_s / 9))
    return {
        "tcp_keepalives_idle": str(idle),
        "tcp_keepalives_interval": str(interval),
        "tcp_keepalives_count": "3",
    }


Connect = Callable[..., Awaitable[Any]]


class SessionLock:
    """One advisory lock on one connection of its own; see the module's docstring."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        lease_s: float,
        label: str = "klingbot",
        connect: Connect = asyncpg.connect,
    ) -> None:
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self.lease_s = lease_s
        self.label = label
        self._connect = connect
        self.connection: Any = None
        self.held = False
        self._unreachable = False
        self.lost = asyncio.Event()
        """Set when the connection holding the lock ended (the lock is gone with it)."""

    async def try_take(self) -> bool:
        """Take the lock without waiting (connecting first if needed); False if another holds it.

        A server that cannot be reached is also False (logged); the caller tries again later.
        """
        try:
            taken = await self.take()
        except CONNECT_ERRORS as error:
            # Said once per outage, not at every retry.
            level = logging.DEBUG if self._unreachable else logging.WARNING
            log.log(level, "cannot try the lock %s: %s", self.name, _reason(error))
            self._unreachable = True
            await self._drop()
            return False
        if self._unreachable:
            log.info("the lock %s can be tried again", self.name)
            self._unreachable = False
        return taken

    async def take(self) -> bool:
        """:meth:`try_take`, raising what reaching the server raised (the connection dropped)."""
        if self.held:
            return True
        try:
            if self.connection is None or self.connection.is_closed():
                self.connection = await self._connect(
                    self.url,
                    timeout=max(self.lease_s / 3, 1.0),
                    server_settings={
                        "application_name": f"{self.label}: {self.name}"[:63],
                        **keepalives(self.lease_s),
                    },
                )
                self.connection.add_termination_listener(self._ended)
            taken = await self.connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.key, timeout=self.check_timeout
            )
        except BaseException:
            await self._drop()
            raise
        if taken:
            self.held = True
            self.lost.clear()
        return bool(taken)

    @property
    def check_timeout(self) -> float:
        """How long one check may take before the connection counts as gone.

        A third of the lease (at least 2 s, so a loaded machine's slow answer
        is not taken for a dead connection): a check every sixth of it, so a
        hung connection is noticed within half the lease, before the server's
        keepalives (about two thirds of it) can give the lock to another.
        """
        return max(self.lease_s / 3, 2.0)

    async def alive(self) -> bool:
        """Whether the lock is still held: its connection answers within :attr:`check_timeout`."""
        if not self.held or self.connection is None or self.connection.is_closed():
            return False
        try:
            await self.connection.fetchval("SELECT 1", timeout=self.check_timeout)
        except CONNECT_ERRORS:
            return False
        return self.held

    async def watch(self) -> None:
        """Return when the lock is lost (its connection ended or stopped answering)."""
        while self.held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), self.lease_s / 6)
            if not await self.alive():
                break
        await self._drop()

    def give_up(self) -> None:
        """Let the lock go soon: :meth:`watch` returns and drops the connection (and the lock)."""
        if self.held:
            self.held = False
            self.lost.set()

    async def release(self) -> None:
        """Let go of the lock and close the connection."""
        connection, self.connection = self.connection, None
        self.held = False
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(self._ended)
            with contextlib.suppress(*CONNECT_ERRORS):
                await asyncio.wait_for(connection.close(), self.check_timeout)
            if not connection.is_closed():
                connection.terminate()

    async def _drop(self) -> None:
        """The connection is of no more use: the lock is gone with it (or never was)."""
        was_held = self.held
        self.held = False
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(self._ended)
            connection.terminate()
        if was_held:
            self.lost.set()

    def _ended(self, connection: Any) -> None:
        """asyncpg: the connection ended (killed backend, server restart, network)."""
        if connection is self.connection and self.held:
            self.held = False
            self.lost.set()


class AdvisoryRole(Role):
    """A role held through a :class:`SessionLock`; :meth:`campaign` runs until cancelled."""

    def __init__(self, lock: SessionLock, *, retry_s: float) -> None:
        super().__init__(lock.name.removeprefix("role:"))
        self.lock = lock
        self.retry_s = retry_s
        self._stepped_down = False
        self._task: asyncio.Task[None] | None = None

    async def step_down(self) -> None:
        """Give the lock up; the campaign tries again after a retry interval, standbys first."""
        self._stepped_down = True
        self._lose()
        self.lock.give_up()

    async def attempt(self) -> None:
        """One try at the role; held after it if the lock was free."""
        if await self.lock.try_take():
            self._gain()

    async def campaign(self) -> None:
        """Hold the role when it is free, give it up when the lock is lost, and try again."""
        try:
            while True:
                if self.held:
                    await self.lock.watch()
                    self._lose()
                    log.warning("gave up the %s role; a standby takes it", self.name)
                # After a loss too: the standbys, trying as often, come first; after
                # stepping down, a whole retry interval before any of them.
                await asyncio.sleep(self.retry_s * (2 if self._stepped_down else 1))
                self._stepped_down = False
                await self.attempt()
        finally:
            self._lose()
            await self.lock.release()


class AdvisoryRoles(Roles):
    """Roles on PostgreSQL: one session advisory lock (and connection) per role claimed."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float,
        label: str = "klingbot",
        connect: Connect = asyncpg.connect,
    ) -> None:
        self.url = url
        self.lease_s = lease_s
        self.label = label
        self._connect = connect
        self._roles: dict[str, AdvisoryRole] = {}

    @property
    def retry_s(self) -> float:
        """How often a standby tries a role again: a third of the lease."""
        return self.lease_s / 3

    async def claim(self, name: str) -> Role:
        """Try ``name``'s lock once now, then keep campaigning in the background."""
        role = self._roles.get(name)
        if role is not None:
            return role
        lock = SessionLock(
            self.url, f"role:{name}", lease_s=self.lease_s, label=self.label, connect=self._connect
        )
        role = self._roles[name] = AdvisoryRole(lock, retry_s=self.retry_s)
        await role.attempt()
        role._task = asyncio.create_task(role.campaign(), name=f"role {name}")
        return role

    def claimed(self) -> list[Role]:
        """The roles campaigned for."""
        return list(self._roles.values())

    async def close(self) -> None:
        """Stop every campaign; each closes its connection, which lets its lock go."""
        roles, self._roles = list(self._roles.values()), {}
        for role in roles:
            if role._task is not None:
                role._task.cancel()
        for role in roles:
            if role._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await role._task


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def role_holders(connection: Any, names: list[str]) -> dict[str, str]:
    """Who holds each of the roles ``names`` now: role -> the holder's label (``klingbot r1``).

    Read from ``pg_locks`` (the advisory locks granted) and the holders'
    ``application_name``; a role nobody holds is left out.
    """
    keys = {lock_key(f"role:{name}"): name for name in names}
    rows = await connection.fetch(
        """
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, a.application_name
        FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        """
    )
    holders: dict[str, str] = {}
    for row in rows:
        key = row["key"] - (1 << 64) if row["key"] >= (1 << 63) else row["key"]
        if key in keys:
            holders[keys[key]] = (row["application_name"] or "").rpartition(": role:")[0]
    return holders
