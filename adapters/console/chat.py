"""The console chat: one line in, the bot's messages out.

Buttons print as ``[1] label``; typing the number presses it. Numbers keep
counting up for the whole session, so a button of an earlier message can
still be pressed, as in a real chat. Lines come from any async iterator, so
the same class serves a terminal, a pipe and the end-to-end tests.
"""

from __future__ import annotations

import getpass
import itertools
import os
from collections.abc import AsyncIterable, Callable

from bot.commands import Caller, UserRef
from bot.i18n import Translator, resolve_locale
from bot.replies import Reply
from bot.service import Deps, respond_to_action, respond_to_text

LOCAL_USER = "local"
"""The console's own user: whoever owns the terminal, and so a moderator."""


def console_caller(name: str | None = None, locale: str | None = None) -> Caller:
    """The console user: ``local`` (a moderator) unless ``name`` picks someone else."""
    tag = locale or os.environ.get("LC_ALL") or os.environ.get("LANG")
    user_id = name or LOCAL_USER
    try:
        display = getpass.getuser() if user_id == LOCAL_USER else user_id
    except (KeyError, OSError):
        display = user_id
    return Caller(
        user=UserRef("console", user_id),
        display_name=display,
        username=user_id,
        locale=resolve_locale(tag),
        is_platform_admin=user_id == LOCAL_USER,
    )


class ConsoleChat:
    """A chat session between one console user and the bot."""

    def __init__(self, deps: Deps, caller: Caller, write: Callable[[str], None]) -> None:
        self.deps = deps
        self.caller = caller
        self.write = write
        self.translate = Translator(caller.locale)
        self._buttons: dict[int, tuple[int, str]] = {}  # number -> (message number, action)
        self._button_numbers = itertools.count(1)
        self._message_numbers = itertools.count(1)
        self._request_numbers = itertools.count(1)
        self._session = os.urandom(4).hex()

    async def run(self, lines: AsyncIterable[str]) -> None:
        """Answer every line until the input ends."""
        async for line in lines:
            await self.send(line)

    async def send(self, line: str) -> None:
        """The user typed ``line``: a command, or a button number."""
        stripped = line.strip()
        if not stripped:
            return
        request_id = f"console:{self._session}:{next(self._request_numbers)}"
        if stripped.isascii() and stripped.isdigit():
            await self._press(int(stripped), request_id)
            return
        replies = await respond_to_text(line, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply, edits=None)

    async def _press(self, number: int, request_id: str) -> None:
        if number not in self._buttons:
            self.write(self.translate.reply(_no_such_button()).text)
            return
        message, action = self._buttons[number]
        replies = await respond_to_action(action, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply, edits=message)

    def _show(self, reply: Reply, *, edits: int | None) -> None:
        rendered = self.translate.reply(reply)
        if rendered.edit and edits is not None:
            number = edits
            self.write(f"~ message {number} edited:")
            self._buttons = {k: v for k, v in self._buttons.items() if v[0] != number}
        else:
            number = next(self._message_numbers)
        self.write(rendered.text)
        for label, action in rendered.buttons:
            button = next(self._button_numbers)
            self._buttons[button] = (number, action)
            self.write(f"  [{button}] {label}")


def _no_such_button() -> Reply:
    from bot.replies import say

    return say("error.stale_button")
