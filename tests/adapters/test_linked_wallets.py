"""One wallet on Telegram and Discord, end to end: both real adapters on one core, the console.

``klingbot run`` with both tokens: one core (one database, one job runner)
behind the real python-telegram-bot application polling the Bot API
stand-in and the real discord.py client on the Discord stand-in; the
operator's console chat on the same core. A member links their Telegram
account to their Discord account with a code, sees one balance on both,
generates on either; a job held before the link is paid from the shared
wallet; a moderator's /unlink (console, CLI words) splits them as recorded.
Wrong accounts, expired codes (the handlers' clock is moved, nothing sleeps)
and reused codes change nothing, in English and Chinese.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.console import console_caller
from adapters.console.chat import ConsoleChat
from adapters.discord import build_client
from adapters.discord import running as discord_running
from adapters.discord.pace import ChannelPace
from adapters.telegram import build_application
from adapters.telegram import running as telegram_running
from app.bootstrap import open_core
from bot.commands import UserRef
from bot.deps import Deps
from bot.links import code_hash
from storage.audit import audit
from tests.adapters.conftest import GROUP, MODERATOR_ID
from tests.adapters.conftest import TOKEN as TELEGRAM_TOKEN
from tests.adapters.discord_bot import TOKEN as DISCORD_TOKEN
from tests.adapters.discord_standin import DiscordStandIn, Guild, Interaction, Member, Message
from tests.adapters.standin import BotApiStandIn
from tests.adapters.standin import Member as TelegramMember
from tests.e2e.conftest import fast_settings
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip
from tests.support.clock import SkippingTime, VirtualTime

ALICE_TG = 1001
CODE = re.compile(r"(?:link code|关联码)：?:? ?([A-Z0-9]{8})")
NOT_MODERATOR = "Only moderators can do that."


class MovableClock:
    """The handlers' clock: the real time plus however far the test moved it."""

    def __init__(self) -> None:
        self.offset = 0

    def now(self) -> int:
        return int(time.time()) + self.offset


@dataclass
class Platforms:
    telegram: BotApiStandIn
    discord: DiscordStandIn
    guild: Guild
    deps: Deps
    clock: MovableClock
    console: ConsoleChat
    console_lines: list[str]

    async def telegram_says(self, member, text: str) -> str:
        """``member`` sends ``text`` in their private chat; the bot's answer."""
        since = len(self.telegram.calls)
        member.send(text)
        reply = await self.telegram.wait_for("sendMessage", since=since, chat_id=member.id)
        return reply.params["text"]

    async def answered(self, interaction: Interaction) -> Message:
        await self.discord.wait_until(
            lambda: interaction.original is not None and not interaction.original.loading
        )
        assert interaction.original is not None
        return interaction.original

    async def console_says(self, line: str) -> str:
        self.console_lines.clear()
        await self.console.send_line(line)
        return "\n".join(self.console_lines)

    async def balance(self, user: UserRef) -> tuple[int, int]:
        wallet = await self.deps.ledger.wallet(user)
        assert wallet is not None
        return wallet.balance, wallet.held

    async def fund(self, user: UserRef, credits: int) -> None:
        await self.deps.ledger.top_up(
            user, credits, key=f"fund-{user}-{credits}", actor="test", reason="", now=0
        )


@asynccontextmanager
async def platforms(tmp_path: Path, gate: asyncio.Event) -> AsyncIterator[Platforms]:
    async with (
        BotApiStandIn(TELEGRAM_TOKEN) as telegram_api,
        DiscordStandIn(DISCORD_TOKEN) as discord_api,
    ):
        telegram_api.add_chat(GROUP)
        guild = discord_api.add_guild("Creators", channels=("general",))
        settings = fast_settings(
            tmp_path,
            telegram_token=TELEGRAM_TOKEN,
            telegram_base_url=telegram_api.base_url,
            telegram_base_file_url=telegram_api.base_file_url,
            telegram_admin_chats=(GROUP,),
            discord_token=DISCORD_TOKEN,
            discord_api_base=discord_api.api_base,
            discord_gateway_url=discord_api.gateway_url,
            discord_guild_ids=(int(guild.id),),
            moderators=(UserRef("telegram", str(MODERATOR_ID)),),
        )
        provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script(gate=gate))
        clock = MovableClock()
        telegram_time = VirtualTime(monotonic_start=1_000.0)
        telegram_api.flood_clock = telegram_time.monotonic
        discord_time = SkippingTime()
        discord_api.rate_limits.clock = discord_time.monotonic
        async with open_core(settings, provider=provider) as core:
            deps = dataclasses.replace(core, clock=clock)
            application = build_application(settings, deps, timing=telegram_time.timing())
            client = build_client(
                settings,
                deps,
                guild_ready_timeout=0.05,
                pace=ChannelPace(monotonic=discord_time.monotonic, sleep=discord_time.sleep),
                identify_spacing_s=0.01,
            )
            async with (
                telegram_running(application, poll_timeout_s=5),
                discord_running(client),
            ):
                lines: list[str] = []
                console = ConsoleChat(deps, console_caller(None, "en"), lines.append)
                deps.generation.outboxes.register("console", console)
                await deps.generation.runner.start()
                try:
                    yield Platforms(telegram_api, discord_api, guild, deps, clock, console, lines)
                finally:
                    await deps.generation.runner.stop()


async def link_code(world: Platforms, member) -> str:
    text = await world.telegram_says(member, "/link")
    found = CODE.search(text)
    assert found, text
    return found.group(1)


async def master_clip_on_discord(world: Platforms, member: Member) -> None:
    quote = await world.answered(member.slash("gen", {"prompt": "a robot waves"}))
    await world.discord.wait_acknowledged(member.press(quote, "Master"))


async def test_a_member_links_telegram_to_discord_and_has_one_wallet_everywhere(tmp_path):
    gate = asyncio.Event()
    async with platforms(tmp_path, gate) as world:
        alice = TelegramMember(world.telegram, ALICE_TG, "Alice", "alice", "en")
        alice_dc = world.guild.add_member("Alice D")
        stranger = world.guild.add_member("Mallory")
        tg, dc = UserRef("telegram", str(ALICE_TG)), UserRef("discord", alice_dc.id)

        assert (await world.telegram_says(alice, "/balance")).startswith("Your balance: 0")
        await world.answered(alice_dc.slash("balance"))
        await world.fund(tg, 300)
        await world.fund(dc, 150)
        # A Master clip (100 credits) is held on Discord before the link, still rendering.
        await master_clip_on_discord(world, alice_dc)
        assert await world.balance(dc) == (50, 100)

        await world.deps.preferences.change(tg, "duration_s", 10, now=0)  # the issuer's /settings
        code = await link_code(world, alice)
        linked = await world.answered(alice_dc.slash("link", {"code": code.lower()}))

        assert linked.ephemeral
        assert linked.content == (
            f"Linked: discord:{alice_dc.id} and telegram:{ALICE_TG} now share one wallet."
            " 50 credits (¥5.00) moved over from this account. Balance: 350 credits (¥35.00).\n"
            f"Your /settings are now those of telegram:{ALICE_TG} on both accounts; this"
            " account's own come back if the accounts are ever unlinked."
        )
        shown = (await world.answered(alice_dc.slash("settings"))).content
        assert "Clip length /gen quotes: 10 s" in shown
        await world.deps.preferences.change(dc, "duration_s", None, now=0)  # the shared row
        assert await world.deps.preferences.get(tg) == await world.deps.preferences.get(dc)
        on_telegram = await world.telegram_says(alice, "/balance")
        on_discord = (await world.answered(alice_dc.slash("balance"))).content
        assert (
            on_telegram
            == on_discord
            == (
                "Your balance: 350 credits (¥35.00).\n"
                "On hold for 1 running job: 100 credits (¥10.00)."
            )
        )

        # The job held before the link is paid once, from the shared wallet.
        gate.set()
        await asyncio.wait_for(world.deps.generation.runner.idle(), 60)
        assert await world.balance(tg) == await world.balance(dc) == (350, 0)

        # Generating on Telegram spends the same wallet.
        since = len(world.telegram.calls)
        alice.send("/gen a robot waves")
        quote = await world.telegram.wait_for("sendMessage", since=since, chat_id=ALICE_TG)
        alice.press(quote.result, "Master")
        await world.telegram.wait_for("sendVideo", since=since, chat_id=ALICE_TG, timeout=60)
        await asyncio.wait_for(world.deps.generation.runner.idle(), 60)
        assert (await world.answered(alice_dc.slash("balance"))).content == (
            "Your balance: 250 credits (¥25.00)."
        )
        history = (await world.answered(alice_dc.slash("history", {"n": 50}))).content
        assert "wallets linked (in) +50" in history and "wallets linked (out) -50" in history

        # A stranger cannot unlink anyone, on either platform; nothing changes.
        refused = await world.answered(stranger.slash("unlink", {"user": alice_dc}))
        assert (refused.content, refused.ephemeral) == (NOT_MODERATOR, True)
        mallory = TelegramMember(world.telegram, 6666, "Mallory", "mallory", "en")
        assert await world.telegram_says(mallory, f"/unlink discord:{alice_dc.id}") == (
            NOT_MODERATOR
        )
        assert await world.deps.ledger.linked_identities(dc) == [tg, dc]

        # The operator (a moderator) reads the shared balance and splits the pair.
        assert "250 credits" in await world.console_says(f"/balance discord:{alice_dc.id}")
        split = await world.console_says(f"/unlink discord:{alice_dc.id} 50")
        assert split == (
            f"Unlinked: telegram:{ALICE_TG} keeps the shared wallet (200 credits (¥20.00));"
            f" discord:{alice_dc.id} starts with 50 credits (¥5.00)."
        )
        assert await world.telegram_says(alice, "/balance") == "Your balance: 200 credits (¥20.00)."
        assert (await world.answered(alice_dc.slash("balance"))).content == (
            "Your balance: 50 credits (¥5.00)."
        )
        assert await audit(world.deps.ledger.db) == []


async def test_wrong_account_expired_and_reused_codes_change_nothing_in_chinese(tmp_path):
    gate = asyncio.Event()
    gate.set()
    async with platforms(tmp_path, gate) as world:
        alice = TelegramMember(world.telegram, ALICE_TG, "爱丽丝", "alice", "zh-hans")
        other_tg = TelegramMember(world.telegram, 2002, "Bob", "bob", "zh-hans")
        alice_dc = world.guild.add_member("Alice D")
        bob_dc = world.guild.add_member("Bob D")
        tg = UserRef("telegram", str(ALICE_TG))
        await world.telegram_says(other_tg, "/balance")
        await world.telegram_says(alice, "/balance")
        await world.answered(alice_dc.slash("balance"))
        await world.fund(tg, 70)

        async def on_discord(member: Member, code: str) -> str:
            answer = await world.answered(member.slash("link", {"code": code}, locale="zh-CN"))
            assert answer.ephemeral
            return answer.content

        # In a group a code would be seen by everyone: refused.
        since = len(world.telegram.calls)
        alice.send("/link", chat_id=GROUP)
        refusal = await world.telegram.wait_for("sendMessage", since=since, chat_id=GROUP)
        assert refusal.params["text"] == "请在与我的私聊中发送 /link：关联码不能让别人看到。"
        code = await link_code(world, alice)
        assert await world.telegram_says(other_tg, f"/link {code}") == (
            "这个关联码属于另一个 telegram 账号：请用你在其他平台上的账号发送。"
        )
        assert await world.telegram_says(alice, f"/link {code}") == (
            "这是你自己的关联码：请用你在另一个平台上的账号发送。"
        )
        assert await on_discord(alice_dc, "ZZZZ2222") == "这个关联码无效，请检查后重试。"
        world.clock.offset += 600
        assert await on_discord(alice_dc, code) == (
            "这个关联码已过期（有效期 10 分钟）。请在另一个平台上用 /link 重新获取。"
        )
        assert await world.deps.ledger.linked_identities(tg) == [tg]

        fresh = await link_code(world, alice)
        assert (await on_discord(alice_dc, fresh)).startswith("关联成功")
        assert await on_discord(bob_dc, fresh) == (
            "这个关联码已经用过了。请在另一个平台上用 /link 重新获取。"
        )
        bob = UserRef("discord", bob_dc.id)
        assert await world.deps.ledger.linked_identities(bob) == [bob]
        assert (await world.answered(bob_dc.slash("balance", locale="zh-CN"))).content == (
            "你的余额：0 灵感值（¥0.00）。"
        )
        assert await world.telegram_says(alice, "/balance") == "你的余额：70 灵感值（¥7.00）。"
        assert await audit(world.deps.ledger.db) == []


async def test_stars_paid_by_a_linked_telegram_account_go_back_to_that_account(tmp_path, api):
    """The Telegram account sent the code, so its purchases land in the Discord-owned wallet;
    a refund still returns the Stars to the Telegram account that paid."""
    from tests.adapters.test_telegram_stars import ALICE, bought, said, stars_bot

    async with stars_bot(tmp_path, api) as telegram:
        ledger = telegram.deps.ledger
        alice = telegram.member(ALICE, "Alice", "alice")
        moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
        tg, dc = UserRef("telegram", str(ALICE)), UserRef("discord", "77")
        await said(telegram, alice, "/balance")
        await ledger.top_up(dc, 40, key="dc", actor="t", reason="", now=0, create_wallet=True)
        digest = code_hash("WXYZ2345")
        assert await ledger.issue_link_code(dc, digest, now=1, ttl_s=600, per_hour=5)
        linked = await ledger.redeem_link_code(tg, digest, now=2, failures_per_hour=10)
        assert linked.status == "linked"

        payment, thanks = await bought(telegram, alice, "100 credits")
        assert thanks.endswith("New balance: 140 credits (¥14.00).")
        assert (await ledger.entry(f"purchase:telegram:{payment.charge_id}")).user == dc

        reply = await said(telegram, moderator, f"/refund {payment.charge_id}")
        assert reply.startswith(f"Payment {payment.charge_id} of Alice (telegram:{ALICE}) refunded")
        [call] = api.of("refundStarPayment")
        assert call.params["user_id"] == ALICE
        assert (await ledger.wallet(dc)).balance == (await ledger.wallet(tg)).balance == 40
        assert await audit(ledger.db) == []
