"""One runner per database: real ``klingbot`` processes on one database file.

A console chat runs (it drives jobs, so it holds the runner lease); a second
``console``, a ``run`` without tokens (the console) and a ``run`` with a
Telegram token must each refuse in one line and exit 2 without touching
the database, while the wallet commands keep working. Once the first
console ends, a new one starts.
"""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import run_cli
from tests.e2e.recovery_support import cli_env, kill_console, read_until, start_console


async def test_a_second_runner_on_a_database_refuses_in_one_line(tmp_path):
    overrides = {"KLINGBOT_DB": str(tmp_path / "klingbot.db")}
    first = await start_console(tmp_path, cli_env(overrides), tmp_path / "first.stderr")
    seen: list[str] = []
    try:
        first.stdin.write(b"/topup me 100\n")
        await first.stdin.drain()
        await read_until(first, lambda line: line.startswith("New balance: 100 credits"), seen)

        telegram = {
            **overrides,
            "TELEGRAM_TOKEN": "123456:" + "A" * 35,
            "TELEGRAM_BASE_URL": "http://127.0.0.1:9/bot",  # never reached
        }
        for args, env, terminal in (
            (("console",), overrides, False),
            (("run",), overrides, True),  # on a terminal, run without a token is the console
            (("run",), telegram, False),
        ):
            refused = await asyncio.to_thread(
                run_cli, *args, cwd=tmp_path, env=env, stdin="/topup me 5\n", terminal=terminal
            )
            assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
            assert refused.stdout == "" and "Traceback" not in refused.stderr
            # One line says why (``run`` may log its start-up before it).
            [line] = [x for x in refused.stderr.splitlines() if x.startswith("klingbot: ")]
            assert line.startswith(
                f"klingbot: a klingbot runner already uses the database {tmp_path / 'klingbot.db'}"
                f" (pid {first.pid} on "
            ), line
            assert "one runner per database" in line

        # Wallet commands do not run jobs: they work beside the runner.
        wallet = await asyncio.to_thread(
            run_cli, "wallet", "balance", "console:local", cwd=tmp_path, env=overrides
        )
        assert wallet.returncode == 0, wallet.stderr
        assert "Your balance: 100 credits (¥10.00)." in wallet.stdout

        first.stdin.close()  # end of input: the console exits and lets the lease go
        assert await asyncio.wait_for(first.wait(), 60) == 0
    finally:
        await kill_console(first)

    after = await asyncio.to_thread(
        run_cli, "console", cwd=tmp_path, env=overrides, stdin="/balance\n"
    )
    assert after.returncode == 0, after.stderr
    assert "Your balance: 100 credits (¥10.00)." in after.stdout
