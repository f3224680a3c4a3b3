"""The runner lease on PostgreSQL: one replica per KLINGBOT_REPLICA_ID, restarted at once after it died.

Real PostgreSQL; the lease scaled down to 3 s (a heartbeat every second).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid

import asyncpg
import pytest

from app.lease import RunnerBusy, take_runner_lease
from app.replica_lease import PgRunnerLease
from bot.errors import StorageUnavailable

LEASE_S = 3.0


@pytest.fixture
async def replicas_url(pg_url, pg_database):
    """This run's database, migrated (the replicas table is 0003's)."""
    return pg_url


def replica_id() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


async def row(url: str, replica: str):
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchrow(
            "SELECT host, pid, expires_at > now() AS alive, heartbeat_at FROM replicas"
            " WHERE replica_id = $1",
            replica,
        )
    finally:
        await connection.close()


async def test_a_second_process_with_the_same_replica_id_is_refused_naming_the_first(replicas_url):
    replica = replica_id()
    first = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S)
    second = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S)
    other = PgRunnerLease(replicas_url, replica_id(), lease_s=LEASE_S)
    try:
        assert await first.acquire()
        assert await other.acquire()  # another id: another replica, side by side
        with pytest.raises(RunnerBusy) as refused:
            await take_runner_lease(second, "postgresql")
        message = str(refused.value)
        assert message.startswith(
            f"a klingbot replica with KLINGBOT_REPLICA_ID={replica} already runs on this"
            f" database (replica {replica}: pid {os.getpid()} on {socket.gethostname()} since "
        )
        assert message.endswith(
            " UTC, last heartbeat 0 s ago); each replica needs its own id: stop that one first,"
            " or give this one another KLINGBOT_REPLICA_ID"
        )
        assert "\n" not in message
        signed = await row(replicas_url, replica)
        assert (signed["pid"], signed["alive"]) == (os.getpid(), True)

        # The row's heartbeat moves every third of the lease.
        first.beat.clear()
        await asyncio.wait_for(first.beat.wait(), LEASE_S)
        assert (await row(replicas_url, replica))["heartbeat_at"] > signed["heartbeat_at"]
        await first.release()
        assert not (await row(replicas_url, replica))["alive"]  # a clean stop expires the row
        assert await second.acquire()  # and the id is free at once
        assert (await row(replicas_url, replica))["alive"]
    finally:
        for lease in (first, second, other):
            await lease.release()


async def test_a_replica_restarted_after_a_sigkill_starts_at_once(replicas_url):
    replica = replica_id()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.roles.holder", replicas_url, f"replica:{replica}",
        str(LEASE_S), stdout=asyncio.subprocess.PIPE, cwd=os.getcwd(),
    )  # fmt: skip
    restarted = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S)
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"held\n"
        assert not await restarted.acquire()  # refused while the first lives
        assert (await row(replicas_url, replica))["pid"] == process.pid
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed = time.monotonic()
        # The kernel closed its socket, the server ended its session and dropped the lock:
        # a restart takes the id at once, though the dead one's row has not expired yet.
        assert (await row(replicas_url, replica))["alive"]
        attempts = 1
        while not await restarted.acquire():  # only as long as the server takes to notice
            attempts += 1
            assert time.monotonic() - killed < LEASE_S, "the dead replica's lock stayed"
        took = time.monotonic() - killed
        signed = await row(replicas_url, replica)
        assert (signed["pid"], signed["alive"]) == (os.getpid(), True)
        print(f"restart after SIGKILL: {took:.3f} s, {attempts} attempt(s)")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await restarted.release()


async def test_a_lease_whose_connection_was_killed_takes_it_again(replicas_url):
    replica = replica_id()
    lease = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S)
    try:
        assert await lease.acquire()
        await terminate(replicas_url, f"klingbot {replica}: replica:{replica}")
        lease.beat.clear()
        await asyncio.wait_for(lease.beat.wait(), LEASE_S)  # took it again, and wrote the row
        assert lease.lock.held and not lease.lost.is_set()
        assert not await PgRunnerLease(replicas_url, replica, lease_s=LEASE_S).acquire()
    finally:
        await lease.release()


async def test_a_lease_taken_by_another_process_meanwhile_is_lost(replicas_url):
    replica = replica_id()
    gate = asyncio.Event()
    connects = 0

    async def slow_reconnect(*args, **kwargs):
        """asyncpg.connect, but the second connection waits for the test."""
        nonlocal connects
        connects += 1
        if connects > 1:
            await gate.wait()
        return await asyncpg.connect(*args, **kwargs)

    lease = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S, connect=slow_reconnect)
    usurper = PgRunnerLease(replicas_url, replica, lease_s=LEASE_S)
    try:
        assert await lease.acquire()
        await terminate(replicas_url, f"klingbot {replica}: replica:{replica}")
        killed = time.monotonic()
        while not await usurper.acquire():  # the server drops the lock as it ends the session
            assert time.monotonic() - killed < LEASE_S
        gate.set()
        await asyncio.wait_for(lease.lost.wait(), LEASE_S * 2)
        assert not lease.lock.held
        assert (await row(replicas_url, replica))["pid"] == os.getpid()
    finally:
        await lease.release()
        await usurper.release()


async def test_an_unreachable_server_is_one_line_not_a_refusal():
    lease = PgRunnerLease("postgresql://nobody:secret@127.0.0.1:9/none", "r1", lease_s=LEASE_S)
    with pytest.raises(StorageUnavailable) as unreachable:
        await take_runner_lease(lease, "postgresql")
    assert not isinstance(unreachable.value, RunnerBusy)
    assert str(unreachable.value) == (
        "PostgreSQL database postgresql://nobody@127.0.0.1:9/none: the server does not answer"
        " (connection refused); is PostgreSQL running?"
    )


async def terminate(url: str, application_name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        killed = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()
    assert killed == 1


async def test_doctor_names_the_running_replicas_and_the_roles_each_holds(tmp_path, pg_empty_url):
    """On a database of its own: the run's shared one may have other tests' replicas on it."""
    from storage.postgres.database import PgDatabase
    from storage.postgres.locks import AdvisoryRoles
    from tests.e2e.conftest import run_cli

    replicas_url = pg_empty_url
    async with PgDatabase(replicas_url):
        pass  # migrated: the replicas table exists
    first, second = replica_id(), replica_id()
    # Nothing here waits for a lease to lapse: a production-length lease, so that a loaded
    # machine (slow heartbeats, a slow doctor process) cannot expire a row or drop a role
    # before the doctor looks.
    lease_s = 30.0
    leases = [PgRunnerLease(replicas_url, name, lease_s=lease_s) for name in (first, second)]
    roles = AdvisoryRoles(replicas_url, lease_s=lease_s, label=f"klingbot {first}")
    try:
        for lease in leases:
            assert await lease.acquire()
        assert (await roles.claim("telegram-polling")).held
        assert (await roles.claim("retention")).held
        result = await asyncio.to_thread(
            run_cli, "doctor", cwd=tmp_path, env={"KLINGBOT_DATABASE_URL": replicas_url}
        )
        sessions = await sessions_on(replicas_url)
    finally:
        await roles.close()
        for lease in leases:
            await lease.release()
    host = socket.gethostname()
    line = next(x for x in result.stdout.splitlines() if x.startswith("[✓] replicas: "))
    described = {
        first: f"{first} (pid {os.getpid()} on {host}; holds telegram-polling, retention)",
        second: f"{second} (pid {os.getpid()} on {host}; no role)",
    }
    expected = ", ".join(described[name] for name in sorted(described))
    assert line == f"[✓] replicas: 2 running: {expected}", (result.stdout, sessions)


async def sessions_on(url: str) -> list[str]:
    """Who is on the database (a failure says so)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT application_name, pid FROM pg_stat_activity WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return [f"{row['application_name']} ({row['pid']})" for row in rows]
