"""The SQLite wallet ledger, seen from what users and operators rely on.

Every test runs on a real SQLite file: concurrency goes through the one
writer thread and its group commit, idempotency through the unique keys,
and the append-only and non-negative rules through the schema itself.
After each scenario, ``audit()`` must find nothing wrong.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet
from bot.ports import LedgerEntry
from storage.audit import audit
from storage.database import Database
from storage.ledger import SqliteLedger
from storage.migrate import migration_scripts
from tests.storage.conftest import NOW, OpenWallet, open_wallet_for

ALICE = UserRef("telegram", "1001")
BOB = UserRef("telegram", "1002")
CAROL = UserRef("discord", "2001")
STRANGER = UserRef("telegram", "9999")

MOD = "telegram:1"


async def fund(ledger: SqliteLedger, user: UserRef, credits: int, key: str) -> None:
    await ledger.top_up(user, credits, key=key, actor=MOD, reason="funding", now=NOW)


async def hold(ledger: SqliteLedger, user: UserRef, credits: int, hold_id: str):
    return await ledger.hold(user, credits, hold_id=hold_id, actor=str(user), reason="gen", now=NOW)


# --- concurrency -------------------------------------------------------------


async def test_200_concurrent_holds_never_overdraw_the_wallet(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund-alice")

    results = await asyncio.gather(
        *(hold(ledger, ALICE, 2, f"job-{n}") for n in range(200)), return_exceptions=True
    )

    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 50
    assert len(refused) == 150
    assert all(isinstance(error, InsufficientCredits) for error in refused)
    assert all(error.balance == 0 and error.needed == 2 for error in refused)
    assert all(outcome.applied for outcome in granted)

    wallet = await ledger.wallet(ALICE)
    assert wallet is not None
    assert (wallet.balance, wallet.held, wallet.open_holds) == (0, 100, 50)
    history = await ledger.history(ALICE, 1000)
    assert len(history) == 51  # the funding and 50 holds; refused holds leave no trace
    assert min(entry.balance_after for entry in history) == 0
    assert await audit(database) == []


async def test_concurrent_top_ups_from_many_tasks_sum_exactly(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    users = [UserRef("telegram", str(3000 + n)) for n in range(5)]
    for user in users:
        await open_wallet(user)

    async def moderator(task: int) -> None:
        for step in range(20):
            user = users[(task + step) % len(users)]
            await fund(ledger, user, task + step + 1, f"topup:{task}:{step}")

    await asyncio.gather(*(moderator(task) for task in range(20)))

    expected = dict.fromkeys(users, 0)
    for task in range(20):
        for step in range(20):
            expected[users[(task + step) % len(users)]] += task + step + 1
    for user in users:
        wallet = await ledger.wallet(user)
        assert wallet is not None
        assert wallet.balance == expected[user]
        assert len(await ledger.history(user, 1000)) == 80
    assert sum(expected.values()) == sum(t + s + 1 for t in range(20) for s in range(20))
    assert await audit(database) == []


async def test_a_wallet_read_shows_every_write_as_soon_as_it_is_confirmed(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    """Wallets are read on the loop's thread, not the reader's: never a balance behind."""
    users = [UserRef("discord", str(4000 + n)) for n in range(8)]  # writing alongside each other
    for user in users:
        await open_wallet(user)
    expected = dict.fromkeys(users, 0)

    async def member(n: int) -> None:
        user = users[n]
        for step in range(15):
            await fund(ledger, user, 10, f"read:{n}:{step}")
            expected[user] += 10
            assert (await ledger.wallet(user)).balance == expected[user]
            held = await hold(ledger, user, 3, f"read-hold:{n}:{step}")
            expected[user] -= 3
            wallet = await ledger.wallet(user)
            assert (wallet.balance, wallet.held) == (expected[user], held.entry.held_after)
            await ledger.release(f"read-hold:{n}:{step}", actor=MOD, reason="test", now=NOW)
            expected[user] += 3
            assert (await ledger.wallet(user)).balance == expected[user]

    await asyncio.gather(*(member(n) for n in range(len(users))))
    assert expected == dict.fromkeys(users, 150)
    assert await audit(database) == []


# --- idempotency ---------------------------------------------------------------


async def test_a_top_up_retried_with_the_same_key_is_recorded_once(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)

    first = await ledger.top_up(ALICE, 40, key="topup:req-1", actor=MOD, reason="", now=NOW)
    again = await ledger.top_up(ALICE, 40, key="topup:req-1", actor=MOD, reason="", now=NOW + 5)
    # Even a retry that got the amount wrong cannot pay a second time.
    other = await ledger.top_up(ALICE, 999, key="topup:req-1", actor=MOD, reason="", now=NOW + 9)

    assert first.applied is True
    assert again.applied is False and other.applied is False
    assert again.entry == first.entry and other.entry == first.entry
    wallet = await ledger.wallet(ALICE)
    assert wallet is not None and wallet.balance == 40
    assert [entry.kind for entry in await ledger.history(ALICE, 10)] == ["topup"]
    assert await audit(database) == []


async def test_concurrent_retries_of_one_top_up_pay_once(
    ledger: SqliteLedger, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)

    outcomes = await asyncio.gather(
        *(
            ledger.top_up(ALICE, 25, key="topup:double-click", actor=MOD, reason="", now=NOW)
            for _ in range(10)
        )
    )

    assert sum(outcome.applied for outcome in outcomes) == 1
    assert len({outcome.entry for outcome in outcomes}) == 1
    wallet = await ledger.wallet(ALICE)
    assert wallet is not None and wallet.balance == 25


async def test_a_hold_retried_with_the_same_id_reserves_once(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund")

    first = await hold(ledger, ALICE, 35, "job-7")
    again, concurrent = await asyncio.gather(
        hold(ledger, ALICE, 35, "job-7"), hold(ledger, ALICE, 35, "job-7")
    )

    assert first.applied is True
    assert again.applied is False and concurrent.applied is False
    assert again.entry == first.entry == concurrent.entry
    wallet = await ledger.wallet(ALICE)
    assert wallet is not None
    assert (wallet.balance, wallet.held, wallet.open_holds) == (65, 35, 1)
    assert await audit(database) == []


@pytest.mark.parametrize(
    ("first_call", "second_call"),
    [
        ("capture", "capture"),
        ("release", "release"),
        ("capture", "release"),
        ("release", "capture"),
    ],
)
async def test_a_hold_ends_exactly_once(
    ledger: SqliteLedger,
    database: Database,
    open_wallet: OpenWallet,
    first_call: str,
    second_call: str,
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund")
    await hold(ledger, ALICE, 35, "job-1")

    first = await getattr(ledger, first_call)("job-1", actor="runner", reason="", now=NOW)
    after_first = await ledger.wallet(ALICE)
    second = await getattr(ledger, second_call)("job-1", actor="runner", reason="", now=NOW)

    expected_balance = 65 if first_call == "capture" else 100
    assert first.applied is True
    assert first.entry.kind == first_call
    assert second.applied is False
    assert second.entry == first.entry
    wallet = await ledger.wallet(ALICE)
    assert wallet == after_first
    assert wallet is not None
    assert (wallet.balance, wallet.held, wallet.open_holds) == (expected_balance, 0, 0)
    ended = await ledger.get_hold("job-1")
    assert ended is not None
    assert ended.state == ("captured" if first_call == "capture" else "released")
    assert [entry.kind for entry in await ledger.history(ALICE, 10)] == [
        first_call,
        "hold",
        "topup",
    ]
    assert await audit(database) == []


async def test_a_capture_and_a_release_racing_for_one_hold_end_it_once(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund")
    await hold(ledger, ALICE, 20, "job-race")

    outcomes = await asyncio.gather(
        *(
            getattr(ledger, kind)("job-race", actor="runner", reason="", now=NOW)
            for kind in ["capture", "release"] * 5
        )
    )

    assert sum(outcome.applied for outcome in outcomes) == 1
    assert len({outcome.entry for outcome in outcomes}) == 1
    assert await audit(database) == []


# --- errors the core turns into messages -------------------------------------


@pytest.mark.parametrize("ending", ["capture", "release"])
async def test_ending_an_unknown_hold_raises_key_error(ledger: SqliteLedger, ending: str) -> None:
    with pytest.raises(KeyError, match="no-such-job"):
        await getattr(ledger, ending)("no-such-job", actor="runner", reason="", now=NOW)


async def test_writes_for_a_user_without_a_wallet_raise_no_wallet(
    ledger: SqliteLedger, database: Database
) -> None:
    with pytest.raises(NoWallet, match="telegram:9999"):
        await hold(ledger, STRANGER, 20, "job-x")
    with pytest.raises(NoWallet, match="telegram:9999"):
        await fund(ledger, STRANGER, 20, "topup:x")
    with pytest.raises(NoWallet, match="telegram:9999"):
        await ledger.adjust(STRANGER, 5, key="adjust:x", actor=MOD, reason="", now=NOW)

    assert await ledger.wallet(STRANGER) is None
    assert await ledger.get_hold("job-x") is None
    assert await database.read("SELECT * FROM ledger") == []


async def test_adjust_below_zero_is_refused_and_changes_nothing(
    ledger: SqliteLedger, database: Database, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 30, "fund")

    with pytest.raises(InsufficientCredits) as refused:
        await ledger.adjust(ALICE, -31, key="adjust:too-much", actor=MOD, reason="", now=NOW)

    assert (refused.value.balance, refused.value.needed) == (30, 31)
    wallet = await ledger.wallet(ALICE)
    assert wallet is not None and wallet.balance == 30
    assert [entry.kind for entry in await ledger.history(ALICE, 10)] == ["topup"]
    # The refused key was not used up: a corrected retry with it goes through.
    down = await ledger.adjust(ALICE, -30, key="adjust:too-much", actor=MOD, reason="", now=NOW)
    up = await ledger.adjust(ALICE, 12, key="adjust:refund", actor=MOD, reason="refund", now=NOW)
    assert down.applied and up.applied
    assert (down.entry.balance_after, up.entry.balance_after) == (0, 12)
    assert up.entry.kind == "adjust" and up.entry.reason == "refund"
    assert await audit(database) == []


# --- group commit --------------------------------------------------------------


async def test_a_failing_write_in_a_batch_rolls_back_alone(
    ledger: SqliteLedger, database: Database, db_path: Path, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await open_wallet(BOB)
    await fund(ledger, ALICE, 10, "fund")

    # Hold the writer inside one write so that everything below queues up
    # behind it and is committed as one batch.
    entered, gate = threading.Event(), threading.Event()

    def blocker(connection: sqlite3.Connection) -> None:
        entered.set()
        gate.wait()

    blocked = asyncio.ensure_future(database.write(blocker))
    await asyncio.to_thread(entered.wait)
    batches_before = database.batches

    def half_done_then_fails(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT INTO users (platform, user_id, created_at) VALUES ('telegram', 'ghost', 0)"
        )
        raise RuntimeError("the write failed half way")

    async def open_the_gate() -> None:
        gate.set()

    results = await asyncio.gather(
        fund(ledger, BOB, 7, "topup:b1"),
        hold(ledger, ALICE, 11, "job-too-big"),
        fund(ledger, ALICE, 5, "topup:a1"),
        database.write(half_done_then_fails),
        fund(ledger, BOB, 8, "topup:b2"),
        hold(ledger, ALICE, 4, "job-fits"),
        open_the_gate(),
        return_exceptions=True,
    )
    await blocked

    assert database.batches == batches_before + 2  # the blocker's and one for the rest
    assert isinstance(results[1], InsufficientCredits)
    assert isinstance(results[3], RuntimeError)
    assert results[0] is None and results[2] is None and results[4] is None  # top-ups
    assert results[5].applied is True  # the hold that fits

    await database.close()
    async with Database(db_path) as reopened:
        again = SqliteLedger(reopened)
        alice, bob = await again.wallet(ALICE), await again.wallet(BOB)
        assert alice is not None and bob is not None
        assert (alice.balance, alice.held, alice.open_holds) == (11, 4, 1)
        assert bob.balance == 15
        assert await again.get_hold("job-too-big") is None
        assert await again.find_user("telegram", "ghost") is None
        assert await audit(reopened) == []


# --- durability and schema -------------------------------------------------------


LATEST_VERSION = migration_scripts()[-1][0]


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("PRAGMA user_version").fetchone()[0]


async def test_balances_and_history_survive_a_restart(
    ledger: SqliteLedger, database: Database, db_path: Path, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE, username="alice")
    await fund(ledger, ALICE, 100, "fund")
    await hold(ledger, ALICE, 35, "job-1")
    await ledger.capture("job-1", actor="runner", reason="delivered", now=NOW)
    await hold(ledger, ALICE, 20, "job-2")
    before: list[LedgerEntry] = await ledger.history(ALICE, 10)
    await database.close()
    assert user_version(db_path) == LATEST_VERSION

    for _restart in range(2):
        async with Database(db_path) as reopened:
            again = SqliteLedger(reopened)
            wallet = await again.wallet(ALICE)
            assert wallet is not None
            assert (wallet.balance, wallet.held, wallet.open_holds) == (45, 20, 1)
            assert await again.history(ALICE, 10) == before
            profile = await again.find_user("telegram", "@alice")
            assert profile is not None and profile.user == ALICE
            assert await audit(reopened) == []
        assert user_version(db_path) == LATEST_VERSION

    async with Database(db_path) as reopened:
        # The restarted bot carries on: the open hold can still be released.
        outcome = await SqliteLedger(reopened).release("job-2", actor="runner", reason="", now=NOW)
        assert outcome.applied and outcome.entry.balance_after == 65


async def test_the_ledger_is_append_only_even_for_raw_sql(
    ledger: SqliteLedger, database: Database, db_path: Path, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 50, "fund")

    with closing(sqlite3.connect(db_path)) as raw:
        with pytest.raises(sqlite3.DatabaseError, match="the ledger is append-only"):
            raw.execute("UPDATE ledger SET amount = 5000")
        raw.rollback()
        with pytest.raises(sqlite3.DatabaseError, match="the ledger is append-only"):
            raw.execute("DELETE FROM ledger")
        raw.rollback()
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            raw.execute("UPDATE wallets SET balance = -1")
        raw.rollback()

    wallet = await ledger.wallet(ALICE)
    assert wallet is not None and wallet.balance == 50
    assert [entry.amount for entry in await ledger.history(ALICE, 10)] == [50]
    assert await audit(database) == []


# --- reads -------------------------------------------------------------------------


async def test_history_lists_newest_first_with_the_balance_after_each_entry(
    ledger: SqliteLedger, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund")
    await hold(ledger, ALICE, 35, "job-1")
    await ledger.capture("job-1", actor="runner", reason="delivered", now=NOW)
    await hold(ledger, ALICE, 20, "job-2")
    await ledger.release("job-2", actor="runner", reason="failed", now=NOW)
    await ledger.adjust(ALICE, -5, key="adjust:1", actor=MOD, reason="typo", now=NOW)

    history = await ledger.history(ALICE, 10)

    assert [(e.kind, e.amount, e.balance_after, e.held_after) for e in history] == [
        ("adjust", -5, 60, 0),
        ("release", 20, 65, 0),
        ("hold", -20, 45, 20),
        ("capture", 0, 65, 0),
        ("hold", -35, 65, 35),
        ("topup", 100, 100, 0),
    ]
    assert [e.seq for e in history] == sorted((e.seq for e in history), reverse=True)
    assert [e.kind for e in await ledger.history(ALICE, 2)] == ["adjust", "release"]
    assert await ledger.history(BOB, 10) == []


async def test_find_user_by_id_or_username_in_any_case(
    ledger: SqliteLedger, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE, username="Alice_K", display_name="Alice")
    await open_wallet(CAROL, username="alice_k", display_name="Carol on Discord")

    for query in ("1001", "@alice_k", "alice_k", "@ALICE_K", "Alice_K"):
        found = await ledger.find_user("telegram", query)
        assert found is not None, query
        assert (found.user, found.display_name, found.username) == (ALICE, "Alice", "Alice_K")
    # Usernames are per platform.
    on_discord = await ledger.find_user("discord", "@alice_k")
    assert on_discord is not None and on_discord.user == CAROL
    assert await ledger.find_user("telegram", "@nobody") is None
    assert await ledger.find_user("telegram", "@") is None
    assert await ledger.find_user("discord", "1001") is None


async def test_a_username_that_moves_to_another_user_finds_only_the_new_one(
    ledger: SqliteLedger, open_wallet: OpenWallet
) -> None:
    await open_wallet(ALICE, username="star")
    await open_wallet(BOB, username="STAR")

    found = await ledger.find_user("telegram", "@star")
    assert found is not None and found.user == BOB
    old = await ledger.find_user("telegram", ALICE.id)
    assert old is not None and old.username is None
    # Alice renames herself: she is found under the new name, Bob keeps "STAR".
    await open_wallet(ALICE, username="nova")
    renamed = await ledger.find_user("telegram", "nova")
    assert renamed is not None and renamed.user == ALICE
    still = await ledger.find_user("telegram", "star")
    assert still is not None and still.user == BOB


# --- welcome credits -------------------------------------------------------------


async def test_welcome_credits_are_granted_once_even_to_concurrent_first_messages(
    ledger: SqliteLedger, database: Database
) -> None:
    wallets = await asyncio.gather(
        *(open_wallet_for(ledger, ALICE, welcome_credits=50) for _ in range(5))
    )
    later = await open_wallet_for(ledger, ALICE, welcome_credits=50)

    assert {w.balance for w in wallets} == {50}
    assert later.balance == 50
    history = await ledger.history(ALICE, 10)
    assert [(e.kind, e.amount, e.actor, e.reason) for e in history] == [
        ("topup", 50, "system", '{"key":"reason.welcome","params":{}}')
    ]
    assert await audit(database) == []


async def test_a_wallet_opened_without_welcome_credits_starts_empty(
    ledger: SqliteLedger,
) -> None:
    wallet = await open_wallet_for(ledger, BOB, welcome_credits=0)

    assert (wallet.user, wallet.balance, wallet.held, wallet.open_holds) == (BOB, 0, 0, 0)
    assert await ledger.history(BOB, 10) == []


# --- audit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("corruption", "reported"),
    [
        (
            ["UPDATE wallets SET balance = balance + 10 WHERE user_id = '1001'"],
            [
                "wallet telegram:1001 holds 75/20 but its entries sum to 65/20",
                "top-ups and adjustments (100) differ from balances (75)"
                " + open holds (20) + captures (15)",
            ],
        ),
        (
            [
                "DROP TRIGGER ledger_is_append_only_delete",
                "DELETE FROM ledger WHERE kind = 'capture'",
            ],
            [
                "wallet telegram:1001 holds 65/20 but its entries sum to 65/35",
                "hold job-1 is captured with 0 endings",
            ],
        ),
        (
            [
                "DROP TRIGGER ledger_is_append_only_update",
                "UPDATE ledger SET amount = 150 WHERE kind = 'topup'",
            ],
            [
                "wallet telegram:1001 holds 65/20 but its entries sum to 115/20",
                "top-ups and adjustments (150) differ from balances (65)"
                " + open holds (20) + captures (15)",
            ],
        ),
        (
            ["UPDATE holds SET state = 'open' WHERE hold_id = 'job-1'"],
            [
                "wallet telegram:1001 holds 20 but its open holds add up to 35",
                "hold job-1 is open with 1 endings",
            ],
        ),
    ],
    ids=["balance-edited", "capture-deleted", "topup-inflated", "hold-reopened"],
)
async def test_audit_reports_a_tampered_database(
    ledger: SqliteLedger,
    database: Database,
    db_path: Path,
    open_wallet: OpenWallet,
    corruption: list[str],
    reported: list[str],
) -> None:
    await open_wallet(ALICE)
    await fund(ledger, ALICE, 100, "fund")
    await hold(ledger, ALICE, 15, "job-1")
    await ledger.capture("job-1", actor="runner", reason="", now=NOW)
    await hold(ledger, ALICE, 20, "job-2")
    assert await audit(database) == []

    with closing(sqlite3.connect(db_path, isolation_level=None)) as raw:
        for statement in corruption:
            raw.execute(statement)

    assert await audit(database) == reported


async def test_migration_10_keeps_every_entry_and_the_ledger_rules(tmp_path: Path) -> None:
    """The ledger rebuilt for the purchase kinds: same rows and seq, still append-only."""
    from storage.migrate import migrate, split_statements

    path = tmp_path / "v9.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA foreign_keys = ON")
        for version, _name, sql in migration_scripts():
            if version > 9:
                break
            for statement in split_statements(sql):
                raw.execute(statement)
        raw.execute("PRAGMA user_version = 9")
        raw.execute("INSERT INTO users (platform, user_id, created_at) VALUES ('telegram', '1', 1)")
        raw.execute(
            "INSERT INTO wallets (platform, user_id, balance, created_at)"
            " VALUES ('telegram', '1', 40, 1)"
        )
        raw.execute(
            "INSERT INTO ledger (seq, idem_key, platform, user_id, kind, amount, held_delta,"
            " balance_after, held_after, actor, created_at)"
            " VALUES (7, 'fund', 'telegram', '1', 'topup', 40, 0, 40, 0, 'm', 1)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(
                "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
                " balance_after, held_after, actor, created_at)"
                " VALUES ('p', 'telegram', '1', 'purchase', 1, 0, 41, 0, 'm', 1)"
            )
        raw.row_factory = sqlite3.Row
        assert migrate(raw) >= 10
        indexes = {r["name"] for r in raw.execute("PRAGMA index_list(ledger)")}
        assert {"ledger_by_user", "ledger_one_end_per_hold"} <= indexes
        with pytest.raises(sqlite3.DatabaseError, match="the ledger is append-only"):
            raw.execute("DELETE FROM ledger")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            raw.execute(
                "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
                " balance_after, held_after, actor, created_at)"
                " VALUES ('r', 'telegram', '1', 'purchase_refund', 5, 0, 45, 0, 'm', 1)"
            )
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    async with Database(path) as database:
        ledger = SqliteLedger(database)
        entry = (await ledger.history(UserRef("telegram", "1"), 5))[0]
        assert (entry.seq, entry.key, entry.amount) == (7, "fund", 40)
        bought = await ledger.purchase(
            UserRef("telegram", "1"),
            60,
            source="telegram",
            charge_id="c",
            actor="a",
            reason="",
            now=2,
        )
        assert (bought.entry.seq, bought.entry.balance_after) == (8, 100)
        assert await audit(database) == []
