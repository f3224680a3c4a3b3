"""Roles held by one replica at a time, taken over when the holder dies (real PostgreSQL).

Every "replica" here is an :class:`AdvisoryRoles` of its own (one in a
process of its own for the SIGKILL case), on the test server; the lease is
scaled down to 3 s, so a standby tries again every second. Nothing sleeps:
the tests wait for the roles' events, bounded by the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid

import asyncpg
import pytest

from bot.roles import Role, SoleRoles, serve_role
from storage.postgres.locks import AdvisoryRoles, lock_key

LEASE_S = 3.0


def unique(prefix: str) -> str:
    """A role name no other test (or test run on this server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def holders(url: str, name: str) -> list[str]:
    """The application names of the sessions holding role ``name``'s lock, as PostgreSQL sees it."""
    key = lock_key(f"role:{name}")
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            """
            SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.classid = (($1::bigint >> 32) & 4294967295)::oid
              AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1
            """,
            key,
        )
    finally:
        await connection.close()
    return [row["application_name"] for row in rows]


async def terminate(url: str, application_name: str) -> int:
    """pg_terminate_backend on every session of that name (what an operator or a failover does)."""
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()


async def test_one_replica_holds_a_role_and_another_takes_it_when_its_connection_is_killed(pg_url):
    name = unique("poll")
    first = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-a")
    second = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-b")
    try:
        a = await first.claim(name)
        b = await second.claim(name)
        assert (a.held, b.held) == (True, False)
        assert await first.claim(name) is a  # one campaign per name
        assert await holders(pg_url, name) == [f"replica-a: role:{name}"]

        killed = time.monotonic()
        assert await terminate(pg_url, f"replica-a: role:{name}") == 1
        await asyncio.wait_for(a.wait_lost(), LEASE_S)  # the holder stops acting in the role
        await asyncio.wait_for(b.wait_held(), LEASE_S)  # the standby takes it within the lease
        took = time.monotonic() - killed
        assert (a.held, b.held) == (False, True)
        assert await holders(pg_url, name) == [f"replica-b: role:{name}"]
        print(f"takeover after pg_terminate_backend: {took:.2f} s (lease {LEASE_S} s)")

        # The first one is a standby now, and takes the role back when the second lets go.
        await second.close()
        await asyncio.wait_for(a.wait_held(), LEASE_S)
        assert a.gains == 2 and b.gains == 1
    finally:
        await first.close()
        await second.close()
    assert await holders(pg_url, name) == []  # closing gives the role up


async def test_a_sigkilled_holder_process_loses_the_role_to_a_standby_within_the_lease(pg_url):
    name = unique("gateway")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.roles.holder", pg_url, name, str(LEASE_S),
        stdout=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )  # fmt: skip
    standby = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="survivor")
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"held\n"
        role = await standby.claim(name)
        assert not role.held
        killed = time.monotonic()
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(role.wait_held(), LEASE_S)
        took = time.monotonic() - killed
        assert await holders(pg_url, name) == [f"survivor: role:{name}"]
        print(f"takeover after SIGKILL: {took:.2f} s (lease {LEASE_S} s)")
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await standby.close()


async def test_different_roles_are_independent(pg_url):
    first = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-a")
    second = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-b")
    try:
        polling = await first.claim(unique("polling"))
        sweep = await second.claim(unique("sweep"))
        assert polling.held and sweep.held
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_server_holds_no_role_and_is_tried_again(caplog):
    roles = AdvisoryRoles("postgresql://nobody@127.0.0.1:9/none", lease_s=LEASE_S)
    try:
        role = await roles.claim("retention")
        assert not role.held
        await role.attempt()  # the next retry, as the campaign makes it
        assert not role.held
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage().split(":")[0] for r in warnings] == [
            "cannot try the lock role"
        ]  # once per outage, not once per retry
    finally:
        await roles.close()


async def test_with_sqlite_every_role_is_held_by_the_one_runner():
    roles = SoleRoles()
    role = await roles.claim("telegram-polling")
    assert role.held and await roles.claim("telegram-polling") is role
    await roles.close()
    assert not role.held


class Duty:
    """What serve_role drives: records starts and stops, and can fail to start."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.failures = 0
        self.changed = asyncio.Event()

    async def start(self) -> None:
        if self.failures:
            self.failures -= 1
            self.log.append("failed")
            self.changed.set()
            raise ConnectionError("the platform is unreachable")
        self.log.append("start")
        self.changed.set()

    async def stop(self) -> None:
        self.log.append("stop")
        self.changed.set()

    async def until(self, *entries: str) -> None:
        while self.log[-len(entries) :] != list(entries):
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


async def test_a_duty_runs_while_its_role_is_held_and_stops_when_it_is_lost(caplog):
    role = Role("telegram-polling")
    duty = Duty()
    duty.failures = 1
    serving = asyncio.create_task(serve_role(role, duty.start, duty.stop, retry_s=0.01))
    try:
        await asyncio.sleep(0)
        assert duty.log == []  # a standby does nothing
        role._gain()
        await duty.until("failed", "start")  # a failed start is tried again while held
        assert "could not start the telegram-polling duty" in caplog.text
        role._lose()
        await duty.until("start", "stop")
        role._gain()
        await duty.until("stop", "start")
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    assert duty.log == ["failed", "start", "stop", "start", "stop"]  # stopped when cancelled


async def test_a_holder_that_cannot_do_the_duty_gives_the_role_to_one_that_can(pg_url, caplog):
    """Replica a holds the role but its platform is unreachable from there: after three failed
    starts it steps down, and replica b, which can, takes the role and does the duty."""
    name = unique("polling")
    first = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-a")
    second = AdvisoryRoles(pg_url, lease_s=LEASE_S, label="replica-b")
    unreachable, working = Duty(), Duty()
    unreachable.failures = 1000
    serving = []
    try:
        a = await first.claim(name)
        b = await second.claim(name)
        assert a.held and not b.held
        serving = [
            asyncio.create_task(serve_role(a, unreachable.start, unreachable.stop, retry_s=0.01)),
            asyncio.create_task(serve_role(b, working.start, working.stop, retry_s=0.01)),
        ]
        await working.until("start")  # within a retry interval of the step-down
        assert b.held and not a.held
        assert unreachable.log == ["failed"] * 3  # a tried no more once it stepped down
        assert "giving the " + name + " role up after 3 failed starts" in caplog.text
    finally:
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        await first.close()
        await second.close()
