"""The one logging setup: level and format from the settings, job context, secrets redacted.

``setup_logging`` replaces whatever handlers the root logger had with one
handler on stderr:

- ``KLINGBOT_LOG_FORMAT=text`` (the default): ``time level logger: message``,
  followed by ``[job=… tier=… platform=… user=…]`` on lines about a job;
- ``KLINGBOT_LOG_FORMAT=json``: one JSON object per line (``time``, ``level``,
  ``logger``, ``message``, the job fields, ``exc`` with the traceback), for
  log collectors.

Job fields come from :data:`bot.metrics.job_context`, which the job runner
sets in each job's task, so every line logged while driving a job (the
runner's, the provider's, the HTTP client's) carries them without the code
that logs knowing about it.

Secrets: :func:`setup_logging` registers every secret of the settings
(platform tokens, the Kling keys, the webhook secret, the database password)
with the process's one redaction (:mod:`adapters.redaction`), which also
hides whatever is shaped like a token (Discord interaction tokens, ``Bearer``
and ``Bot`` authorizations, Telegram tokens in URLs, a URL's password) from
every log record's message and traceback, whichever logger made it and
whichever handler writes it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from adapters.redaction import HIDDEN, install, redact
from bot.metrics import job_context
from bot.settings import Settings, database_url_secrets

__all__ = ["HIDDEN", "redact", "secrets_of", "setup_logging"]

JOB_FIELDS = ("job", "tier", "platform", "user")

NOISY_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
"""Third-party loggers that print every request URL at INFO: noise (the tokens in them are
redacted anyway), so they speak from WARNING up unless the level is lower still."""


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Every secret value in the settings, with the parts that work on their own.

    A Telegram token's half after the colon and a Discord token's signature
    (after the last dot) are secret by themselves; values shorter than 8
    characters are left alone (they would blank out ordinary words).
    """
    values: list[str] = []
    for name in ("telegram_token", "discord_token", "kling_access_key", "kling_secret_key"):
        secret = getattr(settings, name)
        if secret is not None:
            values.append(secret.get_secret_value())
    if settings.telegram_webhook_secret is not None:
        values.append(settings.telegram_webhook_secret.get_secret_value())
    if settings.telegram_token is not None:
        values.append(settings.telegram_token.get_secret_value().partition(":")[2])
    if settings.discord_token is not None:
        values.append(settings.discord_token.get_secret_value().rpartition(".")[2])
    if settings.database_url is not None:
        values.extend(database_url_secrets(settings.database_url.get_secret_value()))
    unique = {value.strip() for value in values if len(value.strip()) >= 8}
    return tuple(sorted(unique, key=len, reverse=True))  # longest first: no partial leftovers


class JobContext(logging.Filter):
    """Adds the job fields of the current task (if any) to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy :data:`job_context` onto the record; records outside a job are left alone."""
        context = job_context.get()
        if context:
            for name in JOB_FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, context.get(name))
        return True


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO bot.jobs.runner: message [job=… tier=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The usual line, then the job fields in brackets."""
        line = super().formatMessage(record)
        fields = [f"{name}={getattr(record, name)}" for name in JOB_FIELDS if _has(record, name)]
        return f"{line} [{' '.join(fields)}]" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, job fields, ``exc``."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            if _has(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def _has(record: logging.LogRecord, name: str) -> bool:
    return getattr(record, name, None) is not None


def setup_logging(
    settings: Settings | None,
    *,
    verbose: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Configure the root logger once for the process; return its handler.

    ``settings`` None (they did not load) logs warnings as text. ``verbose``
    (``-v``) logs everything; ``quiet`` (commands that own the terminal:
    the console chat, wallet and database commands) logs warnings and up.
    """
    level = logging.INFO
    if settings is not None:
        level = logging.getLevelName(settings.log_level)
    if quiet:
        level = max(level, logging.WARNING)
    if verbose:
        level = logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level)  # loggers set lower on purpose (rate-limit counting) stay quiet
    handler.addFilter(JobContext())
    install(secrets_of(settings) if settings is not None else ())  # every record, every handler
    json_lines = settings is not None and settings.log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, least in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(least, level))
    return handler
