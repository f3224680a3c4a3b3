"""Shared pieces of the Kling tests: the stand-in's MP4, settings pointing at it, a console session,
ordering a clip and waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.bootstrap import open_core
from bot.providers.base import Provider
from bot.settings import Settings
from storage.audit import audit
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


async def order(gen, chat, line: str, tier: str, topup: int | None = 300):
    """The member tops up (unless ``topup`` is None), asks for a quote and presses ``tier``."""
    if topup:
        await gen.push(chat, f"/topup me {topup}")
    await gen.push(chat, line)
    await gen.push(chat, gen.button(tier))
    [job, *_] = await gen.deps.generation.store.jobs_of(None, 1)
    return job


async def finish(gen, job):
    """The job once it is delivered, failed or cancelled, its messages sent."""
    runner = gen.deps.generation.runner
    await asyncio.wait_for(runner.settled(job.job_id), 30)
    await gen.settle()
    return await gen.deps.generation.store.get_job(job.job_id)


async def sound(gen) -> None:
    """The ledger audit passes and every job ended."""
    assert await audit(gen.deps.ledger.db) == []
    for job in await gen.deps.generation.store.jobs_of(None, 100):
        assert job.state in ("delivered", "failed", "cancelled"), job
