"""The Telegram application: built by one factory from the settings, run by one context manager.

``build_application(settings, deps)`` makes the python-telegram-bot
``Application``: the token and (optionally) a self-hosted Bot API server,
the flood control, the handlers and the error handler. ``running(app)``
starts it (long polling, or a webhook when ``TELEGRAM_WEBHOOK_URL`` is set),
publishes the command menu in English and Chinese, and registers the
Telegram outbox with the job runner; on exit it stops taking updates, lets
status edits on their way finish, and shuts the application down. The
caller starts the job runner once every adapter is up, and stops it before
leaving ``running`` (see ``app.cli``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from telegram import BotCommand, Update
from telegram.constants import FileSizeLimit
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ExtBot

from adapters.redaction import register
from adapters.telegram.admins import AdminCheck
from adapters.telegram.chats import PLATFORM
from adapters.telegram.errors import install_redaction, make_error_handler
from adapters.telegram.flood import FloodControl
from adapters.telegram.handlers import Handlers
from adapters.telegram.outbox import TelegramOutbox
from adapters.telegram.payments import TelegramRefunds
from adapters.telegram.render import translator
from adapters.telegram.webhook import WebhookServer, derived_secret
from bot.deps import Deps
from bot.pacing import ChatTurns
from bot.replies import text
from bot.roles import TELEGRAM_POLLING, Role, serve_role
from bot.settings import Settings

log = logging.getLogger(__name__)

ADAPTER_KEY = "klingbot.telegram"
"""Where the application keeps its :class:`TelegramAdapter` (in ``bot_data``)."""

COMMANDS = {
    "start": "telegram.command_start",
    "help": "telegram.command_help",
    "price": "telegram.command_price",
    "balance": "telegram.command_balance",
    "history": "telegram.command_history",
    "gen": "telegram.command_gen",
    "compare": "telegram.command_compare",
    "jobs": "telegram.command_jobs",
    "buy": "telegram.command_buy",
    "link": "telegram.command_link",
    "settings": "telegram.command_settings",
    "topup": "telegram.command_topup",
    "refund": "telegram.command_refund",
    "unlink": "telegram.command_unlink",
}
"""The command menu, in this order, with the catalog key of each description."""

MENU_LANGUAGES = {"en": None, "zh-CN": "zh"}
"""Catalog -> the ``language_code`` its menu is published for (None: everyone else)."""

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.PRE_CHECKOUT_QUERY]

CONCURRENT_UPDATES = 16
"""Updates handled at once: one member's image download never holds up another's /price.

Replies leave from background tasks, so a handler only holds its slot for
the core's work and any image download. More slots measured slower, not
faster (bench/telegram_overhead.py): they only crowd the HTTP client."""

POLL_TIMEOUT_S = 10
"""Seconds a getUpdates long poll may wait for news."""
MEDIA_WRITE_TIMEOUT_S = 300.0
"""Uploading a clip of up to 2000 MB to a self-hosted server takes a while."""


@dataclass(frozen=True)
class Timing:
    """The clock the flood control and the admin cache run on (virtual in tests)."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    wall: Callable[[], float] = time.time
    """Wall-clock seconds, for the pacing shared with other replicas (``bot.pacing``)."""


@dataclass
class TelegramAdapter:
    """The parts of the adapter an application carries."""

    settings: Settings
    deps: Deps
    outbox: TelegramOutbox
    handlers: Handlers
    admins: AdminCheck
    flood: FloodControl
    webhook: WebhookServer | None = None
    polling_role: Role | None = None
    """Polling mode: the role whose holder polls (this replica polls while it holds it)."""
    intake: asyncio.Task[None] | None = None
    """Polling mode: starts and stops polling as the role comes and goes."""
    polling: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this replica polls."""
    not_polling: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while it does not (a standby, or stopped)."""

    @property
    def standby(self) -> bool:
        """Polling mode, and another replica polls: this one only sends."""
        return self.polling_role is not None and not self.polling_role.held

    async def stop_intake(self) -> None:
        """Take no more updates: stop polling, and stop waiting to take the role over."""
        if self.intake is not None:
            self.intake.cancel()
            with suppress(asyncio.CancelledError):
                await self.intake
            self.intake = None


def adapter_of(application: Application) -> TelegramAdapter:
    """The adapter parts of an application made by :func:`build_application`."""
    return application.bot_data[ADAPTER_KEY]


def _file_url(base_url: str) -> str | None:
    """``http://host:8081/bot`` -> ``http://host:8081/file/bot`` (the server's file route)."""
    if base_url.endswith("/bot"):
        return base_url.removesuffix("/bot") + "/file/bot"
    return None


def build_application(
    settings: Settings,
    deps: Deps,
    *,
    timing: Timing | None = None,
    concurrent_updates: int = CONCURRENT_UPDATES,
) -> Application:
    """The bot's PTB application, from the settings; ``TELEGRAM_TOKEN`` must be set.

    ``timing`` and ``concurrent_updates`` are for tests and benchmarks.
    """
    if settings.telegram_token is None:
        raise ValueError("TELEGRAM_TOKEN is not set")
    token = settings.telegram_token.get_secret_value()
    install_redaction(token)
    timing = timing or Timing()
    turns = (
        ChatTurns(deps.pace, wall=timing.wall, sleep=timing.sleep)
        if deps.pace is not None
        else None
    )
    flood = FloodControl(monotonic=timing.monotonic, sleep=timing.sleep, turns=turns)
    builder = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(flood)
        .concurrent_updates(concurrent_updates)
        .job_queue(None)
        .media_write_timeout(MEDIA_WRITE_TIMEOUT_S)
    )
    self_hosted = settings.telegram_base_url is not None
    if settings.telegram_base_url is not None:
        builder = builder.base_url(settings.telegram_base_url)
        file_url = settings.telegram_base_file_url or _file_url(settings.telegram_base_url)
        if file_url is not None:
            builder = builder.base_file_url(file_url)
    elif settings.telegram_base_file_url is not None:
        builder = builder.base_file_url(settings.telegram_base_file_url)
    if settings.telegram_local_mode:
        builder = builder.local_mode(True)
    if settings.telegram_webhook_url is not None:
        builder = builder.updater(None)
    application = builder.build()
    bot: ExtBot = application.bot
    admins = AdminCheck(bot, settings.telegram_admin_chats, monotonic=timing.monotonic)
    upload_limit = (
        FileSizeLimit.FILESIZE_UPLOAD_LOCAL_MODE if self_hosted else FileSizeLimit.FILESIZE_UPLOAD
    )
    outbox = TelegramOutbox(bot, upload_limit=upload_limit, local_mode=settings.telegram_local_mode)
    handlers = Handlers(deps, admins)
    deps.refunds[PLATFORM] = TelegramRefunds(bot)
    handlers.register(application)
    application.add_error_handler(make_error_handler(token))
    application.bot_data[ADAPTER_KEY] = TelegramAdapter(
        settings, deps, outbox, handlers, admins, flood
    )
    return application


async def publish_commands(bot: ExtBot) -> None:
    """The command menu (``setMyCommands``) in English for everyone and in Chinese for zh."""
    for locale, language_code in MENU_LANGUAGES.items():
        translate = translator(locale)
        commands = [BotCommand(name, translate(text(key))) for name, key in COMMANDS.items()]
        try:
            await bot.set_my_commands(commands, language_code=language_code)
        except TelegramError as error:
            log.warning("could not publish the %s command menu: %s", locale, error)


@asynccontextmanager
async def running(
    application: Application, *, poll_timeout_s: int = POLL_TIMEOUT_S
) -> AsyncIterator[TelegramAdapter]:
    """Start taking updates (polling or webhook) and route the runner's Telegram messages."""
    adapter = adapter_of(application)
    settings = adapter.settings
    async with application:  # getMe: a wrong token fails here
        await publish_commands(application.bot)
        if adapter.deps.generation is not None:
            adapter.deps.generation.outboxes.register(PLATFORM, adapter.outbox)
        await application.start()
        try:
            if settings.telegram_webhook_url is not None:
                secret = (
                    settings.telegram_webhook_secret.get_secret_value()
                    if settings.telegram_webhook_secret is not None
                    else derived_secret(application.bot.token)
                )
                register([secret])  # a configured secret is kept out of the logs too
                adapter.webhook = WebhookServer(
                    application,
                    url=settings.telegram_webhook_url,
                    listen=settings.telegram_webhook_listen,
                    secret=secret,
                    allowed_updates=ALLOWED_UPDATES,
                )
                await adapter.webhook.start()
            else:
                await _poll_while_held(application, adapter, poll_timeout_s)
            log.info(
                "Telegram bot @%s is up (%s)",
                application.bot.username,
                "webhook"
                if adapter.webhook
                else "standby: another replica polls"
                if adapter.standby
                else "polling",
            )
            yield adapter
        finally:
            if adapter.webhook is not None:
                await adapter.webhook.stop()  # the webhook stays set: the other replicas serve it
            await adapter.stop_intake()
            await adapter.handlers.drain()
            await adapter.outbox.drain()
            await application.stop()


async def _poll_while_held(
    application: Application, adapter: TelegramAdapter, poll_timeout_s: int
) -> None:
    """Poll while this replica holds the polling role (always, on SQLite); else stand by.

    Telegram answers a second ``getUpdates`` by ending the first with a
    Conflict, so only one replica may poll. One that holds the role when it
    starts polls before this returns (a refused token or an unreachable API
    fails the start, as always); a standby takes over when the holder dies.
    """
    updater = application.updater
    assert updater is not None

    async def start() -> None:
        adapter.not_polling.clear()
        try:
            await _start()
        except BaseException:
            adapter.not_polling.set()
            raise
        adapter.polling.set()

    async def stop() -> None:
        adapter.polling.clear()
        try:
            if updater.running:
                await updater.stop()
        finally:
            adapter.not_polling.set()

    async def _start() -> None:
        await updater.start_polling(
            poll_interval=0.0,
            timeout=poll_timeout_s,
            bootstrap_retries=5,
            allowed_updates=ALLOWED_UPDATES,
            error_callback=lambda error: log.warning(
                "polling Telegram failed, retrying: %s: %s", type(error).__name__, error
            ),
        )

    role = await adapter.deps.roles.claim(TELEGRAM_POLLING)
    adapter.polling_role = role
    held = role.held
    if held:
        await start()
    else:
        adapter.not_polling.set()
    adapter.intake = asyncio.create_task(
        serve_role(role, start, stop, started=held), name="telegram polling role"
    )
