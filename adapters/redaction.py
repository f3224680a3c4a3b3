"""Keeping bot tokens out of log lines: one filter that every platform adapter installs.

Each adapter knows its own token's shape (``secrets_of``) and any other
secret its library may print (Discord's interaction tokens in webhook
URLs); the filter that applies them to every log record, message and
traceback alike, is the same for all of them.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable

HIDDEN = "<token>"
"""What a secret is replaced with."""

Scrub = Callable[[str, tuple[str, ...]], str]
"""``scrub(text, secrets)``: ``text`` without the secrets."""


def replace_all(message: str, secrets: Iterable[str]) -> str:
    """``message`` with every secret replaced by ``<token>``."""
    for secret in secrets:
        message = message.replace(secret, HIDDEN)
    return message


class RedactSecrets(logging.Filter):
    """A handler filter: rewrites each record's message and traceback without the secrets."""

    def __init__(self, secrets: Iterable[str], scrub: Scrub = replace_all) -> None:
        super().__init__()
        self.secrets = tuple(secrets)
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        """Blank the secrets out of the message and the traceback text; keep the record."""
        message = record.getMessage()
        cleaned = self.scrub(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text, self.secrets)
        return True


def install(secrets: Iterable[str], scrub: Scrub = replace_all) -> None:
    """Put a redacting filter on every handler of the root logger (once per set of secrets)."""
    secrets = tuple(secrets)
    for handler in logging.getLogger().handlers:
        if not any(
            isinstance(existing, RedactSecrets) and existing.secrets == secrets
            for existing in handler.filters
        ):
            handler.addFilter(RedactSecrets(secrets, scrub))
