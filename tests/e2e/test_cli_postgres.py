"""The real ``klingbot`` process on PostgreSQL: wallet, db and doctor commands, and ``db copy``.

Every command runs as an operator runs it (``python -m app``) with
``KLINGBOT_DATABASE_URL`` pointing at this run's database on the test
server (``pg_url``; trust authentication, so the URL can carry a password
that is never checked, only never shown). ``db copy`` moves real SQLite
files, made by the bot's own storage code, into ``pg_empty_url``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.backend import open_storage
from app.cli import main
from app.lease import Lease
from bot.commands import ChatRef, UserRef
from bot.inputs import FileInputStore
from bot.jobs.model import Quote
from bot.ports import UserProfile
from bot.settings import Settings
from storage.postgres.database import PgDatabase
from tests.e2e.conftest import run_cli
from tests.support.env import process_environment
from tests.support.jobs import a_job

PASSWORD = "pg-Secret-for-tests-4"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
"""An input image's bytes (copied as they are)."""
NOW = 1_764_000_000
ALICE = UserRef("telegram", "1")
BOB = UserRef("discord", "2")


def with_password(url: str) -> str:
    """``url`` with :data:`PASSWORD` in it (the test server trusts every login)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def masked(url: str) -> str:
    return with_password(url).replace(PASSWORD, "***")


@pytest.fixture
def klingbot(tmp_path, monkeypatch, capsys):
    """``klingbot ARGS`` in this process (the CLI's ``main()``, in a thread), in ``tmp_path``.

    Cheaper than a process for the many short commands here; each test still
    runs at least one command as a real process (:func:`run_cli`).
    """
    monkeypatch.chdir(tmp_path)

    async def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        for name in ("KLINGBOT_DATABASE_URL", "KLINGBOT_REPLICA_ID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            status = await asyncio.to_thread(main, list(args))
        finally:  # main() set up logging into this test's capture: undo that
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out, err)

    return run


def shown(result) -> str:
    """Everything a command printed; the password must never be in it."""
    text = result.stdout + result.stderr
    assert PASSWORD not in text
    return text


# --- the operator's commands on PostgreSQL -----------------------------------------------


async def test_wallet_and_db_commands_work_on_postgresql(tmp_path, pg_url, pg_database, klingbot):
    env = {"KLINGBOT_DATABASE_URL": with_password(pg_url)}

    async def cli(*args: str):
        result = await klingbot(*args, env=env)
        shown(result)
        return result

    migrated = run_cli("db", "migrate", cwd=tmp_path, env=env)  # a real process, from scratch
    assert (migrated.returncode, shown(migrated)) == (
        0, f"database {masked(pg_url)} is up to date\n"
    )  # fmt: skip

    topped = await cli("wallet", "topup", "telegram:42", "300", "launch", "gift")
    assert topped.returncode == 0, topped.stderr
    assert topped.stdout.splitlines()[0] == "Added 300 credits (¥30.00) to telegram:42."
    assert (await cli("wallet", "topup", "me", "50")).returncode == 0
    assert (await cli("wallet", "balance", "telegram:42")).stdout == (
        "Balance of telegram:42: 300 credits (¥30.00).\n"
    )
    history = (await cli("wallet", "history", "telegram:42")).stdout.splitlines()
    assert history[0].startswith("seq\ttime_utc\tkind")
    assert history[1].split("\t")[2:4] == ["topup", "+300"]
    assert history[1].endswith("\tconsole:local\tlaunch gift")
    export = (await cli("wallet", "export")).stdout.splitlines()
    assert len(export) == 3 and export[1].split(",")[2:6] == ["telegram:42", "", "topup", "300"]
    assert (await cli("db", "check")).stdout == "ledger OK\n"

    # What the commands wrote is in PostgreSQL: no SQLite file was made.
    rows = await pg_database.fetch("SELECT platform, user_id, balance FROM wallets ORDER BY 1")
    assert [tuple(row) for row in rows] == [("console", "local", 50), ("telegram", "42", 300)]
    assert not list(tmp_path.glob("klingbot.db*"))

    # A broken wallet (changed behind the ledger's back) is reported by db check and doctor.
    await pg_database.execute("UPDATE wallets SET balance = balance + 7 WHERE user_id = '42'")
    check = await cli("db", "check")
    assert check.returncode == 1
    assert check.stdout.splitlines()[0] == (
        "wallet telegram:42 holds 307/0 but its entries sum to 300/0"
    )
    doctor = await cli("doctor")
    assert doctor.returncode == 1
    assert "[✗] ledger: 2 invariant violation(s): wallet telegram:42 holds 307/0" in doctor.stdout


async def test_doctor_checks_the_postgresql_database_and_never_shows_its_password(
    tmp_path, pg_url, pg_database, pg_empty_url, klingbot
):
    result = await klingbot("doctor", env={"KLINGBOT_DATABASE_URL": with_password(pg_url)})
    lines = shown(result).splitlines()
    assert result.returncode == 0, result.stdout
    database = next(line for line in lines if line.startswith("[✓] database: "))
    assert database.startswith(f"[✓] database: {masked(pg_url)} (PostgreSQL 1")
    assert "[✓] writable: a write transaction commits (rolled back)" in lines
    assert "[✓] ledger: balances match their entries (0 wallets)" in lines
    assert any(line.startswith("[✓] schema: version ") for line in lines)
    assert not any(line.startswith(("[✓] journal", "[✓] integrity")) for line in lines)

    empty = await klingbot("doctor", env={"KLINGBOT_DATABASE_URL": pg_empty_url})
    assert empty.returncode == 0, empty.stdout
    assert (
        "[!] schema: an empty database (no klingbot tables yet) → klingbot run creates them at"
        " start, or run klingbot db migrate; klingbot db copy --to moves an existing SQLite"
        " database here" in empty.stdout.splitlines()
    )
    assert "[✓] writable: a write transaction commits (rolled back)" in empty.stdout
    assert not any(line.startswith("[✓] ledger") for line in empty.stdout.splitlines())

    unreachable = with_password("postgresql://postgres@127.0.0.1:9/klingbot")
    result = await klingbot("doctor", env={"KLINGBOT_DATABASE_URL": unreachable})
    assert result.returncode == 1
    failed = [line for line in shown(result).splitlines() if line.startswith("[✗] database")]
    assert failed and "does not answer" in failed[0]


async def test_sqlite_file_operations_point_at_pg_dump(tmp_path, pg_url, klingbot):
    env = {"KLINGBOT_DATABASE_URL": with_password(pg_url)}
    for action in (("backup",), ("restore", "some.db")):
        result = await klingbot("db", *action, env=env)
        assert (result.returncode, result.stdout) == (2, "")
        assert shown(result).startswith(f"klingbot: db {action[0]} works on the SQLite file")
        assert "the data is in PostgreSQL: use pg_" in result.stderr
        assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


async def test_health_asks_whether_this_replica_holds_its_lease(
    tmp_path, pg_url, pg_database, klingbot
):
    env = {"KLINGBOT_DATABASE_URL": with_password(pg_url), "KLINGBOT_REPLICA_ID": "r1"}
    where = f"on {masked(pg_url)}"
    never = await klingbot("health", env=env)
    assert (never.returncode, shown(never)) == (
        1, f"unhealthy: no klingbot replica r1 ever ran {where}\n"
    )  # fmt: skip
    console = subprocess.Popen(
        [sys.executable, "-m", "app", "console"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_environment(env),
    )
    try:
        console.stdin.write("/balance\n")
        console.stdin.flush()
        assert console.stdout.readline() == "Your balance: 0 credits (¥0.00).\n"  # it runs
        running = await klingbot("health", env=env)
    finally:
        console.communicate("")
    assert running.returncode == 0, shown(running)
    assert shown(running).startswith(f"healthy: replica r1 holds its lease {where} (pid ")
    stopped = await klingbot("health", env=env)
    assert stopped.returncode == 1
    assert shown(stopped).startswith(f"unhealthy: replica r1 {where} does not hold its lease")


async def test_a_server_that_does_not_answer_is_one_line_without_the_password(tmp_path, klingbot):
    env = {"KLINGBOT_DATABASE_URL": with_password("postgresql://postgres@127.0.0.1:9/klingbot")}
    for command in (("db", "migrate"), ("wallet", "balance", "me"), ("-v", "db", "check")):
        result = (
            run_cli(*command, cwd=tmp_path, env=env)  # the first as a real process
            if command[0] == "db"
            else await klingbot(*command, env=env)
        )
        assert (result.returncode, result.stdout) == (2, "")
        said = shown(result).splitlines()[-1]  # after -v's debug lines
        assert said.startswith("klingbot: PostgreSQL database postgresql://postgres@127.0.0.1:9/")
        assert said.endswith("the server does not answer (connection refused); is PostgreSQL running?")


# --- db copy -------------------------------------------------------------------------------


async def make_sqlite(db: Path) -> None:
    """A database the bot's own storage wrote: wallets, every kind of entry, quotes, jobs, state.

    Job 2 (held) and its quote need the image ``inputs/q-2.png``; quote 1's image file is gone.
    """
    inputs = FileInputStore(db.parent / "klingbot-data" / "inputs")
    images = {2: await inputs.save("q-2", ".png", IMAGE), 1: str(inputs.folder / "q-1.png")}

    def quote(number: int) -> Quote:
        return Quote(
            quote_id=f"q-{number}", user=ALICE, chat=ChatRef("telegram", "1"), locale="en",
            image_path=images.get(number), prompt="a robot waves", negative_prompt="",
            duration_s=5, tiers=("standard",), state="open", created_at=NOW,
            expires_at=NOW + 600,
        )  # fmt: skip

    async with open_storage(Settings(db=db)) as storage:
        ledger, jobs = storage.ledger, storage.jobs
        await ledger.open_wallet(UserProfile(ALICE, "Alice", "alice"), welcome_credits=0, now=NOW)
        await ledger.top_up(ALICE, 500, key="fund:alice", actor="console:local", reason="", now=NOW)
        await ledger.top_up(
            BOB, 50, key="fund:bob", actor="console:local", reason="gift", now=NOW,
            create_wallet=True,
        )  # fmt: skip
        await ledger.adjust(BOB, -5, key="fix:bob", actor="console:local", reason="fix", now=NOW)
        await jobs.admit_quote_request(ALICE, per_minute=5, now=NOW)
        # Same created_at: their order is SQLite's rowid, which PostgreSQL keeps as seq.
        for number, end in ((3, "succeeded"), (1, "failed"), (2, None)):
            await jobs.save_quote(quote(number))
            job = a_job(
                job_id=f"job-{number}" + "0" * 26, quote_id=f"q-{number}", user=ALICE,
                image_path=images.get(number),
            )  # fmt: skip
            await jobs.create_job(job, max_active=5, now=NOW)
            if end is not None:
                await jobs.transition(job.job_id, ("held",), end, now=NOW + 60)
        await jobs.refund("job-3" + "0" * 26, actor="console:local", reason="", now=NOW + 90)
        await storage.state.put("telegram:offset", "4242")


def sqlite_rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return [tuple(row) for row in connection.execute(sql)]


LEDGER = "SELECT seq, idem_key, platform, user_id, kind, amount, held_delta FROM ledger ORDER BY seq"


async def test_db_copy_moves_everything_keeps_seq_and_then_the_bot_runs_on_postgresql(
    tmp_path, pg_empty_url, klingbot
):
    db = tmp_path / "klingbot.db"
    await make_sqlite(db)
    target = with_password(pg_empty_url)

    result = run_cli("-v", "db", "copy", "--to", target, cwd=tmp_path)

    assert result.returncode == 0, shown(result)
    lines = shown(result).splitlines()
    assert lines[0].startswith(
        f"copied klingbot.db into {masked(pg_empty_url)}: 2 users, 2 wallets, 3 holds,"
        " 9 ledger entries, 3 quotes, 3 jobs, 1 input image, 2 other rows in "
    )
    assert lines[0].endswith(" s; every balance and the ledger audit agree")
    async with PgDatabase(pg_empty_url, max_size=2) as copied:
        wallets = await copied.fetch("SELECT platform, user_id, balance, held FROM wallets")
        assert sorted(tuple(r) for r in wallets) == sorted(
            sqlite_rows(db, "SELECT platform, user_id, balance, held FROM wallets")
        )
        assert [tuple(r) for r in await copied.fetch(LEDGER)] == sqlite_rows(db, LEDGER)
        jobs = await copied.fetch("SELECT job_id, state, refunded FROM jobs ORDER BY seq")
        assert [tuple(r) for r in jobs] == sqlite_rows(
            db, "SELECT job_id, state, refunded FROM jobs ORDER BY rowid"
        )
        assert await copied.fetchval("SELECT value FROM app_state") == "4242"
        # The image job 2 still needs is in the database, for every replica; quote 1's is gone.
        assert [tuple(r) for r in await copied.fetch("SELECT name, data FROM inputs")] == [
            ("q-2.png", IMAGE)
        ]
        named = await copied.fetch(
            "SELECT quote_id, image_path FROM quotes UNION ALL"
            " SELECT quote_id, image_path FROM jobs ORDER BY 1, 2"
        )
        missing = str(tmp_path / "klingbot-data" / "inputs" / "q-1.png")
        assert [tuple(r) for r in named] == [
            ("q-1", missing), ("q-1", missing), ("q-2", "pg:q-2.png"), ("q-2", "pg:q-2.png"),
            ("q-3", None), ("q-3", None),
        ]  # fmt: skip
        assert await copied.fetchval("SELECT count(*) FROM quote_requests") == 1

    # The bot on PostgreSQL carries on where SQLite stopped: the next entry follows the last.
    env = {"KLINGBOT_DATABASE_URL": target}
    topped = await klingbot("wallet", "topup", "telegram:1", "10", env=env)
    assert topped.returncode == 0, shown(topped)
    history = await klingbot("wallet", "history", "telegram:1", "-n", "1", env=env)
    assert history.stdout.splitlines()[1].split("\t")[0] == "10"
    assert (await klingbot("db", "check", env=env)).stdout == "ledger OK\n"

    again = await klingbot("db", "copy", env=env)  # --to from KLINGBOT_DATABASE_URL
    assert (again.returncode, again.stdout) == (2, "")
    assert shown(again) == (
        f"klingbot: not copied: {masked(pg_empty_url)} is not empty (1 row in app_state, 1 row"
        " in inputs, 1 row in quote_requests, 3 rows in quotes, 3 rows in users, 3 rows in"
        " wallets, 3 rows in holds, 3 rows in jobs, 10 rows in ledger): copy into a new, empty"
        " database\n"
    )


async def test_db_copy_refuses_an_inconsistent_source_and_leaves_the_target_alone(
    tmp_path, pg_empty_url
):
    db = tmp_path / "klingbot.db"
    await make_sqlite(db)
    with sqlite3.connect(db) as connection:  # a balance changed behind the ledger's back
        connection.execute("UPDATE wallets SET balance = balance + 7 WHERE user_id = '1'")

    result = run_cli("db", "copy", "--to", with_password(pg_empty_url), cwd=tmp_path)

    assert (result.returncode, result.stdout) == (1, "")
    lines = shown(result).splitlines()
    assert lines[0] == (
        f"klingbot: not copied: the source {db} fails its checks (2 problem(s)): wallet"
        " telegram:1 holds 487/20 but its entries sum to 480/20; klingbot db check lists them"
    )
    assert lines[1].startswith("  top-ups and adjustments (565) differ from balances (532)")
    target = await asyncpg.connect(pg_empty_url)
    try:
        tables = await target.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0  # untouched: not even migrated
    finally:
        await target.close()


async def test_db_copy_refuses_a_missing_busy_or_damaged_source_and_a_wrong_url(
    tmp_path, pg_empty_url, klingbot
):
    target = with_password(pg_empty_url)
    missing = run_cli("db", "copy", "--to", target, cwd=tmp_path)
    assert (missing.returncode, shown(missing)) == (
        2,
        f"klingbot: there is no SQLite database {tmp_path / 'klingbot.db'} to copy: set"
        " KLINGBOT_DB to the bot's database\n",
    )
    db = tmp_path / "klingbot.db"
    await make_sqlite(db)
    running = Lease(db)
    running.share()  # as klingbot run does
    try:
        busy = await klingbot("db", "copy", "--to", target, env={})
    finally:
        running.release()
    assert busy.returncode == 2
    assert shown(busy).startswith(f"klingbot: a klingbot process is using {db} (klingbot run")
    wrong = await klingbot("db", "copy", "--to", "mysql://root:x@db/k", env={})
    assert (wrong.returncode, wrong.stderr) == (
        2,
        "klingbot: --to must start with postgresql:// or postgres:// (not mysql://), e.g."
        " postgresql://klingbot:PASSWORD@127.0.0.1:5432/klingbot\n",
    )
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not an SQLite database" * 200)
    corrupt = await klingbot("db", "copy", "--to", target, env={"KLINGBOT_DB": str(damaged)})
    assert (corrupt.returncode, shown(corrupt)) == (
        2,
        f"klingbot: {damaged} is not a usable SQLite database (file is not a database)\n",
    )


async def test_the_console_runs_on_postgresql_and_its_debug_log_holds_no_password(
    tmp_path, pg_url, pg_database
):
    result = run_cli(
        "-v",
        "console",
        cwd=tmp_path,
        stdin="/topup me 30\n/balance\n",
        env={"KLINGBOT_DATABASE_URL": with_password(pg_url)},
    )

    assert result.returncode == 0, shown(result)
    assert result.stdout.splitlines()[-1] == "Your balance: 30 credits (¥3.00)."
    assert " DEBUG " in shown(result)  # everything was logged, and not the password
    assert await pg_database.fetchval("SELECT balance FROM wallets") == 30
    assert not list(tmp_path.glob("klingbot.db*"))
