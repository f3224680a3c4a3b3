"""Fixtures: the Bot API stand-in, and the production Telegram application polling it.

The application is the one ``klingbot run`` builds (``build_application``),
on a real database with the fast generation settings of the e2e tests. Its
flood control runs on a virtual clock (``tests.support.clock``): every wait
it decides on is recorded and passes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from telegram.ext import Application

from adapters.telegram import TelegramAdapter, build_application, running
from app.bootstrap import open_core
from bot.commands import UserRef
from bot.deps import Deps
from bot.providers.base import Provider
from tests.adapters.standin import BotApiStandIn, Member
from tests.e2e.conftest import fast_settings
from tests.support.clock import GatedTime, VirtualTime  # noqa: F401  (GatedTime: re-exported)

TOKEN = "123456789:AAH-test-token-for-the-stand-in-only"
GROUP = -1001234567890
MODERATOR_ID = 4242


@dataclass
class TelegramBot:
    """The running bot, the stand-in it talks to, and the core behind it."""

    api: BotApiStandIn
    deps: Deps
    adapter: TelegramAdapter
    time: VirtualTime
    application: Application

    def member(self, user_id: int, name: str, username: str | None = None, lang: str = "en"):
        return Member(self.api, user_id, name, username, lang)

    async def balance(self, user_id: int) -> int:
        wallet = await self.deps.ledger.wallet(UserRef("telegram", str(user_id)))
        return wallet.balance if wallet else 0

    async def settle(self) -> None:
        await asyncio.wait_for(self.deps.generation.runner.idle(), 60)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until the adapter is quiet: every update pushed so far fetched and handled,
        and every reply and status edit it started has left.

        Replies leave from background tasks, so "nothing was sent" is only
        true once this returns. (It reads PTB's set of tasks made by
        ``Application.create_task``, which has no public accessor.)
        """
        application = self.application

        def busy() -> list[asyncio.Task]:
            tasks = [
                *getattr(application, "_Application__create_task_tasks", ()),
                *self.adapter.handlers._sending,
                *self.adapter.outbox._editors.values(),
            ]
            return [task for task in tasks if not task.done()]

        async def quiet() -> None:
            while True:
                if application.updater is not None:
                    await self.api.acknowledged(timeout)
                await application.update_queue.join()
                if pending := busy():
                    await asyncio.wait(pending)
                    continue
                if not self.api.updates or application.updater is None:
                    return

        await asyncio.wait_for(quiet(), timeout)


@pytest.fixture
async def api() -> AsyncIterator[BotApiStandIn]:
    async with BotApiStandIn(TOKEN) as standin:
        standin.add_chat(GROUP)  # the bot is in the moderators' group
        yield standin


@asynccontextmanager
async def telegram_bot(
    tmp_path: Path,
    api: BotApiStandIn,
    *,
    clock: VirtualTime | None = None,
    provider: Provider | None = None,
    settings_overrides: dict[str, object] | None = None,
    rewire: Callable[[Deps], Deps] | None = None,
    **overrides,
) -> AsyncIterator[TelegramBot]:
    """The production application, polling the stand-in, with the job runner started.

    ``provider`` replaces the one the settings name (a scripted service, for speed).
    ``overrides`` and ``settings_overrides`` both go to the settings; the latter
    also takes names that clash with this function's (the ``provider`` setting).
    ``rewire`` changes the core before the application is built (a job runner
    on virtual time, for instance). The stand-in counts its group minutes on
    ``clock`` too, so the flood control's waits pass at once and a message let
    through too early is still a 429.
    """
    values = dict(
        telegram_token=TOKEN,
        telegram_base_url=api.base_url,
        telegram_base_file_url=api.base_file_url,
        telegram_admin_chats=(GROUP,),
        moderators=(UserRef("telegram", str(MODERATOR_ID)),),
    )
    values.update(overrides)
    values.update(settings_overrides or {})
    settings = fast_settings(tmp_path, **values)
    clock = clock or VirtualTime(monotonic_start=1_000.0)
    api.flood_clock = clock.monotonic  # the group minutes run on the flood control's clock
    async with open_core(settings, provider=provider) as deps:
        deps = rewire(deps) if rewire else deps
        application = build_application(settings, deps, timing=clock.timing())
        async with running(application, poll_timeout_s=5) as adapter:
            await deps.generation.runner.start()
            try:
                yield TelegramBot(api, deps, adapter, clock, application)
            finally:
                await deps.generation.runner.stop()


@pytest.fixture
async def telegram(tmp_path: Path, api: BotApiStandIn) -> AsyncIterator[TelegramBot]:
    async with telegram_bot(tmp_path, api) as bot:
        yield bot
