"""``klingbot provider check``: whether the provider in use works.

With the local renderer (``KLINGBOT_PROVIDER=local``, the default) it says
so and encodes a tiny clip from the bundled sample picture in a temporary
folder. With Kling, one cheap authenticated call (the first page of
text-to-video tasks, one entry) proves the keys and the region; then the
account's resource packs are listed from ``GET /account/costs`` where the
account allows it. A secret key shorter than HS256's recommended 32 bytes
gets one line saying so (PyJWT's own warning is silenced by the command
line). Exit status: 0 it works, 1 it does not (the renderer cannot encode;
Kling refused, wrong region, no network, not the Kling API), 2 a key is not
set (the usual configuration error).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.providers.kling import kling_client
from bot.providers.kling.errors import AUTH_CODES, ApiFailure, Unreachable, operator_hint
from bot.settings import Settings

REGIONS = (
    "https://api-singapore.klingai.com for global accounts, "
    "https://api-beijing.klingai.com for mainland China accounts"
)
COSTS_WINDOW_DAYS = 365
"""Resource packs bought within this many days are listed."""

HS256_KEY_BYTES = 32
"""RFC 7518's least length of an HS256 key; PyJWT warns below it."""


async def check_provider(settings: Settings) -> int:
    """Print what the check found; return the exit status."""
    if settings.provider == "local":
        return await _check_local()
    client = kling_client(settings)
    if (note := secret_key_note(settings)) is not None:
        print(note)
    base = settings.kling_base_url
    try:
        return await _check(client, base)
    finally:
        await client.close()


async def probe_keys(client: Any, base: str) -> str | None:
    """One cheap authenticated call; None when the keys work, else what is wrong and what to do.

    ``klingbot doctor`` uses it too.
    """
    try:
        await client.call("GET", "/v1/videos/text2video", params={"pageNum": 1, "pageSize": 1})
    except Unreachable as error:
        return f"cannot reach the Kling API at {base} ({error}): check the network and the URL"
    except ApiFailure as failure:
        if failure.code in AUTH_CODES:
            return (
                f"Kling refused the keys at {base}: {operator_hint(failure.code)} "
                f"(code {failure.code}: {failure.message}). Keys work only in their own region: "
                f"KLING_BASE_URL is {REGIONS}"
            )
        if failure.code == 0:
            return f"{base} does not answer like the Kling API ({failure}): check KLING_BASE_URL"
        hint = operator_hint(failure.code)
        return f"Kling answered {failure}" + (f": {hint}" if hint else "")
    return None


async def _check(client: Any, base: str) -> int:
    problem = await probe_keys(client, base)
    if problem is not None:
        _fail(problem)
        return 1
    print(f"Kling API at {base}: keys accepted")
    end = int(time.time() * 1000)
    start = end - COSTS_WINDOW_DAYS * 86_400_000
    try:
        data = await client.call(
            "GET", "/account/costs", params={"start_time": start, "end_time": end}
        )
    except (ApiFailure, Unreachable) as error:
        print(f"resource packs: not available for this account ({error})")
        return 0
    packs = (data or {}).get("resource_pack_subscribe_infos") or []
    if not packs:
        print(f"resource packs: none bought in the last {COSTS_WINDOW_DAYS} days")
    for pack in packs:
        print(_pack_line(pack))
    return 0


def _pack_line(pack: dict[str, Any]) -> str:
    until = pack.get("invalid_time")
    expiry = (
        datetime.fromtimestamp(until / 1000, UTC).strftime("%Y-%m-%d")
        if isinstance(until, int | float)
        else "?"
    )
    return (
        f"resource pack {pack.get('resource_pack_name', '?')}: "
        f"{pack.get('remaining_quantity', '?'):g} of {pack.get('total_quantity', '?'):g} left, "
        f"{pack.get('status', '?')}, valid until {expiry}"
    )


def secret_key_note(settings: Settings) -> str | None:
    """One line when ``KLING_SECRET_KEY`` is shorter than an HS256 key should be; else None."""
    if settings.kling_secret_key is None:
        return None
    length = len(settings.kling_secret_key.get_secret_value().encode())
    if length >= HS256_KEY_BYTES:
        return None
    return (
        f"note: KLING_SECRET_KEY is only {length} bytes long (HS256 keys should have at least"
        f" {HS256_KEY_BYTES}): check that it was copied whole"
    )


async def probe_local_renderer() -> tuple[str | None, float]:
    """Encode a tiny clip with the local renderer; (what is wrong or None, seconds taken).

    ``klingbot doctor`` uses it too.
    """
    started = time.monotonic()
    try:
        await asyncio.to_thread(_encode_one_frame)
    except Exception as error:
        problem = (
            f"the local renderer cannot encode: {type(error).__name__}: {error}"
            " (reinstall klingbot: PyAV ships its own FFmpeg with libx264)"
        )
        return problem, time.monotonic() - started
    return None, time.monotonic() - started


def _encode_one_frame() -> None:
    from importlib import resources

    from bot.providers.local.render import RenderRequest, render_clip

    image = resources.files("bot.assets").joinpath("sample.jpg").read_bytes()
    with tempfile.TemporaryDirectory(prefix="klingbot-check-") as folder:
        out = Path(folder) / "frame.mp4"
        request = RenderRequest(image=image, prompt="check", height=360, duration_s=1, fps=1)
        render_clip(request, out)
        if out.stat().st_size == 0:
            raise RuntimeError("the encoder wrote an empty file")


async def _check_local() -> int:
    problem, seconds = await probe_local_renderer()
    if problem is not None:
        _fail(problem)
        return 1
    print(
        "provider: the local renderer (KLINGBOT_PROVIDER=local; no account or keys needed)"
        f" encoded a test clip in {seconds:.2f} s"
    )
    print("Kling: set KLINGBOT_PROVIDER=kling, KLING_ACCESS_KEY and KLING_SECRET_KEY to use it")
    return 0


def _fail(line: str) -> None:
    print(f"klingbot: {line}", file=sys.stderr)
