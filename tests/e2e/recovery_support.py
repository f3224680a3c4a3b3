"""Stand-ins for the outside world in the restart-recovery tests.

- :class:`RemoteService` plays a remote video service (Kling): its tasks
  live outside the bot, so they survive a restart when the same object is
  handed to the next ``open_core``; the test decides when a task finishes,
  and parks polls on asyncio events instead of sleeping.
- :class:`RefusingUploads` plays a chat platform whose uploads fail.
- :func:`session` opens the real core on a real SQLite file, with the
  console chat of the local user as the outbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.bootstrap import open_core
from bot.commands import ChatRef
from bot.jobs.model import Job
from bot.ports import Outbox
from bot.providers.base import GenerationRequest, Provider, ProviderError, TaskStatus
from bot.replies import Reply
from bot.settings import Settings
from tests.e2e.conftest import GenConsole
from tests.support.env import process_environment

PROMPT = "a robot plays piano"
GUARD_S = 30.0
"""Upper bound on any single wait; a healthy run needs a small fraction of it."""


class _Pass:
    def __await__(self):
        yield  # a bare yield hands the loop to every other ready task, once


async def let_others_run(times: int) -> None:
    """Give the event loop to the other ready tasks ``times`` times (no clock involved)."""
    for _ in range(times):
        await _Pass()


@dataclass
class RemoteTask:
    """One task as the remote service sees it."""

    request: GenerationRequest
    polls: int = 0
    done: bool = False
    cancelled: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    parked: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a poll found the task still running and is waiting for it to finish."""
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)


class RemoteService(Provider):
    """A remote service the test drives.

    ``running_polls`` polls of a task answer "running"; later polls wait until
    :meth:`finish` (like a long poll). ``hold_submits`` makes ``submit`` accept
    the task and then not answer until ``submit_gate`` is set (the reply is
    still on the wire when the bot stops or the member cancels).
    ``honest_cancel`` refuses to cancel a finished task; otherwise a cancel is
    accepted even when the clip just finished (the cancel and the completion
    crossed on the wire). ``cancel_yields`` delays the cancel's answer.
    """

    name = "scripted"

    def __init__(
        self,
        clip: Path,
        *,
        running_polls: int = 1,
        hold_submits: bool = False,
        honest_cancel: bool = True,
        cancel_yields: int = 0,
    ) -> None:
        self.clip = clip
        self.running_polls = running_polls
        self.honest_cancel = honest_cancel
        self.cancel_yields = cancel_yields
        self.tasks: dict[str, RemoteTask] = {}
        self.submits: list[str] = []
        self.polls = 0
        self.submit_parked = asyncio.Event()
        self.submit_gate = asyncio.Event()
        if not hold_submits:
            self.submit_gate.set()
        self.poll_parked = asyncio.Event()
        """Set when any poll starts waiting for its task to finish (clear it to wait again)."""

    async def submit(self, request: GenerationRequest) -> str:
        self.submits.append(request.external_id)
        self.tasks.setdefault(request.external_id, RemoteTask(request))
        if not self.submit_gate.is_set():
            self.submit_parked.set()
            await self.submit_gate.wait()
        return request.external_id

    async def poll(self, task_id: str) -> TaskStatus:
        task = self.tasks.get(task_id)
        if task is None:
            return TaskStatus("lost")
        task.polls += 1
        self.polls += 1
        if not task.done and task.polls <= self.running_polls:
            return TaskStatus("running", progress=10)
        if not task.done:
            task.parked.set()
            self.poll_parked.set()
            await task.finished.wait()
        return TaskStatus("succeeded", progress=100)

    async def fetch(self, task_id: str, destination: Path) -> Path:
        task = self.tasks.get(task_id)
        if task is None or not task.done:
            raise ProviderError(f"no clip for task {task_id}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, self.clip, destination)
        return destination

    async def cancel(self, task_id: str) -> bool:
        task = self.tasks[task_id]
        task.cancel_requested.set()
        await let_others_run(self.cancel_yields)
        if self.honest_cancel and task.done:
            return False
        task.cancelled = True
        return True

    async def close(self) -> None:
        """Nothing to stop: the tasks live at the service, not in this process."""

    def finish(self, task_id: str) -> None:
        """The service finished the clip."""
        task = self.tasks[task_id]
        task.done = True
        task.finished.set()


class RefusingUploads(Outbox):
    """A chat platform that takes text and edits but refuses every clip upload.

    With ``hang`` the first upload never answers, so the runner can be stopped mid-upload.
    """

    def __init__(self, inner: Outbox, *, hang: bool = False) -> None:
        self.inner = inner
        self.hang = hang
        self.refused = 0
        self.upload_started = asyncio.Event()
        self.refused_thrice = asyncio.Event()

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        if reply.video is not None:
            self.refused += 1
            if self.refused >= 3:
                self.refused_thrice.set()
            self.upload_started.set()
            if self.hang:
                await asyncio.Event().wait()
            raise ConnectionError("upload refused by the platform")
        return await self.inner.send(chat, reply, locale)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        await self.inner.edit(chat, message_id, reply, locale)


@asynccontextmanager
async def session(
    settings: Settings, *, provider: Provider | None = None
) -> AsyncIterator[GenConsole]:
    """One run of the bot on ``settings.db``; the runner is not started yet (see :func:`start`)."""
    async with open_core(settings, provider=provider) as deps:
        yield GenConsole(settings, deps)


async def order(gen: GenConsole, chat, tier: str = "Standard ·", topup: int | None = 100) -> Job:
    """Top up, ask for a quote, press ``tier``; return the job that press created."""
    if topup:
        await gen.push(chat, f"/topup me {topup}")
    await gen.push(chat, f"/gen sample {PROMPT}")
    await gen.push(chat, gen.button(tier))
    [job, *_] = await gen.deps.generation.store.jobs_of(None, 1)
    return job


async def wait(awaitable, timeout: float = GUARD_S):
    return await asyncio.wait_for(awaitable, timeout)


async def state_of(gen: GenConsole, job_id: str) -> str:
    job = await gen.deps.generation.store.get_job(job_id)
    assert job is not None
    return job.state


async def hold_entries(gen: GenConsole, hold_id: str) -> list[str]:
    """The kinds of the ledger entries of one hold, oldest first."""
    rows = await gen.deps.ledger.db.read(
        "SELECT kind FROM ledger WHERE hold_id = ? ORDER BY seq", (hold_id,)
    )
    return [row["kind"] for row in rows]


def cli_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment ``run_cli`` gives the real process, plus ``overrides``."""
    return process_environment(overrides)


async def start_console(cwd: Path, env: dict[str, str], stderr: Path):
    """``python -m app console`` with piped stdin and stdout; stderr goes to a file."""
    with stderr.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "console",
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )


async def read_until(process, wanted, seen: list[str], timeout: float = GUARD_S) -> str:
    """Read stdout lines into ``seen`` until one satisfies ``wanted``; return that line."""
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError("the console ended early:\n" + "\n".join(seen))
        line = raw.decode("utf-8").rstrip("\n")
        seen.append(line)
        if wanted(line):
            return line


async def press_tier(console, tier: str, seen: list[str]) -> None:
    """Wait for the quote's ``tier`` button in the console's output, then type its number."""
    button = await read_until(
        console, lambda line: line.startswith("  [") and f"] {tier} · " in line, seen
    )
    number = re.fullmatch(r"  \[(\d+)\] .*", button).group(1)
    console.stdin.write(f"{number}\n".encode())
    await console.stdin.drain()


async def kill_console(process) -> int | None:
    """SIGKILL the console if it still runs, close its pipes; return its exit status."""
    if process.returncode is None:
        os.kill(process.pid, signal.SIGKILL)
        await wait(process.wait(), 10)
    process.stdin.close()
    await wait(process.stdout.read(), 10)
    return process.returncode
