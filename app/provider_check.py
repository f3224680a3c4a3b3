"""``klingbot provider check``: whether the Kling keys work, and what is left on the account.

One cheap authenticated call (the first page of text-to-video tasks, one
entry) proves the keys and the region; then the account's resource packs
are listed from ``GET /account/costs`` where the account allows it. Exit
status: 0 the keys work, 1 they do not (refused, wrong region, no network,
not the Kling API), 2 a key is not set (the usual configuration error).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
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


async def check_provider(settings: Settings) -> int:
    """Print what the check found; return the exit status."""
    client = kling_client(settings)
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


def _fail(line: str) -> None:
    print(f"klingbot: {line}", file=sys.stderr)
