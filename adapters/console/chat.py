"""The console chat: one line in, the bot's messages out.

Buttons print as ``[1] label``; typing the number presses it. Numbers keep
counting up for the whole session, so a button of an earlier message can
still be pressed, as in a real chat. Lines come from any async iterator, so
the same class serves a terminal, a pipe and the end-to-end tests.

The chat is also the console's :class:`~bot.ports.Outbox`: job status
messages and finished clips arrive through it while you type, and a clip
prints as the path of its MP4 file.
"""

from __future__ import annotations

import getpass
import itertools
import os
from collections.abc import AsyncIterable, Callable
from importlib import resources
from pathlib import Path

from bot.commands import Caller, ChatRef, Command, ImageInput, UserRef
from bot.deps import Deps
from bot.errors import UserError
from bot.i18n import Translator, resolve_locale
from bot.media import MAX_IMAGE_BYTES
from bot.parsing import parse_gen
from bot.ports import Outbox
from bot.replies import Reply, say
from bot.service import respond, respond_to_action, respond_to_text

LOCAL_USER = "local"
"""The console's own user: whoever owns the terminal, and so a moderator."""

SAMPLE = "sample"
"""``/gen sample <prompt>`` uses the picture shipped with the bot."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".bmp", ".tif", ".tiff")


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
        chat=ChatRef("console", user_id),
    )


def sample_image() -> bytes:
    """The JPEG shipped with the bot for a first ``/gen``."""
    return resources.files("bot.assets").joinpath("sample.jpg").read_bytes()


def read_image_argument(token: str) -> ImageInput | None:
    """The image a ``/gen`` line names first: ``sample``, a file path, or none (text only)."""
    if token == SAMPLE:
        return ImageInput(sample_image(), "sample.jpg")
    path = Path(token).expanduser()
    looks_like_path = "/" in token or token.lower().endswith(_IMAGE_SUFFIXES)
    if not looks_like_path and not path.is_file():
        return None
    try:
        with path.open("rb") as file:
            data = file.read(MAX_IMAGE_BYTES + 1)  # enough to know it is too big
    except FileNotFoundError:
        raise UserError("console.no_such_file", path=token[:200]) from None
    except OSError:
        raise UserError("console.unreadable_file", path=token[:200]) from None
    return ImageInput(data, path.name)


def parse_console_gen(rest: str) -> Command:
    """``/gen <sample|path> [--duration 10] [--negative "..."] prompt`` (the image is optional)."""
    first, _, after = rest.strip().partition(" ")
    image = read_image_argument(first) if first else None
    return parse_gen(after if image is not None else rest, image)


class ConsoleChat(Outbox):
    """A chat session between one console user and the bot."""

    def __init__(self, deps: Deps, caller: Caller, write: Callable[[str], None]) -> None:
        self.deps = deps
        self.caller = caller
        self.write = write
        self.translate = Translator(caller.locale)
        self._buttons: dict[int, tuple[str, str, str]] = {}  # number -> (message, action, label)
        self._button_numbers = itertools.count(1)
        self._message_numbers = itertools.count(1)
        self._request_numbers = itertools.count(1)
        self._session = os.urandom(4).hex()

    async def run(self, lines: AsyncIterable[str]) -> None:
        """Answer every line; when the input ends, wait for running jobs to finish."""
        async for line in lines:
            await self.send_line(line)
        if self.deps.generation is not None:
            await self.deps.generation.runner.idle()

    async def send_line(self, line: str) -> None:
        """The user typed ``line``: a command, or a button number."""
        stripped = line.strip()
        if not stripped:
            return
        request_id = f"console:{self._session}:{next(self._request_numbers)}"
        if stripped.isascii() and stripped.isdigit():
            await self._press(int(stripped), request_id)
            return
        command, _, rest = stripped.partition(" ")
        if command.lower() == "/gen":
            replies = await respond(
                lambda: parse_console_gen(rest), self.caller, self.deps, request_id=request_id
            )
        else:
            replies = await respond_to_text(line, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply)

    def live_buttons(self) -> dict[int, tuple[str, str, str]]:
        """Buttons that can still be pressed: number -> (message id, action, label)."""
        return dict(self._buttons)

    async def press_action(self, message: str, action: str) -> None:
        """Press a button this user sees in a shared chat (tests: someone else's message)."""
        request_id = f"console:{self._session}:{next(self._request_numbers)}"
        replies = await respond_to_action(action, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply, replace=message if reply.edit else None)

    async def _press(self, number: int, request_id: str) -> None:
        if number not in self._buttons:
            self._show(say("error.stale_button"))
            return
        message, action, _ = self._buttons[number]
        replies = await respond_to_action(action, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply, replace=message if reply.edit else None)

    # --- Outbox: messages the runner sends on its own ---------------------------

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Print a new message; its number is the id used for later edits."""
        return self._show(reply)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Print the new version of message ``message_id``."""
        self._show(reply, replace=message_id)

    # --- printing -------------------------------------------------------------------

    def _show(self, reply: Reply, *, replace: str | None = None) -> str:
        """Print a message, or a new version of message ``replace``; return its id."""
        rendered = self.translate.reply(reply)
        if replace is not None:
            message = replace
            self.write(f"~ message {message} edited:")
            self._buttons = {k: v for k, v in self._buttons.items() if v[0] != message}
        else:
            message = str(next(self._message_numbers))
        self.write(rendered.text)
        if rendered.video is not None:
            self.write(f"  🎞️ {rendered.video}")
        for label, action in rendered.buttons:
            button = next(self._button_numbers)
            self._buttons[button] = (message, action, label)
            self.write(f"  [{button}] {label}")
        return message
