"""Who may do what, and how a command names a user (``me``, ``@name``, an id, ``platform:id``)."""

from __future__ import annotations

from bot.commands import PLATFORMS, Caller, UserRef
from bot.deps import Deps
from bot.errors import UnknownUser, UserError
from bot.ports import UserProfile

LOCAL_OPERATOR = UserRef("console", "local")
"""Whoever runs klingbot on this machine: the console's own user and ``me`` in the
offline ``klingbot wallet`` commands, one person with one wallet. Their chat has
no other members of its platform, so names they give are looked up on every platform."""

OFFLINE_PLATFORM = "cli"
"""Where wallet commands used to act as ``cli:<login>``: such wallets may still exist."""

SHOWN_PLATFORMS = tuple(platform for platform in PLATFORMS if platform != OFFLINE_PLATFORM)
"""The platforms named in messages about a ``platform:id``."""

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

    A bare name or id is looked up on the caller's platform; the local
    operator (:data:`LOCAL_OPERATOR`) has none of their own, so for them it
    is looked up on every platform, and a name several users share is
    refused with their ``platform:id`` listed. Raises UnknownUser when
    nobody matches, or UserError when ``platform:id`` could never name a
    user (an unknown platform, letters in a numeric id).
    """
    if query.lower() == "me":
        return UserProfile(caller.user, caller.display_name, caller.username, caller.locale)
    platform, sep, rest = query.partition(":")
    if sep and platform in PLATFORMS:
        found = await deps.ledger.find_user(platform, rest)
    elif caller.user == LOCAL_OPERATOR or caller.user.platform == OFFLINE_PLATFORM:
        found = await _find_on_every_platform(query, deps)
    else:
        found = await deps.ledger.find_user(caller.user.platform, query)
    if found is None:
        _refuse_impossible(query)
        raise UnknownUser(query[:64])
    return found


def _refuse_impossible(query: str) -> None:
    """UserError for a ``platform:id`` nobody could have: say what is wrong with it."""
    platform, sep, rest = query.partition(":")
    if not sep or not platform or not rest or any(c.isspace() for c in query):
        return
    if platform not in PLATFORMS:
        if platform.isascii() and platform.isalpha():
            raise UserError(
                "error.unknown_platform",
                query=query[:64],
                platform=platform[:32],
                platforms=", ".join(SHOWN_PLATFORMS),
            )
        return
    numeric = rest.isascii() and rest.isdigit()
    if platform in NUMERIC_ID_PLATFORMS and not numeric and not rest.startswith("@"):
        raise UserError("error.not_numeric_id", query=query[:64], platform=platform)


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
