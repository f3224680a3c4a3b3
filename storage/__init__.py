"""SQLite implementation of the core's storage ports (see :mod:`bot.ports`)."""
