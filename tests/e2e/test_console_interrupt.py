"""Ctrl-C ends the real console at once; the job it interrupted resumes at the next start.

The console reads a pseudo-terminal, as it reads the operator's; Ctrl-C is
the SIGINT the terminal sends to its foreground process.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from tests.e2e.conftest import Terminal, run_cli
from tests.e2e.recovery_support import cli_env, read_until

STOP_WITHIN_S = 2.0


async def test_ctrl_c_ends_the_console_within_2_s_and_the_job_resumes_at_the_next_start(
    tmp_path,
):
    db = tmp_path / "klingbot.db"
    # Real waits (Standard's ~45 s): the job is surely running when Ctrl-C comes.
    env = cli_env({"KLINGBOT_DB": str(db), "KLINGBOT_TIME_SCALE": "1"})
    terminal = Terminal()
    seen: list[str] = []
    try:
        with (tmp_path / "console.stderr").open("wb") as stderr:
            console = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", "console",
                cwd=tmp_path, env=env, stdin=terminal.tty,
                stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        try:
            terminal.type(b"/topup me 100\n/gen sample a robot waves\n")
            button = await read_until(console, lambda line: "] Standard · " in line, seen)
            number = re.fullmatch(r"  \[(\d+)\] .*", button).group(1)
            terminal.type(f"{number}\n".encode())
            status = await read_until(console, lambda line: " · generating" in line, seen)
            job = re.search(r"job ([0-9a-f]{8})", status).group(1)

            console.send_signal(signal.SIGINT)
            status_code = await asyncio.wait_for(console.wait(), STOP_WITHIN_S)
        finally:
            if console.returncode is None:
                console.kill()
                await console.wait()
        assert status_code == 0
        rest = (await console.stdout.read()).decode("utf-8")
        assert rest.endswith("\nStopped. Unfinished jobs resume at the next start.\n"), rest
        assert "Traceback" not in (tmp_path / "console.stderr").read_text()
    finally:
        terminal.close()

    # The next start resumes the job (sped up now), finishes it, and charges it once.
    resumed = await asyncio.to_thread(
        run_cli,
        "console",
        cwd=tmp_path,
        env={"KLINGBOT_DB": str(db), "KLINGBOT_TIME_SCALE": "0.01"},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"✅ Standard · job {job} · done in " in resumed.stdout
    balance = await asyncio.to_thread(
        run_cli, "wallet", "balance", "console:local", cwd=tmp_path, env={"KLINGBOT_DB": str(db)}
    )
    assert balance.stdout == "Your balance: 80 credits (¥8.00).\n"  # the CLI operator is console:local
