"""Who is a moderator on Telegram: the configured ids and the admins of ``TELEGRAM_ADMIN_CHATS``.

Anyone can create a group, add the bot and be its creator or an
administrator there. These tests play that stranger against the real
python-telegram-bot application and the Bot API stand-in: in their own
group (and in a private chat) every command that moves money or shows
someone else's data is refused, in their language; the wallets and the
ledger read back from the database are exactly as before, and the bot never
even asks who administers the stranger's group. The configured moderator,
and an admin of a listed group, still can, wherever they talk.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.console.chat import sample_image
from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.conftest import GROUP, MODERATOR_ID, TelegramBot, telegram_bot
from tests.adapters.standin import Member, buttons
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip

# PTB 22 warns when it builds a RetryAfter (its retry_after is becoming a timedelta).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

STRANGERS_GROUP = -1009876543210
NOT_MODERATOR = "Only moderators can do that."
NOT_MODERATOR_ZH = "只有管理员可以这样做。"
NOT_YOUR_JOB = "This is not your job."
ALICE, CREATOR, ADMIN, LISTED_ADMIN = 2002, 5005, 5006, 3001


async def answer(telegram: TelegramBot, member: Member, text: str, chat_id: int) -> str:
    """What the bot answers ``member`` saying ``text`` in ``chat_id``."""
    since = len(telegram.api.calls)
    member.send(text, chat_id=chat_id)
    reply = await telegram.api.wait_for("sendMessage", since=since, chat_id=chat_id)
    return reply.params["text"]


async def books(telegram: TelegramBot, *user_ids: int) -> list[object]:
    """Each user's wallet and ledger entries, read back from the database."""
    ledger = telegram.deps.ledger
    found: list[object] = []
    for user_id in user_ids:
        user = UserRef("telegram", str(user_id))
        found += [await ledger.wallet(user), await ledger.history(user, 50)]
    return found


async def a_delivered_job(
    telegram: TelegramBot,
    alice: Member,
    chat_id: int,
    gate: asyncio.Event,
    meddler: Member | None = None,
) -> str:
    """Alice, funded by the configured moderator, makes a Standard clip in ``chat_id``.

    The clip is finished once ``gate`` opens. While it renders, ``meddler``
    presses its Cancel button: refused with an alert, and the job goes on.
    Returns the job's short id.
    """
    api = telegram.api
    moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
    await answer(telegram, alice, "/balance", ALICE)
    done = await answer(telegram, moderator, f"/topup telegram:{ALICE} 300", MODERATOR_ID)
    assert done.startswith("Added 300 credits")
    since = len(api.calls)
    alice.send("/gen a robot waves", chat_id=chat_id, photo=sample_image())
    quote = await api.wait_for("sendMessage", since=since, chat_id=chat_id)
    alice.press(quote.result, "Standard")
    await api.wait_for("answerCallbackQuery", since=since)  # her press, answered
    if meddler is not None:
        status = await api.wait_for(
            "sendMessage",
            since=since,
            chat_id=chat_id,
            where=lambda c: any(a.startswith("cancel:") for _, a in buttons(c)),
        )
        pressed = len(api.calls)
        meddler.press(status.result, "Cancel")
        alert = await api.wait_for("answerCallbackQuery", since=pressed)
        assert (alert.params["text"], alert.params["show_alert"]) == (NOT_YOUR_JOB, True)
    gate.set()
    await api.wait_for("sendVideo", since=since, chat_id=chat_id, timeout=60)
    await telegram.settle()
    [job] = await telegram.deps.generation.store.jobs_of(UserRef("telegram", str(ALICE)), 5)
    assert (job.state, job.delivery) == ("delivered", "uploaded")
    return job.short_id


async def refused_everything(telegram: TelegramBot, who: Member, chat_id: int, job: str) -> None:
    """Every moderator command, by ``who`` in ``chat_id``: each refused, in their language."""
    for command in (
        "/topup me 1000",
        f"/topup telegram:{ALICE} 1000",
        "/topup @alice 1000",
        f"/refund {job}",
        f"/jobs telegram:{ALICE}",
        "/jobs all",
        f"/balance telegram:{ALICE}",
    ):
        assert await answer(telegram, who, command, chat_id) == NOT_MODERATOR, command
    who.language_code = "zh-CN"
    assert await answer(telegram, who, "/topup me 1000", chat_id) == NOT_MODERATOR_ZH
    who.language_code = "en"


@pytest.fixture
def gate():
    return asyncio.Event()


@pytest.fixture
async def telegram(tmp_path, api, gate):
    """The bot with the usual settings, on a scripted video service whose jobs wait for ``gate``."""
    provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script(gate=gate))
    async with telegram_bot(tmp_path, api, provider=provider) as bot:
        yield bot


async def test_the_admins_of_a_strangers_group_are_not_moderators(telegram, gate):
    api = telegram.api
    api.members[(STRANGERS_GROUP, CREATOR)] = "creator"
    api.members[(STRANGERS_GROUP, ADMIN)] = "administrator"
    api.members[(STRANGERS_GROUP, ALICE)] = "member"
    api.members[(GROUP, LISTED_ADMIN)] = "administrator"
    alice = telegram.member(ALICE, "Alice", "alice")
    creator = telegram.member(CREATOR, "Stranger", "stranger")
    admin = telegram.member(ADMIN, "Accomplice", "accomplice")
    # Alice makes a clip in the stranger's group: its creator cannot cancel it.
    job = await a_delivered_job(telegram, alice, STRANGERS_GROUP, gate, meddler=creator)
    for who in (creator, admin):  # their wallets open at 0
        await answer(telegram, who, "/balance", STRANGERS_GROUP)
    before = await books(telegram, ALICE, CREATOR, ADMIN)

    for who in (creator, admin):
        await refused_everything(telegram, who, STRANGERS_GROUP, job)
        await refused_everything(telegram, who, who.id, job)  # nor in a private chat
    since = len(api.calls)
    hello = alice.send("/balance", chat_id=STRANGERS_GROUP)
    await api.wait_for("sendMessage", since=since, chat_id=STRANGERS_GROUP)
    since = len(api.calls)
    creator.send("/topup 1000", chat_id=STRANGERS_GROUP, reply_to=hello)  # by reply to Alice
    refused = await api.wait_for("sendMessage", since=since, chat_id=STRANGERS_GROUP)
    assert refused.params["text"] == NOT_MODERATOR
    await telegram.idle()
    assert await books(telegram, ALICE, CREATOR, ADMIN) == before
    # Only the listed group was ever asked who administers it.
    asked = {int(call.params["chat_id"]) for call in api.of("getChatMember")}
    assert asked == {GROUP}

    # In the stranger's group: the configured id, and an admin of the listed group, still can.
    moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
    done = await answer(telegram, moderator, f"/topup telegram:{ALICE} 5", STRANGERS_GROUP)
    assert done.endswith("New balance: 285 credits (¥28.50).")
    listed_admin = telegram.member(LISTED_ADMIN, "Ada", "ada")
    everyone = await answer(telegram, listed_admin, "/jobs all", STRANGERS_GROUP)
    assert job in everyone
    assert await telegram.balance(CREATOR) == 0
    assert await audit(telegram.deps.ledger.db) == []


async def test_without_admin_chats_only_the_configured_ids_are_moderators(tmp_path, api):
    api.members[(GROUP, LISTED_ADMIN)] = "creator"
    async with telegram_bot(tmp_path, api, telegram_admin_chats=()) as telegram:
        ada = telegram.member(LISTED_ADMIN, "Ada", "ada")
        await answer(telegram, ada, "/balance", GROUP)
        assert await answer(telegram, ada, "/topup me 1000", GROUP) == NOT_MODERATOR
        moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
        done = await answer(telegram, moderator, f"/topup telegram:{LISTED_ADMIN} 5", GROUP)
        assert done.endswith("New balance: 5 credits (¥0.50).")
        await telegram.idle()
        assert not api.of("getChatMember")
        assert await telegram.balance(LISTED_ADMIN) == 5
