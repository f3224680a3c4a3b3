"""Per-chat pacing shared by every replica: each of the bot's own messages reserves a slot first.

Telegram takes about one message a second in a private chat and at most 20
a minute in a group; Discord about 5 every 5 s in a channel. Each process
already keeps to these for what *it* sends (``adapters/telegram/flood.py``,
``adapters/discord/pace.py``), but two replicas sending to one chat would
each use the whole allowance. So before a job's status message, status
edit or clip, the outbox reserves the chat's next slot in a
:class:`ChatPace` that all replicas share (the database), waits until it,
then sends. Command answers do not: a Discord interaction reply is not
channel-paced at all, and a Telegram reply stays under the process's own
flood control (a 429 is waited out and the same request sent again), so a
``/price`` never waits for a database round trip.

The reservation is GCRA (a token bucket kept as one number per chat, the
"theoretical arrival time" ``next_at``)::

    next_at := max(next_at, now) + interval        -- one atomic UPDATE ... RETURNING
    slot     = max(now, next_at - burst * interval)

so at most ``burst`` messages go at once, then one per ``interval``; in any
window of ``w`` seconds at most ``burst + ceil(w / interval) - 1``. The rules
below are chosen so that stays inside each platform's limit with room for
clocks a few milliseconds apart. ``now`` is wall-clock time (replicas on
different hosts share no monotonic clock), passed in so tests run on a
virtual clock.

A chat whose next slot passed long ago is the same as one never seen, so
the database keeps a row only for chats active in the last hour: every
``FORGET_EVERY`` reservations a replica deletes the others.

Implementations: :class:`MemoryChatPace` here (one process: no I/O),
``storage.pace.SqliteChatPace`` and ``storage.postgres.pace.PgChatPace``
(the one ``klingbot run`` uses on PostgreSQL; on SQLite, one process serves
the database and its adapters' own pacing is all there is).
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

IDLE_KEYS = 10_000
"""Above this many chats remembered in memory, those idle for an hour are forgotten."""
FORGET_AFTER_S = 3600.0
"""A chat whose next slot passed this long ago is forgotten: its row is the same as none
(``max(next_at, now)`` is ``now``); the hour leaves room for replicas' clocks to differ."""
FORGET_EVERY = 1000
"""A database-backed pace forgets idle chats once every this many reservations."""


@dataclass(frozen=True)
class PaceRule:
    """At most ``burst`` messages at once in a chat, then one every ``interval_s``."""

    interval_s: float
    burst: int = 1

    def most_in(self, window_s: float) -> int:
        """The most messages the rule lets into any window of ``window_s`` seconds."""
        return self.burst + math.ceil(window_s / self.interval_s) - 1


TELEGRAM_GROUP = PaceRule(interval_s=4.0, burst=5)
"""A group (or channel): 5 at once, then one per 4 s: at most 19 in any minute (Telegram: 20)."""
TELEGRAM_PRIVATE = PaceRule(interval_s=1.0, burst=3)
"""A private chat: 3 at once, then one a second (Telegram tolerates short bursts)."""
DISCORD_CHANNEL = PaceRule(interval_s=1.7, burst=2)
"""A Discord channel: 2 at once, then one per 1.7 s: at most 4 in any 5 s (Discord: 5)."""


class ChatPace(ABC):
    """Where every replica reserves its next message slot in a chat."""

    @abstractmethod
    async def reserve(self, chat: str, rule: PaceRule, now: float) -> float:
        """Take the chat's next slot under ``rule``; return the seconds from ``now`` until it.

        ``chat`` is ``<platform>:<chat id>``; ``now`` is wall-clock seconds.
        Atomic: two replicas reserving at once get two different slots.
        """

    @abstractmethod
    async def forget(self, before: float) -> int:
        """Forget the chats whose next slot was before ``before`` (as if never seen); how many."""


def next_at(previous: float | None, rule: PaceRule, now: float) -> float:
    """The chat's new ``next_at`` after one more reservation (None: a chat not seen yet)."""
    return max(previous if previous is not None else now, now) + rule.interval_s


def wait_until_slot(new_next_at: float, rule: PaceRule, now: float) -> float:
    """Seconds from ``now`` until the slot a reservation that left ``new_next_at`` got."""
    return max(0.0, new_next_at - rule.burst * rule.interval_s - now)


class MemoryChatPace(ChatPace):
    """The chats' ``next_at`` in a dict: for one process, or two outboxes in one test."""

    def __init__(self) -> None:
        self.next_at: dict[str, float] = {}

    async def reserve(self, chat: str, rule: PaceRule, now: float) -> float:
        """See :meth:`ChatPace.reserve` (nothing awaits in between: atomic on one loop)."""
        if len(self.next_at) >= IDLE_KEYS and chat not in self.next_at:
            await self.forget(now - FORGET_AFTER_S)
        value = self.next_at[chat] = next_at(self.next_at.get(chat), rule, now)
        return wait_until_slot(value, rule, now)

    async def forget(self, before: float) -> int:
        """See :meth:`ChatPace.forget`."""
        kept = {key: at for key, at in self.next_at.items() if at >= before}
        forgotten, self.next_at = len(self.next_at) - len(kept), kept
        return forgotten


class ChatTurns:
    """A :class:`ChatPace` with the clock and sleep its waits run on: what an outbox calls."""

    def __init__(
        self,
        pace: ChatPace,
        *,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pace = pace
        self._wall = wall
        self._sleep = sleep
        self.waits: list[tuple[str, float]] = []
        """Every wait for a shared slot, as (chat, seconds): for logs and tests."""

    async def take(self, chat: str, rule: PaceRule) -> float:
        """Reserve the chat's next slot and wait for it; return the seconds waited."""
        delay = await self.pace.reserve(chat, rule, self._wall())
        if delay > 0:
            self.waits.append((chat, delay))
            await self._sleep(delay)
        return delay
