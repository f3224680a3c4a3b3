"""Discord's message limit, kept per channel: job messages take turns instead of racing discord.py.

Discord lets a bot post and edit about 5 messages every 5 s in one channel
and answers ``429`` beyond. discord.py paces a route only once it has seen
the route's first answer (its rate-limit headers), and under a steady stream
of requests it can let a few more out than the bucket holds: eight members
generating at once in one channel (eight status messages, their edits, eight
clips) drew 429s. So the outbox asks this pacer before each post or edit in
a channel:

- at most ``per_window`` requests (default 4, one below Discord's 5, so
  discord.py never finds the bucket empty and clock differences between us
  and Discord have room) are started in any ``window_s`` (5 s) in a channel;
- a request counts from the moment it starts until ``window_s`` after its
  answer came back, so however long an upload takes, Discord never counts
  more than ``per_window`` of ours in one of its windows;
- turns are first come, first served.

Channels do not wait for each other. Messages through a member's
interaction token (when the channel refuses the bot) are not paced here:
discord.py sends those one at a time per token and waits whenever the
token's bucket is empty. Time comes in through ``monotonic`` and ``sleep``,
so tests run the pacer on a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

PER_WINDOW = 4
"""Requests started per channel per window (Discord's bucket holds 5)."""
WINDOW_S = 5.0
"""Discord's message window, in seconds."""
IDLE_CHANNELS = 10_000
"""Above this many channels remembered, quiet ones are forgotten."""


@dataclass
class _Channel:
    """What the pacer remembers of one channel."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: deque[float] = field(default_factory=deque)
    """When each recent request's answer came back."""
    in_flight: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a request in flight comes back."""


class ChannelPace:
    """Turns for posting and editing in each channel; see the module docstring."""

    def __init__(
        self,
        *,
        per_window: int = PER_WINDOW,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._monotonic = monotonic
        self._sleep = sleep
        self._channels: dict[Hashable, _Channel] = {}
        self.waits: list[tuple[Hashable, float]] = []
        """Every wait for a turn, as (channel, seconds): for logs and tests."""

    @asynccontextmanager
    async def turn(self, channel_id: Hashable) -> AsyncIterator[None]:
        """Wait for the channel's next turn, and hold it while the request runs."""
        state = await self.take(channel_id)
        try:
            yield
        finally:
            self.give_back(state, used=True)

    async def take(self, channel_id: Hashable) -> _Channel:
        """Wait for a turn in this channel; pair it with :meth:`give_back`."""
        state = self._channel(channel_id)
        async with state.lock:
            while (delay := self._delay(state)) != 0:
                if delay is None:  # every turn is on the wire: wait for one to come back
                    state.answered.clear()
                    await state.answered.wait()
                    continue
                self.waits.append((channel_id, delay))
                await self._sleep(delay)
            state.in_flight += 1
        return state

    def give_back(self, state: _Channel, *, used: bool) -> None:
        """The request is answered (``used``), or was not sent after all."""
        state.in_flight -= 1
        if used:
            state.done.append(self._monotonic())
        state.answered.set()

    def _delay(self, state: _Channel) -> float | None:
        """Seconds until a request may start here (0: now; None: once one in flight is back)."""
        now = self._monotonic()
        while state.done and now - state.done[0] >= self.window_s:
            state.done.popleft()
        if state.in_flight + len(state.done) < self.per_window:
            return 0
        if not state.done:
            return None
        return max(state.done[0] + self.window_s - now, 0.001)

    def _channel(self, channel_id: Hashable) -> _Channel:
        state = self._channels.get(channel_id)
        if state is None:
            if len(self._channels) >= IDLE_CHANNELS:
                self._forget_idle()
            state = self._channels[channel_id] = _Channel()
        return state

    def _forget_idle(self) -> None:
        now = self._monotonic()
        for key, state in list(self._channels.items()):
            quiet = not state.done or now - state.done[-1] >= self.window_s
            if quiet and not state.in_flight and not state.lock.locked():
                del self._channels[key]
