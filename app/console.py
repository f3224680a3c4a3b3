"""``klingbot console`` (and ``klingbot run`` without tokens): the chat in this terminal.

The console holds the runner lease and runs jobs like ``klingbot run``.
It ends two ways:

- end of input (Ctrl-D, or the end of a pipe): it waits for running jobs
  to finish, so a piped script sees its clips;
- Ctrl-C or SIGTERM: it stops at once. Running jobs stay in the database
  and resume at the next start, as after ``klingbot run`` stops; nothing is
  refunded or charged twice. A second signal, or still stopping
  :data:`STOP_DEADLINE_S` later, exits immediately (status 1).

Standard input is read by the event loop (:class:`~adapters.console.terminal.StdinLines`),
never by a thread, so nothing is left waiting for a line once the console stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from adapters.console import ConsoleChat, console_caller
from adapters.console.terminal import StdinLines
from app.backend import runner_lease_for
from app.bootstrap import CONSOLE_TIME_SCALE, open_core
from app.serve import ShutdownDeadline
from bot.i18n import Translator
from bot.replies import text
from bot.settings import Settings

STOP_DEADLINE_S = 1.5
"""Seconds from Ctrl-C to a forced exit: stopping takes a fraction of this."""


async def run_console(settings: Settings, user: str | None, lang: str | None) -> int:
    """Chat until the input ends (waiting for running jobs) or a signal stops the console."""
    # The console runs jobs: on SQLite it refuses a database whose runner is alive (exit 2).
    runner_lease = runner_lease_for(settings)
    async with open_core(
        settings, default_time_scale=CONSOLE_TIME_SCALE, runner_lease=runner_lease
    ) as deps:
        generation = deps.generation
        assert generation is not None
        chat = ConsoleChat(deps, console_caller(user, lang), lambda line: print(line, flush=True))
        generation.outboxes.register("console", chat)
        await generation.runner.start()
        on_terminal = sys.stdin.isatty()
        translate = Translator(chat.caller.locale)
        if on_terminal:
            print(translate(text("cli.console_hint")), flush=True)
        lines = StdinLines(prompt=on_terminal)

        async def converse() -> None:
            async for line in lines:
                await chat.send_line(line)
            await generation.runner.idle()  # end of input: let running jobs finish

        stopped = await _until_signal(converse())
        lines.close()
        if stopped and on_terminal:
            print(f"\n{translate(text('cli.console_stopped'))}", flush=True)
    return 0


async def _until_signal(session) -> bool:
    """Run ``session`` until it ends or SIGINT/SIGTERM arrives; True if a signal stopped it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    deadline = ShutdownDeadline(STOP_DEADLINE_S)

    def on_signal() -> None:
        if stop.is_set():
            os._exit(1)  # a second signal: stop now (jobs resume at the next start)
        stop.set()
        deadline.arm()

    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, on_signal)
    task = asyncio.ensure_future(session)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # waiting for a line or for jobs: nothing to finish
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return stop.is_set()
    finally:
        stopping.cancel()
        for number in signals:
            loop.remove_signal_handler(number)
        # The deadline stays armed until the process exits: closing the core is bounded too.
