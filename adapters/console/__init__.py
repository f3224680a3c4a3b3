"""A terminal chat on the core: try the bot with no accounts, and drive end-to-end tests."""

from adapters.console.chat import ConsoleChat, console_caller

__all__ = ["ConsoleChat", "console_caller"]
