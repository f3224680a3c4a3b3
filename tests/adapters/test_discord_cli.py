"""``klingbot run`` as a real process with both tokens: Telegram and Discord served at once."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from tests.adapters.conftest import TOKEN as TELEGRAM_TOKEN
from tests.adapters.discord_bot import TOKEN as DISCORD_TOKEN
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.test_telegram_cli import environment


@pytest.fixture
async def discord_api():
    async with DiscordStandIn(DISCORD_TOKEN) as standin:
        yield standin


async def test_run_serves_telegram_and_discord_in_one_process(tmp_path, api, discord_api):
    guild = discord_api.add_guild("Creators")
    alice = guild.add_member("alice", locale="zh-CN")
    env = environment(
        tmp_path,
        TELEGRAM_TOKEN=TELEGRAM_TOKEN,
        TELEGRAM_BASE_URL=api.base_url,
        DISCORD_TOKEN=DISCORD_TOKEN,
        DISCORD_API_BASE=discord_api.api_base,
        DISCORD_GATEWAY_URL=discord_api.gateway_url,
        DISCORD_GUILD_IDS=guild.id,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "-v", "run",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await api.wait_for("deleteWebhook", timeout=60)  # Telegram polling is starting
        await discord_api.wait_until(
            lambda: discord_api.ready and guild.id in discord_api.commands, timeout=60
        )
        member = {"id": 1001, "is_bot": False, "first_name": "Bob", "language_code": "en"}
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
        asked = alice.slash("balance")
        reply = await api.wait_for("sendMessage", chat_id=1001, timeout=60)
        assert reply.params["text"] == "Your balance: 0 credits (¥0.00)."
        await discord_api.wait_until(lambda: asked.original is not None, timeout=60)
        assert asked.original.content == "你的余额：0 灵感值（¥0.00）。"
        assert asked.original.ephemeral
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Telegram bot @klingbot_test_bot is up (polling)" in log
    assert "Discord bot klingbot" in log and "is up (1 servers)" in log
    assert "opening the console" not in log and stdout == b""
    for secret in (DISCORD_TOKEN, DISCORD_TOKEN.rpartition(".")[2], TELEGRAM_TOKEN):
        assert secret not in log


async def test_run_with_a_refused_discord_token(tmp_path, discord_api):
    env = environment(
        tmp_path,
        DISCORD_TOKEN="MTIz.wrong.token-that-the-stand-in-refuses",
        DISCORD_API_BASE=discord_api.api_base,
        DISCORD_GATEWAY_URL=discord_api.gateway_url,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "klingbot: Discord refused DISCORD_TOKEN" in stderr.decode()
    assert "token-that-the-stand-in-refuses" not in stderr.decode()
