"""Ledger throughput: holds and captures per second through SqliteLedger vs plain sqlite3.

Run ``.venv/bin/python bench/ledger_throughput.py`` (or ``make bench``); ``--quick`` for
a smoke run. For 1 and 100 concurrent users (asyncio tasks, each with its own
funded wallet) every user runs hold+capture pairs through
:class:`storage.ledger.SqliteLedger` on a fresh database. The baseline does
the same transactions with the standard ``sqlite3`` module in one thread, one
``BEGIN IMMEDIATE ... COMMIT`` per hold and per capture, on the same schema
(the project's migrations) with the same pragmas (WAL, synchronous=FULL,
foreign_keys=ON). The ratio is ours / baseline; ``transactions`` is how many
commits our writer made (``Database.batches``), which shows group commit at work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.commands import UserRef
from bot.ports import UserProfile
from storage.audit import audit
from storage.database import Database, migrate
from storage.ledger import SqliteLedger

HOLD_CREDITS = 35  # one High Quality clip


@dataclass
class Run:
    users: int
    ops: int
    ours: float
    baseline: float
    transactions: int


def user(n: int) -> UserRef:
    return UserRef("telegram", str(10_000 + n))


# --- ours: SqliteLedger through the writer thread ------------------------------------


async def run_ours(folder: Path, users: int, pairs: int) -> tuple[float, int]:
    """Return (seconds, transactions) for ``pairs`` hold+capture pairs per user."""
    async with Database(folder / "ours.db") as database:
        ledger = SqliteLedger(database)
        for n in range(users):
            await ledger.open_wallet(UserProfile(user(n)), welcome_credits=0, now=0)
            await ledger.top_up(
                user(n), HOLD_CREDITS * pairs, key=f"fund:{n}", actor="bench", reason="", now=0
            )

        async def one_user(n: int) -> None:
            for i in range(pairs):
                hold_id = f"job-{n}-{i}"
                await ledger.hold(
                    user(n), HOLD_CREDITS, hold_id=hold_id, actor="bench", reason="", now=0
                )
                await ledger.capture(hold_id, actor="bench", reason="", now=0)

        batches = database.batches
        started = time.perf_counter()
        await asyncio.gather(*(one_user(n) for n in range(users)))
        elapsed = time.perf_counter() - started
        transactions = database.batches - batches

        problems = await audit(database)
        if problems:
            raise SystemExit(f"the ledger is inconsistent after the run: {problems}")
        for n in range(users):
            wallet = await ledger.wallet(user(n))
            assert wallet is not None and (wallet.balance, wallet.held) == (0, 0)
    return elapsed, transactions


# --- baseline: plain sqlite3, one transaction per operation ---------------------------


def connect_baseline(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA synchronous = FULL")
    assert connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    migrate(connection)
    return connection


INSERT_ENTRY = """
    INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,
                        balance_after, held_after, hold_id, actor, reason, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'bench', '', 0)
    RETURNING seq
"""


def baseline_hold(connection: sqlite3.Connection, who: UserRef, hold_id: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    key = f"hold:{hold_id}"
    if connection.execute("SELECT seq FROM ledger WHERE idem_key = ?", (key,)).fetchone():
        raise AssertionError("unexpected retry")
    balance, held = connection.execute(
        "UPDATE wallets SET balance = balance - :c, held = held + :c"
        " WHERE platform = :p AND user_id = :u AND balance >= :c RETURNING balance, held",
        {"c": HOLD_CREDITS, "p": who.platform, "u": who.id},
    ).fetchone()
    connection.execute(
        "INSERT INTO holds (hold_id, platform, user_id, amount, created_at) VALUES (?, ?, ?, ?, 0)",
        (hold_id, who.platform, who.id, HOLD_CREDITS),
    )
    connection.execute(
        INSERT_ENTRY,
        (key, who.platform, who.id, "hold", -HOLD_CREDITS, HOLD_CREDITS, balance, held, hold_id),
    ).fetchone()
    connection.execute("COMMIT")


def baseline_capture(connection: sqlite3.Connection, hold_id: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    platform, user_id, amount = connection.execute(
        "UPDATE holds SET state = 'captured', ended_at = 0 WHERE hold_id = ? AND state = 'open'"
        " RETURNING platform, user_id, amount",
        (hold_id,),
    ).fetchone()
    balance, held = connection.execute(
        "UPDATE wallets SET held = held - ? WHERE platform = ? AND user_id = ?"
        " RETURNING balance, held",
        (amount, platform, user_id),
    ).fetchone()
    connection.execute(
        INSERT_ENTRY,
        (f"capture:{hold_id}", platform, user_id, "capture", 0, -amount, balance, held, hold_id),
    ).fetchone()
    connection.execute("COMMIT")


def run_baseline(folder: Path, users: int, pairs: int) -> float:
    connection = connect_baseline(folder / "baseline.db")
    try:
        for n in range(users):
            who = user(n)
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO users (platform, user_id, created_at) VALUES (?, ?, 0)",
                (who.platform, who.id),
            )
            connection.execute(
                "INSERT INTO wallets (platform, user_id, balance, created_at) VALUES (?, ?, ?, 0)",
                (who.platform, who.id, HOLD_CREDITS * pairs),
            )
            funding = HOLD_CREDITS * pairs
            connection.execute(
                INSERT_ENTRY,
                (f"fund:{n}", who.platform, who.id, "topup", funding, 0, funding, 0, None),
            ).fetchone()
            connection.execute("COMMIT")

        started = time.perf_counter()
        # One thread serves the users in turn, as a bot without group commit would.
        for i in range(pairs):
            for n in range(users):
                hold_id = f"job-{n}-{i}"
                baseline_hold(connection, user(n), hold_id)
                baseline_capture(connection, hold_id)
        elapsed = time.perf_counter() - started

        left = connection.execute("SELECT sum(balance) + sum(held) FROM wallets").fetchone()[0]
        assert left == 0, left
    finally:
        connection.close()
    return elapsed


# --- the table ---------------------------------------------------------------------------


def measure(users: int, total_ops: int) -> Run:
    pairs = max(1, total_ops // (2 * users))
    ops = 2 * pairs * users
    folder = Path(tempfile.mkdtemp(prefix="klingbot-bench-"))
    try:
        ours_seconds, transactions = asyncio.run(run_ours(folder, users, pairs))
        baseline_seconds = run_baseline(folder, users, pairs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Run(users, ops, ops / ours_seconds, ops / baseline_seconds, transactions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (10x fewer ops)")
    args = parser.parse_args(argv)
    plan = [(1, 5_000), (100, 20_000)]
    if args.quick:
        plan = [(users, ops // 10) for users, ops in plan]

    print(f"ledger throughput: hold+capture, synchronous=FULL, WAL; {os.cpu_count()} CPUs")
    header = f"{'users':>5} {'ops':>7} {'ours ops/s':>11} {'baseline ops/s':>15}"
    header += f" {'ratio':>6} {'transactions':>13}"
    print(header)
    for users, total_ops in plan:
        run = measure(users, total_ops)
        print(
            f"{run.users:>5} {run.ops:>7} {run.ours:>11,.0f} {run.baseline:>15,.0f}"
            f" {run.ours / run.baseline:>6.2f} {run.transactions:>13,}",
            flush=True,
        )


if __name__ == "__main__":
    main()
