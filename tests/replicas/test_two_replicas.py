"""Two real ``klingbot run`` replicas on one PostgreSQL database, behind the balancer.

Telegram (the Bot API stand-in) posts every update to the balancer, which
sends it to the replicas in turn; members generate on both. Each replica has
its own data folder and replica id; the jobs, wallets and members' images are
in the database. A replica is SIGKILLed while it runs jobs: every job is
still delivered exactly once and charged exactly once, soon after its lease
lapses, ``/price`` keeps answering through the survivor, and ``klingbot db
check`` finds the ledger clean. The same with the killed replica started
again at once (it and the survivor both want the jobs: nothing is delivered
twice), and with both replicas claiming one queue at the same time (no job
starts twice). Nothing sleeps: the test waits on the stand-in's calls and the
replicas' logs, with deadlines.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import asyncpg
import pytest

from tests.adapters.standin import Member
from tests.replicas.harness import Replicas
from tests.support.env import process_environment

LEASE_S = 1.5
ROUND_S = LEASE_S / 3
"""A replica renews its leases and looks for lapsed ones every third of the lease."""
MASTER = 100  # credits
WELCOME = 500
STARTS = re.compile(r"job (\w{8}) starts in state")

pytestmark = pytest.mark.usefixtures("pg_database")  # every table emptied first


def settings(pg_url: str, **extra: str) -> dict[str, str]:
    return {
        "KLINGBOT_DATABASE_URL": pg_url,
        "KLINGBOT_JOB_LEASE_S": str(LEASE_S),
        "KLINGBOT_WELCOME_CREDITS": str(WELCOME),
        "KLINGBOT_TIERS": '{"master": {"resolution": 360}}',  # a quick render
        "KLINGBOT_TIME_SCALE": "0.02",  # Master's ~200 s wait: ~4 s, long enough to kill in
        "KLINGBOT_STATUS_INTERVAL_S": "0.2",
        "KLINGBOT_MAX_JOBS_PER_PROVIDER": "8",
        **extra,
    }


def members(api, first: int, count: int) -> list[Member]:
    return [Member(api, first + n, f"m{first + n}") for n in range(count)]


async def press_master(api, group: list[Member]) -> None:
    """Each member asks for a quote and presses Master; returns once every job is queued."""
    for member in group:
        member.send("/gen a lighthouse in a storm")
    for member in group:
        quote = await api.wait_for("sendMessage", chat_id=member.id, timeout=30)
        member.press(quote.result, "Master")
    for member in group:
        await api.wait_for(
            "editMessageText", chat_id=member.id, timeout=30,
            where=lambda call: "Master chosen" in call.params["text"],
        )  # fmt: skip


def started(replica, since: int = 0) -> list[str]:
    """Short ids of the jobs this replica started (from line ``since`` of its log)."""
    return [m.group(1) for line in replica.lines[since:] if (m := STARTS.search(line))]


def adopted(replica, of: str, since: int = 0) -> int:
    """How many jobs of replica ``of`` this replica adopted (from line ``since`` of its log)."""
    pattern = re.compile(rf"replica {replica.name} adopted (\d+) jobs of replica {of}\b")
    return sum(int(m.group(1)) for line in replica.lines[since:] if (m := pattern.search(line)))


async def wait_started(replica, jobs: set[str], since: int, timeout: float) -> float:
    """Wait until ``replica`` started every job of ``jobs``; the monotonic time it did."""
    async with replica.changed:
        try:
            await asyncio.wait_for(
                replica.changed.wait_for(lambda: jobs <= set(started(replica, since))), timeout
            )
        except TimeoutError:
            raise AssertionError(
                f"{replica.name} did not start {sorted(jobs)} in {timeout}s:\n{replica.log()}"
            ) from None
    return time.monotonic()


async def delivered_once(api, group: list[Member], timeout: float) -> None:
    for member in group:
        await api.wait_for("sendVideo", chat_id=member.id, timeout=timeout)
    for member in group:
        assert len(api.of("sendVideo", chat_id=member.id)) == 1, member.id


async def ledger_of(pg_url: str) -> tuple[list, list, list]:
    connection = await asyncpg.connect(pg_url)
    try:
        jobs = await connection.fetch(
            "SELECT job_id, state, attempts, owner FROM jobs ORDER BY job_id"
        )
        holds = await connection.fetch("SELECT hold_id, state, amount FROM holds")
        entries = await connection.fetch(
            "SELECT hold_id, kind FROM ledger WHERE hold_id IS NOT NULL ORDER BY seq"
        )
    finally:
        await connection.close()
    return jobs, holds, entries


async def owners(pg_url: str) -> dict[str, str]:
    """Short id -> owning replica of every unfinished job."""
    connection = await asyncpg.connect(pg_url)
    try:
        rows = await connection.fetch(
            "SELECT job_id, owner FROM jobs WHERE state IN ('held', 'submitted', 'running')"
        )
    finally:
        await connection.close()
    return {row["job_id"][:8]: row["owner"] for row in rows}


async def check_charged_once(pg_url: str, count: int) -> list:
    jobs, holds, entries = await ledger_of(pg_url)
    assert len(jobs) == count and {j["state"] for j in jobs} == {"delivered"}, jobs
    assert len(holds) == count and {(h["state"], h["amount"]) for h in holds} == {
        ("captured", MASTER)
    }, holds
    for hold in holds:  # one hold, one capture, no release
        kinds = [e["kind"] for e in entries if e["hold_id"] == hold["hold_id"]]
        assert kinds == ["hold", "capture"], (hold["hold_id"], kinds)
    return jobs


async def db_check(pg_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "db", "check",
        env=process_environment({"KLINGBOT_DATABASE_URL": pg_url}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


async def price_answered(api, member: Member) -> str:
    since = len(api.calls)
    member.send("/price")
    reply = await api.wait_for("sendMessage", chat_id=member.id, since=since, timeout=15)
    return reply.params["text"]


async def balance_of(pg_url: str, user_id: int) -> int:
    connection = await asyncpg.connect(pg_url)
    try:
        return await connection.fetchval(
            "SELECT balance FROM wallets WHERE platform = 'telegram' AND user_id = $1",
            str(user_id),
        )
    finally:
        await connection.close()


async def kill_while_running(replicas: Replicas, api, pg_url: str, group: list[Member]):
    """Jobs on both replicas; SIGKILL the one running the most. (victim, survivor, orphans,
    kill time, survivor's log length at the kill)."""
    await press_master(api, group)
    owned = await owners(pg_url)
    assert len(owned) == len(group), owned
    jobs = {name: {job for job, owner in owned.items() if owner == name} for name in "ab"}
    victim, survivor = ("a", "b") if len(jobs["a"]) >= len(jobs["b"]) else ("b", "a")
    assert jobs["a"] and jobs["b"], owned  # members generate on both replicas
    assert not api.of("sendVideo"), "the clips came too soon: nothing ran when killed"
    mark = len(replicas[survivor].lines)
    killed_at = time.monotonic()
    await replicas.kill(victim)
    return victim, survivor, jobs[victim], killed_at, mark


async def test_a_replica_killed_mid_job_loses_nothing_and_charges_nothing_twice(
    tmp_path, api, pg_url
):
    group = members(api, 1001, 4)
    async with Replicas(tmp_path, api, **settings(pg_url)) as replicas:
        victim, survivor, orphans, killed_at, mark = await kill_while_running(
            replicas, api, pg_url, group
        )
        # The survivor answers at once: of two posts in a row, the balancer offers one
        # to the dead replica first, and passes over it.
        prices = [await price_answered(api, Member(api, n, "Newcomer")) for n in (2001, 2002)]
        adopted_at = await wait_started(replicas[survivor], orphans, mark, timeout=30)
        await delivered_once(api, group, timeout=60)
        assert await replicas[survivor].stop() == 0, replicas.log()

    assert all(price.startswith("Kling 2.1 prices for a 5 s clip") for price in prices)
    assert replicas.balancer.unanswered[replicas[victim].address] >= 1
    # Adopted once the lease lapsed: within the lease and two rounds (plus a second for
    # a loaded machine).
    assert adopted_at - killed_at <= LEASE_S + 2 * ROUND_S + 1.0, adopted_at - killed_at
    await check_charged_once(pg_url, len(group))
    for member in group:
        balance = await balance_of(pg_url, member.id)
        assert balance == WELCOME - MASTER, (member.id, balance)
    status, output = await db_check(pg_url)
    assert status == 0, output


async def test_a_killed_replica_started_again_at_once_sends_nothing_twice(tmp_path, api, pg_url):
    group = members(api, 3001, 4)
    lease = 8.0  # longer than a restart takes: the survivor must not take the jobs meanwhile
    async with Replicas(
        tmp_path, api, **settings(pg_url, KLINGBOT_JOB_LEASE_S=str(lease))
    ) as replicas:
        victim, survivor, orphans, killed_at, mark = await kill_while_running(
            replicas, api, pg_url, group
        )
        await replicas.start(victim)  # same id, same folder, before its lease lapsed
        restarted_in = time.monotonic() - killed_at
        await delivered_once(api, group, timeout=60)
        for name in ("a", "b"):
            assert await replicas[name].stop() == 0, replicas.log()

    # Each orphan was adopted once, by one of the two: the restarted replica takes its own
    # jobs back at once, whatever their lease; the survivor takes only those whose lease
    # lapsed first (a loaded machine can restart slower than the lease).
    taken_back = adopted(replicas[victim], victim)
    taken_over = adopted(replicas[survivor], victim, since=mark)
    assert taken_back + taken_over == len(orphans), replicas.log()
    if restarted_in < lease / 2:  # back long before the lease could lapse (its last renewal
        # came a round before the kill, or more on a loaded machine)
        assert (taken_back, taken_over) == (len(orphans), 0), replicas.log()
    assert orphans <= set(started(replicas[victim])) | set(started(replicas[survivor], mark)), (
        replicas.log()
    )
    await check_charged_once(pg_url, len(group))
    assert all(len(api.of("sendVideo", chat_id=m.id)) == 1 for m in group)


async def test_two_replicas_claiming_one_queue_start_each_job_once(tmp_path, api, pg_url):
    group = members(api, 4001, 6)
    # Two jobs at once across both replicas: the other four queue, and both runners
    # claim from the one queue as slots free up.
    async with Replicas(
        tmp_path, api, **settings(pg_url, KLINGBOT_MAX_JOBS_PER_PROVIDER="2",
                                  KLINGBOT_TIME_SCALE="0.002")
    ) as replicas:  # fmt: skip
        await press_master(api, group)
        await delivered_once(api, group, timeout=90)
        for name in ("a", "b"):
            assert await replicas[name].stop() == 0, replicas.log()

    jobs = await check_charged_once(pg_url, len(group))
    assert {j["attempts"] for j in jobs} == {1}, jobs  # each submitted once
    assert {j["owner"] for j in jobs} == {"a", "b"}, jobs  # both drove jobs from the queue
