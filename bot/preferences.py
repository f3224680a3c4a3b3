"""A member's personal defaults (``/settings``): the values, and the port that stores them.

Stored per wallet: an identity linked to another (``/link``) reads and
writes the settings of the wallet they share, which are those of the
identity that issued the link code; the redeemer's own settings are kept
unused while linked and apply again after an unlink. Every value may be
unset (None): no tier in particular, 5 s clips, the platform's language,
and no question before a press.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from bot.commands import UserRef

Field = Literal["tier", "duration_s", "locale", "confirm_above"]
FIELDS: tuple[Field, ...] = ("tier", "duration_s", "locale", "confirm_above")

DURATION_CHOICES: tuple[int, ...] = (5, 10)
LOCALE_CHOICES: tuple[str, ...] = ("en", "zh-CN")
CONFIRM_CHOICES: tuple[int, ...] = (50, 100, 200)
"""The thresholds ``/settings`` offers: ask before a press that holds more than this."""


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a member chose; None: not set (the bot's own default applies)."""

    tier: str | None = None
    duration_s: int | None = None
    locale: str | None = None
    confirm_above: int | None = None


NONE = Preferences()


def valid(field: Field, value: str | int | None) -> bool:
    """Whether ``value`` may be stored under ``field`` (tiers are checked by the caller)."""
    if value is None:
        return True
    if field == "tier":
        return isinstance(value, str) and 0 < len(value) <= 32
    if field == "duration_s":
        return value in DURATION_CHOICES
    if field == "locale":
        return value in LOCALE_CHOICES
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class PreferenceStore(ABC):
    """Members' settings, one row per wallet (see the module's docstring)."""

    @abstractmethod
    async def get(self, user: UserRef) -> Preferences:
        """The settings of ``user``'s wallet (:data:`NONE` when nothing was set)."""

    @abstractmethod
    async def change(
        self, user: UserRef, field: Field, value: str | int | None, *, now: int
    ) -> Preferences:
        """Set one setting of ``user``'s wallet (None unsets it), in one statement; the result.

        Raises ValueError, storing nothing, for a field or value :func:`valid` refuses.
        """


def check(field: str, value: str | int | None) -> Field:
    """``field`` as a :data:`Field`, or ValueError when it or ``value`` cannot be stored."""
    if field not in FIELDS or not valid(field, value):  # type: ignore[arg-type]
        raise ValueError(f"{field}={value!r} is not a setting")
    return field  # type: ignore[return-value]
