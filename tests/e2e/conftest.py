"""End-to-end fixtures: the console adapter on a real SQLite file, and the real CLI process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console import ConsoleChat, console_caller
from bot.bootstrap import open_core
from bot.settings import Settings


class ConsoleTester:
    """Errbot-style test backend: push lines in, pop what the bot printed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.output: list[str] = []

    def chat(self, deps, user: str | None = None, lang: str | None = "en") -> ConsoleChat:
        return ConsoleChat(deps, console_caller(user, lang), self.output.append)

    async def push(self, chat: ConsoleChat, line: str) -> str:
        start = len(self.output)
        await chat.send(line)
        return "\n".join(self.output[start:])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=tmp_path / "klingbot.db")


@pytest.fixture
async def console(settings: Settings) -> AsyncIterator[tuple[ConsoleTester, object]]:
    tester = ConsoleTester(settings)
    async with open_core(settings) as deps:
        yield tester, deps


def run_cli(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``klingbot ARGS`` as a real process (``python -m bot``) in ``cwd``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KLINGBOT_")}
    environment.pop("TELEGRAM_TOKEN", None)
    environment.pop("DISCORD_TOKEN", None)
    environment.update({"LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment,
        timeout=timeout,
        check=False,
    )
