"""Shutdown for every adapter: let the work on its way finish, within a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def finish_or_cancel(tasks: Collection[asyncio.Task[None]], timeout: float) -> int:
    """Wait up to ``timeout`` seconds for ``tasks``; cancel those still running.

    Returns how many had to be cancelled, for the caller to report.
    """
    if not tasks:
        return 0
    _, late = await asyncio.wait(tasks, timeout=timeout)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return len(late)
