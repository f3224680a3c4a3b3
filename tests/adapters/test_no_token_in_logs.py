"""No token of any kind in a DEBUG log of a Discord and a Telegram run.

The production logging setup (``app.logs.setup_logging``, as ``klingbot run
-v`` makes it) writes everything every logger says at DEBUG, discord.py's,
python-telegram-bot's, httpx's, httpcore's and aiohttp's own loggers
included, while members use the real discord.py client and the real
python-telegram-bot application against the stand-ins (commands, a quote, a
tier pressed, the clip delivered, a webhook registered). Then the log is
searched for every token the stand-ins issued or took: the bot tokens and
their secret parts, each interaction token, the webhook secret. None may
appear; the log must show that those libraries did log the requests that
carried them (so the test cannot pass by logging nothing).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from adapters.console.chat import sample_image
from adapters.telegram.webhook import SECRET_HEADER
from app.logs import JsonFormatter, setup_logging
from bot.commands import UserRef
from tests.adapters.conftest import MODERATOR_ID, telegram_bot
from tests.adapters.conftest import TOKEN as TELEGRAM_TOKEN
from tests.adapters.discord_bot import TOKEN as DISCORD_TOKEN
from tests.adapters.discord_bot import discord_bot
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.standin import BotApiStandIn
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip

LIBRARIES = ("discord", "telegram", "httpx", "httpcore", "aiohttp", "asyncio")
PROMPT = "a robot plays piano"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger at DEBUG through the production setup, into a string; restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    stream = io.StringIO()
    ours = setup_logging(None, verbose=True, stream=stream)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(ours)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


async def test_a_debug_log_of_discord_and_telegram_runs_holds_no_token(tmp_path, debug_log):
    clip = render_tiny_clip(tmp_path / "tiny.mp4")
    issued = [DISCORD_TOKEN, DISCORD_TOKEN.rpartition(".")[2]]
    issued += [TELEGRAM_TOKEN, TELEGRAM_TOKEN.partition(":")[2]]

    # Discord: a slash command, a quote from a picture, a tier pressed, the clip in the channel.
    async with DiscordStandIn(DISCORD_TOKEN) as api:
        guild = api.add_guild("Creators", channels=("general",))
        alice = guild.add_member("alice")
        async with discord_bot(
            tmp_path / "discord", api, guild, provider=ScriptedProvider(clip, Script())
        ) as bot:
            await bot.fund(alice, 100)
            await bot.answered(alice.slash("price"))
            picture = api.attachment(sample_image(), "robot.jpg", content_type="image/jpeg")
            quote = await bot.answered(
                alice.slash("gen", {"prompt": PROMPT}, attachments={"image": picture})
            )
            await api.wait_acknowledged(alice.press(quote, "Standard"))
            await bot.settle()
            [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 1)
            assert (job.state, job.delivery) == ("delivered", "uploaded")
        issued += [interaction.token for interaction in api.interactions.values()]
        assert len(api.interactions) >= 4

    # Telegram, polling: /start, a top-up, a quote from a photo, a tier pressed, the clip.
    async with (
        BotApiStandIn(TELEGRAM_TOKEN) as api,
        telegram_bot(tmp_path / "telegram", api, provider=ScriptedProvider(clip, Script())) as bot,
    ):
        member = bot.member(1001, "Alice", "alice")
        member.send("/start")
        await api.wait_for("sendMessage", chat_id=1001, count=2)
        bot.member(MODERATOR_ID, "Mod", "mod").send("/topup telegram:1001 100")
        await api.wait_for("sendMessage", chat_id=MODERATOR_ID)
        since = len(api.calls)
        member.send(f"/gen {PROMPT}", photo=sample_image(), size=(1280, 960))
        quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
        member.press(quote.result, "Standard")
        await api.wait_for("sendVideo", since=since)
        await bot.settle()
        await bot.idle()

    # Telegram, webhook mode: the secret is registered, and an update posted with it.
    async with (
        BotApiStandIn(TELEGRAM_TOKEN) as api,
        telegram_bot(
            tmp_path / "webhook",
            api,
            provider=ScriptedProvider(clip, Script()),
            telegram_webhook_url="https://bot.example.com/telegram/hook",
            telegram_webhook_listen="127.0.0.1:0",
        ) as bot,
    ):
        [webhook] = api.of("setWebhook")
        secret = webhook.params["secret_token"]
        issued.append(secret)
        update = {"update_id": 1, "message": bot.member(1002, "Bob").message("/price")}
        endpoint = f"http://127.0.0.1:{bot.adapter.webhook.port}/telegram/hook"
        async with aiohttp.ClientSession() as session:
            posted = await session.post(endpoint, json=update, headers={SECRET_HEADER: secret})
            assert posted.status == 200
        await api.wait_for("sendMessage", chat_id=1002)

    log = debug_log.getvalue()
    # The libraries did log the requests that carried the tokens...
    assert "WebSocket Event" in log  # discord.py's gateway events (interactions carry tokens)
    assert "/interactions/" in log and "/webhooks/" in log  # discord.py's HTTP requests
    assert "Calling Bot API endpoint `setWebhook`" in log  # python-telegram-bot's parameters
    assert "HTTP Request: POST" in log  # httpx's request lines (Telegram's URLs hold the token)
    assert "<token>" in log
    # ...and not one token is left.
    leaked = [token for token in issued if token in log]
    assert leaked == [], f"{len(leaked)} of {len(issued)} tokens in the DEBUG log"


def test_messages_tracebacks_and_stacks_are_redacted_for_every_handler_and_format(debug_log):
    interaction = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OkFCQ0RFRkdI"
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhayJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
    telegram = "987654321:AAFsecret-part-of-a-telegram-token-xyz"
    url = f"https://discord.com/api/v10/interactions/1234567890/{interaction}/callback"
    later = io.StringIO()  # a handler added after the setup (a test's capture, a library's own)
    handler = logging.StreamHandler(later)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler)
    log = logging.getLogger("some.library")
    try:
        raise RuntimeError(f"POST {url} failed; Authorization: Bearer {jwt}; bot{telegram}")
    except RuntimeError as error:
        log.debug("request %s failed", url, exc_info=error, stack_info=True)
        log.error("payload %s", {"token": interaction, "secret_token": "s3cr3t-webhook-value"})
    logging.getLogger().removeHandler(handler)
    json_lines = io.StringIO()
    json_handler = logging.StreamHandler(json_lines)
    json_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_handler)
    try:
        log.warning("again", exc_info=RuntimeError(f"{url} {jwt}"))
    finally:
        logging.getLogger().removeHandler(json_handler)
    for text in (debug_log.getvalue(), later.getvalue(), json_lines.getvalue()):
        assert "Traceback" in text or '"exc"' in text
        for secret in (interaction, jwt, telegram, "s3cr3t-webhook-value"):
            assert secret not in text
    assert "/interactions/1234567890/<token>/callback" in later.getvalue()
    assert "Stack (most recent call last)" in later.getvalue()
