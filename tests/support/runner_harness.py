"""The job runner's test harness: the real core on SQLite, a scripted provider, virtual time.

The console chat is the member's side, a real SQLite file holds jobs and
money, and :class:`~tests.e2e.scripted_provider.ScriptedProvider` plays the
external video service. :func:`harness` gives the runner a
:class:`~tests.support.clock.VirtualTime`: its ``sleep`` moves a virtual
clock instead of waiting, so backoffs, poll intervals, timeouts and status
throttling take no real time and always come out the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from app.bootstrap import open_core
from bot.commands import ChatRef
from bot.deps import Deps
from bot.jobs.runner import JobRunner
from bot.jobs.store import JobStore
from bot.replies import Reply
from bot.settings import Settings
from storage.audit import audit
from tests.e2e.conftest import ChatsById, GenConsole, fast_settings
from tests.e2e.scripted_provider import Script, ScriptedProvider
from tests.support.clock import VirtualTime

GUARD_S = 10.0
"""Real seconds any single wait may take before the test fails instead of hanging."""


@dataclass(frozen=True)
class Shown:
    """One message the runner sent or edited, as the member read it."""

    kind: str  # "send" or "edit"
    chat: str
    message: str
    text: str
    video: Path | None
    at: float  # virtual monotonic seconds (0 without virtual time)


class RecordingChats(ChatsById):
    """The console outbox, recording what the runner showed; video uploads and sends can fail.

    This plays the chat platform, like ``ChatsById`` does: ``video_failures``
    uploads raise first, as a flaky platform API would (``refused_at``: when,
    in virtual seconds), and with ``hold_queued`` set a "queued" status
    message is held on the wire until the event is set; with ``hold_uploads``
    set an upload is held the same way (``uploading`` says one is).
    """

    def __init__(self, chats: dict, time: VirtualTime | None) -> None:
        super().__init__()
        self.chats = chats
        self.time = time
        self.shown: list[Shown] = []
        self.video_failures = 0
        self.failed_uploads = 0
        self.hold_queued: asyncio.Event | None = None
        self.holding = asyncio.Event()
        self.refused_at: list[float] = []
        self.refused = asyncio.Event()
        self.hold_uploads: asyncio.Event | None = None
        self.uploading = asyncio.Event()
        self.uploaded: list[Path] = []
        self.upload_limit: int | None = None
        """Bytes a clip may have here (None: any); a larger one is "too large" (``fits``)."""

    def _text(self, chat: ChatRef, reply: Reply) -> str:
        return self.chats[chat.id].translate.reply(reply).text

    def _at(self) -> float:
        return self.time.monotonic() if self.time else 0.0

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        if reply.video is not None and self.video_failures > 0:
            self.video_failures -= 1
            self.failed_uploads += 1
            self.refused_at.append(self._at())
            self.refused.set()
            raise ConnectionError("upload failed: 502 Bad Gateway")
        if reply.video is not None and self.hold_uploads is not None:
            self.uploading.set()
            await self.hold_uploads.wait()
        text = self._text(chat, reply)
        if self.hold_queued is not None and "queued, position" in text:
            self.holding.set()
            await self.hold_queued.wait()
        message = await super().send(chat, reply, locale)
        if reply.video is not None:
            self.uploaded.append(reply.video)
        self.shown.append(Shown("send", chat.id, message, text, reply.video, self._at()))
        return message

    def fits(self, chat: ChatRef, size_bytes: int) -> bool:
        return self.upload_limit is None or size_bytes <= self.upload_limit

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        await super().edit(chat, message_id, reply, locale)
        self.shown.append(
            Shown("edit", chat.id, message_id, self._text(chat, reply), reply.video, self._at())
        )

    def versions(self, chat: str, message: str) -> list[Shown]:
        """Every version of one message, first the send, then each edit."""
        return [s for s in self.shown if s.chat == chat and s.message == message]


class Harness(GenConsole):
    """A console tester whose runner uses the scripted provider (and virtual time)."""

    def __init__(self, settings: Settings, deps, provider: ScriptedProvider, time) -> None:
        super().__init__(settings, deps)
        self.provider = provider
        self.time = time
        self.router = RecordingChats(self.router.chats, time)
        deps.generation.outboxes.register("console", self.router)

    @property
    def runner(self) -> JobRunner:
        return self.deps.generation.runner

    async def settle(self) -> None:
        await asyncio.wait_for(self.runner.idle(), GUARD_S)

    async def balance(self, chat) -> str:
        return await self.push(chat, "/balance")

    async def quote(self, chat, prompt: str) -> str:
        return await self.push(chat, f"/gen sample {prompt}")

    async def order(self, chat, prompt: str, tier: str = "Standard ·") -> str:
        """Ask for a quote and press a tier: what the member saw after pressing."""
        await self.quote(chat, prompt)
        return await self.push(chat, self.button(tier, chat))

    async def job(self, prompt: str):
        [job] = [
            j for j in await self.deps.generation.store.jobs_of(None, 100) if j.prompt == prompt
        ]
        return job

    async def entries(self, job) -> list[str]:
        """The ledger entry kinds of the job's hold, oldest first."""
        history = await self.deps.ledger.history(job.user, 1000)
        return [e.kind for e in sorted(history, key=lambda e: e.seq) if e.hold_id == job.job_id]

    async def status(self, prompt: str) -> list[Shown]:
        """The versions of the job's status message."""
        job = await self.job(prompt)
        assert job.status_message is not None, f"job {job.short_id} has no status message"
        return self.router.versions(job.chat.id, job.status_message)

    async def audit(self) -> list[str]:
        return await audit(self.deps.ledger.db)


@asynccontextmanager
async def harness(
    tmp_path: Path,
    provider: ScriptedProvider,
    *,
    virtual: bool = True,
    time: VirtualTime | None = None,
    runner: dict | None = None,
    store: Callable[[JobStore], JobStore] | None = None,
    **settings_values,
) -> AsyncIterator[Harness]:
    """The core on a real SQLite file in ``tmp_path``, with ``provider`` as the video service.

    ``virtual``: the runner gets the virtual clock's ``sleep`` and ``monotonic`` (and
    the core its wall clock), with real-life pacing (time_scale 1, polls every 2 s,
    status edits at most every 3 s) unless ``settings_values`` say otherwise;
    ``runner`` overrides RunnerSettings fields the Settings do not expose; ``time``
    replaces the virtual clock (e.g. a :class:`~tests.support.clock.GatedTime`); ``store``
    turns the wired job store into the one the runner and the handlers use (a
    store whose writes fail on cue, for instance). Without
    ``virtual`` the runner is exactly the one ``open_core`` wires, on ``fast_settings``.
    """
    if not virtual:
        settings = fast_settings(tmp_path, **settings_values)
        async with open_core(settings, provider=provider) as deps:
            if runner or store:
                raise ValueError("runner and store overrides need virtual=True")
            gen = Harness(settings, deps, provider, None)
            await deps.generation.runner.start()
            yield gen
        return
    values = dict(
        db=tmp_path / "klingbot.db",
        time_scale=1.0,
        status_interval_s=3.0,
        poll_interval_s=2.0,
        max_open_quotes=1000,  # no flood limits: these tests make many quotes a minute
        quotes_per_minute=1000,
    )
    values.update(settings_values)
    settings = Settings(**values)
    time = time or VirtualTime()
    async with open_core(settings, clock=time, provider=provider) as deps:
        wired_store = deps.generation.runner.store
        job_store = store(wired_store) if store else wired_store
        deps = on_virtual_time(deps, time, store=job_store, **(runner or {}))
        job_runner = deps.generation.runner
        gen = Harness(settings, deps, provider, time)
        await job_runner.start()
        try:
            yield gen
        finally:
            await job_runner.stop()


def on_virtual_time(
    deps: Deps, time: VirtualTime, *, store: JobStore | None = None, **runner_settings: object
) -> Deps:
    """``deps`` whose job runner sleeps and reads time on ``time`` (open_core's is not started).

    ``store`` replaces the job store (of the runner and the handlers);
    ``runner_settings`` override :class:`~bot.jobs.limits.RunnerSettings` fields.
    """
    assert deps.generation is not None
    wired = deps.generation.runner
    job_store = store or wired.store
    job_runner = JobRunner(
        store=job_store,
        provider=wired.provider,
        outbox=wired.outbox,
        catalog=wired.catalog,
        clock=time,
        waits=wired.waits,
        clips_dir=wired.clips_dir,
        settings=replace(wired.settings, **runner_settings),  # type: ignore[arg-type]
        links=wired.links,
        sleep=time.sleep,
        monotonic=time.monotonic,
    )
    return replace(deps, generation=replace(deps.generation, runner=job_runner, store=job_store))


def service(tiny_clip: Path, default: Script | None = None) -> ScriptedProvider:
    return ScriptedProvider(tiny_clip, default)
