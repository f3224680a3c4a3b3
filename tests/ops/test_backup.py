"""Online backups while the bot writes, checked restores behind the lease, the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3

import pytest

from app.backup import RestoreRefused, backup_database, check_database, restore_database
from app.bootstrap import open_core
from app.cli import main
from bot.commands import UserRef
from bot.ports import UserProfile
from bot.reasons import reason
from bot.settings import Settings
from tests.e2e.conftest import run_cli

NOW = 1_700_000_000
USERS = [UserRef("telegram", str(1000 + n)) for n in range(20)]


async def _traffic(ledger, user: UserRef, rounds: int, started: asyncio.Event) -> None:
    """Top-ups, holds, captures and releases, as members pressing tiers would make them."""
    await ledger.open_wallet(UserProfile(user, user.id), welcome_credits=0, now=NOW)
    for n in range(rounds):
        key = f"{user}-{n}"
        await ledger.top_up(user, 50, key=f"topup:{key}", actor="cli:op", reason="", now=NOW)
        await ledger.hold(user, 20, hold_id=f"job-{key}", actor=str(user), reason="", now=NOW)
        end = ledger.capture if n % 2 else ledger.release
        await end(f"job-{key}", actor="runner", reason="", now=NOW)
        await ledger.hold(user, 5, hold_id=f"open-{key}", actor=str(user), reason="", now=NOW)
        started.set()


async def test_a_backup_taken_while_wallets_move_restores_to_a_clean_ledger(tmp_path):
    settings = Settings(db=tmp_path / "live" / "klingbot.db")
    copies = [tmp_path / "backups" / f"b{n}.db" for n in range(3)]
    async with open_core(settings) as deps:
        started = asyncio.Event()
        traffic = asyncio.gather(*(_traffic(deps.ledger, user, 15, started) for user in USERS))
        await started.wait()
        results = []
        for copy in copies:  # each one while the writer commits batch after batch
            results.append(
                await asyncio.to_thread(backup_database, settings.db, copy, busy_timeout_ms=5000)
            )
        await traffic
        with pytest.raises(RestoreRefused, match="a klingbot process is using"):
            await restore_database(copies[0], settings.db)  # this core holds the lease
    total = len(USERS) * 15 * 4  # a top-up, a hold and its end, an open hold per round
    assert 0 < results[0].entries <= results[-1].entries <= total
    assert any(result.entries < total for result in results), "every backup came after the writes"
    for copy in copies:
        assert await check_database(copy) == []
    restored = await restore_database(copies[0], settings.db)
    assert restored.replaced is not None and restored.replaced.exists()
    assert await check_database(settings.db) == []
    with sqlite3.connect(settings.db) as db:
        assert db.execute("SELECT count(*) FROM ledger").fetchone()[0] == results[0].entries
    with sqlite3.connect(restored.replaced) as old:
        assert old.execute("SELECT count(*) FROM ledger").fetchone()[0] == total
    async with open_core(settings):  # the bot starts on the restored database
        pass


async def test_a_backup_that_breaks_the_ledger_is_refused_and_nothing_changes(tmp_path):
    settings = Settings(db=tmp_path / "klingbot.db")
    async with open_core(settings) as deps:
        await deps.ledger.top_up(
            USERS[0], 100, key="t1", actor="cli:op", reason="", now=NOW, create_wallet=True
        )
    bad = tmp_path / "bad.db"
    backup_database(settings.db, bad)
    with sqlite3.connect(bad) as db:  # money out of nowhere: the balance no longer adds up
        db.execute("UPDATE wallets SET balance = balance + 7")
    with pytest.raises(RestoreRefused, match="fails its checks: wallet telegram:1000"):
        await restore_database(bad, settings.db)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(RestoreRefused, match="cannot be used"):
        await restore_database(tmp_path / "junk.db", settings.db)
    assert sorted(p.name for p in tmp_path.iterdir() if "replaced" in p.name) == []
    assert await check_database(settings.db) == []


async def test_wallet_export_lists_every_entry_with_translated_reasons(tmp_path, monkeypatch, capsys):
    db = tmp_path / "klingbot.db"
    async with open_core(Settings(db=db)) as deps:
        user = USERS[1]
        await deps.ledger.top_up(
            user, 100, key="t1", actor="cli:op", reason="prize", now=NOW, create_wallet=True
        )
        held = reason("reason.hold", job="abcd1234", tier="high_quality", duration=5)
        await deps.ledger.hold(user, 35, hold_id="job-abc", actor=str(user), reason=held, now=NOW)
    monkeypatch.setenv("KLINGBOT_DB", str(db))
    assert await asyncio.to_thread(main, ["wallet", "export", "--csv", "--lang", "zh-CN"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("topup", "100", "100"),
        ("hold", "-35", "65"),
    ]
    assert rows[0]["actor"] == "cli:op" and rows[0]["reason"] == "prize" and rows[0]["key"] == "t1"
    assert rows[1]["user"] == "telegram:1001" and rows[1]["key"] == "hold:job-abc"
    assert "高品质" in rows[1]["reason"] and "abcd1234" in rows[1]["reason"]


async def test_wallet_export_neutralizes_cells_a_spreadsheet_would_run_as_formulas(tmp_path):
    db = tmp_path / "klingbot.db"
    names = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]
    async with open_core(Settings(db=db)) as deps:
        for n, name in enumerate(names):
            profile = UserProfile(USERS[n], name)
            await deps.ledger.open_wallet(profile, welcome_credits=0, now=NOW)
            await deps.ledger.top_up(
                USERS[n], 10, key=f"k{n}", actor="cli:op", reason=f"=cmd|' /C calc'!A{n}", now=NOW
            )
            await deps.ledger.adjust(USERS[n], -3, key=f"a{n}", actor="cli:op", reason="ok", now=NOW)
    out = tmp_path / "ledger.csv"
    result = await asyncio.to_thread(
        run_cli, "wallet", "export", "--csv", "-o", str(out), cwd=tmp_path, env={"KLINGBOT_DB": str(db)}
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    tops = [r for r in rows if r["kind"] == "topup"]
    assert [r["display_name"] for r in tops] == ["'" + name for name in names]
    assert [r["reason"] for r in tops] == [f"'=cmd|' /C calc'!A{n}" for n in range(len(names))]
    # Numbers stay numbers: a negative adjustment is not a formula.
    assert [r["amount"] for r in rows if r["kind"] == "adjust"] == ["-3"] * len(names)
    assert [r["balance_after"] for r in rows if r["kind"] == "adjust"] == ["7"] * len(names)
    every_cell = [cell for row in rows for key, cell in row.items() if key not in ("amount", "held_delta")]
    assert not [cell for cell in every_cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
