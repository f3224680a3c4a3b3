"""Fixtures of the operations tests: no operator settings leak in from the environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KLINGBOT_", "TELEGRAM_", "DISCORD_", "KLING_")):
            monkeypatch.delenv(name)
