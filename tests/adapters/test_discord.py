"""The Discord adapter end to end: the real discord.py client against the stand-in, a real database.

Each test acts as Discord members (slash commands and button presses pushed
through the stand-in's gateway) and asserts what they would see: the
interaction answers and their visibility, the channel messages and their
edits, the uploaded MP4; then the money, through the ledger. Nothing sleeps:
the tests wait on the stand-in's records and on the job runner going idle.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.commands import UserRef
from tests.adapters.discord_bot import TOKEN, discord_bot
from tests.adapters.discord_standin import (
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    MANAGE_GUILD,
    UPDATE_MESSAGE,
    DiscordStandIn,
)
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip
from tests.e2e.video import probe

# The test bots run at a tiny time scale: /price shows the waits they really have.
PRICE_EN = """Kling 2.1 prices for a 5 s clip (10 credits = ¥1):
• Standard · 720p · 20 credits (¥2.00) · ~1 s · needs an image
• High Quality · 1080p · 35 credits (¥3.50) · ~1 s · needs an image
• Master · 1080p · 100 credits (¥10.00) · ~1 s · image or text only"""

PRICE_ZH = """可灵 2.1 价格（5 秒视频，10 灵感值 = ¥1）：
• 标准 · 720p · 20 灵感值（¥2.00） · 约 1 秒 · 需要图片
• 高品质 · 1080p · 35 灵感值（¥3.50） · 约 1 秒 · 需要图片
• 大师 · 1080p · 100 灵感值（¥10.00） · 约 1 秒 · 图片或纯文字均可"""

NOT_MODERATOR = "Only moderators can do that."


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api):
    return api.add_guild("Creators", channels=("general", "showcase"))


@pytest.fixture
async def bot(tmp_path, api, guild):
    async with discord_bot(tmp_path, api, guild) as running_bot:
        yield running_bot


async def test_price_in_english_and_chinese(bot, api, guild):
    commands = api.commands[guild.id]
    assert sorted(commands) == sorted(
        ["gen", "compare", "price", "balance", "history", "jobs", "topup", "refund", "buy",
         "link", "unlink", "settings", "help"]
    )  # fmt: skip
    gen = commands["gen"]
    assert gen["name_localizations"]["zh-CN"] == "生成"
    assert gen["description_localizations"]["zh-CN"] == "根据提示词生成视频，可附一张起始图片"
    assert [o["name"] for o in gen["options"]] == ["prompt", "image", "duration", "negative"]
    assert "default_member_permissions" not in commands["topup"] or (
        commands["topup"]["default_member_permissions"] is None
    )
    assert api.intents == 1  # GUILDS only: nothing privileged

    alice = guild.add_member("alice")
    ming = guild.add_member("ming", locale="zh-CN")
    english = alice.slash("price")
    chinese = ming.slash("price")
    shown = await bot.answered(english)
    assert english.ack_type == CHANNEL_MESSAGE
    assert shown.content == PRICE_EN and shown.ephemeral
    assert shown.labels() == ["Show 10 s prices"]
    shown_zh = await bot.answered(chinese)
    assert shown_zh.content == PRICE_ZH and shown_zh.ephemeral
    assert shown_zh.labels() == ["查看 10 秒价格"]

    # The button turns the same message into the 10 s table.
    press = alice.press(shown, "Show 10 s prices")
    await api.wait_acknowledged(press)
    assert press.ack_type == UPDATE_MESSAGE
    assert shown.content.splitlines()[0] == "Kling 2.1 prices for a 10 s clip (10 credits = ¥1):"
    assert shown.labels() == ["Show 5 s prices"]


CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"


async def test_price_shows_each_balance_right_after_every_wallet_change(bot, api, guild):
    """Equal balances share one rendered reply; every hold and top-up shows at once."""
    alice = guild.add_member("alice")
    bob = guild.add_member("bob")
    ming = guild.add_member("ming", locale="zh-CN")
    for member in (alice, bob, ming):
        await bot.fund(member, 100 - await bot.balance(member))
    hundred = (
        "Your balance: 100 credits (¥10.00). It buys 5 × Standard, 2 × High Quality, 1 × Master."
    )

    async def balance_line(member) -> str:
        shown = await bot.answered(member.slash("price"))
        assert shown.ephemeral and len(shown.labels()) == 1
        return shown.content.splitlines()[-1]

    assert await balance_line(alice) == hundred
    assert await balance_line(bob) == hundred
    assert (
        await balance_line(ming)
        == "你的余额：100 灵感值（¥10.00），可生成 5 条标准、2 条高品质、1 条大师。"
    )

    alice_ref = UserRef("discord", alice.id)
    await bot.deps.ledger.hold(alice_ref, 35, hold_id="job-1", actor="test", reason="test", now=0)
    assert await balance_line(alice) == (
        "Your balance: 65 credits (¥6.50). It buys 3 × Standard, 1 × High Quality, 0 × Master."
    )
    assert await balance_line(bob) == hundred
    await bot.deps.ledger.release("job-1", actor="test", reason="test", now=0)
    assert await balance_line(alice) == hundred
    await bot.deps.ledger.top_up(alice_ref, 1, key="one-more", actor="test", reason="test", now=0)
    assert await balance_line(alice) == (
        "Your balance: 101 credits (¥10.10). It buys 5 × Standard, 2 × High Quality, 1 × Master."
    )


async def test_a_command_is_answered_in_one_callback_with_the_whole_message(bot, api, guild):
    """discord.py's public ``send_message``: one callback, the reply, its button, no mentions."""
    alice = guild.add_member("alice")
    since = len(api.calls)
    asked = alice.slash("price")
    shown = await bot.answered(asked)
    [callback] = api.of(CALLBACK, since=since)
    assert callback.status in (200, 204) and asked.ack_type == CHANNEL_MESSAGE
    assert callback.json["data"]["content"] == shown.content == PRICE_EN
    assert callback.json["data"]["flags"] == 64 and shown.ephemeral
    assert callback.json["data"]["allowed_mentions"] == {"parse": []}
    assert shown.labels() == ["Show 10 s prices"]
    # Answered is answered: the press on that button still edits the same message.
    press = alice.press(shown, "Show 10 s prices")
    await api.wait_acknowledged(press)
    assert press.ack_type == UPDATE_MESSAGE
    assert shown.content.startswith("Kling 2.1 prices for a 10 s clip")


async def test_topup_needs_a_moderator(tmp_path, api, guild):
    moderators_role = guild.add_role("Mods")
    plain = guild.add_member("plain")
    listed = guild.add_member("listed")
    role_member = guild.add_member("rolemember", roles=[moderators_role])
    manager = guild.add_member("manager", roles=[guild.add_role("Managers", MANAGE_GUILD)])
    target = guild.add_member("target")
    async with discord_bot(
        tmp_path,
        api,
        guild,
        moderators=(UserRef("discord", listed.id),),
        discord_moderator_role="Mods",
    ) as bot:
        await bot.answered(target.slash("balance"))

        refused = await bot.answered(plain.slash("topup", {"user": target, "credits": 50}))
        assert refused.content == NOT_MODERATOR and refused.ephemeral
        assert await bot.balance(target) == 0

        for n, moderator in enumerate((listed, role_member, manager), start=1):
            done = await bot.answered(
                moderator.slash("topup", {"user": target, "credits": 10, "reason": "welcome"})
            )
            assert done.ephemeral
            assert done.content.startswith("Added 10 credits (¥1.00) to Target"), done.content
            assert await bot.balance(target) == 10 * n


PROMPT = "一个金属机器人专注地弹奏黑色钢琴，围绕主体运镜"
NEEDS_IMAGE = (
    "Standard and High Quality start from an image: add one in /gen's image option to use them."
    " Master also works from text alone."
)
NOT_YOURS = "This is not your quote. Send /gen to get your own."


def jpeg_attachment(api):
    from adapters.console.chat import sample_image

    return api.attachment(sample_image(), "robot.jpg", content_type="image/jpeg")


async def test_gen_with_a_picture_to_a_clip_in_the_channel(bot, api, guild, tmp_path):
    alice = guild.add_member("alice")
    bob = guild.add_member("bob")
    await bot.fund(alice, 100)
    channel = guild.text_channels[0]

    asked = alice.slash("gen", {"prompt": PROMPT}, attachments={"image": jpeg_attachment(api)})
    quote = await bot.answered(asked)
    assert asked.ack_type == DEFERRED_CHANNEL_MESSAGE  # deferred at once
    assert not quote.ephemeral and quote.channel is channel
    assert quote.content == (
        f"🎬 Quote for a 5 s clip of “{PROMPT}”. Pick a tier:\n"
        "Your balance: 100 credits (¥10.00). Credits are held when you press a tier and only"
        " spent when the clip is made.\n"
        "This quote is valid for 10 min."
    )
    assert quote.labels() == [
        "Standard · 720p · 20 credits (¥2.00) · ~1 s",
        "High Quality · 1080p · 35 credits (¥3.50) · ~1 s",
        "Master · 1080p · 100 credits (¥10.00) · ~1 s",
        "Cancel",
    ]
    quote_id = quote.button("Standard")["custom_id"].split(":")[2]
    assert quote.button("High Quality")["custom_id"] == f"kb:tier:{quote_id}:high_quality"
    assert len(api.downloads) == 1

    # Bob may see Alice's quote, but not use it.
    refused = bob.press(quote, "High Quality")
    answer = await bot.answered(refused)
    assert answer.content == NOT_YOURS and answer.ephemeral
    assert quote.labels()[-1] == "Cancel"  # unchanged

    pressed = alice.press(quote, "High Quality")
    await api.wait_acknowledged(pressed)
    assert pressed.ack_type == UPDATE_MESSAGE
    match = re.fullmatch(
        r"✅ High Quality chosen: 35 credits \(¥3\.50\) held for job ([0-9a-f]{8})\.",
        quote.content,
    )
    assert match and quote.labels() == []
    job = match.group(1)

    def posted(predicate):
        return [m for m in api.messages_in(channel) if m.via == "channel" and predicate(m)]

    await api.wait_until(lambda: posted(lambda m: m.attachments), timeout=60)
    [status] = posted(lambda m: m.content.startswith(("⏳", "🎬", "✅")) and not m.attachments)
    assert status.edited_by and set(status.edited_by) == {"channel"}
    assert status.edits[0].content.startswith(f"🎬 High Quality · 5 s · job {job} · generating\n")
    [delivered] = posted(lambda m: m.attachments)
    assert delivered.content == (
        f"{alice.mention} 🎞️ High Quality · 1080p · 5 s · 35 credits (¥3.50) · job {job}"
    )
    mentions = delivered.allowed_mentions
    assert mentions["parse"] == [] and [str(u) for u in mentions["users"]] == [alice.id]
    assert delivered.labels() == ["🎲 Reroll", "🔁 Other tier"]
    [upload] = delivered.attachments
    clip_file = tmp_path / "delivered.mp4"
    clip_file.write_bytes(upload.data)
    clip = probe(clip_file)
    assert (clip.codec, clip.width, clip.height) == ("h264", 1440, 1080)

    await bot.settle()
    await api.wait_until(lambda: status.content.startswith("✅"))
    assert re.fullmatch(
        rf"✅ High Quality · job {job} · done in \d+:\d\d · 35 credits \(¥3\.50\) paid",
        status.content,
    )
    assert await bot.balance(alice) == 65
    [record] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
    assert (record.state, record.delivery) == ("delivered", "uploaded")

    # Reroll: the same image and tier, quoted afresh for Alice only to use.
    again = alice.press(delivered, "🎲 Reroll")
    requote = await bot.answered(again)
    assert not requote.ephemeral
    assert requote.labels() == ["High Quality · 1080p · 35 credits (¥3.50) · ~1 s", "Cancel"]


async def test_text_only_gen_offers_only_master(bot, api, guild):
    alice = guild.add_member("alice")
    quote = await bot.answered(alice.slash("gen", {"prompt": "a paper boat on a pond"}))
    assert quote.labels() == [
        "Master · 1080p · 100 credits (¥10.00) · not enough credits",
        "Cancel",
    ]
    assert NEEDS_IMAGE in quote.content.splitlines()
    assert api.downloads == []


async def test_an_attachment_over_the_limit_is_refused_before_download(bot, api, guild):
    alice = guild.add_member("alice")
    big = api.attachment(
        b"\xff\xd8\xff" + bytes(64), "huge.jpg", content_type="image/jpeg", size=12 * 1024 * 1024
    )
    asked = alice.slash("gen", {"prompt": "a cat"}, attachments={"image": big})
    answer = await bot.answered(asked)
    assert asked.ack_type == CHANNEL_MESSAGE and answer.ephemeral
    assert answer.content == (
        "That image is 12.0 MB, over the 10 MB limit. Send a smaller JPG or PNG"
        " (saving it at a lower quality or size usually does it)."
    )
    gif = api.attachment(b"GIF89a" + bytes(64), "cat.gif", content_type="image/gif")
    answer = await bot.answered(alice.slash("gen", {"prompt": "a cat"}, attachments={"image": gif}))
    assert answer.ephemeral and answer.content.startswith("That looks like a GIF.")
    assert api.downloads == []


async def test_a_restart_between_quote_and_press_still_honours_the_button(
    tmp_path, api, guild, gate, provider
):
    alice = guild.add_member("alice")
    gate.set()
    async with discord_bot(tmp_path, api, guild, provider=provider) as first:
        await first.fund(alice, 100)
        quote = await first.answered(
            alice.slash("gen", {"prompt": PROMPT}, attachments={"image": jpeg_attachment(api)})
        )
    syncs = len(api.command_syncs)
    async with discord_bot(tmp_path, api, guild, provider=provider) as second:
        assert len(api.command_syncs) == syncs  # same definitions: no sync on restart
        pressed = alice.press(quote, "Standard")
        await api.wait_acknowledged(pressed)
        assert pressed.ack_type == UPDATE_MESSAGE
        assert quote.content.startswith("✅ Standard chosen: 20 credits (¥2.00) held for job ")
        channel = guild.text_channels[0]
        await api.wait_until(
            lambda: any(m.attachments for m in api.messages_in(channel) if m.via == "channel"),
            timeout=60,
        )
        await second.settle()
        assert await second.balance(alice) == 80


@pytest.fixture
def gate():
    return asyncio.Event()


@pytest.fixture
def provider(tmp_path, gate):
    """A video service whose jobs wait, mid-render, until the test opens the gate."""
    clip = render_tiny_clip(tmp_path / "tiny.mp4")
    return ScriptedProvider(clip, Script(progress=(40,), gate=gate))


async def test_a_job_that_outlives_its_interaction_token_still_delivers(
    tmp_path, api, guild, gate, provider
):
    api.token_lifetime_s = 60  # Discord's 15 minutes, shortened
    alice = guild.add_member("alice")
    channel = guild.text_channels[0]
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        await bot.fund(alice, 100)
        quote = await bot.answered(alice.slash("gen", {"prompt": "a paper boat"}))
        pressed = alice.press(quote, "Master")
        await api.wait_acknowledged(pressed)
        await provider.until(lambda: provider.is_blocked("a paper boat"))
        api.advance(61)  # every interaction token so far is dead
        gate.set()
        await bot.settle()
        [record] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
        assert (record.state, record.delivery) == ("delivered", "uploaded")
        status, delivered = [m for m in api.messages_in(channel) if m.via == "channel"]
        assert status.content.startswith("✅ Master · job ")
        assert status.edited_by and set(status.edited_by) == {"channel"}
        assert delivered.attachments and delivered.content.startswith(alice.mention)
        assert not [call for call in api.calls if call.code == 50027]
        assert await bot.balance(alice) == 0


async def test_a_channel_closed_to_the_bot_gets_the_clip_by_another_route(
    tmp_path, api, guild, gate, provider
):
    closed = guild.add_channel("announcements", postable=False)
    alice = guild.add_member("alice")
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        await bot.fund(alice, 200)
        # While the press's token lives, job messages go through it (no channel permission needed).
        quote = await bot.answered(alice.slash("gen", {"prompt": "first"}, channel=closed))
        pressed = alice.press(quote, "Master")
        await api.wait_acknowledged(pressed)
        await provider.until(lambda: provider.is_blocked("first"))
        gate.set()
        await bot.settle()
        [status, delivered] = pressed.followups
        assert status.content.startswith("✅ Master · job ")
        assert delivered.attachments and delivered.content.startswith(alice.mention)
        assert not [m for m in api.messages_in(closed) if m.via == "channel"]

        # With every token dead too, the clip goes to the member's DMs.
        gate.clear()
        quote = await bot.answered(alice.slash("gen", {"prompt": "second"}, channel=closed))
        pressed = alice.press(quote, "Master")
        await api.wait_acknowledged(pressed)
        await provider.until(lambda: provider.is_blocked("second"))
        api.advance(16 * 60)
        gate.set()
        await bot.settle()
        [dm] = api.messages_in(alice.dm_channel)
        assert dm.attachments
        assert dm.content.startswith(
            "I can no longer post in the channel where you asked, so your video comes here.\n"
            f"{alice.mention} 🎞️ Master"
        )
        # Each job records the route its clip took (newest first).
        jobs = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
        assert [(job.state, job.delivery) for job in jobs] == [
            ("delivered", "dm"),
            ("delivered", "followup"),
        ]
        listing = await bot.answered(alice.slash("jobs"))
        assert [line.split(" · ")[4] for line in listing.content.splitlines()[1:]] == [
            "delivered by DM",
            "delivered as a reply to your command",
        ]


async def test_a_deleted_status_message_does_not_lose_the_clip(
    tmp_path, api, guild, gate, provider
):
    alice = guild.add_member("alice")
    channel = guild.text_channels[0]
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        await bot.fund(alice, 100)
        quote = await bot.answered(alice.slash("gen", {"prompt": "a paper boat"}))
        await api.wait_acknowledged(alice.press(quote, "Master"))
        await provider.until(lambda: provider.is_blocked("a paper boat"))
        [status] = [m for m in api.messages_in(channel) if m.via == "channel"]
        api.delete_message(status)  # a moderator tidies the channel up
        gate.set()
        await bot.settle()
        [delivered] = [m for m in api.messages_in(channel) if m.via == "channel"]
        assert delivered.attachments and delivered.content.startswith(alice.mention)
        [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
        assert (job.state, job.delivery) == ("delivered", "uploaded")


async def test_a_clip_nothing_can_deliver_is_recorded_and_shown_in_jobs(
    tmp_path, api, guild, gate, provider
):
    closed = guild.add_channel("announcements", postable=False)
    alice = guild.add_member("alice")
    alice.accepts_dms = False
    moderator = guild.add_member("mod")
    async with discord_bot(
        tmp_path, api, guild, provider=provider, moderators=(UserRef("discord", moderator.id),)
    ) as bot:
        await bot.fund(alice, 200)
        quote = await bot.answered(alice.slash("gen", {"prompt": "lost"}, channel=closed))
        pressed = alice.press(quote, "Master")
        await api.wait_acknowledged(pressed)
        await provider.until(lambda: provider.is_blocked("lost"))
        api.advance(16 * 60)  # the press's token is dead: no channel, no token, no DM
        gate.set()
        await bot.settle()
        [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
        assert (job.state, job.delivery) == ("delivered", "undeliverable")
        assert job.result_path and (tmp_path / job.result_path).exists()
        # The clip was tried once by each route, each refused for good, and not retried.
        uploads = [call.code for call in api.calls if call.files]
        assert uploads == [50013, 50027, 50007]  # channel, dead token, closed DMs
        assert await bot.balance(alice) == 100  # paid: the clip exists

        # Nothing was lost: /jobs says so, in the member's language.
        english = await bot.answered(alice.slash("jobs"))
        assert english.content.splitlines()[1].split(" · ")[4] == (
            f"could not be delivered: ask a moderator for the file (job {job.short_id})"
        )
        chinese = await bot.answered(alice.slash("jobs", locale="zh-CN"))
        assert chinese.content.splitlines()[1].split(" · ")[4] == (
            f"无法送达：请联系管理员获取文件（任务 {job.short_id}）"
        )

        # A moderator finds it among everyone's jobs, and may refund it.
        refused = await bot.answered(alice.slash("jobs", {"scope": "all"}))
        assert refused.content == NOT_MODERATOR
        everyone = await bot.answered(moderator.slash("jobs", {"scope": "all"}))
        assert job.short_id in everyone.content and "could not be delivered" in everyone.content
        refund = await bot.answered(moderator.slash("refund", {"job": job.short_id}))
        assert refund.content.startswith("Refunded 100 credits (¥10.00) to discord:")
        assert await bot.balance(alice) == 200


async def test_a_clip_over_the_upload_limit_becomes_a_notice(tmp_path, api, guild, gate, provider):
    small = guild.add_channel("small-uploads", upload_limit=1_000)
    alice = guild.add_member("alice")
    gate.set()
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        await bot.fund(alice, 100)
        await _deliver_too_large(bot, api, small, alice)


async def _deliver_too_large(bot, api, small, alice):
    quote = await bot.answered(
        alice.slash(
            "gen", {"prompt": PROMPT}, channel=small, attachments={"image": jpeg_attachment(api)}
        )
    )
    pressed = alice.press(quote, "Standard")
    await api.wait_acknowledged(pressed)
    await bot.settle()
    posts = [m for m in api.messages_in(small) if m.via == "channel"]
    notice = posts[-1]
    assert not notice.attachments
    assert notice.content.startswith(f"{alice.mention} 🎞️ Standard · 720p · 5 s")
    assert (
        re.search(
            r"This clip is \d+\.\d MB, over the 0\.0190735 MB a bot may upload here", notice.content
        )
        or "a bot may upload here" in notice.content
    )
    assert notice.labels() == ["🎲 Reroll", "🔁 Other tier"]
    assert not [call for call in api.calls if call.code == 40005]
    [record] = await bot.deps.generation.store.jobs_of(UserRef("discord", alice.id), 5)
    assert (record.state, record.delivery) == ("delivered", "too_large")
    assert await bot.balance(alice) == 80  # paid for: the clip exists and is kept


async def test_threads_and_dms_work_like_channels(tmp_path, api, guild, gate, provider):
    gate.set()
    async with discord_bot(tmp_path, api, guild, provider=provider) as bot:
        await _thread_and_dm(bot, api, guild)


async def _thread_and_dm(bot, api, guild):
    thread = guild.add_thread(guild.text_channels[0], "robots")
    alice = guild.add_member("alice")
    await bot.fund(alice, 100)
    asked = alice.slash("gen", {"prompt": "a robot waves"}, channel=thread)
    quote = await bot.answered(asked)
    assert quote.channel is thread
    await api.wait_acknowledged(alice.press(quote, "Master"))
    await bot.settle()
    delivered = [m for m in api.messages_in(thread) if m.attachments]
    assert len(delivered) == 1 and delivered[0].via == "channel"

    carol = api.add_user("carol")
    answer = await bot.answered(carol.slash("price"))
    assert answer.channel is carol.dm_channel and answer.content == PRICE_EN
    refused = await bot.answered(carol.slash("topup", {"user": carol, "credits": 5}))
    assert refused.content == NOT_MODERATOR


@pytest.mark.parametrize(
    ("locale", "gen_line", "needs_image"),
    [
        (
            "en-US",
            "/gen prompt [image] [duration] [negative] — with a picture: quote every tier, then"
            " make the video (a prompt alone: Master only)",
            NEEDS_IMAGE,
        ),
        (
            "zh-CN",
            "/gen 提示词 [图片] [时长] [反向提示词] — 附上图片：为每个档位报价，然后生成视频（只有提示词时仅提供大师档）",
            "标准和高品质需要一张图片：在 /gen 的 image 选项中添加一张即可使用。大师档也可以只用文字。",
        ),
    ],
)
async def test_help_and_a_text_only_quote_speak_of_slash_options(
    bot, guild, locale, gen_line, needs_image
):
    lin = guild.add_member("lin", locale=locale)
    help_ = await bot.answered(lin.slash("help"))
    assert gen_line in help_.content.splitlines()
    assert "sample" not in help_.content and "caption" not in help_.content
    quote = await bot.answered(lin.slash("gen", {"prompt": "a paper boat"}))
    assert needs_image in quote.content.splitlines()
