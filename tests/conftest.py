"""Fixtures for every test: a clean environment (an operator's settings never leak in), a clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.env import scrub
from tests.support.video import tiny_clip as make_tiny_clip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub(monkeypatch)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 256x144, 1 s H.264 clip, made once per worker, for providers that fetch a clip."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.mp4")
