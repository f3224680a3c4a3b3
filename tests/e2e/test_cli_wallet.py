"""The real ``klingbot wallet`` process names users as chat does, and may open an unseen wallet.

The operator is the console's local user (``console:local``), with no
platform of their own to look names up among: a bare name or id is looked up
on every platform. Each refusal is checked for its exact words, its exit
status and an unchanged ledger.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.console import ConsoleChat, console_caller
from app.bootstrap import open_core
from bot.reasons import reason
from bot.settings import Settings
from tests.e2e.conftest import run_cli
from tests.e2e.conftest import run_in_process as klingbot

ZH = {"LANG": "zh_CN.UTF-8"}
UNKNOWN = "I don't know the user {}. They need to talk to me once (any command) before their wallet exists."
UNKNOWN_ZH = "我不认识用户 {}。对方需要先和我说一次话（任意命令），钱包才会创建。"


NOT_NUMERIC = (
    "{0} is not a numeric id, and I know nobody on {1} by that name."
    " Ids on {1} are numbers, such as {1}:123456789."
)
NOT_NUMERIC_ZH = (
    "{0} 不是数字编号，我在 {1} 上也不认识叫这个名字的人。{1} 上的编号是数字，例如 {1}:123456789。"
)
NO_PLATFORM = (
    "{0}: I don't know the platform {1}. Name a user as me, @username, an id,"
    " or platform:id with platform one of console, telegram, discord."
)


def operator() -> str:
    """The local operator: ``me`` in the console and in the wallet commands alike."""
    return "console:local"


def operator_ref() -> tuple[str, str]:
    return tuple(operator().split(":", 1))  # type: ignore[return-value]


def wallets(folder: Path) -> list[tuple]:
    db = folder / "klingbot.db"
    if not db.exists():
        return []
    connection = sqlite3.connect(db)
    try:
        return connection.execute(
            "SELECT platform, user_id, balance FROM wallets ORDER BY 1, 2"
        ).fetchall()
    finally:
        connection.close()


def ledger(folder: Path) -> list[tuple]:
    db = folder / "klingbot.db"
    if not db.exists():
        return []
    connection = sqlite3.connect(db)
    try:
        return connection.execute(
            "SELECT platform, user_id, kind, amount, actor, reason FROM ledger ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()


def users(folder: Path) -> list[tuple]:
    connection = sqlite3.connect(folder / "klingbot.db")
    try:
        return connection.execute(
            "SELECT platform, user_id, display_name, username FROM users ORDER BY 1, 2"
        ).fetchall()
    finally:
        connection.close()


def chat_as(folder: Path, name: str) -> None:
    """``name`` talks to the bot once on the console (``klingbot console --as NAME``, in this
    process: the console chat on the bot's database), so the bot knows them."""

    async def talk() -> None:
        async with open_core(Settings(db=folder / "klingbot.db")) as deps:
            chat = ConsoleChat(deps, console_caller(name), lambda _: None)
            await chat.send_line("/start")

    asyncio.run(talk())


# --- the README's example: a top-up for someone the bot has not seen yet ----------


def test_the_readme_topup_opens_the_wallet_of_an_unseen_user(tmp_path):
    topup = klingbot(
        "wallet", "topup", "telegram:123", "500", "refund", "for", "ticket", "42", cwd=tmp_path
    )
    balance = klingbot("wallet", "balance", "telegram:123", cwd=tmp_path)
    history = klingbot("wallet", "history", "telegram:123", "-n", "20", cwd=tmp_path)

    assert (topup.returncode, topup.stderr) == (0, "")
    assert topup.stdout == (
        "Added 500 credits (¥50.00) to telegram:123.\n"
        "telegram:123 had not talked to me yet: I opened their wallet.\n"
        "New balance: 500 credits (¥50.00).\n"
    )
    assert (balance.returncode, balance.stdout) == (
        0,
        "Balance of telegram:123: 500 credits (¥50.00).\n",
    )
    rows = [line.split("\t") for line in history.stdout.splitlines()]
    assert history.returncode == 0 and len(rows) == 2
    assert rows[1][2:] == ["topup", "+500", "+0", "500", operator(), "refund for ticket 42"]
    assert ("telegram", "123", "", None) in users(tmp_path)  # known now, with no name yet


def test_the_unseen_topup_in_chinese_with_welcome_credits(tmp_path):
    topup = klingbot(
        "wallet",
        "topup",
        "telegram:123",
        "500",
        cwd=tmp_path,
        env={**ZH, "KLINGBOT_WELCOME_CREDITS": "30"},
    )

    assert (topup.returncode, topup.stderr) == (0, "")
    assert topup.stdout == (
        "已为 telegram:123 充值 500 灵感值（¥50.00）。\n"
        "telegram:123 还没有和我说过话：已为其开通钱包，并发放了欢迎礼 30 灵感值（¥3.00）。\n"
        "充值后余额：530 灵感值（¥53.00）。\n"
    )
    assert [row for row in ledger(tmp_path) if row[0] == "telegram"] == [
        ("telegram", "123", "topup", 30, "system", reason("reason.welcome")),
        ("telegram", "123", "topup", 500, operator(), ""),
    ]
    # The bot's own reasons are shown in the reader's language.
    for env, shown in ((ZH, "新人赠送"), ({}, "welcome credits")):
        history = klingbot("wallet", "history", "telegram:123", cwd=tmp_path, env=env)
        assert history.stdout.splitlines()[2].split("\t")[2:] == [
            "topup",
            "+30",
            "+0",
            "30",
            "system",
            shown,
        ]


@pytest.mark.parametrize(
    ("target", "env", "message"),
    [
        ("telegram:alice", {}, NOT_NUMERIC.format("telegram:alice", "telegram")),
        ("telegram:abc", ZH, NOT_NUMERIC_ZH.format("telegram:abc", "telegram")),
        ("discord:12 3", {}, UNKNOWN.format("discord:12 3")),  # one argument, with a space
        ("123", {}, UNKNOWN.format("123")),  # a bare id could be anyone on any platform
        ("@newbie", {}, UNKNOWN.format("@newbie")),
        ("telegram:@newbie", {}, UNKNOWN.format("telegram:@newbie")),  # a username, not an id
        ("matrix:123", {}, NO_PLATFORM.format("matrix:123", "matrix")),
        ("foo:1", {}, NO_PLATFORM.format("foo:1", "foo")),
    ],
)
def test_an_unknown_user_that_is_not_a_full_platform_id_is_refused(tmp_path, target, env, message):
    chat_as(tmp_path, "alice")
    before = ledger(tmp_path)

    result = klingbot("wallet", "topup", target, "5", cwd=tmp_path, env=env)

    assert (result.returncode, result.stdout, result.stderr) == (1, message + "\n", "")
    assert ledger(tmp_path) == before


def test_a_topup_without_credits_names_only_the_credits(tmp_path):
    result = klingbot("wallet", "topup", "telegram:123", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "klingbot wallet topup: error: the following arguments are required: credits"
    )
    assert list(tmp_path.iterdir()) == []


# --- names, ids and platform:id, as in chat ---------------------------------------


@pytest.mark.parametrize("name", ["alice", "@alice", "ALICE", "console:alice", "console:@Alice"])
def test_a_user_is_found_by_name_or_id_on_any_platform(tmp_path, name):
    chat_as(tmp_path, "alice")

    topup = klingbot("wallet", "topup", name, "40", "support", "ticket", cwd=tmp_path)
    balance = klingbot("wallet", "balance", name, cwd=tmp_path)
    history = klingbot("wallet", "history", name, cwd=tmp_path)

    assert topup.returncode == 0, topup.stdout + topup.stderr
    assert topup.stdout == (
        "Added 40 credits (¥4.00) to alice (console:alice).\nNew balance: 40 credits (¥4.00).\n"
    )
    assert balance.stdout == "Balance of alice (console:alice): 40 credits (¥4.00).\n"
    assert history.stdout.splitlines()[1].split("\t")[2:] == [
        "topup",
        "+40",
        "+0",
        "40",
        operator(),
        "support ticket",
    ]


def test_me_is_the_local_operator_of_the_console(tmp_path):
    console = run_cli("console", cwd=tmp_path, stdin="/topup me 300\n")
    assert console.returncode == 0, console.stderr

    balance = klingbot("wallet", "balance", "me", cwd=tmp_path)
    topup = klingbot("wallet", "topup", "me", "7", cwd=tmp_path)
    again = run_cli("console", cwd=tmp_path, stdin="/balance\n")

    assert balance.stdout == "Your balance: 300 credits (¥30.00).\n"
    assert topup.returncode == 0 and topup.stdout.startswith("Added 7 credits (¥0.70) to ")
    assert again.stdout == "Your balance: 307 credits (¥30.70).\n"
    assert ledger(tmp_path) == [
        ("console", "local", "topup", 300, operator(), ""),
        ("console", "local", "topup", 7, operator(), ""),
    ]
    assert wallets(tmp_path) == [("console", "local", 307)]  # one person, one wallet


def test_reading_a_balance_opens_no_wallet(tmp_path):
    chat_as(tmp_path, "alice")
    before = (users(tmp_path), wallets(tmp_path))

    mine = klingbot("wallet", "balance", "me", cwd=tmp_path)
    hers = klingbot("wallet", "balance", "alice", cwd=tmp_path)
    history = klingbot("wallet", "history", "me", cwd=tmp_path)

    assert (mine.returncode, mine.stdout) == (0, "Your balance: 0 credits (¥0.00).\n")
    assert (hers.returncode, hers.stdout) == (
        0,
        "Balance of alice (console:alice): 0 credits (¥0.00).\n",
    )
    assert history.returncode == 0 and len(history.stdout.splitlines()) == 1  # the header alone
    assert (users(tmp_path), wallets(tmp_path)) == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "Several users match 123: console:123, telegram:123. Name one as platform:id.\n"),
        (
            ZH,
            "有多个用户与 123 匹配：console:123, telegram:123。请用 平台:编号 的形式指明其中一个。\n",
        ),
    ],
)
def test_a_name_several_users_share_is_refused_listing_them(tmp_path, env, message):
    chat_as(tmp_path, "123")
    assert klingbot("wallet", "topup", "telegram:123", "1", cwd=tmp_path).returncode == 0
    before = ledger(tmp_path)

    topup = klingbot("wallet", "topup", "123", "5", cwd=tmp_path, env=env)
    balance = klingbot("wallet", "balance", "123", cwd=tmp_path, env=env)
    history = klingbot("wallet", "history", "123", cwd=tmp_path, env=env)

    console = run_cli("console", cwd=tmp_path, env=env, stdin="/balance 123\n")  # the same person

    for result in (topup, balance, history):
        assert (result.returncode, result.stdout, result.stderr) == (1, message, "")
    assert console.stdout == message
    assert ledger(tmp_path) == before
    exact = klingbot("wallet", "balance", "console:123", cwd=tmp_path)
    assert exact.stdout == "Balance of 123 (console:123): 0 credits (¥0.00).\n"


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (("balance", "ghost"), {}, UNKNOWN.format("ghost")),
        (("history", "@ghost"), {}, UNKNOWN.format("@ghost")),
        (("topup", "ghost", "5"), {}, UNKNOWN.format("ghost")),
        (("balance", "telegram:999"), {}, UNKNOWN.format("telegram:999")),  # only a top-up opens
        (("balance", "ghost"), ZH, UNKNOWN_ZH.format("ghost")),
        (("history", "telegram:999"), ZH, UNKNOWN_ZH.format("telegram:999")),
    ],
)
def test_an_unknown_user_is_one_clear_message(tmp_path, command, env, message):
    chat_as(tmp_path, "alice")
    before = (ledger(tmp_path), users(tmp_path))
    assert before[1] == [("console", "alice", "alice", "alice")]

    result = klingbot("wallet", *command, cwd=tmp_path, env=env)

    assert (result.returncode, result.stdout, result.stderr) == (1, message + "\n", "")
    assert ledger(tmp_path) == before[0]
    # Reading opens no wallet; a top-up, like any chat command, opens the operator's own.
    opened = {operator_ref()} if command[0] == "topup" else set()
    assert {row[:2] for row in users(tmp_path)} == {("console", "alice"), *opened}


# --- -n ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "message"),
    [
        ("0", {}, "klingbot: -n takes a whole number from 1 to 50, not 0.\n"),
        ("51", {}, "klingbot: -n takes a whole number from 1 to 50, not 51.\n"),
        ("-3", {}, "klingbot: -n takes a whole number from 1 to 50, not -3.\n"),
        ("ten", {}, "klingbot: -n takes a whole number from 1 to 50, not ten.\n"),
        ("0", ZH, "klingbot: -n 需要 1 到 50 之间的整数，而不是 0。\n"),
    ],
)
def test_a_bad_history_count_is_one_line(tmp_path, value, env, message):
    result = klingbot("wallet", "history", "me", "-n", value, cwd=tmp_path, env=env)

    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)
    assert list(tmp_path.iterdir()) == []  # refused before opening anything


def test_history_count_limits_the_rows(tmp_path):
    for amount in ("1", "2", "3"):
        klingbot("wallet", "topup", "me", amount, cwd=tmp_path)

    result = klingbot("wallet", "history", "me", "-n", "2", cwd=tmp_path)

    assert result.returncode == 0
    assert [row.split("\t")[3] for row in result.stdout.splitlines()[1:]] == ["+3", "+2"]


# --- the same rules in chat --------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "opened", "unknown", "not_numeric"),
    [
        (
            "en",
            "telegram:555 had not talked to me yet: I opened their wallet.",
            UNKNOWN,
            NOT_NUMERIC,
        ),
        ("zh-CN", "telegram:555 还没有和我说过话：已为其开通钱包。", UNKNOWN_ZH, NOT_NUMERIC_ZH),
    ],
)
def test_a_moderator_in_chat_opens_an_unseen_wallet_only_by_platform_id(
    tmp_path, lang, opened, unknown, not_numeric
):
    result = run_cli(
        "console",
        "--lang",
        lang,
        cwd=tmp_path,
        stdin="/topup telegram:555 20\n/topup 556 20\n/topup @ghost 20\n/topup telegram:ghost 20\n",
    )

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[1] == opened
    assert lines[3:] == [
        unknown.format("556"),
        unknown.format("@ghost"),
        not_numeric.format("telegram:ghost", "telegram"),
    ]
    assert [row[:4] for row in ledger(tmp_path)] == [("telegram", "555", "topup", 20)]


def test_a_member_in_chat_cannot_open_a_wallet(tmp_path):
    result = run_cli("console", "--as", "bob", cwd=tmp_path, stdin="/topup telegram:555 20\n")

    assert result.stdout == "Only moderators can do that.\n"
    assert ledger(tmp_path) == []


# --- unlink: one wallet on Telegram and Discord, separated by the operator -------------


async def _linked_pair(folder: Path) -> None:
    """telegram:1 (100 credits) and discord:2 (30), linked with a code as in chat."""
    import hashlib

    from bot.commands import UserRef
    from bot.ports import UserProfile
    from storage.database import Database
    from storage.ledger import SqliteLedger

    async with Database(folder / "klingbot.db") as database:
        ledger = SqliteLedger(database)
        for user, credits in ((UserRef("telegram", "1"), 100), (UserRef("discord", "2"), 30)):
            await ledger.open_wallet(UserProfile(user, f"user {user.id}"), welcome_credits=0, now=1)
            await ledger.top_up(user, credits, key=f"fund:{user}", actor="t", reason="", now=1)
        code = hashlib.sha256(b"ABCD2345").hexdigest()
        await ledger.issue_link_code(UserRef("telegram", "1"), code, now=1, ttl_s=600, per_hour=5)
        result = await ledger.redeem_link_code(
            UserRef("discord", "2"), code, now=2, failures_per_hour=10
        )
        assert result.status == "linked"


async def test_wallet_unlink_splits_a_linked_pair_as_recorded(tmp_path):
    await _linked_pair(tmp_path)

    split = run_cli("wallet", "unlink", "discord:2", "--credits", "20", cwd=tmp_path)
    again = run_cli("wallet", "unlink", "telegram:1", cwd=tmp_path, env=ZH)
    check = run_cli("db", "check", cwd=tmp_path)

    assert (split.returncode, split.stderr) == (0, "")
    assert split.stdout == (
        "Unlinked: telegram:1 keeps the shared wallet (110 credits (¥11.00));"
        " discord:2 starts with 20 credits (¥2.00).\n"
    )
    assert (again.returncode, again.stdout) == (1, "user 1 (telegram:1) 没有与其他账号共用钱包。\n")
    assert check.returncode == 0, check.stdout + check.stderr
    assert wallets(tmp_path)[-2:] == [("discord", "2", 20), ("telegram", "1", 110)]
    assert [row[2:4] for row in ledger(tmp_path)[-2:]] == [("link_out", -20), ("link_in", 20)]
    assert ledger(tmp_path)[-1][4] == operator()
