"""Discord purchases end to end: /buy's premium buttons, entitlements credited once and consumed.

The real discord.py client against the stand-in, on a real database: a member
pays for a SKU (``Member.buy``: Discord grants an entitlement and sends
ENTITLEMENT_CREATE), the bot credits the pack once per entitlement id,
consumes the entitlement and tells the member; at start-up it finds what was
bought while it was down. Nothing sleeps: the tests wait on the stand-in's
records.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.discord.purchases import Grant, Purchases
from bot import skus
from bot.commands import UserRef
from bot.ports import purchase_key
from storage.audit import audit
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import SKU_DURABLE, DiscordStandIn
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip

CONSUME = "POST /applications/{application_id}/entitlements/{entitlement_id}/consume"
GET_ONE = "GET /applications/{application_id}/entitlements/{entitlement_id}"
LIST = "GET /applications/{application_id}/entitlements"

BUY_EN = """Credit packs. What each buys, in 5 s clips:
• 100 credits (¥10.00): 5 × Standard, 2 × High Quality, 1 × Master
• 500 credits (¥50.00): 25 × Standard, 14 × High Quality, 5 × Master
Press a pack to pay in Discord. The credits arrive as soon as Discord confirms the payment,\
 and I'll tell you your new balance."""

BUY_ZH = """灵感值套餐，每个可生成的 5 秒视频：
• 100 灵感值（¥10.00）：5 条标准、2 条高品质、1 条大师
• 500 灵感值（¥50.00）：25 条标准、14 条高品质、5 条大师
点按套餐即可在 Discord 中付款。Discord 确认付款后灵感值会立即到账，我会告诉你新的余额。"""

THANKS = {
    "en-US": "Thank you! Your purchase of 100 credits (¥10.00) is in your wallet.\n"
    "New balance: 100 credits (¥10.00).",
    "zh-CN": "感谢购买！100 灵感值（¥10.00）已存入你的钱包。\n充值后余额：100 灵感值（¥10.00）。",
}


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general",))


@pytest.fixture
def packs(api):
    """Two consumable SKUs the bot sells, and one durable SKU it knows nothing of."""
    return api.add_sku("100 credits"), api.add_sku("500 credits"), api.add_sku("Supporter badge")


def mapping(packs) -> str:
    return f"{packs[0]}:100,{packs[1]}:500"


async def wait_consumed(api, entitlement) -> None:
    await api.wait_until(lambda: entitlement.consumed)


@pytest.mark.parametrize(("locale", "shown"), [("en-US", BUY_EN), ("zh-CN", BUY_ZH)])
async def test_buy_while_running_credits_once_consumes_and_the_member_can_gen_at_once(
    tmp_path, api, guild, packs, locale, shown
):
    member = guild.add_member("alice", locale=locale)
    provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script(progress=()))
    async with discord_bot(
        tmp_path, api, guild, provider=provider, discord_sku_credits=mapping(packs)
    ) as bot:
        assert "buy" in api.commands[guild.id]
        asked = member.slash("buy")
        offer = await bot.answered(asked)
        assert offer.content == shown and offer.ephemeral
        assert [b for b in offer.buttons()] == [
            {"type": 2, "style": 6, "sku_id": packs[0], "disabled": False},
            {"type": 2, "style": 6, "sku_id": packs[1], "disabled": False},
        ]

        entitlement = member.buy(packs[0])  # the member pays in Discord's store
        await wait_consumed(api, entitlement)
        await api.wait_until(lambda: bool(asked.followups))
        [news] = asked.followups
        assert news.content == THANKS[locale] and news.ephemeral
        assert await bot.balance(member) == 100
        assert entitlement.consumes == 1

        # At once, without a moderator: the quote offers Master, and the press holds it.
        quote = await bot.answered(member.slash("gen", {"prompt": "a paper boat on a pond"}))
        master = quote.labels()[0]
        assert "not enough" not in master and "不足" not in master
        pressed = member.press(quote, master)
        await api.wait_acknowledged(pressed)
        await bot.settle()
        assert await bot.balance(member) == 0
        assert [m for m in api.messages_in(guild.text_channels[0]) if m.attachments]  # the clip

        # A replay of the same ENTITLEMENT_CREATE credits nothing more and says nothing.
        since = len(api.calls)
        api.redeliver(entitlement)
        await api.wait_for(GET_ONE, since=since)  # consume refused as done; read back: consumed
        [refused] = api.of(CONSUME, since=since)
        assert (refused.status, refused.code) == (400, 40074)
        assert await bot.balance(member) == 0
        assert entitlement.consumes == 1 and len(asked.followups) == 1
        assert api.messages_in(member.dm_channel) == []


async def test_the_purchase_news_speaks_the_language_chosen_in_settings(
    tmp_path, api, guild, packs
):
    alice = guild.add_member("alice", locale="en-US")  # Discord says English; she chose Chinese
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        await bot.deps.preferences.change(
            UserRef("discord", alice.id), "locale", "zh-CN", now=bot.deps.clock.now()
        )
        asked = alice.slash("buy")
        offer = await bot.answered(asked)
        assert offer.content == BUY_ZH
        entitlement = alice.buy(packs[0])
        await wait_consumed(api, entitlement)
        await api.wait_until(lambda: bool(asked.followups))
        [news] = asked.followups
        assert news.content == THANKS["zh-CN"] and news.ephemeral


async def test_the_purchase_shows_in_history_in_both_languages(tmp_path, api, guild, packs):
    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        for member in (alice, ming):
            await wait_consumed(api, member.buy(packs[1]))
        english = (await bot.answered(alice.slash("history"))).content.splitlines()
        chinese = (await bot.answered(ming.slash("history"))).content.splitlines()
        assert english[0] == "Your last wallet entry:"
    assert english[1].endswith(" UTC · purchase +500 · balance 500 · 500 credits bought on Discord")
    assert chinese[1].endswith(" · 购买 +500 · 余额 500 · 在 Discord 购买 500 灵感值")


async def test_what_was_bought_while_the_bot_was_down_is_credited_and_consumed_at_start(
    tmp_path, api, guild, packs, caplog
):
    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    bob = guild.add_member("bob")
    # No bot connected: nobody hears ENTITLEMENT_CREATE.
    bought = alice.buy(packs[1], dispatch=False)
    chinese = ming.buy(packs[0], dispatch=False)
    badge = bob.buy(packs[2], dispatch=False)  # a SKU the bot does not sell: left alone
    used = bob.buy(packs[0], dispatch=False)
    used.consumed = True  # consumed long ago (by an earlier run): not credited again
    ended = bob.buy(packs[0], dispatch=False)
    ended.deleted = True  # refunded by Discord: not listed
    caplog.set_level(logging.INFO, logger="adapters.discord.purchases")
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        await bot.adapter.purchases.scanned()
        assert bought.consumed and chinese.consumed
        assert await bot.balance(alice) == 500 and await bot.balance(ming) == 100
        assert await bot.balance(bob) == 0
        assert not badge.consumed and badge.consumes == 0
        assert used.consumes == 0 and not ended.consumed
        [listed] = api.of(LIST)
        assert listed.query == {
            "sku_ids": f"{packs[0]},{packs[1]}",
            "limit": "100",
            "exclude_ended": "1",
            "exclude_deleted": "1",
        }
        # Nobody asked /buy here: the news goes to their DMs, in their language once known.
        await api.wait_until(lambda: bool(api.messages_in(alice.dm_channel)))
        [dm] = api.messages_in(alice.dm_channel)
        assert dm.content == (
            "Thank you! Your purchase of 500 credits (¥50.00) is in your wallet.\n"
            "New balance: 500 credits (¥50.00)."
        )
    assert not any(packs[2] in record.getMessage() for record in caplog.records)  # not listed


async def test_a_crash_between_credit_and_consume_and_two_replicas_at_once_credit_once(
    tmp_path, api, guild, packs
):
    alice = guild.add_member("alice")
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        await bot.adapter.purchases.scanned()
        # A crash leaves a purchase credited and not consumed...
        late = alice.buy(packs[0], dispatch=False)
        outcome = await skus.credit(bot.deps, alice.id, late.id, skus.pack_of(bot.deps, packs[0]))
        assert outcome.applied and not late.consumed
        # ...which two replicas starting at once both find and finish.
        other = Purchases(bot.adapter.purchases.client, bot.deps)
        since = len(api.calls)
        counts = await asyncio.gather(bot.adapter.purchases.scan(), other.scan())
        assert late.consumed and late.consumes == 1
        assert await bot.balance(alice) == 100  # credited once, by the run that crashed
        statuses = [(c.status, c.code) for c in api.of(CONSUME, since=since)]
        assert sorted(statuses, key=str) == sorted(
            [(204, None)] + [(400, 40074)] * (sum(counts) - 1), key=str
        )
        # The same entitlement handled by both at the very same time: one credit, one consume.
        both = alice.buy(packs[1], dispatch=False)
        grant = Grant(both.id, packs[1], alice.id)
        since = len(api.calls)
        await asyncio.gather(bot.adapter.purchases.handle(grant), other.handle(grant))
        assert both.consumes == 1 and await bot.balance(alice) == 600
        assert sorted(c.status for c in api.of(CONSUME, since=since)) == [204, 400]
        entry = await bot.deps.ledger.entry(purchase_key("discord", both.id))
        assert entry is not None and entry.amount == 500
    # The next start lists nothing left to do.
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        since = len(api.calls)
        await bot.adapter.purchases.scanned()
        assert api.of(CONSUME, since=since) == [] and await bot.balance(alice) == 600


async def test_unmapped_skus_and_purchases_off(tmp_path, api, guild, packs, caplog):
    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    durable = api.add_sku("Lifetime pass", kind=SKU_DURABLE)
    caplog.set_level(logging.INFO, logger="adapters.discord.purchases")
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        badge = alice.buy(packs[2])
        lifetime = alice.buy(durable)
        paid = alice.buy(packs[0])
        await wait_consumed(api, paid)  # the events before it were handled before it
        assert sum("left alone" in r.getMessage() for r in caplog.records) == 2
        assert not badge.consumed and not lifetime.consumed
        assert await bot.balance(alice) == 100
    assert f"SKU {packs[2]}, not in DISCORD_SKU_CREDITS: left alone" in caplog.text

    # Without DISCORD_SKU_CREDITS: /buy says so, nothing is listed or consumed.
    async with discord_bot(tmp_path, api, guild) as bot:
        off_en = await bot.answered(alice.slash("buy"))
        off_zh = await bot.answered(ming.slash("buy"))
        unsold = alice.buy(packs[0])
        await bot.answered(alice.slash("balance"))  # handled after the event before it
        assert sum("left alone" in r.getMessage() for r in caplog.records) == 3
        assert await bot.balance(alice) == 100
    assert off_en.content == "Buying credits is not available here. Ask a moderator for credits."
    assert off_zh.content == "这里暂不支持购买灵感值。需要灵感值请联系管理员。"
    assert off_en.ephemeral and off_en.buttons() == []
    assert not unsold.consumed and len(api.of(LIST)) == 1  # the first run's start-up scan


def test_a_grant_from_the_event_and_from_the_list_agree():
    payload = {"id": "5", "sku_id": "7", "user_id": "9", "consumed": False, "deleted": False}
    assert Grant.from_payload(payload) == Grant("5", "7", "9")
    assert Grant.from_payload({**payload, "user_id": None}).user_id is None


async def test_two_shard_replicas_on_postgresql_credit_each_purchase_once(
    tmp_path, pg_database, pg_url
):
    """Shard 0's replica hears ENTITLEMENT_CREATE (a member's entitlement names no server),
    whichever server the buyer uses; both replicas scan at start, on one set of wallets."""
    async with DiscordStandIn(TOKEN) as api:
        first = api.add_guild("Zero", shard=(0, 2))
        second = api.add_guild("One", shard=(1, 2))
        packs = api.add_sku("100 credits"), api.add_sku("500 credits"), api.add_sku("Badge")
        alice, bob = first.add_member("alice"), second.add_member("bob")
        while_down = bob.buy(packs[1], dispatch=False)
        settings = dict(
            discord_shard_count=2,
            discord_guild_ids=(int(first.id), int(second.id)),
            discord_sku_credits=mapping(packs),
            database_url=pg_url,
        )
        async with (
            discord_bot(
                tmp_path / "one", api, discord_shard_ids=(1,), replica_id="one", **settings
            ) as one,
            discord_bot(
                tmp_path / "zero", api, discord_shard_ids=(0,), replica_id="zero", **settings
            ) as zero,
        ):
            await one.adapter.purchases.scanned()
            await zero.adapter.purchases.scanned()
            assert while_down.consumed and while_down.consumes == 1
            assert await one.balance(bob) == await zero.balance(bob) == 500

            offer = await one.answered(bob.slash("buy"))  # bob's server is shard 1's
            assert len(offer.buttons()) == 2
            for member in (alice, bob):
                await wait_consumed(api, member.buy(packs[0]))
            assert await one.balance(bob) == 600 and await one.balance(alice) == 100
            # Shard 1's replica got no event and tells nothing: bob hears by DM from shard 0's.
            await api.wait_until(lambda: len(api.messages_in(bob.dm_channel)) == 2)
        entries = await pg_database.fetch(
            "SELECT idem_key FROM ledger WHERE kind = 'purchase' ORDER BY idem_key"
        )
        assert [e["idem_key"] for e in entries] == sorted(
            f"purchase:discord:{e.id}" for e in api.entitlements.values()
        )  # one purchase per entitlement, whoever heard of it


REFUNDED = {
    "alice": "Discord refunded your purchase of 500 credits (¥50.00), so 500 credits (¥50.00)"
    " was taken back from your wallet. Balance: 0 credits (¥0.00).",
    "ming": "Discord 已退还你购买100 灵感值（¥10.00）的款项，已从你的钱包扣回 30 灵感值（¥3.00）。"
    "余额：0 灵感值（¥0.00）。",
}


async def test_a_purchase_discord_refunds_is_taken_back_once_and_recorded(
    tmp_path, api, guild, packs, caplog
):
    """ENTITLEMENT_DELETE: the credits go back (what is left of them when spent, never below
    zero), the refund is in /history, the member is told by DM; a replay records nothing."""
    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    bob = guild.add_member("bob")
    caplog.set_level(logging.INFO, logger="adapters.discord.purchases")
    caplog.set_level(logging.INFO, logger="bot.skus")
    provider = ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script(progress=()))
    async with discord_bot(
        tmp_path, api, guild, provider=provider, discord_sku_credits=mapping(packs)
    ) as bot:
        await bot.fund(ming, 30)
        bought = alice.buy(packs[1])
        spent = ming.buy(packs[0])
        for member in (alice, ming):  # the "thank you" of each purchase, by DM
            await api.wait_until(lambda m=member: len(api.messages_in(m.dm_channel)) == 1)
        assert bought.consumed and spent.consumed
        assert await bot.balance(alice) == 500 and await bot.balance(ming) == 130
        # ming spends 100 of the 130 on a Master clip before Discord refunds the 100.
        quote = await bot.answered(ming.slash("gen", {"prompt": "a paper boat on a pond"}))
        await api.wait_acknowledged(ming.press(quote, quote.labels()[0]))
        await bot.settle()
        assert await bot.balance(ming) == 30

        api.delete_entitlement(bought)
        api.delete_entitlement(spent)
        for member in (alice, ming):
            await api.wait_until(lambda m=member: len(api.messages_in(m.dm_channel)) == 2)
        assert api.messages_in(alice.dm_channel)[1].content == REFUNDED["alice"]
        assert api.messages_in(ming.dm_channel)[1].content == REFUNDED["ming"]
        assert await bot.balance(alice) == 0 and await bot.balance(ming) == 0
        for entitlement, taken in ((bought, -500), (spent, -30)):
            found = await bot.deps.ledger.find_purchase("discord", entitlement.id)
            assert found is not None and found.refund is not None
            assert (found.refund.kind, found.refund.amount) == ("purchase_refund", taken)
            assert found.refund.balance_after == 0

        english = (await bot.answered(alice.slash("history"))).content.splitlines()
        chinese = (await bot.answered(ming.slash("history"))).content.splitlines()
        assert english[1].endswith(" · purchase refunded -500 · balance 0 · refunded by Discord")
        assert chinese[1].endswith(" · 购买退款 -30 · 余额 0 · Discord 已退款")

        # Replayed deletes record nothing more and say nothing more; an entitlement the
        # ledger never credited (a SKU the bot does not sell) is logged and ignored.
        badge = bob.buy(packs[2])
        api.delete_entitlement(bought)
        api.delete_entitlement(spent)
        api.delete_entitlement(badge)
        await bot.answered(bob.slash("balance"))  # after the events before it were dispatched
        await bot.adapter.purchases.close()  # and their handling is done
        assert caplog.text.count("were already taken back") == 2
        assert f"{badge.id} (SKU {packs[2]}) deleted; no purchase" in caplog.text
        assert await bot.balance(alice) == 0 and await bot.balance(ming) == 0
        assert len(api.messages_in(alice.dm_channel)) == 2
        assert len(api.messages_in(ming.dm_channel)) == 2
        assert api.messages_in(bob.dm_channel) == []
        assert await audit(bot.deps.ledger.db) == []
    refunds = [r for r in caplog.records if "deleted (refunded by Discord)" in r.getMessage()]
    assert len(refunds) == 4


async def test_a_purchase_deleted_while_its_credit_is_under_way_is_credited_then_refunded(
    tmp_path, api, guild, packs
):
    """ENTITLEMENT_CREATE and ENTITLEMENT_DELETE back to back: the delete waits for the credit."""
    alice = guild.add_member("alice")
    async with discord_bot(tmp_path, api, guild, discord_sku_credits=mapping(packs)) as bot:
        await bot.adapter.purchases.scanned()
        entitlement = alice.buy(packs[0])
        api.delete_entitlement(entitlement)
        await api.wait_until(lambda: len(api.messages_in(alice.dm_channel)) == 2)
        await bot.adapter.purchases.close()
        found = await bot.deps.ledger.find_purchase("discord", entitlement.id)
        assert found is not None and found.refund is not None
        assert (found.bought.amount, found.refund.amount) == (100, -100)
        assert await bot.balance(alice) == 0
        assert await audit(bot.deps.ledger.db) == []
