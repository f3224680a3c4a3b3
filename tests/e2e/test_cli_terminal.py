"""The real ``klingbot`` on a terminal: the console's start-up hint and prompt, and ``--help``.

A pseudo-terminal stands in for the operator's: the input is queued in its
line discipline before the bot starts (a line, then Ctrl-D), so nothing waits.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import termios

import pytest

from tests.e2e.conftest import run_cli
from tests.support.env import process_environment

HINT = (
    "Type /help for the commands. Ctrl-D quits once running jobs finish; Ctrl-C quits now (they"
    " resume at the next start)."
)
HINT_ZH = "输入 /help 查看命令。按 Ctrl-D 在进行中的任务完成后退出；按 Ctrl-C 立即退出（任务在下次启动时继续）。"


def console_on_a_terminal(tmp_path, typed: bytes, *args: str, lang: str = "C.UTF-8") -> str:
    """Run ``klingbot console ARGS`` with a terminal as stdin; return what it printed."""
    main, terminal = pty.openpty()
    try:
        settings = termios.tcgetattr(terminal)
        settings[3] &= ~termios.ECHO  # only the bot's output, not the typing echoed back
        termios.tcsetattr(terminal, termios.TCSANOW, settings)
        os.write(main, typed + b"\x04")  # the lines, then Ctrl-D at the start of a line
        environment = process_environment(lang=lang)
        result = subprocess.run(
            [sys.executable, "-m", "app", "console", *args],
            cwd=tmp_path,
            stdin=terminal,
            capture_output=True,
            env=environment,
            timeout=60,
            check=False,
        )
    finally:
        os.close(main)
        os.close(terminal)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode("utf-8")


@pytest.mark.parametrize(
    ("args", "lang", "expected"),
    [
        ((), "C.UTF-8", f"{HINT}\n> Your balance: 0 credits (¥0.00).\n> \n"),
        ((), "zh_CN.UTF-8", f"{HINT_ZH}\n> 你的余额：0 灵感值（¥0.00）。\n> \n"),
        (("--lang", "zh-CN"), "C.UTF-8", f"{HINT_ZH}\n> 你的余额：0 灵感值（¥0.00）。\n> \n"),
    ],
)
def test_the_console_on_a_terminal_starts_with_a_hint_and_prompts(tmp_path, args, lang, expected):
    # The hint, the prompt and /balance's answer, then the prompt that Ctrl-D answered.
    assert console_on_a_terminal(tmp_path, b"/balance\n", *args, lang=lang) == expected


def test_a_piped_console_shows_no_hint_and_no_prompt(tmp_path):
    result = run_cli("console", cwd=tmp_path, stdin="/balance\n")

    assert result.returncode == 0
    assert result.stdout == "Your balance: 0 credits (¥0.00).\n"


def test_help_is_clean_text(tmp_path):
    result = run_cli("--help", cwd=tmp_path)

    assert result.returncode == 0
    assert "``" not in result.stdout
    assert (
        "klingbot: run the bot, open the console chat, print prices, manage wallets offline."
        in " ".join(result.stdout.split())
    )
    assert list(tmp_path.iterdir()) == []


def test_wallet_help_explains_how_to_name_a_user(tmp_path):
    result = run_cli("wallet", "balance", "--help", cwd=tmp_path)

    assert result.returncode == 0
    assert "me (the local operator), @username, an id, or platform:id (e.g. telegram:12345)" in " ".join(
        result.stdout.split()
    )
