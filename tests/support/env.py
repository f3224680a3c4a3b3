"""The environment tests run in: an operator's settings never leak into a test.

Every variable the bot reads (``KLINGBOT_*``, ``TELEGRAM_*``, ``DISCORD_*``,
``KLING_*``) is removed, in process (:func:`scrub`, autouse in
``tests/conftest.py``) and for the real ``klingbot`` processes tests start
(:func:`process_environment`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

BOT_PREFIXES = ("KLINGBOT_", "TELEGRAM_", "DISCORD_", "KLING_")
"""Prefixes of every variable the bot reads."""


def is_bot_setting(name: str) -> bool:
    return name.startswith(BOT_PREFIXES)


def scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the bot's variables from this process's environment (undone after the test)."""
    for name in list(os.environ):
        if is_bot_setting(name):
            monkeypatch.delenv(name)


def process_environment(
    extra: Mapping[str, str] | None = None, *, lang: str = "C.UTF-8"
) -> dict[str, str]:
    """The environment for a real ``klingbot`` process: ours without the bot's settings, plus ``extra``."""
    environment = {k: v for k, v in os.environ.items() if not is_bot_setting(k)}
    environment.update({"LANG": lang, "PYTHONIOENCODING": "utf-8"})
    environment.update(extra or {})
    return environment
