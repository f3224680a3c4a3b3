"""Fixtures for every test: a clean environment, so an operator's settings never leak in."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KLINGBOT_", "TELEGRAM_")) or name == "DISCORD_TOKEN":
            monkeypatch.delenv(name)
