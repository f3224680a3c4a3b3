"""The real ``klingbot`` process against the Kling stand-in: SIGKILL recovery, ``provider check``."""

from __future__ import annotations

import asyncio
import signal

from app.provider_check import check_provider
from storage.audit import audit
from storage.database import Database
from tests.e2e.conftest import run_cli
from tests.e2e.recovery_support import (
    PROMPT,
    cli_env,
    kill_console,
    press_tier,
    read_until,
    start_console,
)
from tests.providers.kling_support import kling_env, kling_settings


async def test_a_console_killed_after_the_create_adopts_the_same_task_when_started_again(
    tmp_path, standin
):
    env = kling_env(tmp_path, standin)
    standin.hold_creates = asyncio.Event()  # the task is made; its answer is still on the wire
    first = await start_console(tmp_path, cli_env(env), tmp_path / "first.stderr")
    seen: list[str] = []
    try:
        first.stdin.write(f"/topup me 100\n/gen sample {PROMPT}\n".encode())
        await first.stdin.drain()
        await press_tier(first, "High Quality", seen)
        await read_until(first, lambda line: "held for job" in line, seen)
        await standin.until(lambda: len(standin.tasks) == 1)
    finally:
        status = await kill_console(first)
        standin.hold_creates.set()
    assert status == -signal.SIGKILL
    [task] = standin.tasks.values()
    job_id = task.body["external_task_id"]
    assert f"✅ High Quality chosen: 35 credits (¥3.50) held for job {job_id[:8]}." in seen

    # Started again with nothing to read: it finds the task by external_task_id and waits for it.
    second = await asyncio.to_thread(run_cli, "console", cwd=tmp_path, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"✅ High Quality · job {job_id[:8]} · done in" in second.stdout, second.stdout
    assert "did not work" not in second.stdout
    clip_lines = [line for line in second.stdout.splitlines() if line.startswith("  🎞️ ")]
    assert len(clip_lines) == 1, second.stdout
    assert len(standin.creates) == 1 and len(standin.tasks) == 1  # never a second task
    assert standin.refused == []  # found by a query, not by a refused duplicate create
    assert standin.downloads == 1

    # The ledger audit `klingbot db check` runs, and the wallet: charged once.
    async with Database(tmp_path / "klingbot.db") as database:
        assert await audit(database) == []
        [row] = await database.read("SELECT balance, held FROM wallets")
        assert (row["balance"], row["held"]) == (65, 0)
        kinds = await database.read(
            "SELECT kind FROM ledger WHERE hold_id = ? ORDER BY seq", (job_id,)
        )
        assert [r["kind"] for r in kinds] == ["hold", "capture"]


async def test_provider_check_with_good_keys_lists_the_resource_packs(tmp_path, standin):
    result = await asyncio.to_thread(
        run_cli, "provider", "check", cwd=tmp_path, env=kling_env(tmp_path, standin)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Kling API at {standin.url}: keys accepted",
        "resource pack Video Generation - 100 units: 62.5 of 100 left, online, valid until "
        + result.stdout.rsplit("valid until ", 1)[1].strip(),
    ]
    assert standin.secret_key not in result.stdout + result.stderr


async def test_provider_check_without_costs_access_still_passes(tmp_path, standin, capsys):
    standin.costs_code = 1103
    assert await check_provider(kling_settings(tmp_path, standin)) == 0
    out = capsys.readouterr().out
    assert "resource packs: not available for this account (Kling code 1103" in out


async def test_provider_check_with_bad_keys_says_so(tmp_path, standin):
    env = kling_env(tmp_path, standin, KLING_SECRET_KEY="not-the-secret-key-of-this-account")
    result = await asyncio.to_thread(run_cli, "provider", "check", cwd=tmp_path, env=env)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("klingbot:")]
    assert line.startswith(f"klingbot: Kling refused the keys at {standin.url}: ")
    assert "code 1002" in line and "api-beijing.klingai.com" in line
    assert "not-the-secret-key" not in result.stdout + result.stderr
    assert result.stdout == ""


async def test_provider_check_with_no_network(tmp_path, standin, capsys):
    settings = kling_settings(tmp_path, standin, kling_base_url="http://127.0.0.1:9")
    assert await check_provider(settings) == 1
    assert "klingbot: cannot reach the Kling API at http://127.0.0.1:9" in capsys.readouterr().err


async def test_provider_check_of_a_url_that_is_not_kling(tmp_path, standin, capsys):
    settings = kling_settings(tmp_path, standin, kling_base_url=f"{standin.url}/nothing-here")
    assert await check_provider(settings) == 1
    err = capsys.readouterr().err
    assert f"klingbot: {standin.url}/nothing-here does not answer like the Kling API" in err


async def test_kling_without_a_key_stops_the_start_with_one_line(tmp_path, standin):
    env = kling_env(tmp_path, standin)
    del env["KLING_SECRET_KEY"]
    result = await asyncio.to_thread(run_cli, "console", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (
        2,
        "klingbot: KLING_SECRET_KEY is not set (KLINGBOT_PROVIDER=kling needs it)\n",
    )
    assert not (tmp_path / "klingbot.db").exists()
