"""A sleep that ends early when something falls due before it would end.

The poll loop (``bot.jobs.polls``) and the delivery retries
(``bot.jobs.retries``) each keep due times in a heap and sleep until the
earliest; when a new time earlier than the current sleep's end arrives,
:meth:`Nap.wake_before` cuts the sleep short so the loop can look again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Nap:
    """One loop's interruptible sleep, on an injected clock."""

    def __init__(
        self, *, sleep: Callable[[float], Awaitable[None]], monotonic: Callable[[], float]
    ) -> None:
        self._sleep = sleep
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        """Set when something falls due before the current nap ends."""
        self._until = float("inf")

    def wake_before(self, due: float) -> None:
        """End the current nap if ``due`` comes before its end."""
        if due < self._until:
            self._wake.set()

    async def __call__(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`wake_before` is called with an earlier time."""
        self._until = self._monotonic() + seconds
        self._wake.clear()
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        waking = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeping, waking), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._until = float("inf")
            sleeping.cancel()
            waking.cancel()
