"""The Telegram adapter, on python-telegram-bot: updates -> core commands -> messages and edits.

``build_application(settings, deps)`` makes the application and
``running(application)`` serves it; ``klingbot run`` does both when
``TELEGRAM_TOKEN`` is set. See docs/TELEGRAM.md.
"""

from adapters.telegram.app import (
    TelegramAdapter,
    Timing,
    adapter_of,
    build_application,
    publish_commands,
    running,
)

__all__ = [
    "TelegramAdapter",
    "Timing",
    "adapter_of",
    "build_application",
    "publish_commands",
    "running",
]
