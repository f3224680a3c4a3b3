"""Answering an interaction without asking Discord for the message back.

Since 2.5, discord.py's ``InteractionResponse.send_message`` adds
``?with_response=1`` to every interaction callback: Discord then returns the
message it created, and discord.py parses it into an ``InteractionMessage``
(author, flags, every component of the reply), about a tenth of the CPU a
bot spends answering a slash command, and more the bigger the reply. The
adapter never looks at that message: it answers, and edits or follows up
later through the interaction's token. :func:`send_message` makes the same
callback, with the same JSON body, through discord.py's own webhook adapter
(its rate-limit handling, retries and exceptions), only without
``with_response``, so Discord answers ``204 No Content``; then it marks the
interaction answered exactly as discord.py does, so ``response.is_done()``,
follow-ups, ``edit_original_response`` and the error handler behave as
before. The member sees the same message.

This leans on three discord.py internals (the webhook adapter's context
variable, the interaction's HTTP session and ``InteractionResponse.
_response_type``); :data:`AVAILABLE` checks them once, and without them, or
for a view discord.py has to keep listening on, :func:`send_message` simply
calls discord.py's own.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.enums import InteractionResponseType
from discord.http import Route

log = logging.getLogger(__name__)

EPHEMERAL = 1 << 6
"""The message flag of a reply only its reader sees."""

try:
    from discord.webhook.async_ import async_context

    AVAILABLE = "_response_type" in discord.InteractionResponse.__slots__ and (
        "_session" in discord.Interaction.__slots__
    )
except (ImportError, AttributeError, TypeError):  # pragma: no cover - another discord.py
    AVAILABLE = False
if not AVAILABLE:  # pragma: no cover - another discord.py
    log.warning("discord.py's internals changed: interaction callbacks ask for the message back")


async def send_message(
    interaction: discord.Interaction,
    content: str,
    *,
    view: discord.ui.View | None = None,
    ephemeral: bool = False,
) -> None:
    """``interaction.response.send_message(content, view=view, ephemeral=ephemeral)``, lighter.

    Raises what discord.py's would: ``InteractionResponded`` if the
    interaction was answered already, ``HTTPException`` and its kin if
    Discord refuses the answer.
    """
    if not AVAILABLE or (view is not None and not view.is_finished()):
        # discord.py must store a view it dispatches itself, by the message's id.
        await interaction.response.send_message(
            content, **({"view": view} if view is not None else {}), ephemeral=ephemeral
        )
        return
    response = interaction.response
    if response.is_done():
        raise discord.InteractionResponded(interaction)
    data: dict[str, Any] = {"tts": False, "content": content}
    if view is not None:
        data["components"] = view.to_components()
    if ephemeral:
        data["flags"] = EPHEMERAL
    client = interaction.client
    if client.allowed_mentions is not None:
        data["allowed_mentions"] = client.allowed_mentions.to_dict()
    route = Route(
        "POST",
        "/interactions/{webhook_id}/{webhook_token}/callback",
        webhook_id=interaction.id,
        webhook_token=interaction.token,
    )
    http = client.http
    await async_context.get().request(
        route,
        session=interaction._session,
        proxy=http.proxy,
        proxy_auth=http.proxy_auth,
        payload={"type": InteractionResponseType.channel_message.value, "data": data},
    )
    response._response_type = InteractionResponseType.channel_message
