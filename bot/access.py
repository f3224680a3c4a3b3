"""Who may do what, and how a command names a user (``me``, ``@name``, ``platform:id``)."""

from __future__ import annotations

from bot.commands import PLATFORMS, Caller
from bot.deps import Deps
from bot.errors import UnknownUser
from bot.ports import UserProfile


def is_moderator(caller: Caller, deps: Deps) -> bool:
    """Listed in the moderators setting, or an admin of the chat by the platform's word."""
    return caller.user in deps.moderators or caller.is_platform_admin


async def resolve_user(query: str, caller: Caller, deps: Deps) -> UserProfile:
    """``me``, ``platform:id``, ``@username`` or an id on the caller's platform."""
    if query.lower() == "me":
        return UserProfile(caller.user, caller.display_name, caller.username, caller.locale)
    platform, sep, rest = query.partition(":")
    if sep and platform in PLATFORMS:
        found = await deps.ledger.find_user(platform, rest)
    else:
        found = await deps.ledger.find_user(caller.user.platform, query)
    if found is None:
        raise UnknownUser(query[:64])
    return found


def describe(profile: UserProfile) -> str:
    """``Alice (telegram:2)``, or just the id when the user has no name."""
    name = profile.display_name or (f"@{profile.username}" if profile.username else "")
    return f"{name} ({profile.user})" if name else str(profile.user)
