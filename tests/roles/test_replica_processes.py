"""Real ``klingbot run`` replicas on one PostgreSQL database, Telegram in polling mode.

One replica polls (the role ``telegram-polling``), the other stands by; a
second process with an id that already runs is refused in one line (exit
2); when the polling replica is SIGKILLed the standby polls within the
lease (3 s here) and answers; the killed one, restarted with its id,
starts at once and stands by. Waits are on log lines and the Bot API
stand-in's calls, each with a deadline; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import pytest

from tests.adapters.conftest import TOKEN
from tests.replicas.harness import Replica
from tests.support.env import process_environment

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

LEASE_S = "3"
POLLING = r"Telegram bot @\w+ is up \(polling\)"
STANDBY = r"Telegram bot @\w+ is up \(standby: another replica polls\)"


def environment(tmp_path, name: str, replica_id: str, url: str, api) -> dict[str, str]:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return process_environment(
        {
            "KLINGBOT_DATABASE_URL": url,
            "KLINGBOT_DATA_DIR": str(folder / "data"),
            "KLINGBOT_REPLICA_ID": replica_id,
            "KLINGBOT_JOB_LEASE_S": LEASE_S,
            "TELEGRAM_TOKEN": TOKEN,
            "TELEGRAM_BASE_URL": api.base_url,
            "TELEGRAM_BASE_FILE_URL": api.base_file_url,
        }
    )


async def started(replica: Replica, pattern: str) -> Replica:
    """Start a polling-mode replica and wait for its "up" line."""
    replica.lines.clear()
    replica.process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "-v", "run",
        cwd=replica.cwd, env=replica.env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    replica.reader = asyncio.create_task(replica._read(replica.process))
    await replica.line(pattern, 60)
    return replica


async def ask_balance(api, user_id: int) -> str:
    since = len(api.calls)
    member = {"id": user_id, "is_bot": False, "first_name": "Alice", "language_code": "en"}
    api.push(
        {
            "message": {
                "message_id": user_id,
                "date": 0,
                "chat": {"id": user_id, "type": "private"},
                "from": member,
                "text": "/balance",
                "entities": [{"type": "bot_command", "offset": 0, "length": 8}],
            }
        }
    )
    reply = await api.wait_for("sendMessage", since=since, chat_id=user_id, timeout=30)
    return reply.params["text"]


async def test_replicas_poll_one_at_a_time_refuse_a_duplicate_id_and_survive_a_sigkill(
    tmp_path, api, pg_url, pg_database
):
    def replica(name: str, replica_id: str) -> Replica:
        env = environment(tmp_path, name, replica_id, pg_url, api)
        return Replica(name, env, tmp_path / name)

    first, second, restarted = replica("a", "r1"), replica("b", "r2"), replica("a2", "r1")
    try:
        await started(first, POLLING)
        await started(second, STANDBY)
        assert await ask_balance(api, 1001) == "Your balance: 0 credits (¥0.00)."

        # The same replica id again: refused in one line, while r1 lives.
        duplicate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "run",
            cwd=tmp_path, env=environment(tmp_path, "dup", "r1", pg_url, api),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(duplicate.communicate(), 60)
        assert duplicate.returncode == 2 and stdout == b""
        [line] = stderr.decode().splitlines()
        assert line.startswith(
            "klingbot: a klingbot replica with KLINGBOT_REPLICA_ID=r1 already runs on this"
            f" database (replica r1: pid {first.process.pid} on {socket.gethostname()} since "
        ), line
        assert line.endswith("or give this one another KLINGBOT_REPLICA_ID"), line

        # SIGKILL the polling replica: the standby polls within the lease and answers.
        killed = time.monotonic()
        await first.kill()
        await second.line(r"took the telegram-polling role", 30)
        took = time.monotonic() - killed
        assert await ask_balance(api, 1002) == "Your balance: 0 credits (¥0.00)."
        answered = time.monotonic() - killed
        assert took < float(LEASE_S)

        # r1 restarted: its id is free at once (the dead one's lock went with its socket).
        restarting = time.monotonic()
        await started(restarted, STANDBY)
        restart_s = time.monotonic() - restarting
        print(
            f"\npolling taken over {took:.2f} s after the SIGKILL (first answer {answered:.2f} s);"
            f" r1 restarted and up in {restart_s:.2f} s (process start included)"
        )
        assert await second.stop() == 0
        await restarted.line(r"took the telegram-polling role", 30)  # a clean stop hands over
        assert await ask_balance(api, 1003) == "Your balance: 0 credits (¥0.00)."
        assert await restarted.stop() == 0
    finally:
        for process in (first, second, restarted):
            await process.close()
    logs = "\n".join(r.log() for r in (first, second, restarted))
    assert "Conflict" not in logs
    assert os.environ.get("KLINGBOT_DATABASE_URL") is None  # nothing leaked into the tests
