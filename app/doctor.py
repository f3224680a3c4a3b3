"""``klingbot doctor``: is this installation ready to serve? One line per check, and what to do.

Like ``brew doctor``: each check prints ``[✓]`` (fine), ``[i]`` (a note: how
it will run, fine as it is), ``[!]`` (works, but worth a look) or ``[✗]``
(will not work) with one line of detail and, when something is wrong or
could be otherwise, what to do after an arrow. The exit status is 1 when any
check failed, else 0. Nothing is changed: a missing database is not
created, a pending migration is not applied, the writability test rolls
back, and the local renderer's test frame goes to a temporary folder.

The checks: the settings load; which platforms are served (none is a note:
``klingbot run`` opens the console chat, the README's first set-up) and
whether each set token is accepted (Telegram ``getMe``, Discord ``users/@me``, through
``TELEGRAM_BASE_URL`` / ``DISCORD_API_BASE`` when set); moderators exist,
and which Discord servers' rights count (a moderator role without
``DISCORD_GUILD_IDS`` counts nowhere);
the database (SQLite: exists or can be created, schema current, WAL,
integrity, writable, ledger invariants; PostgreSQL, with
``KLINGBOT_DATABASE_URL``: the server answers and accepts the login, schema
current, writable, ledger invariants); the data folder (writable, free space); the
provider (the local renderer encodes one frame; Kling accepts the keys).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from app.logs import redact, secrets_of
from bot.errors import StorageUnavailable
from bot.settings import ConfigError, Settings, load_settings
from storage.database import (
    explain,
    may_write,
    prove_writable,
    read_only_reason,
    read_only_uri,
)
from storage.migrate import migration_scripts

Status = Literal["ok", "note", "warn", "fail"]
MARKS: dict[Status, str] = {"ok": "[✓]", "note": "[i]", "warn": "[!]", "fail": "[✗]"}

FAIL_FREE_BYTES = 256 * 2**20
"""Below this much free space in the data folder, clips cannot be made reliably."""
WARN_FREE_BYTES = 2 * 2**30
HTTP_TIMEOUT_S = 10.0
TELEGRAM_API = "https://api.telegram.org/bot"
DISCORD_API = "https://discord.com/api"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check."""

    status: Status
    name: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        """``[✗] name: detail → fix``."""
        text = f"{MARKS[self.status]} {self.name}: {self.detail}"
        return f"{text} → {self.fix}" if self.fix and self.status != "ok" else text


async def run_doctor(
    environ: dict[str, str] | None = None,
    *,
    out: Callable[[str], None] = print,
    http: httpx.AsyncClient | None = None,
) -> int:
    """Run every check, print one line each and a summary; return the exit status."""
    findings: list[Finding] = []

    def report(finding: Finding) -> None:
        findings.append(finding)
        out(finding.line())

    try:
        settings = load_settings(environ)
    except ConfigError as error:
        report(Finding("fail", "settings", str(error).replace("\n", " "), "fix the named field"))
        return _summary(findings, out)
    source = (os.environ if environ is None else environ).get("KLINGBOT_CONFIG")
    report(Finding("ok", "settings", "the environment" + (f" and {source}" if source else "")))
    client = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
    try:
        for finding in await _platforms(settings, client):
            report(finding)
    finally:
        if http is None:
            await client.aclose()
    report(_moderators(settings))
    if (discord_moderators := _discord_moderators(settings)) is not None:
        report(discord_moderators)
    if (discord_shards := _discord_shards(settings)) is not None:
        report(discord_shards)
    for finding in await _database(settings):
        report(finding)
    report(_data_dir(settings))
    report(await _provider(settings))
    return _summary(findings, out)


def _summary(findings: list[Finding], out: Callable[[str], None]) -> int:
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    if failed:
        out(f"doctor: {failed} problem(s) to fix" + (f", {warned} warning(s)" if warned else ""))
        return 1
    out("doctor: ready" + (f" ({warned} warning(s))" if warned else ""))
    return 0


# --- platforms -----------------------------------------------------------------------------


async def _platforms(settings: Settings, client: httpx.AsyncClient) -> list[Finding]:
    if settings.telegram_token is None and settings.discord_token is None:
        return [
            Finding(
                "note",
                "platforms",
                "no TELEGRAM_TOKEN or DISCORD_TOKEN: klingbot run opens the console chat",
                "to serve a platform, set TELEGRAM_TOKEN (README: Run on Telegram)"
                " or DISCORD_TOKEN (Run on Discord)",
            )
        ]
    findings = []
    secrets = secrets_of(settings)
    if settings.telegram_token is not None:
        findings.append(await _telegram(settings, client, secrets))
    if settings.discord_token is not None:
        findings.append(await _discord(settings, client, secrets))
    return findings


async def _telegram(settings: Settings, client: httpx.AsyncClient, secrets) -> Finding:
    assert settings.telegram_token is not None
    base = settings.telegram_base_url or TELEGRAM_API
    url = f"{base}{settings.telegram_token.get_secret_value()}/getMe"
    try:
        response = await client.get(url)
    except httpx.HTTPError as error:
        reason = redact(f"{type(error).__name__}: {error}", secrets)
        return Finding(
            "fail",
            "telegram",
            f"cannot reach the Bot API at {redact(base, secrets)} ({reason})",
            "check the network, and TELEGRAM_BASE_URL if set",
        )
    if response.status_code in (401, 404):
        return Finding(
            "fail", "telegram", "Telegram refused TELEGRAM_TOKEN", "check it with @BotFather"
        )
    try:
        body = response.json()
        username = body["result"]["username"]
    except (ValueError, KeyError, TypeError):
        return Finding(
            "fail",
            "telegram",
            f"{redact(base, secrets)} answered {response.status_code}, not like the Bot API",
            "check TELEGRAM_BASE_URL",
        )
    return Finding("ok", "telegram", f"token accepted: @{username}")


async def _discord(settings: Settings, client: httpx.AsyncClient, secrets) -> Finding:
    assert settings.discord_token is not None
    base = settings.discord_api_base or DISCORD_API
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}"}
    try:
        response = await client.get(f"{base}/v10/users/@me", headers=headers)
    except httpx.HTTPError as error:
        reason = redact(f"{type(error).__name__}: {error}", secrets)
        return Finding(
            "fail",
            "discord",
            f"cannot reach the Discord API at {base} ({reason})",
            "check the network, and DISCORD_API_BASE if set",
        )
    if response.status_code == 401:
        return Finding(
            "fail",
            "discord",
            "Discord refused DISCORD_TOKEN",
            "reset and copy the token under Bot in the Developer Portal",
        )
    try:
        user = response.json()
        name = user["username"]
    except (ValueError, KeyError, TypeError):
        return Finding(
            "fail",
            "discord",
            f"{base} answered {response.status_code}, not like the Discord API",
            "check DISCORD_API_BASE",
        )
    return Finding("ok", "discord", f"token accepted: {name} (id {user.get('id', '?')})")


def _moderators(settings: Settings) -> Finding:
    if not settings.moderators:
        return Finding(
            "warn",
            "moderators",
            "none configured: nobody can /topup or /refund in chat (except the admins of"
            " TELEGRAM_ADMIN_CHATS and DISCORD_GUILD_IDS)",
            "set KLINGBOT_MODERATORS=telegram:<your id> or discord:<your id>",
        )
    return Finding("ok", "moderators", ", ".join(str(m) for m in settings.moderators))


def _discord_moderators(settings: Settings) -> Finding | None:
    """Which Discord servers' rights make moderators (only the listed ones); None: no Discord."""
    role = settings.discord_moderator_role
    if settings.discord_token is None and role is None:
        return None
    if not settings.discord_guild_ids:
        detail = (
            "only the discord:<id> entries of KLINGBOT_MODERATORS: without DISCORD_GUILD_IDS"
            " no server's admins are moderators"
        )
        if role is None:
            return Finding("ok", "discord moderators", detail)
        return Finding(
            "warn",
            "discord moderators",
            f"DISCORD_MODERATOR_ROLE ({role}) has no effect without DISCORD_GUILD_IDS:"
            " no server's admins or role holders are moderators, only the discord:<id>"
            " entries of KLINGBOT_MODERATORS",
            "list your own servers in DISCORD_GUILD_IDS, or unset DISCORD_MODERATOR_ROLE",
        )
    servers = ", ".join(str(guild) for guild in settings.discord_guild_ids)
    holders = f", the role {role}" if role is not None else ""
    return Finding(
        "ok",
        "discord moderators",
        f"Administrator, Manage Server{holders} in servers {servers} only;"
        " elsewhere only the discord:<id> entries of KLINGBOT_MODERATORS",
    )


def _discord_shards(settings: Settings) -> Finding | None:
    """Which Discord shards this process connects; None: no DISCORD_SHARD_COUNT."""
    shards, count = settings.discord_shards, settings.discord_shard_count
    if shards is None or count is None:
        return None
    mine = ",".join(str(shard) for shard in shards)
    if settings.discord_token is None:
        return Finding(
            "warn",
            "discord shards",
            f"DISCORD_SHARD_COUNT={count} has no effect without DISCORD_TOKEN",
            "set DISCORD_TOKEN, or unset DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS",
        )
    if len(shards) == count:
        return Finding(
            "ok",
            "discord shards",
            f"all {count} shard(s) in this process ({mine}); it syncs the commands",
        )
    others = ",".join(str(shard) for shard in range(count) if shard not in shards)
    syncs = "it syncs the commands" if 0 in shards else "the replica with shard 0 syncs them"
    detail = f"shards {mine} of {count} here ({syncs}); shards {others} must run in other replicas"
    if not settings.postgres:
        return Finding(
            "warn",
            "discord shards",
            f"{detail}, but replicas cannot share an SQLite database: each would keep its own"
            " wallets",
            "set KLINGBOT_DATABASE_URL (PostgreSQL) in every replica, or run all shards here",
        )
    return Finding(
        "note",
        "discord shards",
        f"{detail}, each shard in exactly one, all with DISCORD_SHARD_COUNT={count}",
    )


# --- database ------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable(folder: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=effective)


def _inspect(path: Path, busy_timeout_ms: int) -> tuple[int, str, list[str], str | None]:
    """Schema version, journal mode, integrity problems, and why it cannot be written (or None).

    A file this process may not write is only read, as ``klingbot db check``
    reads it: opened to write, SQLite would leave read-only ``-wal`` and
    ``-shm`` files beside it that stop the next start.
    """
    writable = may_write(path)
    uri = f"{path.absolute().as_uri()}?mode=rw" if writable else read_only_uri(path)
    connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0])
        rows = connection.execute("PRAGMA integrity_check").fetchall()
        problems = [] if [tuple(r) for r in rows] == [("ok",)] else [str(r[0]) for r in rows]
        unwritable = None if writable else read_only_reason(path)
        try:
            if writable:
                prove_writable(connection)
        except sqlite3.Error as error:
            unwritable = str(explain(error, path))
        return version, mode, problems, unwritable
    finally:
        connection.close()


async def _database(settings: Settings) -> list[Finding]:
    if settings.postgres:
        return await _postgres(settings)
    path = settings.db
    shown = str(path.absolute())
    if path.is_dir():
        return [
            Finding(
                "fail",
                "database",
                f"{shown} is a folder",
                f"set KLINGBOT_DB to the database file, such as {path.absolute() / 'klingbot.db'}",
            )
        ]
    if not path.exists():
        folder = _nearest_existing(path.absolute().parent)
        if not _writable(folder):
            return [
                Finding(
                    "fail",
                    "database",
                    f"{shown} does not exist and {folder} is not writable",
                    "make the folder writable for this user, or set KLINGBOT_DB",
                )
            ]
        return [
            Finding(
                "warn",
                "database",
                f"{shown} does not exist yet",
                "klingbot run creates it (check KLINGBOT_DB if you expected one)",
            )
        ]
    try:
        version, mode, problems, unwritable = await asyncio.to_thread(
            _inspect, path, settings.db_busy_timeout_ms
        )
    except sqlite3.Error as error:
        return [Finding("fail", "database", str(explain(error, path)), "restore a backup")]
    latest = max(version for version, _, _ in migration_scripts())
    findings = [Finding("ok", "database", shown)]
    if version > latest:
        findings.append(
            Finding(
                "fail",
                "schema",
                f"version {version} is newer than this klingbot knows ({latest})",
                "upgrade klingbot",
            )
        )
    elif version < latest:
        findings.append(
            Finding(
                "warn",
                "schema",
                f"version {version}, {latest - version} migration(s) pending",
                "klingbot run applies them at start, or run klingbot db migrate",
            )
        )
    else:
        findings.append(Finding("ok", "schema", f"version {version}, current"))
    findings.append(
        Finding("ok", "journal", "WAL")
        if mode == "wal"
        else Finding("warn", "journal", f"{mode}, not WAL", "klingbot run switches it at start")
    )
    if problems:
        findings.append(
            Finding(
                "fail",
                "integrity",
                f"{len(problems)} problem(s): {problems[0]}",
                "stop the bot and klingbot db restore a backup",
            )
        )
        return findings
    findings.append(Finding("ok", "integrity", "integrity_check ok"))
    if unwritable:
        findings.append(Finding("fail", "writable", unwritable))
        return findings
    findings.append(Finding("ok", "writable", "a write transaction commits (rolled back)"))
    if version != latest:
        return findings
    findings.append(await _ledger(settings))
    return findings


async def _postgres(settings: Settings) -> list[Finding]:
    """The PostgreSQL database of ``KLINGBOT_DATABASE_URL``, as for SQLite: nothing is changed."""
    import asyncpg

    from storage.postgres.database import explain
    from storage.postgres.migrate import applied_versions, migration_scripts

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    shown = settings.database_shown
    try:
        connection = await asyncpg.connect(
            url,
            timeout=HTTP_TIMEOUT_S,
            server_settings={"application_name": "klingbot doctor"},
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, ValueError) as e:
        return [
            Finding(
                "fail",
                "database",
                str(explain(e, url)),
                "check KLINGBOT_DATABASE_URL, and that PostgreSQL runs and lets this user in",
            )
        ]
    try:
        version = await connection.fetchval("SHOW server_version")
        findings = [Finding("ok", "database", f"{shown} (PostgreSQL {version.split()[0]})")]
        applied = await applied_versions(connection)
        bundled = {number for number, _, _ in migration_scripts()}
        latest = max(bundled)
        current = False
        if applied - bundled:
            findings.append(
                Finding(
                    "fail",
                    "schema",
                    f"version {max(applied)} is newer than this klingbot knows ({latest})",
                    "upgrade klingbot",
                )
            )
        elif not applied:
            findings.append(
                Finding(
                    "warn",
                    "schema",
                    "an empty database (no klingbot tables yet)",
                    "klingbot run creates them at start, or run klingbot db migrate;"
                    " klingbot db copy --to moves an existing SQLite database here",
                )
            )
        elif pending := bundled - applied:
            findings.append(
                Finding(
                    "warn",
                    "schema",
                    f"version {max(applied)}, {len(pending)} migration(s) pending",
                    "klingbot run applies them at start, or run klingbot db migrate",
                )
            )
        else:
            current = True
            findings.append(Finding("ok", "schema", f"version {latest}, current"))
        problem = await _postgres_unwritable(connection, current=current)
        replicas = await _replicas(connection) if current else None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
        return [Finding("fail", "database", str(explain(error, url)))]
    finally:
        await connection.close()
    if problem is not None:
        findings.append(Finding("fail", "writable", problem))
        return findings
    findings.append(Finding("ok", "writable", "a write transaction commits (rolled back)"))
    if not current:
        return findings
    if replicas is not None:
        findings.append(replicas)
    findings.append(await _ledger(settings))
    return findings


async def _replicas(connection) -> Finding:
    """The replicas running on this database, and which of the roles each holds."""
    from app.replica_lease import describe_replicas
    from bot.roles import DISCORD_GATEWAY, RETENTION, TELEGRAM_POLLING

    roles = [TELEGRAM_POLLING, DISCORD_GATEWAY, RETENTION]
    return Finding("ok", "replicas", await describe_replicas(connection, roles))


async def _postgres_unwritable(connection, *, current: bool) -> str | None:
    """Why klingbot could not write this database, or None: a real write, rolled back.

    A standby, a read-only default or a user without the rights (to create
    the tables when there are none, to write them when there are) fails here
    instead of at the first top-up.
    """
    import asyncpg

    if await connection.fetchval("SELECT pg_is_in_recovery()"):
        return "the server is a read-only standby: point KLINGBOT_DATABASE_URL at the primary"
    transaction = connection.transaction()
    await transaction.start()
    try:
        if current:
            await connection.execute(
                "INSERT INTO app_state (key, value, updated_at) VALUES ('doctor:probe', '', 0)"
                " ON CONFLICT (key) DO UPDATE SET updated_at = app_state.updated_at"
            )
        else:  # klingbot db migrate will create tables
            await connection.execute("CREATE TABLE klingbot_doctor_probe (x integer)")
    except asyncpg.PostgresError as error:
        return f"this user cannot write the database ({str(error).splitlines()[0]})"
    finally:
        await transaction.rollback()
    return None


async def _ledger(settings: Settings) -> Finding:
    """The ledger invariants on the settings' database (either backend)."""
    from app.backend import open_storage

    try:
        async with open_storage(settings, create=False, read_only=True) as storage:
            violations = await storage.audit()
            wallets = await storage.wallet_count()
    except StorageUnavailable as error:
        return Finding("fail", "ledger", str(error))
    if violations:
        return Finding(
            "fail",
            "ledger",
            f"{len(violations)} invariant violation(s): {violations[0]}",
            "run klingbot db check for the list; restore a backup",
        )
    detail = f"balances match their entries ({wallets} wallet{'' if wallets == 1 else 's'})"
    return Finding("ok", "ledger", detail)


def _data_dir(settings: Settings) -> Finding:
    assert settings.data_dir is not None
    folder = settings.data_dir.absolute()
    existing = _nearest_existing(folder)
    if not _writable(existing):
        return Finding(
            "fail",
            "data folder",
            f"{existing} is not writable (clips go to {folder})",
            "make it writable for this user, or set KLINGBOT_DATA_DIR",
        )
    free = shutil.disk_usage(existing).free
    detail = f"{folder}: {free / 2**30:.1f} GiB free"
    if free < FAIL_FREE_BYTES:
        return Finding("fail", "data folder", detail, "free some space (old clips in clips/)")
    if free < WARN_FREE_BYTES:
        return Finding("warn", "data folder", detail, "clips will fill it soon: free some space")
    return Finding("ok", "data folder", detail)


# --- provider ------------------------------------------------------------------------------


async def _provider(settings: Settings) -> Finding:
    if settings.provider == "kling":
        return await _kling(settings)
    from app.provider_check import probe_local_renderer

    problem, seconds = await probe_local_renderer()
    if problem is not None:
        return Finding("fail", "provider", problem)
    return Finding("ok", "provider", f"local renderer encodes (one frame in {seconds:.2f} s)")


async def _kling(settings: Settings) -> Finding:
    from app.provider_check import probe_keys, secret_key_note
    from bot.providers.kling import kling_client

    try:
        client = kling_client(settings)
    except ConfigError as error:
        return Finding(
            "fail", "provider", str(error), "set both Kling keys, or KLINGBOT_PROVIDER=local"
        )
    try:
        problem = await probe_keys(client, settings.kling_base_url)
    finally:
        await client.close()
    if problem is not None:
        return Finding("fail", "provider", problem)
    accepted = f"Kling API at {settings.kling_base_url}: keys accepted"
    if (note := secret_key_note(settings)) is not None:
        return Finding("warn", "provider", f"{accepted}; {note.removeprefix('note: ')}")
    return Finding("ok", "provider", accepted)
