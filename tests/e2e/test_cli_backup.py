"""The real ``klingbot db backup`` and ``db restore``: the README's folder, and the live database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
STAMPED = re.compile(r"klingbot-\d{8}T\d{6}Z(-\d+)?\.db")


def make_database(folder: Path, credits: int = 100) -> Path:
    made = run_cli("console", cwd=folder, stdin=f"/topup me {credits}\n")
    assert made.returncode == 0, made.stderr
    return folder / "klingbot.db"


def balances(db: Path) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute("SELECT platform, user_id, balance FROM wallets").fetchall()
    finally:
        connection.close()


def only_file(folder: Path) -> Path:
    [copy] = list(folder.iterdir())
    assert STAMPED.fullmatch(copy.name), copy.name
    return copy


def test_the_readme_backup_to_a_folder_and_restore_from_it(tmp_path):
    db = make_database(tmp_path)

    backup = run_cli("db", "backup", "backups/", cwd=tmp_path)

    assert (backup.returncode, backup.stderr) == (0, "")
    copy = only_file(tmp_path / "backups")
    assert backup.stdout.startswith(f"backed up klingbot.db to backups/{copy.name} (")
    assert backup.stdout.endswith(" bytes, 1 ledger entry)\n")  # the one top-up
    assert balances(copy) == balances(db)

    run_cli("wallet", "topup", "me", "5", cwd=tmp_path)  # the live database moves on
    restore = run_cli("db", "restore", f"backups/{copy.name}", cwd=tmp_path)

    assert (restore.returncode, restore.stderr) == (0, ""), restore.stderr
    assert balances(db) == [("console", "local", 100)]


@pytest.mark.parametrize("folder", ["backups", "nested/backups/"])
def test_a_folder_that_exists_or_ends_in_a_slash_gets_a_timestamped_copy(tmp_path, folder):
    make_database(tmp_path)
    (tmp_path / "backups").mkdir()

    first = run_cli("db", "backup", folder, cwd=tmp_path)
    second = run_cli("db", "backup", folder, cwd=tmp_path)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    copies = sorted((tmp_path / folder).iterdir())
    assert len(copies) == 2 and all(STAMPED.fullmatch(copy.name) for copy in copies)


def test_without_a_path_the_copy_goes_to_the_data_folder(tmp_path):
    db = make_database(tmp_path)

    result = run_cli("db", "backup", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    copy = only_file(tmp_path / "klingbot-data" / "backups")
    assert result.stdout.startswith(f"backed up klingbot.db to {copy.relative_to(tmp_path)} (")
    assert balances(copy) == balances(db)


def test_the_checkouts_gitignore_covers_the_readmes_backup_folder():
    assert "backups/" in (REPO / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("target", ["klingbot.db", "./klingbot.db", "klingbot.db-wal"])
def test_a_backup_onto_the_live_database_is_refused(tmp_path, target):
    db = make_database(tmp_path)
    before = db.read_bytes()

    result = run_cli("db", "backup", target, cwd=tmp_path)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"klingbot: not backed up: {target} is the live database (KLINGBOT_DB) or one of its"
        " files: name another file, or a folder such as backups/\n"
    )
    assert db.read_bytes() == before


def test_a_restore_from_the_live_database_is_refused(tmp_path):
    db = make_database(tmp_path)

    result = run_cli("db", "restore", str(db), cwd=tmp_path)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"klingbot: not restored: {db} is the live database itself (KLINGBOT_DB):"
        " name a backup file\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir() if "replaced" in path.name) == []


def test_a_restore_from_a_folder_says_it_is_a_folder(tmp_path):
    make_database(tmp_path)
    assert run_cli("db", "backup", "backups/", cwd=tmp_path).returncode == 0
    copy = only_file(tmp_path / "backups")

    result = run_cli("db", "restore", "backups", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"klingbot: not restored: backups is a folder: name a backup file in it,"
        f" such as backups/{copy.name}\n"
    )
