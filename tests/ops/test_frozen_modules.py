"""What `klingbot run` loads at start is frozen: full collections never walk it again."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, sys
from app.cli import freeze_modules
freeze_modules(render=True, telegram=True, discord=True)
loaded = all(name in sys.modules for name in ("adapters.telegram", "adapters.discord", "av"))
before = len(gc.get_objects())
# The first price tables in both languages: Babel's locale data is already loaded and frozen.
from bot.i18n import Translator
from bot.replies import Money
from bot.service import price_table
from bot.settings import Settings
catalog = Settings().catalog()
for locale in ("en", "zh-CN"):
    table = price_table(catalog, 10, lambda c: Money(c, catalog.yuan_amount(c)))
    rendered = [Translator(locale)(line) for line in table]
gc.collect()
print(loaded, gc.get_freeze_count(), before, len(gc.get_objects()))
"""


def test_the_adapters_renderer_and_locales_are_frozen_before_the_bot_starts():
    # A fresh interpreter: freezing is for the whole process.
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    loaded, frozen, tracked, after_prices = out[0], int(out[1]), int(out[2]), int(out[3])
    assert loaded == "True"
    assert frozen > 100_000  # the libraries' objects, out of the collector's way
    assert tracked < 1_000  # what a full collection still walks before any job exists
    assert after_prices - tracked < 1_000  # no locale data loaded late, outside the freeze
