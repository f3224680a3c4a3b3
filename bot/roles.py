"""Roles: what exactly one replica may do at a time, taken over when its holder dies.

Several ``klingbot run`` processes (replicas) can serve one community on one
PostgreSQL database. Most work is shared (any replica answers any update,
jobs are leased one by one), but a few things must be done by one process
only: polling Telegram (a second ``getUpdates`` terminates the first),
holding Discord's gateway connection without shards, and the retention
sweep. Each is a named :class:`Role`: every replica campaigns for it, one
holds it, and when that one dies another takes it.

The port is :class:`Roles`; :class:`SoleRoles` (SQLite: one runner per
database, so this process always holds every role, and the tests' default)
is here, the PostgreSQL one (a session advisory lock on a connection of its
own, ``storage.postgres.locks``) beside the rest of that backend.

Whoever acts in a role watches it: :func:`serve_role` starts the duty when
the role is gained and stops it when it is lost (its holder's database
connection dropped: another replica may hold it already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

TELEGRAM_POLLING = "telegram-polling"
"""Long-polls Telegram's getUpdates (polling mode only; webhooks reach every replica)."""
DISCORD_GATEWAY = "discord-gateway"
"""Holds Discord's gateway connection (without shard settings)."""
RETENTION = "retention"
"""Runs the retention sweep of input images and clips."""


class Role:
    """One named role as this process sees it: held or not, with waits for a change.

    Implementations call :meth:`_gain` and :meth:`_lose`; everyone else
    reads :attr:`held` and waits with :meth:`wait_held` and :meth:`wait_lost`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._held = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self.gains = 0
        """How many times this process took the role (a measure for tests and logs)."""

    @property
    def held(self) -> bool:
        """Whether this process holds the role now."""
        return self._held.is_set()

    async def wait_held(self) -> None:
        """Return once this process holds the role (at once if it does)."""
        await self._held.wait()

    async def wait_lost(self) -> None:
        """Return once this process no longer holds the role (at once if it does not)."""
        await self._lost.wait()

    async def step_down(self) -> None:
        """Give the role up for one retry interval, so that another replica may take it.

        For a holder that cannot do the duty (its platform unreachable from
        here). The sole runner of SQLite has nobody to hand it to: it keeps it.
        """

    def _gain(self) -> None:
        if not self.held:
            self.gains += 1
            self._lost.clear()
            self._held.set()

    def _lose(self) -> None:
        if self.held:
            self._held.clear()
            self._lost.set()


class Roles(ABC):
    """Where a process campaigns for roles; closing it gives every held role up."""

    @abstractmethod
    async def claim(self, name: str) -> Role:
        """Campaign for ``name`` from now until :meth:`close`; the same object for a name.

        Returns after the first attempt, so :attr:`Role.held` already says
        whether this process got it; a standby keeps trying in the background.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop campaigning and give up every role held (a dying process gives them up too)."""

    @abstractmethod
    def claimed(self) -> list[Role]:
        """The roles this process campaigns for (held or not), in the order claimed."""


class SoleRoles(Roles):
    """Every role, always held: the one process of an SQLite database (or a test)."""

    def __init__(self) -> None:
        self._roles: dict[str, Role] = {}

    async def claim(self, name: str) -> Role:
        """The role, held from the start."""
        role = self._roles.get(name)
        if role is None:
            role = self._roles[name] = Role(name)
            role._gain()
        return role

    async def close(self) -> None:
        """Every role is given up."""
        for role in self._roles.values():
            role._lose()

    def claimed(self) -> list[Role]:
        """Every role asked for."""
        return list(self._roles.values())


async def serve_role(
    role: Role,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    retry_s: float = 5.0,
    started: bool = False,
    attempts: int = 3,
) -> None:
    """Do a duty while ``role`` is held: ``start()`` on gaining it, ``stop()`` on losing it.

    Runs until cancelled, and then stops the duty if it is running. A
    ``start()`` that fails is logged and tried again after ``retry_s`` for
    as long as the role is held; after ``attempts`` failures in a row the
    role is given up for a while (:meth:`Role.step_down`), so a replica
    that can do the duty takes it. ``started``: the caller started the duty
    already (it held the role when it began).
    """
    failures = 0

    async def stopped() -> None:
        try:
            await stop()
        except Exception:
            log.exception("could not stop the %s duty cleanly", role.name)

    try:
        while True:
            if started:
                await role.wait_lost()
                log.warning("this replica lost the %s role: stopping that duty", role.name)
                started = False
                await stopped()
            await role.wait_held()
            try:
                await start()
            except Exception:
                failures += 1
                log.exception(
                    "could not start the %s duty; trying again in %g s", role.name, retry_s
                )
                if failures % attempts == 0:
                    log.warning(
                        "giving the %s role up after %d failed starts: another replica may do it",
                        role.name,
                        attempts,
                    )
                    await role.step_down()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(role.wait_lost(), retry_s)
                continue
            failures = 0
            started = True
            log.info("this replica took the %s role", role.name)
    finally:
        if started:
            await stopped()
