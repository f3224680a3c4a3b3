"""Fixtures for every test: a clean environment (an operator's settings never leak in), a clip,
and the Kling API stand-in (used by the provider tests and behind both chat platforms)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.providers.kling_standin import KlingStandin
from tests.providers.kling_support import make_clip
from tests.support.env import scrub
from tests.support.video import tiny_clip as make_tiny_clip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub(monkeypatch)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 256x144, 1 s H.264 clip, made once per worker, for providers that fetch a clip."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.mp4")


@pytest.fixture(scope="session")
def standin_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MP4 the Kling stand-in hands out as every task's result."""
    return make_clip(tmp_path_factory.mktemp("kling") / "result.mp4")


@pytest.fixture
async def standin(standin_clip: Path) -> AsyncIterator[KlingStandin]:
    """The Kling API stand-in on 127.0.0.1."""
    service = KlingStandin(standin_clip)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
