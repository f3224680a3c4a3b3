"""End-to-end fixtures: the console adapter on a real SQLite file, and the real CLI process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import pty
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from adapters.console import ConsoleChat, console_caller
from app.bootstrap import open_core
from bot.commands import ChatRef
from bot.ports import Outbox
from bot.replies import Reply
from bot.settings import Settings
from tests.support.env import process_environment


class ConsoleTester:
    """Errbot-style test backend: push lines in, pop what the bot printed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.output: list[str] = []

    def chat(self, deps, user: str | None = None, lang: str | None = "en") -> ConsoleChat:
        return ConsoleChat(deps, console_caller(user, lang), self.output.append)

    async def push(self, chat: ConsoleChat, line: str) -> str:
        start = len(self.output)
        await chat.send_line(line)
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
    *args: str,
    cwd: Path,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 60,
    prefix: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
    terminal: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``klingbot ARGS`` as a real process (``python -m app``) in ``cwd``.

    ``prefix`` runs it under another program (``unshare ...``); ``preexec_fn``
    runs in the child before it starts (dropping privileges). ``terminal``
    gives it a pseudo-terminal as standard input, with ``stdin`` typed into it
    before it starts and Ctrl-D after (stdout and stderr stay pipes).
    """
    command = [*prefix, sys.executable, "-m", "app", *args]
    options = dict(
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=process_environment(env),
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )
    if not terminal:
        return subprocess.run(command, input=stdin, **options)
    with typed_terminal(stdin.encode("utf-8")) as terminal:
        return subprocess.run(command, stdin=terminal.tty, **options)


def run_in_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``klingbot ARGS`` through the CLI's ``main()`` in this process, as :func:`run_cli` sees it.

    The same environment (the bot's settings scrubbed, ``LANG``, ``env``),
    working folder, exit status, stdout and stderr, without a process's
    start-up (half a second of CPU each): for a file of many short commands,
    while a real process still runs each command elsewhere. Not for commands
    that read standard input (the console chat), nor inside a running event loop.
    """
    from app.cli import main

    environment, folder = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(process_environment(env))
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exit:  # argparse's usage errors
                status = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)
        for handler in list(root.handlers):  # main() logs to the stderr it was given: undo that
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess(["klingbot", *args], status, out.getvalue(), err.getvalue())


class Terminal:
    """A pseudo-terminal with echo off: ``tty`` is a process's standard input, ``type`` types."""

    def __init__(self) -> None:
        self.main, self.tty = pty.openpty()
        settings = termios.tcgetattr(self.tty)
        settings[3] &= ~termios.ECHO  # only the process's output, not the typing echoed back
        termios.tcsetattr(self.tty, termios.TCSANOW, settings)

    def type(self, typed: bytes) -> None:
        """Type ``typed`` (lines end in \\n; b"\\x04" at a line's start is Ctrl-D)."""
        for line in typed.splitlines(keepends=True):
            os.write(self.main, line)

    def close(self) -> None:
        os.close(self.main)
        os.close(self.tty)


@contextlib.contextmanager
def typed_terminal(typed: bytes, *, end: bool = True) -> Iterator[Terminal]:
    """A :class:`Terminal` with ``typed`` (then Ctrl-D, if ``end``) queued before it is read."""
    terminal = Terminal()
    try:
        terminal.type(typed + (b"\x04" if end else b""))
        yield terminal
    finally:
        terminal.close()


class ChatsById(Outbox):
    """Routes the runner's console messages to the chat of each console user."""

    def __init__(self) -> None:
        self.chats: dict[str, ConsoleChat] = {}

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        return await self.chats[chat.id].send(chat, reply, locale)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        await self.chats[chat.id].edit(chat, message_id, reply, locale)


class GenConsole(ConsoleTester):
    """A console tester with the job runner started and clips on disk."""

    def __init__(self, settings: Settings, deps) -> None:
        super().__init__(settings)
        self.deps = deps
        self.router = ChatsById()
        deps.generation.outboxes.register("console", self.router)

    def chat(self, deps=None, user: str | None = None, lang: str | None = "en") -> ConsoleChat:
        chat = super().chat(deps or self.deps, user, lang)
        self.router.chats[chat.caller.user.id] = chat
        return chat

    def button(self, label: str, chat: ConsoleChat | None = None, action: str = "") -> str:
        """The number of the newest live button whose label contains ``label``."""
        chats = [chat] if chat else list(self.router.chats.values())
        found = [
            (number, shown)
            for console in chats
            for number, shown in console.live_buttons().items()
            if label in shown[2] and shown[1].startswith(action)
        ]
        if not found:
            raise AssertionError(f"no live button {label!r} in:\n{self.transcript()}")
        return str(max(found)[0])

    async def press_as(self, presser: ConsoleChat, owner: ConsoleChat, number: str) -> str:
        """``presser`` presses button ``number`` of ``owner``'s message, as in a group chat."""
        message, action, _ = owner.live_buttons()[int(number)]
        return await self.press_action(presser, message, action)

    async def press_action(self, presser: ConsoleChat, message: str, action: str) -> str:
        """Press a button action directly, even after its message changed (a double click)."""
        start = len(self.output)
        await presser.press_action(message, action)
        return "\n".join(self.output[start:])

    def clips(self) -> list[Path]:
        return [
            Path(line.strip().removeprefix("🎞️ ")) for line in self.output if line.startswith("  🎞️ ")
        ]

    async def settle(self) -> None:
        await asyncio.wait_for(self.deps.generation.runner.idle(), 120)

    def transcript(self) -> str:
        return "\n".join(self.output)


def fast_settings(tmp_path: Path, **overrides) -> Settings:
    """Waits scaled down a thousandfold; status edits at most every 0.2 s.

    No flood limits: most tests ask for many quotes within one (virtual)
    minute to test something else. tests/e2e/test_floods.py and the
    adapters' flood tests pass the limits they test.
    """
    values = dict(
        db=tmp_path / "klingbot.db",
        time_scale=0.001,
        status_interval_s=0.2,
        poll_interval_s=20.0,
        max_open_quotes=1000,
        quotes_per_minute=1000,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def gen(tmp_path: Path) -> AsyncIterator[GenConsole]:
    settings = fast_settings(tmp_path)
    async with open_core(settings) as deps:
        tester = GenConsole(settings, deps)
        await deps.generation.runner.start()
        yield tester


@pytest.fixture(scope="module")
def remote_clip(tmp_path_factory) -> Path:
    """The small MP4 a scripted remote service hands over (recovery and runs-once tests)."""
    from bot.providers.local.render import RenderRequest, render_clip

    path = tmp_path_factory.mktemp("remote") / "clip.mp4"
    render_clip(RenderRequest(image=None, prompt="remote", height=360, duration_s=1, fps=8), path)
    return path
