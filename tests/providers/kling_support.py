"""Shared pieces of the Kling tests: the stand-in's MP4, settings pointing at it, a console session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.bootstrap import open_core
from bot.providers.base import Provider
from bot.settings import Settings
from tests.e2e.conftest import GenConsole, fast_settings
from tests.providers.kling_standin import KlingStandin
from tests.support.video import tiny_clip


def make_clip(path: Path) -> Path:
    """A real H.264 MP4 from the local renderer: 256x144, 1 s, 8 fps."""
    return tiny_clip(path, "kling")


def kling_settings(tmp_path: Path, standin: KlingStandin, **overrides) -> Settings:
    """Fast settings (waits x0.001) with the real Kling provider aimed at the stand-in."""
    values = dict(
        provider="kling",
        kling_access_key=standin.access_key,
        kling_secret_key=standin.secret_key,
        kling_base_url=standin.url,
    )
    values.update(overrides)
    return fast_settings(tmp_path, **values)


def kling_env(tmp_path: Path, standin: KlingStandin, **extra: str) -> dict[str, str]:
    """The same, as the environment of a real ``klingbot`` process."""
    env = {
        "KLINGBOT_DB": str(tmp_path / "klingbot.db"),
        "KLINGBOT_PROVIDER": "kling",
        "KLING_ACCESS_KEY": standin.access_key,
        "KLING_SECRET_KEY": standin.secret_key,
        "KLING_BASE_URL": standin.url,
        "KLINGBOT_TIME_SCALE": "0.001",
        "KLINGBOT_POLL_INTERVAL_S": "20",
        "KLINGBOT_STATUS_INTERVAL_S": "0.2",
    }
    env.update(extra)
    return env


@asynccontextmanager
async def kling_session(
    settings: Settings, *, provider: Provider | None = None
) -> AsyncIterator[GenConsole]:
    """The real core with the console chat as outbox, the runner started."""
    async with open_core(settings, provider=provider) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        yield gen
