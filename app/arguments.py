"""Argument types of the ``klingbot`` command line: bad values are refused as argparse refuses.

Each raises :class:`argparse.ArgumentTypeError` with what is wrong and what
is accepted; argparse prints it after the usage line and exits 2.
"""

from __future__ import annotations

import argparse

from bot.access import LOCAL_OPERATOR
from bot.catalog import DURATIONS

LANG_HELP = "en or zh-CN (default: from $LANG)"
LANGUAGES = ("en", "zh-CN")


def language(value: str) -> str:
    """``--lang``: a tag of a language the bot speaks (``en``, ``en-GB``, ``zh``, ``zh_CN``)."""
    if value.strip().lower().replace("_", "-").startswith(("en", "zh")):
        return value
    raise argparse.ArgumentTypeError(
        f"{value[:24]!r} is not a language klingbot speaks: {' or '.join(LANGUAGES)}"
    )


def console_user(value: str) -> str:
    """``--as``: a console user's name; never empty, and never the local operator."""
    if not value.strip() or any(c.isspace() or c == ":" for c in value) or len(value) > 64:
        raise argparse.ArgumentTypeError(
            f"{value[:24]!r}: name a user, in one word without ':' (up to 64 characters);"
            " leave --as out to chat as the local operator"
        )
    if value == LOCAL_OPERATOR.id:
        raise argparse.ArgumentTypeError(
            f"{value!r} is the local operator (a moderator): leave --as out to chat as them"
        )
    return value


def duration(value: str) -> int:
    """A clip length as chat takes it: ``10`` or ``10s``."""
    seconds = value.lower().removesuffix("s")
    if seconds.isascii() and seconds.isdigit() and int(seconds) in DURATIONS:
        return int(seconds)
    raise argparse.ArgumentTypeError(
        f"clips last {' or '.join(str(d) for d in DURATIONS)} seconds, not {value[:16]!r}"
    )
