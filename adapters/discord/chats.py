"""Discord members and channels as the core knows them: ``UserRef``, ``ChatRef`` and ``Caller``.

A job's chat is ``ChatRef("discord", "<guild id>/<channel id>/<user id>")``
(guild ``0`` in a DM): the channel or thread where ``/gen`` ran, the server
whose upload limit applies, and the requester, whom the finished clip
mentions and who gets it by DM if the channel is gone. Only this module reads
or writes that form.

Moderators (``Caller.is_platform_admin``): a server grants moderator rights
only when it is one of the operator's own servers, listed in
``DISCORD_GUILD_IDS`` (:class:`CommunityServers`). There, members with
Manage Server or Administrator (the permissions Discord sends with the
interaction) and members holding ``DISCORD_MODERATOR_ROLE`` (by id, or by
name) are moderators. Anywhere else (another server the bot was added to,
where whoever added it is Administrator and may name a role anything; a DM;
a user install) nobody is a moderator by platform right, and without
``DISCORD_GUILD_IDS`` nobody is, anywhere. The ``discord:<id>`` entries of
``KLINGBOT_MODERATORS`` are checked by the core everywhere.
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


@dataclass(frozen=True, slots=True)
class CommunityServers:
    """The operator's own servers (``DISCORD_GUILD_IDS``), the only ones whose rights count.

    Anyone can add the bot to a server of their own and be its Administrator
    there, and create a role with any name: such rights must not move money.
    """

    guild_ids: frozenset[int] = frozenset()
    moderator_role: str | None = None
    """``DISCORD_MODERATOR_ROLE``: a role id, or a role name, in those servers."""

    def grant_moderator(self, interaction: discord.Interaction) -> bool:
        """Manage Server, Administrator or the moderator role, in one of these servers only."""
        if interaction.guild_id is None or interaction.guild_id not in self.guild_ids:
            return False
        permissions = interaction.permissions
        if permissions.administrator or permissions.manage_guild:
            return True
        user = interaction.user
        return (
            self.moderator_role is not None
            and isinstance(user, discord.Member)
            and has_role(user, self.moderator_role)
        )


def has_role(member: discord.Member, role: str) -> bool:
    """The member holds the role numbered (or named) ``role``; @everyone never counts."""
    wanted = role.strip()
    return any(
        not held.is_default() and (str(held.id) == wanted or held.name == wanted)
        for held in member.roles
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


def caller_for(interaction: discord.Interaction, community: CommunityServers) -> Caller:
    """The core's view of the member behind ``interaction``."""
    user = interaction.user
    return Caller(
        user=user_ref(user),
        display_name=user.display_name,
        username=user.name,
        locale=resolve_locale(str(interaction.locale)),
        is_platform_admin=community.grant_moderator(interaction),
        chat=interaction_chat(interaction),
    )
