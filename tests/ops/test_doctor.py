"""``klingbot doctor``: a fresh checkout is told what is missing; a configured one passes."""

from __future__ import annotations

from app.bootstrap import open_core
from app.doctor import run_doctor
from bot.commands import UserRef
from bot.settings import Settings
from tests.adapters.discord_standin import DiscordStandIn
from tests.adapters.standin import BotApiStandIn
from tests.e2e.conftest import run_cli

TELEGRAM_TOKEN = "123456789:AAH-doctor-token-for-the-stand-in-only"
DISCORD_TOKEN = "MTIz.doctor-discord.token-for-the-stand-in"


def test_the_readmes_console_set_up_is_ready_with_notes(tmp_path):
    result = run_cli("doctor", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[0] == "[✓] settings: the environment"
    assert lines[1] == (
        "[i] platforms: no TELEGRAM_TOKEN or DISCORD_TOKEN: klingbot run opens the console chat"
        " → to serve a platform, set TELEGRAM_TOKEN (README: Run on Telegram)"
        " or DISCORD_TOKEN (Run on Discord)"
    )
    assert any(line.startswith("[!] moderators: none configured") for line in lines)
    assert any(
        line.startswith("[!] database:") and "does not exist yet → klingbot run creates it" in line
        for line in lines
    )
    assert any(line.startswith("[✓] provider: local renderer encodes") for line in lines)
    assert lines[-1] == "doctor: ready (2 warning(s))"
    assert not (tmp_path / "klingbot.db").exists(), "the doctor created the database"


async def test_a_configured_installation_passes_and_a_wrong_token_is_named(tmp_path, monkeypatch):
    db = tmp_path / "data" / "klingbot.db"
    async with open_core(Settings(db=db)) as deps:  # the bot has run once: a real ledger
        await deps.ledger.top_up(
            UserRef("telegram", "1"), 50, key="k", actor="cli:op", reason="", now=1,
            create_wallet=True,
        )  # fmt: skip
    async with BotApiStandIn(TELEGRAM_TOKEN) as telegram, DiscordStandIn(DISCORD_TOKEN) as discord:
        environment = {
            "KLINGBOT_DB": str(db),
            "KLINGBOT_MODERATORS": "telegram:1",
            "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_BASE_URL": telegram.base_url,
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_BASE": discord.api_base,
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        lines: list[str] = []
        assert await run_doctor(out=lines.append) == 0, "\n".join(lines)
        assert lines[-1] == "doctor: ready"
        assert all(line.startswith("[✓]") for line in lines[:-1]), lines
        assert "[✓] telegram: token accepted: @klingbot_test_bot" in lines
        assert any(line.startswith("[✓] discord: token accepted: klingbot") for line in lines)
        assert "[✓] ledger: balances match their entries (1 wallet)" in lines

        monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token-that-discord-refuses")
        monkeypatch.setenv("TELEGRAM_TOKEN", "123456789:AAH-wrong-token-the-stand-in-refuses")
        lines.clear()
        assert await run_doctor(out=lines.append) == 1
    assert (
        "[✗] discord: Discord refused DISCORD_TOKEN → reset and copy the token under Bot"
        " in the Developer Portal" in lines
    )
    assert any(line.startswith("[✗] telegram: Telegram refused") for line in lines), lines
    output = "\n".join(lines)
    assert "wrong" not in output and TELEGRAM_TOKEN not in output and DISCORD_TOKEN not in output


async def test_with_kling_the_doctor_asks_whether_the_keys_answer(tmp_path, monkeypatch):
    from tests.providers.kling_standin import KlingStandin

    kling = KlingStandin(tmp_path / "unused.mp4")
    await kling.start()
    try:
        monkeypatch.setenv("KLINGBOT_DB", str(tmp_path / "klingbot.db"))
        monkeypatch.setenv("KLINGBOT_PROVIDER", "kling")
        monkeypatch.setenv("KLING_BASE_URL", kling.url)
        monkeypatch.setenv("KLING_ACCESS_KEY", kling.access_key)
        monkeypatch.setenv("KLING_SECRET_KEY", kling.secret_key)
        lines: list[str] = []
        await run_doctor(out=lines.append)
        assert f"[✓] provider: Kling API at {kling.url}: keys accepted" in lines
        monkeypatch.setenv("KLING_SECRET_KEY", "sk-not-the-right-secret-at-all-000")
        lines.clear()
        assert await run_doctor(out=lines.append) == 1
    finally:
        await kling.stop()
    [provider] = [line for line in lines if line.startswith("[✗] provider:")]
    assert "Kling refused the keys" in provider and "not-the-right" not in "\n".join(lines)


async def test_a_discord_moderator_role_counts_only_with_listed_servers(tmp_path, monkeypatch):
    """Without DISCORD_GUILD_IDS no server's rights make moderators: the doctor says the role is idle."""
    monkeypatch.setenv("KLINGBOT_DB", str(tmp_path / "klingbot.db"))
    monkeypatch.setenv("KLINGBOT_MODERATORS", "discord:111")
    monkeypatch.setenv("DISCORD_MODERATOR_ROLE", "Moderator")
    lines: list[str] = []
    await run_doctor(out=lines.append)
    assert (
        "[!] discord moderators: DISCORD_MODERATOR_ROLE (Moderator) has no effect without"
        " DISCORD_GUILD_IDS: no server's admins or role holders are moderators, only the"
        " discord:<id> entries of KLINGBOT_MODERATORS → list your own servers in"
        " DISCORD_GUILD_IDS, or unset DISCORD_MODERATOR_ROLE"
    ) in lines

    monkeypatch.setenv("DISCORD_GUILD_IDS", "222,333")
    lines.clear()
    await run_doctor(out=lines.append)
    assert (
        "[✓] discord moderators: Administrator, Manage Server, the role Moderator in servers"
        " 222, 333 only; elsewhere only the discord:<id> entries of KLINGBOT_MODERATORS"
    ) in lines
    assert not [line for line in lines if line.startswith("[!] discord moderators")]


async def test_the_doctor_explains_the_discord_shard_settings(
    tmp_path, monkeypatch, pg_database, pg_url
):
    monkeypatch.setenv("KLINGBOT_DB", str(tmp_path / "klingbot.db"))
    monkeypatch.setenv("DISCORD_SHARD_IDS", "1,2")
    lines: list[str] = []
    assert await run_doctor(out=lines.append) == 1
    assert lines[0] == (
        "[✗] settings: invalid settings:   DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT: the"
        " shard ids are counted out of the total number of shards every replica shares"
        " → fix the named field"
    )

    monkeypatch.setenv("DISCORD_SHARD_COUNT", "2")
    lines.clear()
    assert await run_doctor(out=lines.append) == 1
    assert lines[0].startswith(
        "[✗] settings: invalid settings:   DISCORD_SHARD_IDS 2 not below DISCORD_SHARD_COUNT=2:"
        " shard ids run from 0 to 1"
    )

    monkeypatch.setenv("DISCORD_SHARD_IDS", "1")
    async with DiscordStandIn(DISCORD_TOKEN) as discord:
        monkeypatch.setenv("DISCORD_TOKEN", DISCORD_TOKEN)
        monkeypatch.setenv("DISCORD_API_BASE", discord.api_base)
        lines.clear()
        await run_doctor(out=lines.append)
    assert (
        "[!] discord shards: shards 1 of 2 here (the replica with shard 0 syncs them); shards 0"
        " must run in other replicas, but replicas cannot share an SQLite database: each would"
        " keep its own wallets → set KLINGBOT_DATABASE_URL (PostgreSQL) in every replica, or run"
        " all shards here"
    ) in lines

    monkeypatch.setenv("KLINGBOT_DATABASE_URL", pg_url)
    async with DiscordStandIn(DISCORD_TOKEN) as discord:
        monkeypatch.setenv("DISCORD_API_BASE", discord.api_base)
        lines.clear()
        await run_doctor(out=lines.append)
    assert (
        "[i] discord shards: shards 1 of 2 here (the replica with shard 0 syncs them); shards 0"
        " must run in other replicas, each shard in exactly one, all with DISCORD_SHARD_COUNT=2"
    ) in lines, lines
