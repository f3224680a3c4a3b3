"""Fixtures of the provider tests: the Kling stand-in on 127.0.0.1 with a real MP4 to serve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.providers.kling_standin import KlingStandin
from tests.providers.kling_support import make_clip


@pytest.fixture(scope="session")
def standin_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("kling") / "result.mp4")


@pytest.fixture
async def standin(standin_clip: Path) -> AsyncIterator[KlingStandin]:
    service = KlingStandin(standin_clip)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
