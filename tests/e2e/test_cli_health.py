"""The real ``klingbot health``: it creates nothing, and says when the console holds the database."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.e2e.conftest import run_cli
from tests.support.env import process_environment


def unused_port() -> int:
    """A port nothing listens on (the kernel's pick, released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_health_where_no_bot_ever_ran_leaves_nothing_behind(tmp_path):
    result = run_cli("health", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == f"unhealthy: no klingbot process holds {tmp_path / 'klingbot.db'}\n"
    assert list(tmp_path.iterdir()) == []  # no stray klingbot.db.lock


def test_health_of_a_console_with_metrics_listen_says_the_console_serves_no_healthz(tmp_path):
    port = unused_port()
    environment = {"KLINGBOT_METRICS_LISTEN": f"127.0.0.1:{port}"}
    console = subprocess.Popen(
        [sys.executable, "-m", "app", "console"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_environment(environment),
    )
    try:
        console.stdin.write("/balance\n")
        console.stdin.flush()
        assert console.stdout.readline() == "Your balance: 0 credits (¥0.00).\n"  # it runs
        result = run_cli("health", cwd=tmp_path, env=environment)
    finally:
        console.communicate("")

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (
        f"unhealthy: http://127.0.0.1:{port}/healthz does not answer, though a klingbot process"
        f" holds {tmp_path / 'klingbot.db'}: the console and wallet commands serve no /healthz"
        " (klingbot run does, once started)\n"
    )


def test_health_with_metrics_listen_and_no_bot_says_nothing_answers(tmp_path):
    port = unused_port()

    result = run_cli("health", cwd=tmp_path, env={"KLINGBOT_METRICS_LISTEN": f"127.0.0.1:{port}"})

    assert result.returncode == 1
    assert result.stdout.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz does not answer (")
    assert result.stdout.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
