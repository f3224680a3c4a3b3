"""Keeping secrets out of every log line: the one redaction, for the whole process.

What is hidden (replaced by ``<token>``):

- every secret registered with :func:`install` or :func:`register`: the bot
  tokens (and the parts of them that work on their own), the Kling keys, the
  webhook secrets;
- whatever is shaped like a secret, registered or not: Discord interaction
  and webhook tokens in URLs (``/interactions/<id>/<token>``,
  ``/webhooks/<id>/<token>``), ``Bearer`` and ``Bot`` authorizations, a
  Telegram bot token anywhere (``<digits>:<secret>``, as in ``/bot<token>/``
  URLs), a Discord bot token or a JWT (three dotted parts), and the value of
  a ``token`` / ``secret_token`` / ``access_token`` field in a printed
  payload or a query string (discord.py prints the gateway's interaction
  events, python-telegram-bot the parameters of every call, at DEBUG), and
  the password of a URL (``postgresql://klingbot:<token>@db/klingbot``, the
  ``KLINGBOT_DATABASE_URL`` in a driver's error) or of a ``password=`` parameter.

How: :func:`install` makes every log record of the process a
:class:`RedactedRecord` (``logging.setLogRecordFactory``), whose message,
traceback and stack text come out redacted whenever a handler formats them.
So it holds for every logger (ours, discord.py's, python-telegram-bot's,
httpx's, aiohttp's) at every level, and for every handler, also one added
later (a test's capture), whatever its formatter. The work is done only for
records a handler formats.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

HIDDEN = "<token>"
"""What a secret is replaced with."""

MIN_SECRET = 8
"""Shorter registered values are ignored: they would blank out ordinary words."""

_SHAPES = (
    # Discord interaction tokens in URLs: /interactions/<id>/<token>/callback,
    # and in webhook URLs (follow-ups, webhooks): /webhooks/<application id>/<token>
    re.compile(r"(/(?:interactions|webhooks)/\d+/)[^/\s?#'\"<>]+"),
    # HTTP authorizations: Kling's JWT, a Discord bot token
    re.compile(r"((?:Bearer|Bot)\s+)[A-Za-z0-9_.\-]{20,}"),
    # A Telegram bot token wherever it appears (URLs carry it: /bot<id>:<secret>/)
    re.compile(r"()(?<![0-9])\d{5,}:[A-Za-z0-9_\-]{30,}"),
    # A Discord bot token or a JWT: three base64url parts joined by dots
    re.compile(r"()(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{20,}"),
    # A token field in a printed payload: 'token': '...', "secret_token": "..."
    re.compile(r"""(['"](?:token|secret_token|access_token)['"]\s*:\s*['"])[^'"]+"""),
    # ...or in a query string: ?token=...
    re.compile(r"([?&](?:token|secret_token|access_token|password)=)[^&\s'\"]+"),
    # The password in a URL's user part: postgresql://klingbot:<password>@db:5432/klingbot
    re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"<>]*:)[^@\s'\"<>]+(?=@)"),
)

_secrets: tuple[str, ...] = ()
"""Every registered secret, longest first (so no part of a longer one is left)."""
_lock = threading.Lock()


def register(secrets: Iterable[str]) -> None:
    """Hide these values from every log line of the process from now on."""
    global _secrets
    fresh = {value.strip() for value in secrets if value and len(value.strip()) >= MIN_SECRET}
    with _lock:
        if fresh <= set(_secrets):
            return
        _secrets = tuple(sorted(set(_secrets) | fresh, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the registered secrets, the given ones, and anything shaped like one."""
    for secret in (*secrets, *_secrets):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, HIDDEN)
    for shape in _SHAPES:
        text = shape.sub(r"\g<1>" + HIDDEN, text)
    return text


class RedactedRecord(logging.LogRecord):
    """A log record whose message, traceback and stack text are always redacted."""

    def getMessage(self) -> str:
        """The message with its arguments merged in, then redacted."""
        return redact(super().getMessage())

    @property  # type: ignore[override]
    def exc_text(self) -> str | None:
        """The formatted traceback (set by the formatter that first formats it), redacted."""
        value = self.__dict__.get("exc_text")
        return redact(value) if value else value

    @exc_text.setter
    def exc_text(self, value: str | None) -> None:
        self.__dict__["exc_text"] = value

    @property  # type: ignore[override]
    def stack_info(self) -> str | None:
        """The stack text of ``stack_info=True``, redacted."""
        value = self.__dict__.get("stack_info")
        return redact(value) if value else value

    @stack_info.setter
    def stack_info(self, value: str | None) -> None:
        self.__dict__["stack_info"] = value


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    return RedactedRecord(*args, **kwargs)


def install(secrets: Iterable[str] = ()) -> None:
    """Register ``secrets`` and make every log record of the process redact itself (once)."""
    register(secrets)
    if logging.getLogRecordFactory() is not _make_record:
        logging.setLogRecordFactory(_make_record)
