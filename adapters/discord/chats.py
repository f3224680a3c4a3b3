"""Discord members and channels as the core knows them: ``UserRef``, ``ChatRef`` and ``Caller``.

A job's chat is ``ChatRef("discord", "<guild id>/<channel id>/<user id>")``
(guild ``0`` in a DM): the channel or thread where ``/gen`` ran, the server
whose upload limit applies, and the requester, whom the finished clip
mentions and who gets it by DM if the channel is gone. Only this module reads
or writes that form.

Moderators (``Caller.is_platform_admin``): in a server, members with Manage
Server or Administrator (the permissions Discord sends with the
interaction) and members holding ``DISCORD_MODERATOR_ROLE``; in a DM, nobody
by platform right. The ``discord:<id>`` entries of ``KLINGBOT_MODERATORS``
are checked by the core everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bot.commands import Caller, ChatRef, UserRef
from bot.i18n import resolve_locale

PLATFORM = "discord"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a job's messages go, and for whom."""

    guild_id: int | None
    channel_id: int
    user_id: int


def user_ref(user: discord.abc.User) -> UserRef:
    """``discord:<user id>``."""
    return UserRef(PLATFORM, str(user.id))


def chat_ref(guild_id: int | None, channel_id: int, user_id: int) -> ChatRef:
    """The core's name for a channel (or thread, or DM) and the member asking there."""
    return ChatRef(PLATFORM, f"{guild_id or 0}/{channel_id}/{user_id}")


def parse_chat(chat: ChatRef) -> Place:
    """The place a ChatRef made by :func:`chat_ref` names."""
    guild, channel, user = chat.id.split("/")
    return Place(int(guild) or None, int(channel), int(user))


def interaction_chat(interaction: discord.Interaction) -> ChatRef:
    """Where the answers to ``interaction`` go."""
    channel_id = interaction.channel_id or interaction.user.id
    return chat_ref(interaction.guild_id, channel_id, interaction.user.id)


def has_role(member: discord.Member, role: str) -> bool:
    """The member holds the role named (or numbered) ``role``."""
    wanted = role.strip()
    return any(str(held.id) == wanted or held.name == wanted for held in member.roles)


def is_platform_admin(interaction: discord.Interaction, moderator_role: str | None) -> bool:
    """Manage Server, Administrator or the moderator role, in a server; never in a DM."""
    if interaction.guild_id is None:
        return False
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    user = interaction.user
    return (
        moderator_role is not None
        and isinstance(user, discord.Member)
        and has_role(user, moderator_role)
    )


def reader_for(interaction: discord.Interaction) -> Caller:
    """The member behind a read-only command that depends on who they are and their language only.

    ``/price`` reads the caller's wallet and answers in their language: it
    opens no wallet (so needs no names), grants no moderator rights and posts
    nowhere but the interaction. The moderator check, names and chat that
    :func:`caller_for` works out would never be looked at.
    """
    return Caller(
        user=UserRef(PLATFORM, str(interaction.user.id)),
        locale=resolve_locale(str(interaction.locale)),
    )


def caller_for(interaction: discord.Interaction, moderator_role: str | None) -> Caller:
    """The core's view of the member behind ``interaction``."""
    user = interaction.user
    return Caller(
        user=user_ref(user),
        display_name=user.display_name,
        username=user.name,
        locale=resolve_locale(str(interaction.locale)),
        is_platform_admin=is_platform_admin(interaction, moderator_role),
        chat=interaction_chat(interaction),
    )
