"""The real ``klingbot``: a misused command gets one line that says what is wrong, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli
from tests.support.env import process_environment

PRICE_10 = "Kling 2.1 prices for a 10 s clip (10 credits = ¥1):"


def last_line(stderr: str) -> str:
    """Argparse's error line (after its usage line)."""
    return stderr.splitlines()[-1]


# --- options as chat takes them -------------------------------------------------------


@pytest.mark.parametrize("args", [("10",), ("-d", "10"), ("--duration", "10"), ("10s",)])
def test_price_takes_the_duration_as_chat_does(tmp_path, args):
    result = run_cli("price", *args, cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == PRICE_10
    assert "• Master · 1080p · 200 credits (¥20.00) · ~7 min · image or text only" in result.stdout


def test_price_refuses_a_duration_no_clip_has(tmp_path):
    result = run_cli("price", "7", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (2, "")
    assert last_line(result.stderr) == (
        "klingbot price: error: argument 5|10: clips last 5 or 10 seconds, not '7'"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("price", "--lang", "fr"),
        ("console", "--lang", "fr"),
        ("wallet", "export", "--csv", "--lang", "fr"),
    ],
)
def test_a_language_the_bot_does_not_speak_is_refused_naming_those_it_does(tmp_path, args):
    result = run_cli(*args, cwd=tmp_path, stdin="/balance\n")

    assert (result.returncode, result.stdout) == (2, "")
    assert last_line(result.stderr).endswith(
        "error: argument --lang: 'fr' is not a language klingbot speaks: en or zh-CN"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lang", ["zh", "zh_CN", "en-GB"])
def test_language_tags_the_bot_speaks_are_accepted(tmp_path, lang):
    result = run_cli("price", "--lang", lang, cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "'': name a user, in one word without ':' (up to 64 characters);"
         " leave --as out to chat as the local operator"),
        ("  ", "'  ': name a user, in one word without ':' (up to 64 characters);"
         " leave --as out to chat as the local operator"),
        ("local", "'local' is the local operator (a moderator): leave --as out to chat as them"),
    ],
)  # fmt: skip
def test_console_as_never_makes_you_the_moderator_silently(tmp_path, name, error):
    result = run_cli("console", "--as", name, cwd=tmp_path, stdin="/topup me 5\n")

    assert (result.returncode, result.stdout) == (2, "")
    assert last_line(result.stderr) == f"klingbot console: error: argument --as: {error}"
    assert list(tmp_path.iterdir()) == []


# --- files and settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin"), [(("console",), "/balance\n"), (("db", "check"), ""), (("doctor",), "")]
)
def test_a_database_setting_that_names_a_folder_says_so(tmp_path, args, stdin):
    folder = tmp_path / "state"
    folder.mkdir()

    result = run_cli(*args, cwd=tmp_path, stdin=stdin, env={"KLINGBOT_DB": str(folder)})

    said = (
        f"database {folder} is a folder: set KLINGBOT_DB to the database file,"
        f" such as {folder / 'klingbot.db'}"
    )
    if args == ("doctor",):
        assert result.returncode == 1
        assert (
            f"[✗] database: {folder} is a folder → set KLINGBOT_DB to the database file,"
            f" such as {folder / 'klingbot.db'}" in result.stdout.splitlines()
        ), result.stdout
    else:
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"klingbot: {said}\n"
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "example"),
    [
        ("KLINGBOT_TIERS", "standard=25", """'{"standard": {"credits_per_5s": 25}}' (or"""
         " [tiers.standard] tables in the KLINGBOT_CONFIG file)"),
        ("KLING_TIMEOUTS_S", "standard=5", """'{"standard": 600}' (or a [kling_timeouts_s]"""
         " table in the KLINGBOT_CONFIG file)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("args", [("price",), ("console",), ("doctor",)])
def test_a_setting_that_is_not_json_is_one_line_naming_it(tmp_path, variable, value, example, args):
    result = run_cli(*args, cwd=tmp_path, env={variable: value}, stdin="/balance\n")

    expected = (
        f"invalid settings: {variable} is not valid JSON (Expecting value: line 1 column 1"
        f" (char 0)); it takes a JSON object, such as {variable}={example}"
    )
    if args == ("doctor",):
        assert result.returncode == 1
        assert result.stdout.splitlines()[0] == f"[✗] settings: {expected} → fix the named field"
    else:
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"klingbot: {expected}\n"


def test_config_docs_write_outside_a_checkout_is_one_line(tmp_path):
    result = run_cli("config", "docs", "--write", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "klingbot: there is no docs/ folder here: run config docs --write at the top of a"
        " klingbot checkout, or klingbot config docs > FILE elsewhere\n"
    )
    assert list(tmp_path.iterdir()) == []


# --- a reader that goes away ----------------------------------------------------------


def make_ledger(folder: Path) -> None:
    result = run_cli("console", cwd=folder, stdin="/topup me 5\n/topup me 6\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args", [("wallet", "export", "--csv"), ("wallet", "history", "me"), ("price",)]
)
def test_output_to_a_closed_pipe_stops_quietly(tmp_path, args):
    make_ledger(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=process_environment(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)

    assert (result.returncode, result.stderr) == (141, b"")  # like a Unix tool's SIGPIPE


@pytest.mark.parametrize("args", ["wallet export --csv", "wallet history me"])
def test_the_first_line_through_head(tmp_path, args):
    make_ledger(tmp_path)

    result = subprocess.run(
        ["sh", "-c", f'"$0" -m app {args} | head -1', sys.executable],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=process_environment(),
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("seq") and result.stdout.count("\n") == 1
