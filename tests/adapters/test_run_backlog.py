"""``klingbot run`` as a real process: presses made while the bot was down run once each.

The first run serves Telegram; two members ask for quotes, and the bot is
stopped. While it is down they press a tier: the Bot API stand-in keeps the
presses for the next ``getUpdates``. The second run serves Telegram and
Discord, and the Discord stand-in holds its READY back, so Telegram hands
over the backlog while Discord is still connecting. Each press must be
queued (the member sees the queued status) but nothing may start before the
runner does, and once Discord is ready each job is started once, submitted
once and delivered once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import sys

from tests.adapters.conftest import TOKEN as TELEGRAM_TOKEN
from tests.adapters.discord_bot import TOKEN as DISCORD_TOKEN
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.standin import Member
from tests.adapters.test_telegram_cli import environment

MEMBERS = {1001: "Alice", 1002: "Bob"}


class Run:
    """One ``klingbot -v run`` process, its stderr read line by line as it comes."""

    def __init__(self, env: dict[str, str], cwd) -> None:
        self.env, self.cwd = env, cwd
        self.lines: list[str] = []
        self.changed = asyncio.Condition()

    async def __aenter__(self) -> Run:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "-v", "run",
            cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()

    async def line(self, pattern: str, timeout: float = 60) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: any(re.search(pattern, x) for x in self.lines)),
                timeout,
            )

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 60)
        await self.reader
        return status

    async def __aexit__(self, *exc: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self.reader

    def log(self) -> str:
        return "\n".join(self.lines)


async def test_presses_made_while_the_bot_was_down_run_once_each(tmp_path, api):
    base = environment(
        tmp_path,
        TELEGRAM_TOKEN=TELEGRAM_TOKEN,
        TELEGRAM_BASE_URL=api.base_url,
        KLINGBOT_WELCOME_CREDITS="500",
        KLINGBOT_TIERS='{"master": {"resolution": 360}}',  # a quick render
        KLINGBOT_TIME_SCALE="0.02",  # Master's ~200 s wait: ~4 s, long enough to overlap
        KLINGBOT_STATUS_INTERVAL_S="0.2",
    )
    members = [Member(api, user_id, name) for user_id, name in MEMBERS.items()]
    quotes = {}
    async with Run(base, tmp_path) as first:
        await first.line(r"Telegram bot @\w+ is up")
        for member in members:
            member.send("/gen a robot waves to the camera")
        for member in members:
            quote = await api.wait_for("sendMessage", chat_id=member.id, timeout=60)
            quotes[member.id] = quote.result
        assert await first.stop() == 0, first.log()

    # The bot is down: the members press Master; Telegram keeps the presses.
    for member in members:
        member.press(quotes[member.id], "Master")

    async with DiscordStandIn(DISCORD_TOKEN) as discord_api:
        guild = discord_api.add_guild("Creators")
        discord_api.identify_gate = asyncio.Event()  # Discord is slow to become ready
        env = {
            **base,
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_BASE": discord_api.api_base,
            "DISCORD_GATEWAY_URL": discord_api.gateway_url,
            "DISCORD_GUILD_IDS": guild.id,
        }
        async with Run(env, tmp_path) as second:
            for member in members:  # the backlog is handled while Discord connects
                await api.wait_for(
                    "editMessageText",
                    chat_id=member.id,
                    where=lambda call: "Master chosen" in call.params["text"],
                    timeout=60,
                )
                queued = api.of("sendMessage", chat_id=member.id)[-1]
                assert "queued, position" in queued.params["text"], queued.params["text"]
            assert not discord_api.ready
            assert " starts in state " not in second.log()  # nothing before the runner
            with sqlite3.connect(tmp_path / "k.db") as db:
                rows = db.execute("SELECT state, attempts FROM jobs").fetchall()
            assert rows == [("held", 0), ("held", 0)]

            discord_api.identify_gate.set()  # Discord is ready: the runner starts
            for member in members:
                await api.wait_for("sendVideo", chat_id=member.id, timeout=120)
            assert await second.stop() == 0, second.log()

    log = second.log()
    with sqlite3.connect(tmp_path / "k.db") as db:
        jobs = db.execute("SELECT job_id, state, attempts FROM jobs ORDER BY job_id").fetchall()
        holds = db.execute("SELECT state FROM holds").fetchall()
    assert len(jobs) == 2 and holds == [("captured",), ("captured",)]
    for job_id, state, attempts in jobs:
        assert (state, attempts) == ("delivered", 1), (job_id, state, attempts)  # one submission
        assert len(re.findall(rf"job {job_id[:8]} starts in state", log)) == 1, log
    assert "submitting it again" not in log
    for member in members:
        assert len(api.of("sendVideo", chat_id=member.id)) == 1  # one delivery each
