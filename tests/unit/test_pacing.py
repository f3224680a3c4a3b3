"""The pacing rules keep every platform's limit, however the requests come (bot/pacing.py)."""

from __future__ import annotations

import random

import pytest

from bot.pacing import DISCORD_CHANNEL, TELEGRAM_GROUP, TELEGRAM_PRIVATE, MemoryChatPace, PaceRule


@pytest.mark.parametrize(
    ("rule", "window_s", "allowed"),
    [
        (TELEGRAM_GROUP, 60.0, 19),  # Telegram: 20 messages a minute in a group
        (DISCORD_CHANNEL, 5.0, 4),  # Discord: 5 posts and edits every 5 s in a channel
        (TELEGRAM_PRIVATE, 1.0, 3),  # about one a second; short bursts are tolerated
    ],
)
async def test_no_window_holds_more_than_the_rule_allows(rule: PaceRule, window_s, allowed):
    pace = MemoryChatPace()
    rng = random.Random(3)
    now, slots = 1_764_000_000.0, []
    for _ in range(300):  # crowds asking at the same moment, then lulls of up to 3 windows
        if rng.random() < 0.2:
            now += rng.uniform(0, 3 * window_s)
        slots.append(now + await pace.reserve("chat", rule, now))
    most = max(sum(1 for s in slots if start <= s < start + window_s) for start in slots)
    assert most == rule.most_in(window_s) == allowed
