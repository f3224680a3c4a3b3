"""Who may do what, and how a command names a user (``me``, ``@name``, an id, ``platform:id``)."""

from __future__ import annotations

from bot.commands import PLATFORMS, Caller, UserRef
from bot.deps import Deps
from bot.errors import UnknownUser, UserError
from bot.ports import UserProfile

OPERATOR_PLATFORM = "cli"
"""The offline operator's platform: it has no users of its own to look names up among."""

NUMERIC_ID_PLATFORMS = frozenset({"telegram", "discord"})
"""Platforms whose user ids are numbers: ``telegram:alice`` can never be a new user."""

MAX_USER_ID = 64
"""The longest id a top-up may open a wallet for."""


def is_moderator(caller: Caller, deps: Deps) -> bool:
    """Listed in the moderators setting, or granted by the adapter (``Caller.is_platform_admin``).

    Rights to move money or read others' data come only from the operator's
    configuration: ``KLINGBOT_MODERATORS``, and the groups and servers the
    adapters are told are the community's own.
    """
    return caller.user in deps.moderators or caller.is_platform_admin


async def resolve_user(query: str, caller: Caller, deps: Deps) -> UserProfile:
    """``me``, ``platform:id``, ``@username`` or an id, among the users the bot knows.

    A bare name or id is looked up on the caller's platform; the offline
    operator (``cli``) has none, so for them it is looked up on every
    platform, and a name several users share is refused with their
    ``platform:id`` listed. Raises UnknownUser or UserError.
    """
    if query.lower() == "me":
        return UserProfile(caller.user, caller.display_name, caller.username, caller.locale)
    platform, sep, rest = query.partition(":")
    if sep and platform in PLATFORMS:
        found = await deps.ledger.find_user(platform, rest)
    elif caller.user.platform == OPERATOR_PLATFORM:
        found = await _find_on_every_platform(query, deps)
    else:
        found = await deps.ledger.find_user(caller.user.platform, query)
    if found is None:
        raise UnknownUser(query[:64])
    return found


async def _find_on_every_platform(query: str, deps: Deps) -> UserProfile | None:
    matches = [
        found
        for platform in PLATFORMS
        if (found := await deps.ledger.find_user(platform, query)) is not None
    ]
    if len(matches) > 1:
        users = ", ".join(str(profile.user) for profile in matches)
        raise UserError("cli.ambiguous_user", query=query[:64], users=users)
    return matches[0] if matches else None


def unseen_user(query: str) -> UserRef | None:
    """The user a full ``platform:id`` names, when a top-up may open their wallet; else None.

    Only the full form of a known platform qualifies (a bare id or ``@name``
    could be a typo for someone else), with an id the platform could issue.
    """
    try:
        user = UserRef.parse(query)
    except ValueError:
        return None
    if len(user.id) > MAX_USER_ID or not user.id.isprintable():
        return None
    if user.platform in NUMERIC_ID_PLATFORMS and not (user.id.isascii() and user.id.isdigit()):
        return None
    return user


def describe(profile: UserProfile) -> str:
    """``Alice (telegram:2)``, or just the id when the user has no name."""
    name = profile.display_name or (f"@{profile.username}" if profile.username else "")
    return f"{name} ({profile.user})" if name else str(profile.user)
