"""``klingbot run`` as a real process: with TELEGRAM_TOKEN set it serves Telegram, not the console."""

from __future__ import annotations

import asyncio
import signal
import sys

from tests.adapters.conftest import TOKEN
from tests.support.env import process_environment


def environment(tmp_path, **extra: str) -> dict[str, str]:
    return process_environment({"KLINGBOT_DB": str(tmp_path / "k.db"), **extra})


async def test_run_serves_telegram_until_sigterm(tmp_path, api):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "-v", "run",
        cwd=tmp_path,
        env=environment(tmp_path, TELEGRAM_TOKEN=TOKEN, TELEGRAM_BASE_URL=api.base_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await api.wait_for("deleteWebhook", timeout=60)  # polling is starting
        member = {"id": 1001, "is_bot": False, "first_name": "Alice", "language_code": "en"}
        api.push(
            {
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": 1001, "type": "private"},
                    "from": member,
                    "text": "/balance",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 8}],
                }
            }
        )
        reply = await api.wait_for("sendMessage", chat_id=1001, timeout=60)
        assert reply.params["text"] == "Your balance: 0 credits (¥0.00)."
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Telegram bot @klingbot_test_bot is up (polling)" in log
    assert "opening the console" not in log and stdout == b""
    assert "Set Bot API URL: http://127.0.0.1:" in log and "/bot<token>" in log
    assert TOKEN not in log and TOKEN.partition(":")[2] not in log


async def test_run_says_when_telegram_is_unreachable(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run",
        cwd=tmp_path,
        env=environment(tmp_path, TELEGRAM_TOKEN=TOKEN, TELEGRAM_BASE_URL="http://127.0.0.1:9/bot"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "klingbot: cannot reach the Telegram Bot API" in stderr.decode()
    assert TOKEN.partition(":")[2] not in stderr.decode()


async def test_run_with_a_refused_token(tmp_path, api):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run",
        cwd=tmp_path,
        env=environment(tmp_path, TELEGRAM_TOKEN="1:wrong-token", TELEGRAM_BASE_URL=api.base_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "klingbot: Telegram refused TELEGRAM_TOKEN (check it with @BotFather)" in stderr.decode()
