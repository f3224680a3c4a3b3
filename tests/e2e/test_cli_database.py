"""The real ``klingbot`` process and its database file: missing, in a missing folder, read-only.

Read-only is made for real, in a way that also holds when the tests run as
root (where permission bits alone stop nothing): the bot runs without the
capabilities that let root ignore them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH),
and a read-only mount is a read-only bind mount in a private mount namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from storage.migrate import migrate, migration_scripts
from tests.e2e.conftest import run_cli
from tests.support.env import process_environment

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
READ_ONLY_HINT = (
    "Make them writable for the user running the bot, or set KLINGBOT_DB to a writable copy"
)


def without_permission_override() -> None:
    """In the child before exec: as root, give up what lets root write read-only files.

    Dropped from the bounding set, the capabilities are gone from the program
    it runs; a non-root user never had them, so nothing needs doing.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def permission_bits_apply(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless a process started like the bot really cannot write a read-only file."""
    probe = tmp_path_factory.mktemp("probe") / "read-only"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        wrote = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}, 'a').write('x')"],
            preexec_fn=without_permission_override,
            capture_output=True,
            check=False,
        )
    except subprocess.SubprocessError as error:  # prctl refused
        pytest.skip(f"cannot run the bot without root's permission override: {error}")
    if wrote.returncode == 0:
        pytest.skip("this process writes read-only files whatever their permission bits")


def read_only_mount(folder: Path) -> list[str]:
    """A command prefix that runs a program with ``folder`` mounted read-only, or skips."""
    namespace = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    prefix = [
        "unshare",
        *namespace,
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
        str(folder),
    ]
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no private read-only mount here: {probe.stderr.strip()}")
    return prefix


def make_database(folder: Path) -> Path:
    """A database the bot made, with 100 credits in the console user's wallet."""
    folder.mkdir(exist_ok=True)
    made = run_cli("console", cwd=folder, stdin="/topup me 100\n")
    assert made.returncode == 0, made.stderr
    return folder / "klingbot.db"


def ledger_rows(db: Path) -> list[tuple]:
    """The ledger, read by a connection that removes -wal and -shm when it closes."""
    connection = sqlite3.connect(db)
    try:
        return connection.execute("SELECT seq, kind, amount FROM ledger ORDER BY seq").fetchall()
    finally:
        connection.close()


def errors_of(stderr: str) -> str:
    """Stderr without ``run``'s one INFO line that it opens the console."""
    return "".join(line for line in stderr.splitlines(keepends=True) if " INFO " not in line)


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make files or folders read-only for the block, then writable again (for cleanup)."""
    modes = {path: path.stat().st_mode & 0o777 for path in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


# --- db check and db migrate work on an existing database only ----------------------


@pytest.mark.parametrize("action", ["check", "migrate"])
def test_db_maintenance_refuses_a_database_that_does_not_exist(tmp_path, action):
    result = run_cli("db", action, cwd=tmp_path)

    db = tmp_path / "klingbot.db"
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"klingbot: there is no database {db}: set KLINGBOT_DB to the bot's database"
        " (klingbot run creates a new one)\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("action", ["check", "migrate"])
def test_db_maintenance_creates_no_folder_for_a_mistyped_path(tmp_path, action):
    db = tmp_path / "typo" / "klingbot.db"

    result = run_cli("db", action, cwd=tmp_path, env={"KLINGBOT_DB": str(db)})

    assert result.returncode == 2
    assert result.stderr == (
        f"klingbot: there is no database {db}: set KLINGBOT_DB to the bot's database"
        " (klingbot run creates a new one)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_db_maintenance_on_the_bots_database(tmp_path):
    make_database(tmp_path)

    migrate = run_cli("db", "migrate", cwd=tmp_path)
    check = run_cli("db", "check", cwd=tmp_path)

    assert (migrate.returncode, migrate.stdout) == (0, "database klingbot.db is up to date\n")
    assert (check.returncode, check.stdout) == (0, "ledger OK\n")


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(("db", "migrate"), ""), (("console",), "/price\n"), (("run",), "/price\n")],
)
def test_a_database_written_by_a_newer_klingbot_is_refused_in_one_line(tmp_path, args, stdin):
    db = tmp_path / "klingbot.db"
    latest = max(version for version, _, _ in migration_scripts())
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        migrate(connection)  # the bot's schema, as this klingbot makes it
        connection.execute(f"PRAGMA user_version = {latest + 1}")
        tables = connection.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    # Without a terminal, run wants a token: on one, it is the console.
    result = run_cli(*args, cwd=tmp_path, stdin=stdin, terminal=args == ("run",))

    assert (result.returncode, result.stdout) == (2, "")
    refusal = (
        f"klingbot: {db} is at schema version {latest + 1}, newer than this klingbot knows"
        f" ({latest}): it was written by a newer klingbot; run that version, or restore a"
        " backup made by this one"
    )
    # One line (``run`` logs what it starts before it opens the database).
    assert [line for line in result.stderr.splitlines() if " INFO " not in line] == [refusal]
    with closing(sqlite3.connect(db)) as connection:  # left exactly as it was
        assert connection.execute("PRAGMA user_version").fetchone()[0] == latest + 1
        assert connection.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == tables


# --- the bot creates the folders it was told to use --------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("console",), "/topup me 5\n", "Added 5 credits (¥0.50) to "),
        (("run",), "/topup me 5\n", "Added 5 credits (¥0.50) to "),
        (("wallet", "topup", "console:local", "5"), "", "Added 5 credits (¥0.50) to "),
    ],
)
def test_the_bot_creates_missing_folders_for_its_database_and_data(tmp_path, args, stdin, expected):
    db = tmp_path / "state" / "db" / "klingbot.db"
    data = tmp_path / "files" / "klingbot" / "data"

    result = run_cli(
        *args,
        cwd=tmp_path,
        stdin=stdin,
        env={"KLINGBOT_DB": str(db), "KLINGBOT_DATA_DIR": str(data)},
        terminal=args == ("run",),  # without a terminal, run wants a token
    )

    assert result.returncode == 0, result.stderr
    assert db.is_file() and data.is_dir()
    answer = result.stdout.partition("> ")[2] if args == ("run",) else result.stdout
    assert answer.startswith(expected)


def test_a_folder_that_cannot_be_created_is_one_line(tmp_path, permission_bits_apply):
    parent = tmp_path / "locked"
    parent.mkdir()
    with read_only(parent):
        result = run_cli(
            "console",
            cwd=tmp_path,
            stdin="/balance\n",
            env={"KLINGBOT_DB": str(parent / "new" / "klingbot.db")},
            preexec_fn=without_permission_override,
        )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"klingbot: cannot create the folder {parent / 'new'} for the database (KLINGBOT_DB):"
        " Permission denied\n"
    )


# --- a database that cannot be written stops the bot at start ----------------------


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("console",), "/topup me 50\n/balance\n"),
        (("run",), "/topup me 50\n"),
        (("console", "--lang", "zh-CN"), "/topup me 50\n"),
        (("wallet", "topup", "console:local", "50"), ""),
        (("wallet", "balance", "console:local"), ""),
    ],
)
def test_a_read_only_database_file_in_a_writable_folder_stops_the_bot(
    tmp_path, permission_bits_apply, args, stdin
):
    db = make_database(tmp_path)
    before = ledger_rows(db)

    with read_only(db):
        result = run_cli(
            *args,
            cwd=tmp_path,
            stdin=stdin,
            terminal=args == ("run",),  # without a terminal, run wants a token
            preexec_fn=without_permission_override,
        )
        left = sorted(path.name for path in tmp_path.glob("klingbot.db-*"))

    assert left == []  # no read-only -wal or -shm to stop the next start
    assert result.returncode == 2
    assert result.stdout == ""  # no apology in the chat, nothing answered
    assert errors_of(result.stderr) == (
        f"klingbot: database {db} cannot be written: the file is read-only. {READ_ONLY_HINT}\n"
    )
    assert ledger_rows(db) == before  # nothing charged, nothing topped up


def test_once_the_file_is_writable_again_the_bot_starts(tmp_path, permission_bits_apply):
    db = make_database(tmp_path)
    with read_only(db):
        refused = run_cli(
            "console", cwd=tmp_path, stdin="/balance\n", preexec_fn=without_permission_override
        )
    assert refused.returncode == 2

    started = run_cli(
        "console", cwd=tmp_path, stdin="/balance\n", preexec_fn=without_permission_override
    )

    assert (started.returncode, started.stderr) == (0, "")
    assert started.stdout == "Your balance: 100 credits (¥10.00).\n"


# --- db check only reads ------------------------------------------------------------


def test_db_check_reads_a_read_only_database_and_leaves_nothing_behind(
    tmp_path, permission_bits_apply
):
    db = make_database(tmp_path)

    with read_only(db):
        check = run_cli("db", "check", cwd=tmp_path, preexec_fn=without_permission_override)
        left = sorted(path.name for path in tmp_path.glob("klingbot.db-*"))

    assert (check.returncode, check.stdout, check.stderr) == (0, "ledger OK\n", "")
    assert left == []
    again = run_cli("console", cwd=tmp_path, stdin="/balance\n")
    assert again.stdout == "Your balance: 100 credits (¥10.00).\n"


def test_db_check_on_a_read_only_mount(tmp_path):
    db = make_database(tmp_path / "state")

    check = run_cli(
        "db", "check", cwd=tmp_path, env={"KLINGBOT_DB": str(db)}, prefix=read_only_mount(db.parent)
    )

    assert (check.returncode, check.stdout, check.stderr) == (0, "ledger OK\n", "")


def test_db_check_while_the_bot_runs_reads_the_committed_ledger(tmp_path):
    make_database(tmp_path)
    console = subprocess.Popen(
        [sys.executable, "-m", "app", "console"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_environment(),
    )
    try:
        console.stdin.write("/topup me 5\n")
        console.stdin.flush()
        assert console.stdout.readline().startswith("Added 5 credits")
        check = run_cli("db", "check", cwd=tmp_path)
    finally:
        console.communicate("")

    assert (check.returncode, check.stdout, check.stderr) == (0, "ledger OK\n", "")


def test_a_read_only_file_another_process_has_open_stops_the_bot(tmp_path, permission_bits_apply):
    """With -wal and -shm present and writable, SQLite takes the write lock and only a write fails."""
    db = make_database(tmp_path)
    before = ledger_rows(db)
    with sqlite3.connect(db) as reader:  # keeps -wal and -shm in place
        reader.execute("SELECT count(*) FROM ledger").fetchone()
        with read_only(db):
            result = run_cli(
                "console",
                cwd=tmp_path,
                stdin="/topup me 50\n",
                preexec_fn=without_permission_override,
            )
    reader.close()

    assert result.returncode == 2
    assert result.stdout == ""
    # One line; SQLite may also have re-created -wal with the file's read-only mode.
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"klingbot: database {db} cannot be written: the file is read-only"
    )
    assert result.stderr.endswith(f". {READ_ONLY_HINT}\n")
    assert ledger_rows(db) == before


def test_a_read_only_folder_stops_the_bot(tmp_path, permission_bits_apply):
    """WAL mode needs to create klingbot.db-wal and -shm beside the database."""
    db = make_database(tmp_path / "state")
    before = ledger_rows(db)

    with read_only(db.parent):
        result = run_cli(
            "console",
            cwd=tmp_path,
            stdin="/topup me 50\n",
            env={"KLINGBOT_DB": str(db)},
            preexec_fn=without_permission_override,
        )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"klingbot: database {db} cannot be written: its folder {db.parent} is read-only"
        " (SQLite must create klingbot.db-wal and klingbot.db-shm there)."
        f" {READ_ONLY_HINT}\n"
    )
    assert ledger_rows(db) == before


@pytest.mark.parametrize("args", [("console",), ("wallet", "topup", "console:local", "50")])
def test_a_database_on_a_read_only_mount_stops_the_bot(tmp_path, args):
    db = make_database(tmp_path / "state")
    before = ledger_rows(db)

    result = run_cli(
        *args,
        cwd=tmp_path,
        stdin="/topup me 50\n",
        env={"KLINGBOT_DB": str(db)},
        prefix=read_only_mount(db.parent),
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"klingbot: database {db} cannot be written: it is on a read-only file system."
        " Mount it read-write, or set KLINGBOT_DB to a database on a writable disk\n"
    )
    assert ledger_rows(db) == before
