"""Telegram Stars end to end: real PTB against the Bot API stand-in, a real database.

Members buy packs of credits with ``/buy`` and an invoice in Stars, with no
moderator anywhere, and generate at once; the bot answers every
pre-checkout query in time, refusing a tampered price, a pack no longer on
sale and someone else's invoice in the payer's language; a replayed payment
credits nothing more; a configured moderator gives a payment back with
``/refund <charge id>`` (refused when the credits are spent, unless
``force``), and a stranger cannot. The ledger is read back from the
database and audited after each scenario.
"""

from __future__ import annotations

import asyncio
import csv

import aiohttp
import pytest

from adapters.console.chat import sample_image
from app.operator import export_command
from bot.commands import UserRef
from bot.i18n import Translator
from storage.audit import audit
from storage.postgres.audit import audit as pg_audit
from storage.postgres.database import PgDatabase
from tests.adapters.conftest import MODERATOR_ID, TelegramBot, telegram_bot
from tests.adapters.standin import QUERY_TOO_OLD, BotApiStandIn, Member, buttons
from tests.e2e.conftest import fast_settings
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip
from tests.replicas.balancer import Balancer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

PACKS = "100:50,500:230"
ALICE, MING, STRANGER = 1001, 1002, 6006

BUY_EN = """Buy credits with Telegram Stars (clips of 5 s):
• 100 credits (¥10.00) for 50 ⭐ — 5 × Standard, 2 × High Quality, 1 × Master
• 500 credits (¥50.00) for 230 ⭐ — 25 × Standard, 14 × High Quality, 5 × Master"""

BUY_ZH = """用 Telegram 星购买灵感值（按 5 秒视频计）：
• 100 灵感值（¥10.00），50 ⭐ — 5 条标准、2 条高品质、1 条大师
• 500 灵感值（¥50.00），230 ⭐ — 25 条标准、14 条高品质、5 条大师"""


def stars_bot(tmp_path, api, **overrides):
    """The bot selling PACKS; its clips come from a scripted service (a tiny clip, at once).

    ``database_url=`` runs it on PostgreSQL (``pg_url``, emptied by ``pg_database``).
    """
    provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script())
    return telegram_bot(tmp_path, api, provider=provider, telegram_stars_packs=PACKS, **overrides)


async def said(telegram: TelegramBot, member: Member, line: str) -> str:
    """What the bot answers ``member`` saying ``line`` in their private chat."""
    since = len(telegram.api.calls)
    member.send(line)
    reply = await telegram.api.wait_for("sendMessage", since=since, chat_id=member.id)
    return reply.params["text"]


async def invoice_for(telegram: TelegramBot, member: Member, label: str):
    """``/buy``, then the pack's button: the sendInvoice call the bot made."""
    api = telegram.api
    since = len(api.calls)
    member.send("/buy")
    packs = await api.wait_for("sendMessage", since=since, chat_id=member.id)
    member.press(packs.result, label)
    return await api.wait_for("sendInvoice", since=since, chat_id=member.id)


async def bought(telegram: TelegramBot, member: Member, label: str):
    """Buy the pack whose button starts with ``label``: the payment and the bot's thanks."""
    invoice = await invoice_for(telegram, member, label)
    since = len(telegram.api.calls)
    payment = await member.pay(invoice)
    assert payment.ok, payment.error
    thanks = await telegram.api.wait_for("sendMessage", since=since, chat_id=member.id)
    return payment, thanks.params["text"]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> dict[str, object]:
    """The bot's settings for each database: SQLite in tmp_path, or this run's PostgreSQL."""
    if request.param == "sqlite":
        return {}
    request.getfixturevalue("pg_database")  # every table emptied first
    return {"database_url": request.getfixturevalue("pg_url")}


async def audited(telegram: TelegramBot) -> list[str]:
    """The ledger audit on whichever database the bot runs on."""
    database = telegram.deps.ledger.db
    if isinstance(database, PgDatabase):
        return await pg_audit(database)
    return await audit(database)


async def kinds(telegram: TelegramBot, user_id: int) -> list[tuple[str, int]]:
    entries = await telegram.deps.ledger.history(UserRef("telegram", str(user_id)), 50)
    return [(entry.kind, entry.amount) for entry in entries]


async def test_a_member_with_no_credits_buys_a_pack_and_generates_at_once(tmp_path, api):
    async with stars_bot(tmp_path, api) as telegram:
        alice = telegram.member(ALICE, "Alice", "alice")
        since = len(api.calls)
        alice.send("/buy")
        packs = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
        assert packs.params["text"] == BUY_EN
        assert buttons(packs) == [
            ("100 credits · 50 ⭐", "buy:100:50"),
            ("500 credits · 230 ⭐", "buy:500:230"),
        ]

        alice.press(packs.result, "100 credits")
        invoice = await api.wait_for("sendInvoice", since=since, chat_id=ALICE)
        assert invoice.status == 200
        assert {k: invoice.params[k] for k in ("title", "description", "payload", "currency")} == {
            "title": "100 credits",
            "description": "100 credits (¥10.00) for your wallet: 5 × Standard,"
            " 2 × High Quality, 1 × Master.",
            "payload": f"stars:100:50:{ALICE}",
            "currency": "XTR",
        }
        assert invoice.params["prices"] == [{"label": "100 credits", "amount": 50}]
        assert invoice.params.get("provider_token", "") == ""
        assert await telegram.balance(ALICE) == 0

        since = len(api.calls)
        payment = await alice.pay(invoice)
        assert payment.ok
        answer = api.of("answerPreCheckoutQuery", since=since)[0]
        assert answer.params["ok"] is True and "error_message" not in answer.params
        thanks = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
        assert thanks.params["text"] == (
            f"✅ Thank you! 100 credits (¥10.00) added to your wallet (payment {payment.charge_id}).\n"
            "New balance: 100 credits (¥10.00)."
        )

        # And generate at once: no moderator anywhere.
        since = len(api.calls)
        alice.send("/gen a robot plays the piano", photo=sample_image())
        quote = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
        alice.press(quote.result, "High Quality")
        await api.wait_for("sendVideo", since=since, chat_id=ALICE, timeout=90)
        await telegram.settle()
        assert await telegram.balance(ALICE) == 65
        assert await kinds(telegram, ALICE) == [("capture", 0), ("hold", -35), ("purchase", 100)]
        entry = await telegram.deps.ledger.entry(f"purchase:telegram:{payment.charge_id}")
        assert entry is not None and entry.actor == f"telegram:{ALICE}"

        history = await said(telegram, alice, "/history 3")
        assert history.endswith("· purchase +100 · balance 100 · 100 credits bought for 50 Stars")
        assert not [c for c in api.calls if c.params.get("chat_id") == MODERATOR_ID]
        assert await audited(telegram) == []


async def test_chinese_members_buy_and_are_refused_in_chinese(tmp_path, api):
    async with stars_bot(tmp_path, api) as telegram:
        ming = telegram.member(MING, "小明", lang="zh-hans")
        assert await said(telegram, ming, "/buy") == BUY_ZH
        invoice = await invoice_for(telegram, ming, "500 灵感值")
        assert (invoice.params["title"], invoice.params["prices"]) == (
            "500 灵感值",
            [{"label": "500 灵感值", "amount": 230}],
        )
        assert (
            invoice.params["description"]
            == "为你的钱包充值 500 灵感值（¥50.00）：25 条标准、14 条高品质、5 条大师。"
        )

        # A tampered amount: refused, in Chinese, and nothing is taken.
        tampered = await ming.pay(invoice, total_amount=1)
        assert not tampered.ok
        assert tampered.error == "这个套餐的价格是 230 星，账单已与之不符。发送 /buy 获取新的账单。"
        # A pack no longer on sale (an invoice from an older price list).
        gone = await ming.pay(payload=f"stars:300:100:{MING}", total_amount=100)
        assert gone.error == "这个套餐已下架。发送 /buy 查看当前在售的套餐。"
        # Someone else's invoice: Alice pays Ming's, in English.
        alice = telegram.member(ALICE, "Alice", "alice")
        foreign = await alice.pay(invoice)
        assert foreign.error == "This invoice was made for someone else. Send /buy for your own."
        # Another currency than Stars.
        euros = await ming.pay(invoice, currency="EUR")
        assert euros.error == "这个套餐的价格是 230 星，账单已与之不符。发送 /buy 获取新的账单。"
        assert not api.charges
        await telegram.idle()
        assert await telegram.balance(MING) == 0 and await telegram.balance(ALICE) == 0

        since = len(api.calls)
        payment = await ming.pay(invoice)
        assert payment.ok
        thanks = await api.wait_for("sendMessage", since=since, chat_id=MING)
        assert thanks.params["text"] == (
            f"✅ 谢谢！已向你的钱包充值 500 灵感值（¥50.00）（付款 {payment.charge_id}）。\n"
            "充值后余额：500 灵感值（¥50.00）。"
        )
        history = await said(telegram, ming, "/history 1")
        assert history.endswith("· 购买 +500 · 余额 500 · 用 230 星购买 500 灵感值")
        assert await audited(telegram) == []


async def test_a_replayed_payment_credits_nothing_more(tmp_path, api, backend):
    async with stars_bot(tmp_path, api, **backend) as telegram:
        alice = telegram.member(ALICE, "Alice", "alice")
        payment, _ = await bought(telegram, alice, "100 credits")

        for _ in range(2):  # the same successful_payment again, as a replayed update
            since = len(api.calls)
            api.push({"message": dict(payment.message)})
            again = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
            assert again.params["text"] == (
                f"Payment {payment.charge_id} was already credited (100 credits (¥10.00));"
                " nothing more was added.\nNew balance: 100 credits (¥10.00)."
            )
        second, _ = await bought(telegram, alice, "100 credits")  # a new payment is new
        assert second.charge_id != payment.charge_id
        assert await telegram.balance(ALICE) == 200

        # A payment delivered twice at once: both copies are handled side by side.
        invoice = await invoice_for(telegram, alice, "500 credits")
        since = len(api.calls)
        third = await alice.pay(invoice)
        for _ in range(3):
            api.push({"message": dict(third.message)})
        answers = [
            call.params["text"]
            for call in [
                await api.wait_for("sendMessage", since=since, chat_id=ALICE, count=n)
                for n in (1, 2, 3, 4)
            ]
        ]
        thanks = (
            f"✅ Thank you! 500 credits (¥50.00) added to your wallet (payment {third.charge_id})."
        )
        already = (
            f"Payment {third.charge_id} was already credited (500 credits (¥50.00));"
            " nothing more was added."
        )
        assert sorted(answer.splitlines()[0] for answer in answers) == sorted(
            [thanks, already, already, already]
        )
        assert all(answer.endswith("New balance: 700 credits (¥70.00).") for answer in answers)
        assert await telegram.balance(ALICE) == 700
        assert await kinds(telegram, ALICE) == [
            ("purchase", 500),
            ("purchase", 100),
            ("purchase", 100),
        ]
        assert await audited(telegram) == []


async def test_refunds_by_a_moderator_and_not_by_a_stranger(tmp_path, api, backend):
    async with stars_bot(tmp_path, api, **backend) as telegram:
        alice = telegram.member(ALICE, "Alice", "alice")
        moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
        stranger = telegram.member(STRANGER, "Mallory", "mallory")
        first, _ = await bought(telegram, alice, "100 credits")
        spent, _ = await bought(telegram, alice, "100 credits")

        # A stranger cannot: no refund asked of Telegram, nothing in the ledger.
        assert await said(telegram, stranger, f"/refund {first.charge_id}") == (
            "Only moderators can do that."
        )
        assert await said(telegram, moderator, "/refund stxNOSUCHCHARGE") == (
            "No payment stxNOSUCHCHARGE is recorded here."
        )
        assert not api.of("refundStarPayment")

        # Enough balance: the Stars go back and the credits leave the wallet.
        reply = await said(telegram, moderator, f"/refund {first.charge_id} asked within a day")
        assert reply == (
            f"Payment {first.charge_id} of Alice (telegram:1001) refunded: the Stars went back,"
            " and 100 credits (¥10.00) were taken from the wallet.\n"
            "New balance: 100 credits (¥10.00)."
        )
        [call] = api.of("refundStarPayment")
        assert call.params == {"user_id": ALICE, "telegram_payment_charge_id": first.charge_id}
        assert api.charges[first.charge_id].refunded
        refund = await telegram.deps.ledger.entry(f"purchase_refund:telegram:{first.charge_id}")
        assert (refund.amount, refund.actor, refund.reason) == (
            -100,
            f"telegram:{MODERATOR_ID}",
            "asked within a day",
        )

        # Spent: refused with the reason, nothing asked of Telegram.
        since = len(api.calls)
        alice.send("/gen a robot plays the piano", photo=sample_image())
        quote = await api.wait_for("sendMessage", since=since, chat_id=ALICE)
        alice.press(quote.result, "High Quality")
        await api.wait_for("sendVideo", since=since, chat_id=ALICE, timeout=90)
        await telegram.settle()
        assert await said(telegram, moderator, f"/refund {spent.charge_id}") == (
            f"Not refunded: Alice (telegram:1001) bought 100 credits (¥10.00) with payment"
            f" {spent.charge_id}, but only 65 credits (¥6.50) is left to take back."
            " Add force at the end to refund anyway and take what is left."
        )
        assert len(api.of("refundStarPayment")) == 1 and not api.charges[spent.charge_id].refunded

        # force: the Stars go back, the wallet goes to zero and no lower.
        reply = await said(telegram, moderator, f"/refund {spent.charge_id} changed my mind force")
        assert reply == (
            f"Payment {spent.charge_id} of Alice (telegram:1001) refunded: the Stars went back,"
            " and 65 credits (¥6.50) were taken from the wallet.\n"
            "35 credits (¥3.50) of it had been spent and could not be taken back.\n"
            "New balance: 0 credits (¥0.00)."
        )
        assert api.charges[spent.charge_id].refunded and await telegram.balance(ALICE) == 0

        # Again: Telegram answers "already refunded", which counts as done; nothing moves.
        reply = await said(telegram, moderator, f"/refund {spent.charge_id} force")
        assert reply.startswith(
            f"Payment {spent.charge_id} of Alice (telegram:1001) was already refunded"
        )
        assert api.of("refundStarPayment")[-1].status == 400
        assert await kinds(telegram, ALICE) == [
            ("purchase_refund", -65),
            ("capture", 0),
            ("hold", -35),
            ("purchase_refund", -100),
            ("purchase", 100),
            ("purchase", 100),
        ]
        history = await said(telegram, alice, "/history 1")
        assert history.endswith("· purchase refunded -65 · balance 0 · changed my mind")
        assert await audited(telegram) == []

    # klingbot wallet export (the operator's command, on the same database).
    exported_csv = tmp_path / "ledger.csv"
    settings = fast_settings(tmp_path, **backend)
    assert await export_command(settings, Translator("en"), str(exported_csv)) == 0
    with exported_csv.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    exported = [(row[4], row[5], row[12]) for row in rows[1:] if "purchase" in row[4]]
    assert exported == [
        ("purchase", "100", f"purchase:telegram:{first.charge_id}"),
        ("purchase", "100", f"purchase:telegram:{spent.charge_id}"),
        ("purchase_refund", "-100", f"purchase_refund:telegram:{first.charge_id}"),
        ("purchase_refund", "-65", f"purchase_refund:telegram:{spent.charge_id}"),
    ]


async def test_purchases_off_say_so(tmp_path, api):
    async with telegram_bot(tmp_path, api) as telegram:
        assert await said(telegram, telegram.member(ALICE, "Alice"), "/buy") == (
            "Buying credits is not available here. Ask a moderator for credits."
        )
        ming = telegram.member(MING, "小明", lang="zh-hans")
        assert (
            await said(telegram, ming, "/buy") == "这里暂不支持购买灵感值。需要灵感值请联系管理员。"
        )
        # An old invoice paid after the packs were switched off is refused.
        payment = await ming.pay(payload=f"stars:100:50:{MING}", total_amount=50)
        assert payment.error == "这个套餐已下架。发送 /buy 查看当前在售的套餐。"


async def test_buying_in_webhook_mode(tmp_path, api: BotApiStandIn):
    async with (
        Balancer() as balancer,
        stars_bot(
            tmp_path,
            api,
            telegram_webhook_url=balancer.url("/hook"),
            telegram_webhook_listen="127.0.0.1:0",
        ) as telegram,
    ):
        balancer.backends = [f"127.0.0.1:{telegram.adapter.webhook.port}"]
        [webhook] = api.of("setWebhook")
        assert "pre_checkout_query" in webhook.params["allowed_updates"]
        alice = telegram.member(ALICE, "Alice", "alice")
        _payment, thanks = await bought(telegram, alice, "500 credits")
        assert thanks.endswith("New balance: 500 credits (¥50.00).")
        assert not api.of("getUpdates")
        assert await telegram.balance(ALICE) == 500


async def test_a_refund_telegram_could_not_make_is_finished_by_running_it_again(tmp_path, api):
    async with stars_bot(tmp_path, api) as telegram:
        alice = telegram.member(ALICE, "Alice", "alice")
        moderator = telegram.member(MODERATOR_ID, "Mod", "mod", "zh-CN")
        payment, _ = await bought(telegram, alice, "100 credits")
        api.fail_next(
            "refundStarPayment", error_code=400, description="Bad Request: CHARGE_NOT_FOUND"
        )

        reply = await said(telegram, moderator, f"/refund {payment.charge_id}")

        # The ledger decided first (credits taken); the Stars did not go back yet.
        assert reply == (
            f"付款 {payment.charge_id}：退款已记入钱包，但款项尚未退回（Charge_not_found）。"
            "请再次发送同样的 /refund 重试。"
        )
        assert await telegram.balance(ALICE) == 0 and not api.charges[payment.charge_id].refunded
        reply = await said(telegram, moderator, f"/refund {payment.charge_id}")
        assert reply.startswith(f"Alice (telegram:1001) 的付款 {payment.charge_id} 之前已经退款")
        assert api.charges[payment.charge_id].refunded
        assert await kinds(telegram, ALICE) == [("purchase_refund", -100), ("purchase", 100)]
        assert await audited(telegram) == []


# --- the stand-in itself: as strict as Telegram -------------------------------------------


async def post(api: BotApiStandIn, method: str, **params) -> tuple[int, dict]:
    url = f"{api.base_url}{api.token}/{method}"
    async with aiohttp.ClientSession() as session, session.post(url, json=params) as response:
        return response.status, await response.json()


async def test_the_stand_in_refuses_what_telegram_refuses(api):
    api.add_chat(ALICE)
    good = {
        "chat_id": ALICE,
        "title": "100 credits",
        "description": "for your wallet",
        "payload": "stars:100:50:1001",
        "currency": "XTR",
        "prices": [{"label": "100 credits", "amount": 50}],
    }
    refusals = {
        "Bad Request: PAYMENT_PROVIDER_INVALID": [{"currency": "USD"}, {"provider_token": "tok"}],
        "Bad Request: STARS_INVOICE_INVALID": [
            {"prices": [{"label": "a", "amount": 25}, {"label": "b", "amount": 25}]},
            {"prices": []},
        ],
        "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID": [
            {"prices": [{"label": "a", "amount": 0}]},
            {"prices": [{"label": "a", "amount": 10_001}]},
        ],
        "Bad Request: invoice payload length must be 1-128 bytes": [
            {"payload": ""},
            {"payload": "é" * 65},
        ],
    }
    for description, changes in refusals.items():
        for change in changes:
            assert await post(api, "sendInvoice", **{**good, **change}) == (
                400,
                {"ok": False, "error_code": 400, "description": description},
            ), change
    status, sent = await post(api, "sendInvoice", **good)
    assert status == 200 and sent["result"]["invoice"]["total_amount"] == 50
    assert await post(api, "refundStarPayment", user_id=ALICE, telegram_payment_charge_id="x") == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: CHARGE_NOT_FOUND"},
    )


async def test_the_stand_in_fails_a_payment_answered_late_or_not_at_all(api):
    member = Member(api, ALICE, "Alice")
    api.pre_checkout_s = 0.3  # Telegram's 10 s, scaled down: nobody answers here

    unanswered = await member.pay(payload="stars:100:50:1001", total_amount=50)

    assert (unanswered.ok, unanswered.error) == (False, "the bot did not answer in time")
    api.pre_checkout_s = 10.0
    paying = asyncio.create_task(member.pay(payload="stars:100:50:1001", total_amount=50))
    query_id = await api.pending_checkout()
    api.advance(10.5)  # the bot's answer comes 10.5 s after the query
    status, body = await post(
        api, "answerPreCheckoutQuery", pre_checkout_query_id=query_id, ok=True
    )
    late = await paying
    assert (status, body["description"]) == (400, QUERY_TOO_OLD)
    assert (late.ok, late.error) == (False, "the bot did not answer in time")
    assert not api.charges and not any("message" in update for update in api.updates)
