"""Telegram's flood limits, kept for every request the bot makes (a PTB rate limiter).

Telegram asks bots for about one message per second in a chat (short bursts
are tolerated) and at most 20 per minute in a group, and answers ``429 Too
Many Requests`` with ``retry_after`` when a bot goes beyond. So:

- every request that posts into a chat (a new message, an edit, a video)
  takes a slot from that chat's bucket first: a burst of a few, then one a
  second; in groups also at most 20 in any minute;
- a 429 blocks that chat (the whole bot, for requests outside a chat) for
  exactly the time Telegram named, after which the *same* request goes again;
  nothing is ever sent as a new message to get around a limit;
- an edit that waited for its slot while a newer edit of the same message
  arrived is dropped (:class:`Superseded`): only the newest status is worth
  a slot;
- a job's own message (its status, a status edit, the clip: the outbox
  marks them with :class:`JobMessage`) first takes the chat's slot in the
  pacing all replicas share (:mod:`bot.pacing`, when ``turns`` is given),
  so two replicas together stay inside the chat's limits too; answers to
  commands do not wait for that database round trip;
- at most ``max_in_flight`` requests are on the wire at once. Replies are
  sent from background tasks (so a group's pacing never stalls other chats),
  and a burst of updates would otherwise open hundreds of requests at once,
  which makes the HTTP client's connection pool slower for all of them.

Time comes in through ``monotonic`` and ``sleep``, so tests run it on a
virtual clock and see every wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from telegram.constants import FloodLimit
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

from bot.pacing import TELEGRAM_GROUP, TELEGRAM_PRIVATE, ChatTurns

log = logging.getLogger(__name__)

CHAT_ENDPOINTS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "editMessageMedia",
        "sendVideo",
        "sendDocument",
        "sendPhoto",
        "sendAnimation",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
    }
)
"""Requests that put something into a chat, and so count against its limits."""

GROUP_WINDOW_S = 60.0
"""Groups are limited per minute."""

IDLE_STATES = 10_000
"""Above this many chats remembered, chats quiet for a minute are forgotten."""


class Superseded(Exception):
    """A newer edit of the same message arrived while this one waited: it was not sent."""


@dataclass(frozen=True)
class JobMessage:
    """``rate_limit_args`` of a job's own message: it takes the chat's shared turn first.

    ``stale`` (edits): returns True once a newer edit of the message replaced this one.
    """

    stale: Callable[[], bool] | None = None


@dataclass
class _Chat:
    """What the limiter remembers of one chat."""

    tokens: float
    updated: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    blocked_until: float = 0.0
    recent: deque[float] = field(default_factory=deque)


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (PTB 22 gives an int or a timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class FloodControl(BaseRateLimiter[JobMessage]):
    """Per-chat pacing, the group minute limit, and RetryAfter honoured to the second."""

    def __init__(
        self,
        *,
        per_second: float = FloodLimit.MESSAGES_PER_SECOND_PER_CHAT,
        burst: int = 3,
        group_per_minute: int = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP,
        max_retries: int = 5,
        max_in_flight: int = 16,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        turns: ChatTurns | None = None,
    ) -> None:
        self.per_second = per_second
        self.turns = turns
        """The pacing shared with other replicas; None: this process is the only sender."""
        self.burst = burst
        self.group_per_minute = group_per_minute
        self.max_retries = max_retries
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._monotonic = monotonic
        self._sleep = sleep
        self._chats: dict[int | str, _Chat] = {}
        self._blocked_until = 0.0  # the whole bot, after a 429 outside any chat
        self.waits: list[tuple[str, float]] = []
        """Every RetryAfter wait, as (endpoint, seconds): for logs and tests."""

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Forget every chat."""
        self._chats.clear()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: JobMessage | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Wait for the chat's slot, send, and on a 429 wait as told and send the same again."""
        chat_id = data.get("chat_id") if endpoint in CHAT_ENDPOINTS else None
        stale = rate_limit_args.stale if rate_limit_args is not None else None
        if chat_id is not None:
            if rate_limit_args is not None and self.turns is not None:
                rule = TELEGRAM_GROUP if _is_group(chat_id) else TELEGRAM_PRIVATE
                await self.turns.take(f"telegram:{chat_id}", rule)
                if stale is not None and stale():
                    raise Superseded
            if not await self._take_slot(chat_id, stale):
                raise Superseded
        else:
            await self._wait_until(self._blocked_until)
        attempts = 0
        while True:
            try:
                async with self._in_flight:
                    return await callback(*args, **kwargs)
            except RetryAfter as error:
                attempts += 1
                seconds = retry_after_seconds(error)
                if attempts > self.max_retries:
                    raise
                log.warning(
                    "Telegram asked to wait %s s before %s%s",
                    f"{seconds:g}",
                    endpoint,
                    f" in chat {chat_id}" if chat_id is not None else "",
                )
                self._block(chat_id, seconds)
                self.waits.append((endpoint, seconds))
                await self._sleep(seconds)
                if stale is not None and stale():
                    raise Superseded from None

    # --- internals ------------------------------------------------------------------

    def _chat(self, chat_id: int | str, now: float) -> _Chat:
        state = self._chats.get(chat_id)
        if state is None:
            if len(self._chats) >= IDLE_STATES:
                self._forget_idle(now)
            state = self._chats[chat_id] = _Chat(tokens=float(self.burst), updated=now)
        return state

    def _forget_idle(self, now: float) -> None:
        for key, state in list(self._chats.items()):
            idle = now - state.updated > GROUP_WINDOW_S and now >= state.blocked_until
            if idle and not state.lock.locked():
                del self._chats[key]

    def _block(self, chat_id: int | str | None, seconds: float) -> None:
        until = self._monotonic() + seconds
        if chat_id is None:
            self._blocked_until = max(self._blocked_until, until)
        else:
            state = self._chat(chat_id, self._monotonic())
            state.blocked_until = max(state.blocked_until, until)

    async def _wait_until(self, moment: float) -> None:
        while (delay := moment - self._monotonic()) > 0:
            await self._sleep(delay)

    def _delay(self, chat_id: int | str, state: _Chat, now: float) -> float:
        """How long until this chat may take another message (0: now)."""
        state.tokens = min(self.burst, state.tokens + (now - state.updated) * self.per_second)
        state.updated = now
        delays = [state.blocked_until - now, self._blocked_until - now]
        if state.tokens < 1:
            delays.append((1 - state.tokens) / self.per_second)
        if _is_group(chat_id):
            while state.recent and now - state.recent[0] >= GROUP_WINDOW_S:
                state.recent.popleft()
            if len(state.recent) >= self.group_per_minute:
                delays.append(state.recent[0] + GROUP_WINDOW_S - now)
        return max(delays)

    async def _take_slot(self, chat_id: int | str, stale: Callable[[], bool] | None) -> bool:
        """Wait for the chat's turn (first come, first served); False if the edit went stale."""
        state = self._chat(chat_id, self._monotonic())
        async with state.lock:
            while (delay := self._delay(chat_id, state, self._monotonic())) > 0:
                await self._sleep(delay)
            if stale is not None and stale():
                return False
            state.tokens -= 1
            if _is_group(chat_id):
                state.recent.append(self._monotonic())
            return True


def _is_group(chat_id: int | str) -> bool:
    """Group, supergroup and channel ids are negative (or ``@name`` for public ones)."""
    if isinstance(chat_id, str):
        return chat_id.startswith("@") or chat_id.startswith("-")
    return chat_id < 0
