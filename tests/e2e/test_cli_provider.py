"""The real ``klingbot provider check``: the local renderer by default, and short Kling keys."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.e2e.conftest import run_cli
from tests.providers.kling_support import kling_env


def test_provider_check_on_the_default_local_renderer_renders_a_tiny_clip(tmp_path):
    result = run_cli("provider", "check", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    first, second = result.stdout.splitlines()
    assert re.fullmatch(
        r"provider: the local renderer \(KLINGBOT_PROVIDER=local; no account or keys needed\)"
        r" encoded a test clip in \d+\.\d\d s",
        first,
    ), first
    assert second == (
        "Kling: set KLINGBOT_PROVIDER=kling, KLING_ACCESS_KEY and KLING_SECRET_KEY to use it"
    )
    assert list(tmp_path.iterdir()) == []  # the clip went to a temporary folder, and is gone


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the stand-in's own check of the token
async def test_a_short_kling_secret_key_is_one_line_not_a_pyjwt_warning(tmp_path, standin):
    standin.secret_key = "sk-short-0001"  # the account's key is short: Kling accepts it
    env = kling_env(tmp_path, standin)

    result = await asyncio.to_thread(run_cli, "provider", "check", cwd=tmp_path, env=env)

    assert (result.returncode, result.stderr) == (0, "")  # no InsecureKeyLengthWarning
    assert result.stdout.splitlines()[:2] == [
        "note: KLING_SECRET_KEY is only 13 bytes long (HS256 keys should have at least 32):"
        " check that it was copied whole",
        f"Kling API at {standin.url}: keys accepted",
    ]
    assert standin.secret_key not in result.stdout
