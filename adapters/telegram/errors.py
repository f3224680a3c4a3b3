"""The one error handler, and the bot token kept out of every log line.

The core already answers every error it knows of (:func:`bot.service.respond`
never raises); what reaches this handler went wrong in the adapter or
between the bot and Telegram. It is logged once with its traceback, the
token blanked out (request URLs carry it), and the member gets a short
apology in their language. Network trouble while polling is retried by
PTB itself and only logged.
"""

from __future__ import annotations

import logging
import traceback

from telegram import Update
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from adapters.redaction import install, redact
from adapters.telegram.render import translator
from adapters.telegram.webhook import derived_secret
from bot.i18n import resolve_locale
from bot.replies import text

log = logging.getLogger(__name__)



def secrets_of(token: str) -> tuple[str, ...]:
    """The strings to hide: the token, its secret half, the webhook secret derived from it."""
    _, _, secret = token.partition(":")
    return tuple(s for s in (token, secret, derived_secret(token)) if len(s) >= 8)


def install_redaction(token: str) -> None:
    """Keep this bot token (and the webhook secret made from it) out of every log line."""
    install(secrets_of(token))


def _unreachable(error: Exception) -> bool:
    """A connection problem (PTB's NetworkError, but not its subclass BadRequest)."""
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


def make_error_handler(token: str):
    """The application's error handler: log with the traceback, apologise to the member."""
    secrets = secrets_of(token)

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if error is None:
            return
        trace = "".join(traceback.format_exception(error)).rstrip()
        if _unreachable(error) and update is None:
            log.warning(
                "network trouble talking to Telegram (retrying): %s", redact(str(error), secrets)
            )
            return
        log.error("error while handling an update:\n%s", redact(trace, secrets))
        if not isinstance(update, Update) or update.effective_chat is None:
            return
        if isinstance(error, Forbidden) or _unreachable(error):
            return  # blocked by the member, or Telegram unreachable: an apology would fail too
        user = update.effective_user
        locale = resolve_locale(user.language_code if user else None)
        try:
            await context.bot.send_message(
                update.effective_chat.id, translator(locale)(text("telegram.error"))
            )
        except TelegramError as failure:
            log.warning("could not apologise in chat %s: %s", update.effective_chat.id, failure)

    return on_error
