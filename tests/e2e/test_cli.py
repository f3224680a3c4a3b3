"""The real ``klingbot`` process: piped console, price table, offline wallet, start-up errors."""

import sqlite3
import subprocess
import sys

from tests.e2e.conftest import run_cli


def test_price_table(tmp_path):
    five = run_cli("price", cwd=tmp_path)
    assert five.returncode == 0, five.stderr
    assert five.stdout.splitlines() == [
        "Kling 2.1 prices for a 5 s clip (10 credits = ¥1):",
        "• Standard · 720p · 20 credits (¥2.00) · ~45 s · needs an image",
        "• High Quality · 1080p · 35 credits (¥3.50) · ~1 min · needs an image",
        "• Master · 1080p · 100 credits (¥10.00) · ~3 min · image or text only",
    ]
    ten = run_cli("price", "--duration", "10", cwd=tmp_path)
    assert "40 credits (¥4.00)" in ten.stdout
    assert "70 credits (¥7.00)" in ten.stdout
    assert "200 credits (¥20.00)" in ten.stdout
    zh = run_cli("price", "--lang", "zh-CN", cwd=tmp_path)
    assert "• 标准 · 720p · 20 灵感值（¥2.00） · 约 45 秒 · 需要图片" in zh.stdout
    assert not (tmp_path / "klingbot.db").exists()  # prices need no database


def test_piped_console_session(tmp_path):
    result = run_cli("console", cwd=tmp_path, stdin="/topup me 100\n/balance\n/history\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Added 100 credits (¥10.00) to ")
    assert "Your balance: 100 credits (¥10.00)." in lines
    assert lines[-1].endswith("· top-up +100 · balance 100 · —")
    assert (tmp_path / "klingbot.db").exists()


def test_run_without_tokens_on_a_terminal_opens_the_console_with_only_the_chat(tmp_path):
    # make run on a fresh machine: the chat, and no log line between its messages.
    result = run_cli("run", cwd=tmp_path, stdin="/topup me 300\n/price\n", terminal=True)
    assert result.returncode == 0, result.stderr
    assert "Added 300 credits (¥30.00) to " in result.stdout
    assert "Kling 2.1 prices for a 5 s clip" in result.stdout
    assert result.stderr == ""


def test_run_without_tokens_or_terminal_exits_2_naming_the_tokens(tmp_path):
    # A container or a service with no token: one line, and no restart loop at status 0.
    result = run_cli("run", cwd=tmp_path, stdin="/price\n")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "klingbot: no platform to serve: set TELEGRAM_TOKEN or DISCORD_TOKEN (with compose, in"
        " klingbot.env; see klingbot.env.example). Without them klingbot run opens the console"
        " chat, and only on a terminal\n"
    )
    assert list(tmp_path.iterdir()) == []  # no database was created


def test_tokens_are_never_logged(tmp_path):
    result = run_cli(
        "-v",
        "run",
        cwd=tmp_path,
        stdin="/help\n",
        env={
            "TELEGRAM_TOKEN": "123456:SECRET-AAA",
            "TELEGRAM_BASE_URL": "http://127.0.0.1:9/bot",
            "DISCORD_TOKEN": "SECRET-BBB",
        },
    )
    assert result.returncode == 2
    assert "cannot reach the Telegram Bot API" in result.stderr
    assert "SECRET" not in result.stdout + result.stderr


def test_offline_wallet_commands(tmp_path):
    run_cli("console", "--as", "alice", cwd=tmp_path, stdin="/start\n")
    topup = run_cli("wallet", "topup", "console:alice", "40", "support", "ticket", cwd=tmp_path)
    assert topup.returncode == 0, topup.stderr
    assert "Added 40 credits (¥4.00) to alice (console:alice)." in topup.stdout
    balance = run_cli("wallet", "balance", "console:alice", cwd=tmp_path)
    assert "Balance of alice (console:alice): 40 credits (¥4.00)." in balance.stdout
    history = run_cli("wallet", "history", "console:alice", cwd=tmp_path)
    rows = [line.split("\t") for line in history.stdout.splitlines()]
    assert rows[0][:4] == ["seq", "time_utc", "kind", "amount"]
    assert rows[1][2:4] == ["topup", "+40"] and rows[1][-1] == "support ticket"
    assert rows[1][-2] == "console:local"  # the operator, as in the console
    unknown = run_cli("wallet", "topup", "ghost", "5", cwd=tmp_path)
    assert unknown.returncode == 1 and "I don't know the user" in unknown.stdout
    bad = run_cli("wallet", "topup", "console:alice", "-5", cwd=tmp_path)
    assert bad.returncode != 0
    check = run_cli("db", "check", cwd=tmp_path)
    assert check.returncode == 0 and check.stdout.strip() == "ledger OK"


def test_bad_config_stops_at_start_naming_the_field(tmp_path):
    (tmp_path / "bad.toml").write_text("[tiers.master]\ncredits_per_5s = -1\n")
    result = run_cli(
        "console",
        cwd=tmp_path,
        stdin="/price\n",
        env={"KLINGBOT_CONFIG": str(tmp_path / "bad.toml")},
    )
    assert result.returncode == 2
    assert "tiers.master.credits_per_5s" in result.stderr
    assert "Traceback" not in result.stderr


def test_locked_database_is_a_clear_error_at_start(tmp_path):
    db = tmp_path / "klingbot.db"
    run_cli("console", cwd=tmp_path)  # creates the database
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); c.execute('PRAGMA user_version = 1')\n"
            "print('locked', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        result = run_cli(
            "console", cwd=tmp_path, stdin="/balance\n", env={"KLINGBOT_DB_BUSY_TIMEOUT_MS": "200"}
        )
    finally:
        locker.communicate("")
    assert result.returncode == 2
    assert f"database {db} is locked by another process" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_database_that_is_not_sqlite(tmp_path):
    (tmp_path / "klingbot.db").write_bytes(b"this is not a database" * 100)
    result = run_cli("console", cwd=tmp_path, stdin="/balance\n")
    assert result.returncode == 2
    assert "is not a usable SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(":memory:"):
        pass
