"""The console chat: one line in, the bot's messages out.

Buttons print as ``[1] label``; typing the number presses it. A button keeps
its number for as long as it works: a status message edited every few
seconds shows its Cancel under the same number each time. Each new number
is the smallest one free, so after a command its buttons are numbered from
1 and a piped script (``/price``, ``/gen sample a robot waves``, ``1``)
presses what it says. Buttons that only switch a view (``/price``'s 5 s / 10 s)
are retired by the next command typed; buttons that act on a quote or a job
live until their message changes. A number whose message changed is still
answered by the bot (``already chosen``, ``expired``, ``finished``) until the
next command frees it. Lines come from any async iterator, so the same class
serves a terminal, a pipe and the end-to-end tests.

Where the core's wording is Telegram's ("send a photo with /gen"), the console
shows its own (:data:`CONSOLE_LINES`: ``sample`` or a file path).

The chat is also the console's :class:`~bot.ports.Outbox`: job status
messages and finished clips arrive through it while you type, and a clip
prints as the path of its MP4 file.
"""

from __future__ import annotations

import getpass
import itertools
import os
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from bot.access import LOCAL_OPERATOR
from bot.commands import Caller, ChatRef, Command, ImageInput, Price, UserRef
from bot.deps import Deps
from bot.errors import UserError
from bot.i18n import Translator, resolve_locale
from bot.media import MAX_IMAGE_BYTES
from bot.parsing import parse_action, split_gen
from bot.ports import Outbox
from bot.replies import Reply, Text, say
from bot.service import respond, respond_to_action, respond_to_text

LOCAL_USER = LOCAL_OPERATOR.id
"""The console's own user: whoever owns the terminal, and so a moderator."""

SAMPLE = "sample"
"""``/gen sample <prompt>`` uses the picture shipped with the bot."""

CONSOLE_LINES = {
    "help.user_commands": "console.help_user",
    "quote.needs_image_omitted": "console.needs_image_omitted",
    "compare.too_few": "console.compare_too_few",
}
"""Core messages written for Telegram's photos, and their console wording (``sample``, a path)."""


def for_console(reply: Reply) -> Reply:
    """``reply`` with the console's wording where it differs from the core's."""
    if not any(line.key in CONSOLE_LINES for line in reply.lines):
        return reply
    lines = tuple(
        Text(CONSOLE_LINES[line.key], line.params) if line.key in CONSOLE_LINES else line
        for line in reply.lines
    )
    return replace(reply, lines=lines)


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".bmp", ".tif", ".tiff")


def _in(reply: Reply, locale: str) -> Reply:
    """A runner's message in the language of its job (the member's, when they chose one)."""
    return reply if reply.locale is not None else replace(reply, locale=locale)


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


MAX_PATH_BYTES = 4096
"""No file system takes a longer path: a longer word is prompt text, never a file name."""


def is_image_argument(word: str) -> bool:
    """Whether ``/gen``'s first argument names an image rather than starting the prompt.

    It does when it is ``sample``, names an existing file, or looks like a
    path (a path separator, a leading ``~``, an image extension). Nothing
    about a word can raise: a 255-byte Chinese prompt word is just a word.
    """
    if word == SAMPLE:
        return True
    if "/" in word or os.sep in word or word.startswith("~"):
        return True
    if word.lower().endswith(_IMAGE_SUFFIXES):
        return True
    if len(word.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or "\0" in word:
        return False
    return os.path.isfile(word)  # False on any OSError, such as a name too long


def read_image_argument(word: str) -> ImageInput:
    """The image ``word`` names: ``sample`` (the bundled picture) or a file, ``~`` expanded."""
    if word == SAMPLE:
        return ImageInput.of(sample_image(), "sample.jpg")
    shown = word[:200]
    try:
        path = Path(word).expanduser()
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            # Over the limit: its size says so, and the core refuses it by that size, unread.
            data = file.read(MAX_IMAGE_BYTES + 1) if size <= MAX_IMAGE_BYTES else b""
    except (FileNotFoundError, NotADirectoryError):
        raise UserError("console.no_such_file", path=shown) from None
    except IsADirectoryError:
        raise UserError("console.is_a_folder", path=shown) from None
    except (OSError, ValueError, RuntimeError):  # too long, permissions, no home for ~user
        raise UserError("console.unreadable_file", path=shown) from None

    async def fetch() -> bytes:
        return data

    # A file that grew while read says so by its length (MAX_IMAGE_BYTES + 1 at most).
    return ImageInput(fetch, path.name, max(size, len(data)))


def parse_console_gen(rest: str, *, compare: bool = False) -> Command:
    """``/gen [sample|path] prompt`` with ``--duration 5|10`` and ``--negative "..."`` anywhere.

    Arguments may be quoted (``"my sun.jpg"``); the image is optional (text
    only offers the tiers that need none). ``/compare`` takes the same
    arguments (``compare``).
    """
    arguments = split_gen(rest)
    words = arguments.words
    if words and is_image_argument(words[0].value):
        command = arguments.gen(read_image_argument(words[0].value), skip=1)
    else:
        command = arguments.gen(None)
    return replace(command, compare=compare)


@dataclass(frozen=True, slots=True)
class _Button:
    message: str
    action: str
    label: str
    lasting: bool


def _lasting(action: str) -> bool:
    """Whether a button acts on something (a quote, a job) rather than switching a view."""
    try:
        return not isinstance(parse_action(action), Price)
    except UserError:
        return True


class ConsoleChat(Outbox):
    """A chat session between one console user and the bot."""

    def __init__(self, deps: Deps, caller: Caller, write: Callable[[str], None]) -> None:
        self.deps = deps
        self.caller = caller
        self.write = write
        self.translate = Translator(caller.locale)
        self._translators: dict[str, Translator] = {}
        """Languages other than the console's that a member chose (/settings)."""
        self._live: dict[int, _Button] = {}
        self._retired: dict[int, _Button] = {}  # message changed; still answered until freed
        self._highest_shown = 0
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
        self._new_command()
        command, _, rest = stripped.partition(" ")
        if command.lower() in ("/gen", "/compare"):
            compare = command.lower() == "/compare"
            replies = await respond(
                lambda: parse_console_gen(rest, compare=compare),
                self.caller,
                self.deps,
                request_id=request_id,
            )
        else:
            replies = await respond_to_text(line, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply)

    def live_buttons(self) -> dict[int, tuple[str, str, str]]:
        """Buttons that can still be pressed: number -> (message id, action, label)."""
        return {n: (b.message, b.action, b.label) for n, b in sorted(self._live.items())}

    async def press_action(self, message: str, action: str) -> None:
        """Press a button this user sees in a shared chat (tests: someone else's message)."""
        request_id = f"console:{self._session}:{next(self._request_numbers)}"
        replies = await respond_to_action(action, self.caller, self.deps, request_id=request_id)
        for reply in replies:
            self._show(reply, replace=message if reply.edit else None)

    async def _press(self, number: int, request_id: str) -> None:
        button = self._live.get(number) or self._retired.get(number)
        if button is None:
            key = "console.old_button" if number <= self._highest_shown else "console.no_button"
            self._show(say(key, number=number))
            return
        replies = await respond_to_action(
            button.action, self.caller, self.deps, request_id=request_id
        )
        for reply in replies:
            self._show(reply, replace=button.message if reply.edit else None)

    def _new_command(self) -> None:
        """A typed command frees the numbers of changed messages and retires view buttons."""
        self._retired.clear()
        self._live = {n: b for n, b in self._live.items() if b.lasting}

    def _number_for(self, message: str, action: str) -> int:
        """The number an edited message's button had before, else the smallest free one."""
        for number, old in self._retired.items():
            if old.message == message and old.action == action:
                del self._retired[number]
                return number
        number = 1
        while number in self._live or number in self._retired:
            number += 1
        return number

    # --- Outbox: messages the runner sends on its own ---------------------------

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Print a new message; its number is the id used for later edits."""
        return self._show(_in(reply, locale))

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Print the new version of message ``message_id``."""
        self._show(_in(reply, locale), replace=message_id)

    # --- printing -------------------------------------------------------------------

    def _show(self, reply: Reply, *, replace: str | None = None) -> str:
        """Print a message, or a new version of message ``replace``; return its id."""
        translate = self.translate
        if reply.locale is not None and reply.locale != translate.locale:
            translate = self._translators.setdefault(reply.locale, Translator(reply.locale))
        rendered = translate.reply(for_console(reply))
        if replace is not None:
            message = replace
            self.write(f"~ message {message} edited:")
            for number, button in list(self._live.items()):
                if button.message == message:
                    self._retired[number] = self._live.pop(number)
        else:
            message = str(next(self._message_numbers))
        self.write(rendered.text)
        if rendered.video is not None:
            self.write(f"  🎞️ {rendered.video}")
        for label, action in rendered.buttons:
            number = self._number_for(message, action)
            self._live[number] = _Button(message, action, label, _lasting(action))
            self._highest_shown = max(self._highest_shown, number)
            self.write(f"  [{number}] {label}")
        return message
