"""The ``klingbot`` command: run the bot, open the console chat, print prices, manage wallets.

Every subcommand loads the settings once, and turns a bad config or an
unusable database into one clear line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from app import arguments
from app.backend import open_storage, runner_lease_for
from app.bootstrap import open_core, open_wallets
from app.logs import redact, setup_logging
from app.operator import db_copy, export_command
from app.serve import (
    Served,
    ShutdownDeadline,
    start_operations,
    wait_for_stop,
    watch_discord,
    watch_telegram,
)
from bot.access import resolve_user
from bot.catalog import BASE_DURATION
from bot.commands import Balance, Caller
from bot.deps import Deps
from bot.errors import StorageUnavailable, UserError
from bot.i18n import Translator, load_locales
from bot.parsing import HISTORY_MAX
from bot.ports import LedgerEntry
from bot.reasons import reason_for
from bot.replies import Money, Reply, Text, text
from bot.service import balance, price_table, respond_to_text
from bot.settings import ConfigError, Settings, load_settings

log = logging.getLogger("klingbot")

DESCRIPTION = "klingbot: run the bot, open the console chat, print prices, manage wallets offline."
USER_HELP = "me (the local operator), @username, an id, or platform:id (e.g. telegram:12345)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="klingbot", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("run", help="start every adapter whose token is set (else the console)")

    console = commands.add_parser("console", help="chat with the bot in this terminal")
    console.add_argument(
        "--as",
        dest="user",
        type=arguments.console_user,
        help="chat as another (non-moderator) console user",
    )
    console.add_argument("--lang", type=arguments.language, help=arguments.LANG_HELP)

    price_cmd = commands.add_parser("price", help="print the price table and exit")
    price_cmd.add_argument(
        "clip", nargs="?", type=arguments.duration, metavar="5|10", help="seconds"
    )
    price_cmd.add_argument("-d", "--duration", type=arguments.duration, help="5 or 10 seconds (5)")
    price_cmd.add_argument("--lang", type=arguments.language, help=arguments.LANG_HELP)

    wallet = commands.add_parser("wallet", help="wallet operations for operators, offline")
    wallet_commands = wallet.add_subparsers(dest="wallet_command", required=True)
    topup = wallet_commands.add_parser("topup", help="add credits to a wallet")
    topup.add_argument("user", help=USER_HELP + "; a new platform:id gets a wallet")
    topup.add_argument("credits")
    topup.add_argument("reason", nargs="*", default=[])  # optional: never named as required
    balance = wallet_commands.add_parser("balance", help="show a wallet")
    balance.add_argument("user", help=USER_HELP)
    history = wallet_commands.add_parser("history", help="show a wallet's last entries")
    history.add_argument("user", help=USER_HELP)
    # Checked after parsing: argparse's choices would print all 50 values.
    history.add_argument("-n", default="10", metavar=f"1..{HISTORY_MAX}", help="how many (10)")
    unlink = wallet_commands.add_parser(
        "unlink", help="separate linked accounts (one wallet on Telegram and Discord)"
    )
    unlink.add_argument("user", help=USER_HELP + "; either account of the pair")
    unlink.add_argument(
        "--credits",
        default="0",
        help="credits the account that sent the code starts with, from the shared wallet (0)",
    )
    export = wallet_commands.add_parser("export", help="every ledger entry, for accounting")
    export.add_argument("--csv", action="store_true", help="CSV (the only format, the default)")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument(
        "--lang", type=arguments.language, help="language of the bot's reasons: en or zh-CN"
    )

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations and exit")
    db_commands.add_parser("check", help="verify the ledger invariants")
    backup = db_commands.add_parser("backup", help="copy the database, even while the bot runs")
    backup.add_argument(
        "path",
        nargs="?",
        help="the backup file, or a folder (ending in /) for a timestamped one;"
        " default: backups/ in the data folder",
    )
    restore = db_commands.add_parser("restore", help="replace the database by a checked backup")
    restore.add_argument("path", help="the backup file")
    copy = db_commands.add_parser(
        "copy", help="copy the SQLite database into an empty PostgreSQL database, and check it"
    )
    copy.add_argument(
        "--to",
        metavar="postgresql://…",
        help="the PostgreSQL database (default: KLINGBOT_DATABASE_URL); it must be empty",
    )

    commands.add_parser("doctor", help="check the settings, database, provider and tokens")
    commands.add_parser("health", help="exit 0 if a running bot is healthy (container checks)")
    config = commands.add_parser("config", help="the settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_docs = config_commands.add_parser("docs", help="print docs/CONFIGURATION.md")
    config_docs.add_argument("--write", action="store_true", help="write docs/CONFIGURATION.md")

    provider = commands.add_parser("provider", help="the video provider (Kling)")
    provider_commands = provider.add_subparsers(dest="provider_command", required=True)
    provider_commands.add_parser("check", help="check the Kling keys; list the resource packs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``klingbot`` script."""
    # PyJWT warns about a short Kling secret key with a stack line; provider check and
    # doctor say it in one line instead.
    warnings.filterwarnings("ignore", message="The HMAC key is", category=UserWarning)
    args = build_parser().parse_args(argv)
    setup_logging(None, verbose=args.verbose, quiet=True)
    if args.command == "doctor":
        from app.doctor import run_doctor  # HTTP clients for the token checks: load on demand

        return asyncio.run(run_doctor())
    if args.command == "config":
        return _config(args)
    try:
        settings = load_settings()
        # The console chat (``run`` without tokens too) owns the terminal: only warnings
        # interrupt it. So do the wallet and database commands, whose output is their answer.
        quiet = args.command != "run" or not _has_platform(settings)
        setup_logging(settings, verbose=args.verbose, quiet=quiet)
        if args.command == "health":
            from app.health import health_command

            return health_command(settings)
        if args.command in ("run", "console"):
            freeze_modules(
                render=settings.provider == "local",
                telegram=args.command == "run" and settings.telegram_token is not None,
                discord=args.command == "run" and settings.discord_token is not None,
            )
        return asyncio.run(_run(args, settings))
    except (ConfigError, StorageUnavailable) as error:
        # redact: a driver's message may quote KLINGBOT_DATABASE_URL, password and all.
        print(f"klingbot: {redact(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()


SIGPIPE_STATUS = 128 + signal.SIGPIPE
"""The status of a Unix tool whose reader went away (``klingbot wallet export | head -1``)."""


def _reader_gone() -> int:
    """Stdout's reader closed the pipe: stop quietly, as Unix tools do.

    Output still buffered would fail again when Python flushes stdout at
    exit and print a warning: stdout is pointed at /dev/null first.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


NO_PLATFORM = (
    "no platform to serve: set TELEGRAM_TOKEN or DISCORD_TOKEN (with compose, in klingbot.env;"
    " see klingbot.env.example). Without them klingbot run opens the console chat, and only on"
    " a terminal"
)
"""Why ``klingbot run`` with no token and no terminal exits 2 (one line)."""


def _has_platform(settings: Settings) -> bool:
    """Whether ``klingbot run`` has a platform to serve (else it is the console chat)."""
    return settings.telegram_token is not None or settings.discord_token is not None


def freeze_modules(*, render: bool, telegram: bool, discord: bool) -> None:
    """Load the modules the bot will use, then keep the garbage collector off them.

    Everything imported lives as long as the process: after
    :func:`gc.freeze` full collections no longer walk it (about 50,000
    objects for the renderer's libraries, 30,000 more for python-telegram-bot,
    25,000 for discord.py, 6,000 for Babel's locale data), so they stay short
    however long the bot runs. The adapters are imported here rather than
    when they start so that they are frozen too.
    """
    if render:
        import bot.providers.local.render  # noqa: F401
    if telegram:
        import adapters.telegram
    if discord:
        import adapters.discord  # noqa: F401
    load_locales()
    gc.collect()
    gc.freeze()


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "price":
        return await _print_prices(settings, args.clip or args.duration or BASE_DURATION, args.lang)
    if args.command == "console":
        return await _console(settings, args.user, args.lang)
    if args.command == "run":
        return await _serve(settings)
    if args.command == "wallet":
        return await _wallet(settings, args)
    if args.command == "provider":
        from app.provider_check import check_provider

        return await check_provider(settings)
    if args.db_command == "copy":
        return await _copy(settings, args.to)
    if args.db_command in ("backup", "restore"):
        if settings.postgres:
            return _file_operation_on_postgres(args.db_command)
        return await db_copy(settings, args.db_command, args.path)
    return await _db(settings, args.db_command)


async def _print_prices(settings: Settings, duration: int, lang: str | None) -> int:
    """Print the table without touching the database."""
    catalog = settings.catalog()
    lines = price_table(catalog, duration, lambda credits: Money.of(catalog, credits))
    translate = Translator(_operator(lang).locale)
    print("\n".join(translate(line) for line in lines))
    return 0


async def _console(settings: Settings, user: str | None, lang: str | None) -> int:
    from app.console import run_console

    return await run_console(settings, user, lang)


async def _serve(settings: Settings) -> int:
    """Serve every platform whose token is set until SIGINT or SIGTERM; else the console.

    With both tokens, Telegram and Discord share one core, one database
    writer and one job runner; each job reports on the platform it came from.
    """
    if not _has_platform(settings):
        if not sys.stdin.isatty():
            # A container or a service: a console would read end of input, exit 0, and be
            # restarted for ever by its restart policy.
            print(f"klingbot: {NO_PLATFORM}", file=sys.stderr)
            return 2
        return await _console(settings, None, None)  # make run on a fresh machine
    stop = asyncio.Event()
    deadline = ShutdownDeadline()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        if stop.is_set():
            os._exit(1)  # a second signal: stop now (jobs resume at the next start)
        stop.set()
        deadline.arm()

    for number in signals:
        loop.add_signal_handler(number, on_signal)
    try:
        # SQLite: one runner per database, taken before any job is loaded (exit 2 if alive).
        runner_lease = runner_lease_for(settings)
        async with (
            open_core(settings, runner_lease=runner_lease) as deps,
            AsyncExitStack() as adapters,
        ):
            assert deps.generation is not None
            lease_lost = asyncio.ensure_future(runner_lease.wait_lost())
            adapters.callback(lease_lost.cancel)
            watched: set[asyncio.Future] = {lease_lost}
            served = Served()
            if settings.telegram_token is not None:
                failure = await _start_telegram(settings, deps, adapters, served)
                if failure:
                    return failure
            if settings.discord_token is not None:
                started = await _start_discord(settings, deps, adapters, served)
                if isinstance(started, int):
                    return started
                watched.add(started)
            # Every adapter's outbox is registered: resumed jobs can reach their chats.
            # Presses taken since open_core loaded the queue wait in it behind
            # them; each job is launched here or later, once (JobRunner.load).
            await deps.generation.runner.start()
            adapters.push_async_callback(deps.generation.runner.stop)  # before adapters close
            for stop_intake in served.stop_intake:  # first of all: no new updates
                adapters.push_async_callback(stop_intake)
            operations = await start_operations(settings, deps, served)
            if operations is not None:
                adapters.push_async_callback(operations.stop)
            if not await wait_for_stop(stop, watched):
                if lease_lost.done():
                    log.error(
                        "another process took this replica's KLINGBOT_REPLICA_ID; stopping,"
                        " so that no job runs twice"
                    )
                else:
                    log.error(
                        "the Discord connection ended; stopping (jobs resume on the next start)"
                    )
                return 1
            log.info("stopping: unfinished jobs resume on the next start")
        log.info("stopped")
    finally:
        deadline.disarm()
        for number in signals:
            loop.remove_signal_handler(number)
    return 0


async def _start_telegram(
    settings: Settings, deps, adapters: AsyncExitStack, served: Served
) -> int:
    """Start the Telegram adapter; 0, or the exit status when Telegram cannot be served."""
    from telegram.error import InvalidToken, NetworkError

    from adapters.telegram import build_application, running
    from adapters.telegram.errors import redact, secrets_of

    assert settings.telegram_token is not None
    application = build_application(settings, deps)
    try:
        await adapters.enter_async_context(running(application))
        watch_telegram(application, served)
    except InvalidToken:
        print(
            "klingbot: Telegram refused TELEGRAM_TOKEN (check it with @BotFather)",
            file=sys.stderr,
        )
        return 2
    except NetworkError as error:
        reason = redact(str(error), secrets_of(settings.telegram_token.get_secret_value()))
        print(f"klingbot: cannot reach the Telegram Bot API: {reason}", file=sys.stderr)
        return 2
    return 0


SHARD_REFUSALS = {
    4010: "Discord refused the shard (gateway close 4010 Invalid shard): every replica needs"
    " the same DISCORD_SHARD_COUNT, and DISCORD_SHARD_IDS below it",
    4011: "Discord requires sharding for this many servers (gateway close 4011): set"
    " DISCORD_SHARD_COUNT (one shard per 1,000 servers or so) and give each replica its"
    " DISCORD_SHARD_IDS",
}
"""What the gateway's refusals of a shard setting mean, for the operator."""


async def _start_discord(
    settings: Settings, deps, adapters: AsyncExitStack, served: Served
) -> int | asyncio.Future:
    """Start the Discord adapter; its gateway connection, or the exit status on failure."""
    import aiohttp
    import discord

    from adapters.discord import build_client, running
    from adapters.discord.errors import redact, secrets_of

    assert settings.discord_token is not None
    client = build_client(settings, deps)
    try:
        adapter = await adapters.enter_async_context(running(client))
        watch_discord(client, served)
    except discord.LoginFailure:
        print(
            "klingbot: Discord refused DISCORD_TOKEN (reset it under Bot in the Developer Portal)",
            file=sys.stderr,
        )
        return 2
    except (
        OSError,
        TimeoutError,
        aiohttp.ClientError,
        discord.HTTPException,
        discord.GatewayNotFound,
        discord.ConnectionClosed,
    ) as error:
        if isinstance(error, discord.ConnectionClosed) and error.code in SHARD_REFUSALS:
            print(f"klingbot: {SHARD_REFUSALS[error.code]}", file=sys.stderr)
            return 2
        secrets = secrets_of(settings.discord_token.get_secret_value())
        reason = redact(f"{type(error).__name__}: {error}", secrets)
        print(f"klingbot: cannot reach Discord: {reason}", file=sys.stderr)
        return 2
    assert adapter.connection is not None
    return adapter.connection


async def _wallet(settings: Settings, args: argparse.Namespace) -> int:
    """Run a wallet command as the operator; exit 1 when the core refused it.

    Users are named as in chat (``me``, ``@name``, an id, ``platform:id``);
    the operator has no platform, so a bare name or id is looked up on all.
    """
    if args.wallet_command == "export":
        translate = Translator(_operator(args.lang).locale)
        return await export_command(settings, translate, args.output)
    caller = _operator(None)
    translate = Translator(caller.locale)
    if args.wallet_command == "history":
        count = _history_count(args.n)
        if count is None:
            message = text("cli.history_count", low=1, high=HISTORY_MAX, value=args.n[:24])
            print(f"klingbot: {translate(message)}", file=sys.stderr)
            return 2
    if not args.user or any(c.isspace() for c in args.user):
        # The top-up goes through the chat command line, where a space ends the user.
        print(translate(Text("error.unknown_user", {"query": args.user[:64]})))
        return 1
    async with open_wallets(settings) as deps:
        if args.wallet_command == "history":
            try:
                profile = await resolve_user(args.user, caller, deps)
            except UserError as error:
                print(translate(Text(error.key, error.params)))
                return 1
            _print_history(await deps.ledger.history(profile.user, count), deps, translate)
            return 0
        if args.wallet_command == "topup":
            line = f"/topup {args.user} {args.credits} {' '.join(args.reason)}"
            replies = await respond_to_text(line, caller, deps, request_id=None)
        elif args.wallet_command == "unlink":
            line = f"/unlink {args.user} {args.credits}"
            replies = await respond_to_text(line, caller, deps, request_id=None)
        else:
            replies = await _read_balance(args.user, caller, deps)
    for reply in replies:
        print(translate.reply(reply).text)
    return 1 if any(reply.private for reply in replies) else 0


async def _read_balance(query: str, caller: Caller, deps: Deps) -> list[Reply]:
    """``/balance`` as the operator, reading only: asking never opens a wallet, theirs included."""
    if query.lower() == "me" and await deps.ledger.wallet(caller.user) is None:
        return [Reply((text("balance.own", money=deps.money(0)),))]  # as chat would show it
    try:
        return await balance(Balance(query), caller, deps, None)
    except UserError as error:
        return [Reply((Text(error.key, error.params),), private=True)]


def _history_count(value: str) -> int | None:
    """``-n``: a whole number from 1 to HISTORY_MAX, else None."""
    if not (value.isascii() and value.isdigit()) or len(value) > 3:
        return None
    count = int(value)
    return count if 1 <= count <= HISTORY_MAX else None


def _print_history(entries: list[LedgerEntry], deps: Deps, translate: Translator) -> None:
    """Tab-separated, newest first, for grep and spreadsheets; reasons in the reader's language."""
    print("seq\ttime_utc\tkind\tamount\theld_delta\tbalance_after\tactor\treason")
    for entry in entries:
        when = datetime.fromtimestamp(entry.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        # One line per entry: tabs stay separators.
        reason = " ".join(reason_for(entry.reason, deps.catalog, translate).split())
        print(
            f"{entry.seq}\t{when}\t{entry.kind}\t{entry.amount:+}\t{entry.held_delta:+}\t"
            f"{entry.balance_after}\t{entry.actor}\t{reason}"
        )


def _file_operation_on_postgres(action: str) -> int:
    """``db backup`` and ``db restore`` copy the SQLite file: say what to use on PostgreSQL."""
    tool = "pg_dump" if action == "backup" else "pg_restore (or psql) with a pg_dump file"
    print(
        f"klingbot: db {action} works on the SQLite file KLINGBOT_DB; with KLINGBOT_DATABASE_URL"
        f" the data is in PostgreSQL: use {tool}, which copies a live database consistently",
        file=sys.stderr,
    )
    return 2


async def _copy(settings: Settings, to: str | None) -> int:
    """``db copy [--to URL]``: KLINGBOT_DB into an empty PostgreSQL database (app.pg_copy)."""
    from adapters.redaction import register
    from bot.settings import database_url_problem, database_url_secrets, mask_database_url

    if to is None:
        if settings.database_url is None:
            print(
                "klingbot: db copy needs the PostgreSQL database to copy into:"
                " --to postgresql://user:password@host:5432/db (or KLINGBOT_DATABASE_URL)",
                file=sys.stderr,
            )
            return 2
        to = settings.database_url.get_secret_value()
    to = to.strip()
    register(database_url_secrets(to))  # out of every log line from here on
    if problem := database_url_problem(to):
        print(f"klingbot: --to {problem}", file=sys.stderr)
        return 2
    from app.pg_copy import CopyRefused, copy_to_postgres, describe_counts

    timeout = settings.db_busy_timeout_ms
    try:
        result = await copy_to_postgres(settings.db, to, busy_timeout_ms=timeout)
    except CopyRefused as refused:
        print(f"klingbot: {refused}", file=sys.stderr)
        for detail in refused.details[1:]:  # the first is in the line above
            print(f"  {detail}", file=sys.stderr)
        return refused.status
    shown = mask_database_url(to)
    print(
        f"copied {settings.db} into {shown}: {describe_counts(result.counts)}"
        f" in {result.seconds:.1f} s; every balance and the ledger audit agree"
    )
    print(
        f"next: set KLINGBOT_DATABASE_URL={shown} (with its password) and start the bot;"
        f" keep {settings.db} as it is, as the backup of the move"
    )
    return 0


async def _db(settings: Settings, action: str) -> int:
    # Maintenance works on the bot's existing database: a mistyped KLINGBOT_DB
    # must not come back as a new, empty database that checks out fine.
    # check only reads: it opens the database read-only, and works on a read-only file.
    async with open_storage(settings, create=False, read_only=action == "check") as storage:
        if action == "migrate":
            shown = settings.db if storage.kind == "sqlite" else storage.shown
            print(f"database {shown} is up to date")
            return 0
        problems = await storage.audit()
    for problem in problems:
        print(problem)
    print("ledger OK" if not problems else f"{len(problems)} problem(s) found")
    return 0 if not problems else 1


def _operator(lang: str | None) -> Caller:
    """The operator at the command line: the console's local user (``console:local``), a moderator.

    One person, one wallet: ``/topup me 300`` in the console and
    ``klingbot wallet balance me`` here name the same wallet.
    """
    from adapters.console import console_caller

    return console_caller(None, lang)


def _config(args: argparse.Namespace) -> int:
    from app.config_docs import DOCUMENT, render, write

    if args.write:
        if not DOCUMENT.parent.is_dir():
            print(
                f"klingbot: there is no {DOCUMENT.parent}/ folder here: run config docs --write at"
                " the top of a klingbot checkout, or klingbot config docs > FILE elsewhere",
                file=sys.stderr,
            )
            return 2
        try:
            write()
        except OSError as error:
            print(f"klingbot: cannot write {DOCUMENT}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"wrote {DOCUMENT}")
    else:
        print(render(), end="")
    return 0
