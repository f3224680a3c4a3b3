"""The one error path for commands and buttons, and the log filter that hides every token.

The core answers every error it knows of (:func:`bot.service.respond` never
raises), so what reaches :func:`report` went wrong in the adapter or between
the bot and Discord. Errors Discord explains (a stale command, an option it
could not convert, an interaction already answered or expired) become a
translated private message when one can still be sent; anything else is
logged once with its traceback and the member gets a short apology.

Tokens: the bot token rides in every request's headers, and interaction
tokens sit in URLs (``/interactions/<id>/<token>/callback``,
``/webhooks/<app id>/<token>``) and in the gateway's interaction events,
which discord.py's debug logs and exceptions can print.
:func:`install_redaction` registers the bot token with the process's one
redaction (:mod:`adapters.redaction`), which hides it and every interaction
token from every log line and traceback.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

import discord
from discord import app_commands

from adapters.discord.render import translator
from adapters.redaction import install, redact
from bot.i18n import resolve_locale
from bot.replies import text

log = logging.getLogger(__name__)


UNKNOWN_INTERACTION = 10062
"""Discord's code for an interaction answered too late (or unknown)."""
ALREADY_ACKNOWLEDGED = 40060
INVALID_WEBHOOK_TOKEN = 50027
"""An interaction token past its 15 minutes."""
UNKNOWN_CHANNEL = 10003
UNKNOWN_USER = 10013
MISSING_ACCESS = 50001
CANNOT_MESSAGE_USER = 50007
"""Cannot send messages to this user: their DMs are closed to the bot (or they blocked it)."""
MISSING_PERMISSIONS = 50013

REFUSED_FOR_GOOD = frozenset(
    {UNKNOWN_CHANNEL, UNKNOWN_USER, MISSING_ACCESS, CANNOT_MESSAGE_USER, MISSING_PERMISSIONS}
)
"""Answers to a post that a retry will not change: the channel or member is out of reach."""


def secrets_of(token: str) -> tuple[str, ...]:
    """The strings to hide: the bot token, and its signature part on its own."""
    signature = token.rpartition(".")[2]
    return tuple(s for s in (token, signature) if len(s) >= 8)


def install_redaction(token: str) -> None:
    """Keep this bot token, and every interaction token, out of every log line."""
    install(secrets_of(token))


def refused_for_good(error: BaseException) -> bool:
    """Discord refused a post for a reason that stays (see :data:`REFUSED_FOR_GOOD`)."""
    return isinstance(error, discord.HTTPException) and error.code in REFUSED_FOR_GOOD


def _unwrap(error: BaseException) -> BaseException:
    """The error inside discord.py's CommandInvokeError wrapper."""
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


def _known(error: BaseException) -> str | None:
    """The message key for an error a member can act on, or None."""
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "error.stale_button"
    if isinstance(error, app_commands.TransformerError):
        return "discord.bad_option"
    return None


def _expired(error: BaseException) -> bool:
    """Discord will not take an answer to this interaction any more."""
    return isinstance(error, discord.HTTPException) and error.code in (
        UNKNOWN_INTERACTION,
        ALREADY_ACKNOWLEDGED,
        INVALID_WEBHOOK_TOKEN,
    )


async def report(
    interaction: discord.Interaction, error: BaseException, secrets: Iterable[str]
) -> None:
    """Log ``error`` (traceback, tokens hidden); tell the member privately if Discord lets us."""
    error = _unwrap(error)
    key = _known(error)
    what = interaction.command.name if interaction.command is not None else "a button"
    if key is None:
        trace = "".join(traceback.format_exception(error)).rstrip()
        log.error(
            "error while handling %s (interaction %s):\n%s",
            what,
            interaction.id,
            redact(trace, secrets),
        )
        key = "discord.error"
    else:
        log.info("interaction %s refused: %s", interaction.id, type(error).__name__)
    if _expired(error):
        return  # an apology would fail the same way
    message = translator(resolve_locale(str(interaction.locale)))(text(key))
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException as failure:
        log.warning(
            "could not apologise for interaction %s: %s",
            interaction.id,
            redact(str(failure), secrets),
        )
