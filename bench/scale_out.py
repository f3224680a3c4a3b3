"""Scale-out: the ledger on PostgreSQL vs SQLite, /price through the webhook on one and two
replicas, and failover from a SIGKILL until every orphaned job runs again.

Run ``.venv/bin/python bench/scale_out.py`` (or ``make bench``); ``--quick`` for a smoke
run, ``--only ledger|price|failover`` for one part, ``--url`` for the PostgreSQL server
(default ``KLINGBOT_TEST_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``).
Every part makes a database of its own on that server (``klingbot_bench_<pid>_<n>``)
and drops it afterwards. Without a server it says why and exits 0: nothing to measure.

- **ledger**: 1 and then 100 concurrent members (asyncio tasks, each with its own funded
  wallet) run hold+capture pairs through ``PgLedger`` on PostgreSQL (its pool, the
  server's ``synchronous_commit`` and ``fsync`` printed: durable commits), and the same
  through ``SqliteLedger`` on a fresh SQLite file (WAL, ``synchronous=FULL``), the
  baseline. The audit must come out clean and every wallet at zero on both. Target:
  at least 1,000 pairs a second on PostgreSQL at 100 members. PostgreSQL runs with the
  pool a replica has (``PgDatabase``'s default) and, at 100 members, with 40
  connections too: each commit waits for its WAL flush, and the server flushes the
  commits that wait together, so more connections in flight share more flushes.
  Beside it, the server's bare commit rate on the same pool with as many writers
  (one-row INSERTs): the ceiling any ledger on this server and disk would meet.
- **price**: real ``klingbot run`` processes in Telegram webhook mode behind the test
  balancer (``tests/replicas``), posted to by the Bot API stand-in in this process. A
  round pushes N ``/price`` updates from N members and times until the stand-in has all
  N replies. One replica on SQLite (the baseline), one on PostgreSQL, two on
  PostgreSQL; medians over the rounds, after a warm-up round.
- **failover**: two replicas on PostgreSQL with ``KLINGBOT_JOB_LEASE_S`` = 2; four
  members start jobs that outlast the measurement, then the replica that owns the most
  unfinished jobs (the ``owner`` column) is SIGKILLed, and the time is taken from the
  kill until the survivor has started every job the dead one owned (its log's ``job <id>
  starts in state`` lines). The killed replica is started again before the next kill.
  p50 and worst over the kills; target: at most the lease plus two poll intervals (a
  replica renews its leases and looks for lapsed ones every third of the lease).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the stand-in, the balancer and the harness

from bot.commands import UserRef  # noqa: E402
from bot.ports import UserProfile  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOLD_CREDITS = 35  # one High Quality clip
FIRST_MEMBER = 700_000


def member(n: int) -> UserRef:
    return UserRef("telegram", str(10_000 + n))


# --- PostgreSQL: one scratch database per part -------------------------------------------


async def server_problem(url: str) -> str | None:
    """Why no benchmark database can be made on ``url`` (None: it can)."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed"
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        return f"no PostgreSQL server at {redacted(url)}: {error}"
    await connection.close()
    return None


def redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}:{parts.port or 5432}"))


_scratch = iter(range(1, 1_000_000))


@asynccontextmanager
async def scratch_database(url: str):
    """A new, empty database on the server of ``url``; its URL; dropped afterwards."""
    import asyncpg

    name = f"klingbot_bench_{os.getpid()}_{next(_scratch)}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def durability(url: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        settings = {
            name: await connection.fetchval(f"SHOW {name}")
            for name in ("synchronous_commit", "fsync", "server_version")
        }
    finally:
        await connection.close()
    return (
        f"PostgreSQL {settings['server_version']},"
        f" synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']}"
    )


# --- part 1: the ledger ----------------------------------------------------------------


async def ledger_pairs(ledger, users: int, pairs: int) -> float:
    """Fund ``users`` wallets, run ``pairs`` hold+capture pairs each at once: pairs per second."""
    for n in range(users):
        await ledger.open_wallet(UserProfile(member(n)), welcome_credits=0, now=0)
        await ledger.top_up(
            member(n), HOLD_CREDITS * pairs, key=f"fund:{n}", actor="bench", reason="", now=0
        )

    async def one(n: int) -> None:
        for i in range(pairs):
            hold_id = f"job-{n}-{i}"
            await ledger.hold(
                member(n), HOLD_CREDITS, hold_id=hold_id, actor="bench", reason="", now=0
            )
            await ledger.capture(hold_id, actor="bench", reason="", now=0)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(users)))
    elapsed = time.perf_counter() - started
    for n in range(users):
        wallet = await ledger.wallet(member(n))
        assert wallet is not None and (wallet.balance, wallet.held) == (0, 0), wallet
    return users * pairs / elapsed


async def sqlite_ledger(folder: Path, users: int, pairs: int) -> float:
    from storage.audit import audit
    from storage.database import Database
    from storage.ledger import SqliteLedger

    async with Database(folder / f"ledger-{users}.db") as database:
        rate = await ledger_pairs(SqliteLedger(database), users, pairs)
        problems = await audit(database)
    if problems:
        raise SystemExit(f"the SQLite ledger is inconsistent after the run: {problems}")
    return rate


async def pg_ledger(url: str, users: int, pairs: int, pool: int | None) -> tuple[float, float]:
    """(ledger pairs per second, the server's bare commits per second at the same concurrency)."""
    from storage.postgres.audit import audit
    from storage.postgres.database import PgDatabase
    from storage.postgres.ledger import PgLedger

    sizes = {} if pool is None else {"max_size": pool}
    async with scratch_database(url) as scratch, PgDatabase(scratch, **sizes) as database:
        rate = await ledger_pairs(PgLedger(database), users, pairs)
        problems = await audit(database)
        bare = await bare_commits(database, users, min(2 * pairs, 4_000 // users or 1))
    if problems:
        raise SystemExit(f"the PostgreSQL ledger is inconsistent after the run: {problems}")
    return rate, bare


async def bare_commits(database, users: int, each: int) -> float:
    """The server's ceiling: ``users`` writers, each committing one-row INSERTs on the pool."""
    await database.execute("CREATE TABLE bench_bare (n integer NOT NULL)")

    async def one() -> None:
        for n in range(each):
            await database.execute("INSERT INTO bench_bare (n) VALUES ($1)", n)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(users)))
    return users * each / (time.perf_counter() - started)


def default_pool() -> int:
    import inspect

    from storage.postgres.database import PgDatabase

    return inspect.signature(PgDatabase).parameters["max_size"].default


async def part_ledger(url: str, quick: bool) -> None:
    print(f"\nledger: hold+capture pairs per second; {await durability(url)};")
    print("SQLite baseline: WAL, synchronous=FULL, the writer thread's group commit")
    header = f"{'members':>7} {'pairs':>7} {'pool':>5} {'PostgreSQL /s':>14}"
    print(header + f" {'SQLite /s':>10} {'ratio':>6} {'bare commits/s':>15} {'ops/commit':>11}")
    standard = default_pool()
    for users, total, pool in ((1, 2_500, None), (100, 10_000, None), (100, 10_000, 40)):
        total = total // 10 if quick else total
        pairs = max(1, total // users)
        folder = Path(tempfile.mkdtemp(prefix="klingbot-bench-"))
        try:
            ours, bare = await pg_ledger(url, users, pairs, pool)
            baseline = await sqlite_ledger(folder, users, pairs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"{users:>7} {users * pairs:>7,} {pool or standard:>5} {ours:>14,.0f}"
            f" {baseline:>10,.0f} {ours / baseline:>6.2f} {bare:>15,.0f}"
            f" {2 * ours / bare:>11.2f}",
            flush=True,
        )
    print(
        f"(target: >= 1,000 pairs/s on PostgreSQL at 100 members; pool {standard} is"
        " PgDatabase's default, what a replica runs with; bare commits: one-row INSERTs"
        " by as many writers on the same pool, the server's ceiling; ops/commit: ledger"
        " operations (2 a pair) per bare commit)"
    )


# --- part 2: /price through the webhook ------------------------------------------------


def price_update(api, n: int) -> None:
    user_id = FIRST_MEMBER + n
    api.push(
        {
            "message": {
                "message_id": n + 1,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": f"m{n}",
                         "language_code": "en"},
                "text": "/price",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            }
        }
    )  # fmt: skip


async def price_round(api, count: int) -> float:
    """Push ``count`` /price updates; updates per second until every reply arrived."""
    since = len(api.calls)
    started = time.perf_counter()
    for n in range(count):
        price_update(api, n)
    await api.wait_for("sendMessage", since=since, count=count, timeout=600)
    return count / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class PriceSide:
    rate: float
    """Updates per second (median of the rounds)."""
    cpu_ms: float
    """CPU milliseconds the replicas spent per update, all of them together."""
    busy: float
    """The replicas' CPU time over the rounds' wall time, in cores (1.0: one core busy)."""
    driver: float
    """The same for this process: the stand-in posting the updates and the balancer."""


async def price_side(
    folder: Path, names: tuple[str, ...], settings: dict[str, str], count: int, rounds: int
) -> PriceSide:
    from tests.adapters.conftest import TOKEN
    from tests.adapters.standin import BotApiStandIn
    from tests.replicas.harness import Replicas

    async with BotApiStandIn(TOKEN) as api, Replicas(folder, api, names, **settings) as r:
        await price_round(api, min(count, 100))  # warm-up: imports, pools, caches

        def cpu() -> float:
            return sum(cpu_seconds(r[name].process.pid) for name in names)  # type: ignore[union-attr]

        used, own, started = cpu(), time.process_time(), time.perf_counter()
        rates = [await price_round(api, count) for _ in range(rounds)]
        used, wall = cpu() - used, time.perf_counter() - started
        own = time.process_time() - own
    return PriceSide(
        statistics.median(rates), used * 1000 / (count * rounds), used / wall, own / wall
    )


async def part_price(url: str, quick: bool) -> None:
    count, rounds = (200, 1) if quick else (1000, 3)
    print(f"\n/price through the webhook: {count:,} updates a round, median of {rounds}")
    print(
        f"{'replicas':<18} {'updates/s':>10} {'vs one on SQLite':>17}"
        f" {'replica CPU ms/update':>22} {'replica cores busy':>19}"
        f" {'stand-in+balancer cores busy':>29}"
    )
    quiet = {"KLINGBOT_QUOTES_PER_MINUTE": "1000"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="klingbot-bench-") as root:
        results["one, SQLite"] = await price_side(Path(root) / "s", ("a",), quiet, count, rounds)
        async with scratch_database(url) as scratch:
            pg = {**quiet, "KLINGBOT_DATABASE_URL": scratch}
            results["one, PostgreSQL"] = await price_side(
                Path(root) / "p1", ("a",), pg, count, rounds
            )
            results["two, PostgreSQL"] = await price_side(
                Path(root) / "p2", ("a", "b"), pg, count, rounds
            )
    baseline = results["one, SQLite"].rate
    for name, side in results.items():
        print(
            f"{name:<18} {side.rate:>10,.0f} {side.rate / baseline:>17.2f}"
            f" {side.cpu_ms:>22.2f} {side.busy:>19.2f} {side.driver:>29.2f}",
            flush=True,
        )


# --- part 3: failover --------------------------------------------------------------------

STARTS = re.compile(r"job (\w{8}) starts in state")


@dataclass
class Kill:
    jobs: int
    seconds: float


async def part_failover(url: str, quick: bool) -> None:
    from tests.adapters.conftest import TOKEN
    from tests.adapters.standin import BotApiStandIn, Member
    from tests.replicas.harness import Replicas

    kills = 3 if quick else 10
    lease = 2.0
    poll = lease / 3  # a replica renews and looks for lapsed leases every third of the lease
    settings = {
        "KLINGBOT_JOB_LEASE_S": str(lease),
        "KLINGBOT_WELCOME_CREDITS": "100000",
        "KLINGBOT_MAX_JOBS_PER_PROVIDER": "1000",
        "KLINGBOT_MAX_JOBS_PER_USER": "10",
        "KLINGBOT_QUOTES_PER_MINUTE": "1000",
        "KLINGBOT_TIERS": '{"master": {"resolution": 360}}',
        "KLINGBOT_TIME_SCALE": "1",  # Master's ~200 s: the jobs outlast the measurement
        "KLINGBOT_STATUS_INTERVAL_S": "5",
    }
    print(
        f"\nfailover: {kills} SIGKILLs, KLINGBOT_JOB_LEASE_S={lease:g},"
        f" so a replica looks for lapsed leases every {poll:.2f} s"
    )
    results: list[Kill] = []
    with tempfile.TemporaryDirectory(prefix="klingbot-bench-") as root:
        async with (
            scratch_database(url) as scratch,
            BotApiStandIn(TOKEN) as api,
            Replicas(Path(root), api, **{**settings, "KLINGBOT_DATABASE_URL": scratch}) as r,
        ):
            for kill in range(kills):
                members = [Member(api, FIRST_MEMBER + 100 * kill + n, f"m{n}") for n in range(4)]
                for m in members:
                    m.send("/gen a lighthouse in a storm")
                for m in members:
                    quote = await api.wait_for("sendMessage", chat_id=m.id, timeout=60)
                    m.press(quote.result, "Master")
                for m in members:  # every job has started somewhere
                    await api.wait_for(
                        "editMessageText", chat_id=m.id, timeout=60,
                        where=lambda c: "Master chosen" in c.params["text"],
                    )  # fmt: skip
                owned = await owners(scratch)
                count = {name: sum(1 for o in owned.values() if o == name) for name in r.names}
                victim = max(r.names, key=count.__getitem__)
                survivor = next(name for name in r.names if name != victim)
                orphans = {job for job, owner in owned.items() if owner == victim}
                before = len(r[survivor].lines)
                started = time.monotonic()
                await r.kill(victim)
                await adopted(r[survivor], orphans, before, timeout=lease * 10 + 30)
                results.append(Kill(len(orphans), time.monotonic() - started))
                print(f"  kill {kill + 1}: {len(orphans)} jobs running again in"
                      f" {results[-1].seconds:.2f} s", flush=True)  # fmt: skip
                await r.start(victim)
    seconds = sorted(k.seconds for k in results)
    print(
        f"p50 {statistics.median(seconds):.2f} s, worst {seconds[-1]:.2f} s over {len(seconds)}"
        f" kills ({sum(k.jobs for k in results)} orphaned jobs); target <= lease + two polls"
        f" = {lease + 2 * poll:.2f} s"
    )


async def owners(url: str) -> dict[str, str]:
    """Short id -> owning replica of every unfinished job."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT job_id, owner FROM jobs WHERE state IN ('held', 'submitted', 'running')"
        )
    finally:
        await connection.close()
    return {row["job_id"][:8]: row["owner"] for row in rows}


async def adopted(replica, jobs: set[str], since: int, timeout: float) -> None:
    """Wait until ``replica`` logged a start of every job in ``jobs`` after line ``since``."""

    def done() -> bool:
        started = {m.group(1) for line in replica.lines[since:] if (m := STARTS.search(line))}
        return jobs <= started

    async with replica.changed:
        await asyncio.wait_for(replica.changed.wait_for(done), timeout)


# --- main ----------------------------------------------------------------------------------


PARTS = {"ledger": part_ledger, "price": part_price, "failover": part_failover}


async def _main(url: str, quick: bool, only: str | None) -> int:
    problem = await server_problem(url)
    if problem is not None:
        print(f"scale-out benchmark skipped: {problem}")
        return 0
    print(
        f"scale-out benchmark: {os.cpu_count()} CPUs, PostgreSQL at {redacted(url)},"
        f" load average {load()}"
    )
    for name, part in PARTS.items():
        if only in (None, name):
            await part(url, quick)
    print(f"\nload average at the end: {load()} (other work on the machine moves every figure)")
    return 0


def load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the cores were besides this run."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--only", choices=sorted(PARTS), help="one part")
    parser.add_argument(
        "--url",
        default=os.environ.get("KLINGBOT_TEST_DATABASE_URL", DEFAULT_URL),
        help="a PostgreSQL server where the benchmark may create databases",
    )
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.url, args.quick, args.only))


if __name__ == "__main__":
    sys.exit(main())
