"""The Discord stand-in against a bare discord.py client (no klingbot code).

Each test runs the real discord.py 2.x client (``discord.Client`` and an
``app_commands.CommandTree``) against ``DiscordStandIn``: it logs in, opens the
gateway, syncs commands, answers slash commands and button presses. The
stand-in must behave as Discord does where it matters to the adapter: the
3 s acknowledgement deadline, one acknowledgement per interaction, 15-minute
tokens, upload and content limits, permissions.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.webhook.async_ import async_context, interaction_response_params

from tests.adapters.discord_standin import (
    ACK_DEADLINE_S,
    ADMINISTRATOR,
    DEFAULT_UPLOAD_LIMIT,
    EPHEMERAL,
    INTENT_GUILD_MEMBERS,
    MANAGE_GUILD,
    PRIVILEGED_INTENTS,
    SKU_DURABLE,
    TOKEN_LIFETIME_S,
    DiscordStandIn,
    Guild,
    discord_py_pointed_at,
)

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.stand-in.bot-token"
PONG = "pong"


class BareBot(discord.Client):
    """A bare discord.py bot: /ping answers a constant; other commands hand the interaction over."""

    def __init__(self, guild_id: str) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.guild_id = int(guild_id)
        self.tree = app_commands.CommandTree(self)
        self.ready_event = asyncio.Event()
        self.held: asyncio.Queue[discord.Interaction] = asyncio.Queue()
        self.pressed: asyncio.Queue[str] = asyncio.Queue()
        guild = discord.Object(self.guild_id)

        @self.tree.command(name="ping", description="Answers pong", guild=guild)
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(PONG)

        @self.tree.command(name="hold", description="The test answers", guild=guild)
        async def hold(interaction: discord.Interaction) -> None:
            await self.held.put(interaction)

        @self.tree.command(name="choose", description="Two buttons", guild=guild)
        async def choose(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Pick one", view=Choice(self))

        @self.tree.command(name="size", description="Reads an image", guild=guild)
        async def size(interaction: discord.Interaction, image: discord.Attachment) -> None:
            data = await image.read()
            await interaction.response.send_message(
                f"{image.filename} {image.content_type} {image.size} {len(data)}", ephemeral=True
            )

        @self.tree.command(name="hello", description="A global command, for DMs too")
        async def hello(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                f"hello {interaction.user.name} ({interaction.locale.value})"
            )

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def next_held(self) -> discord.Interaction:
        return await asyncio.wait_for(self.held.get(), 10)


class Choice(discord.ui.View):
    def __init__(self, bot: BareBot) -> None:
        super().__init__(timeout=None)
        self.bot = bot

    @discord.ui.button(label="One", custom_id="choice:one")
    async def one(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="You chose one", view=None)
        await self.bot.pressed.put("one")

    @discord.ui.button(label="Two", custom_id="choice:two")
    async def two(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()
        await self.bot.pressed.put("two")


@asynccontextmanager
async def running(
    api: DiscordStandIn, guild: Guild, *, sync: bool = True
) -> AsyncIterator[BareBot]:
    """The bare bot logged in and connected to the stand-in, its commands synced."""
    bot = BareBot(guild.id)
    with discord_py_pointed_at(api.api_base, api.gateway_url):
        await bot.login(TOKEN)
        task = asyncio.get_running_loop().create_task(bot.connect(reconnect=True))
        try:
            await asyncio.wait_for(bot.ready_event.wait(), 10)
            if sync:
                await bot.tree.sync(guild=discord.Object(int(guild.id)))
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def api() -> AsyncIterator[DiscordStandIn]:
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def guild(api: DiscordStandIn) -> Guild:
    guild = api.add_guild("Creators", channels=("general", "announcements"))
    guild.add_thread(guild.text_channels[0], "renders")
    return guild


@pytest.fixture
async def bot(api: DiscordStandIn, guild: Guild) -> AsyncIterator[BareBot]:
    async with running(api, guild) as bare:
        yield bare


# --- gateway and login -----------------------------------------------------------------------


async def test_connects_through_the_gateway_with_guilds_channels_and_threads(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    cached = bot.get_guild(int(guild.id))
    assert cached is not None and not cached.unavailable
    assert cached.name == "Creators"
    assert sorted(c.name for c in cached.text_channels) == ["announcements", "general"]
    assert [t.name for t in cached.threads] == ["renders"]
    assert cached.me is not None and cached.me.id == int(api.bot_id)
    assert bot.user is not None and bot.user.id == int(api.bot_id)
    assert bot.application_id == int(api.application_id)
    session = api.session
    assert session is not None
    assert api.intents == discord.Intents.default().value
    assert api.intents & PRIVILEGED_INTENTS == 0
    assert api.heartbeats >= 1
    assert api.connections[0]["compress"] == "zlib-stream"
    assert [c.route for c in api.calls[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]


async def test_a_wrong_token_is_refused_on_login(api: DiscordStandIn, guild: Guild) -> None:
    client = discord.Client(intents=discord.Intents.default())
    with discord_py_pointed_at(api.api_base, api.gateway_url):
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
        await client.close()
    assert (api.calls[-1].status, api.calls[-1].code) == (401, 0)


async def test_privileged_intents_are_refused_unless_enabled(
    api: DiscordStandIn, guild: Guild
) -> None:
    intents = discord.Intents.default()
    intents.members = True
    client = discord.Client(intents=intents)
    with discord_py_pointed_at(api.api_base, api.gateway_url):
        await client.login(TOKEN)
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.connect(reconnect=True), 10)
        await client.close()


async def test_resume_after_a_dropped_connection_replays_what_was_missed(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    member = guild.add_member("alice")
    await api.drop_connection()
    interaction = member.slash("ping")  # sent while the bot is away: replayed on RESUME
    await api.wait_until(lambda: api.session is not None and api.session.resumes == 1)
    await api.wait_acknowledged(interaction)
    assert interaction.original is not None and interaction.original.content == PONG
    assert api.connections[-1]["path"] == "/resume"
    assert len(api.sessions) == 1


# --- commands ---------------------------------------------------------------------------------


async def test_command_sync_is_recorded_and_creations_counted(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    assert [(s.guild_id, sorted(s.created)) for s in api.command_syncs] == [
        (guild.id, ["choose", "hold", "ping", "size"])
    ]
    assert sorted(api.commands[guild.id]) == ["choose", "hold", "ping", "size"]
    assert api.commands[guild.id]["size"]["options"][0]["type"] == 11
    again = await bot.tree.sync(guild=discord.Object(int(guild.id)))  # same names: no creation
    assert {c.name for c in again} == {"choose", "hold", "ping", "size"}
    assert api.command_syncs[-1].created == []
    assert sum(api.command_creations.values()) == 4


async def test_over_200_command_creations_a_day_are_refused(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    app_id, guild_id = bot.application_id, int(guild.id)

    def commands(prefix: str, count: int) -> list[dict]:
        return [{"name": f"{prefix}{n}", "description": "d", "type": 1} for n in range(count)]

    await bot.http.bulk_upsert_guild_commands(app_id, guild_id, payload=commands("a", 100))
    await bot.http.bulk_upsert_guild_commands(app_id, guild_id, payload=commands("b", 96))
    with pytest.raises(discord.HTTPException) as refused:
        await bot.http.bulk_upsert_guild_commands(app_id, guild_id, payload=commands("c", 1))
    assert (refused.value.status, refused.value.code) == (400, 30034)
    api.advance(24 * 3600)  # the next day
    await bot.http.bulk_upsert_guild_commands(app_id, guild_id, payload=commands("c", 1))


# --- interactions -----------------------------------------------------------------------------


async def test_a_slash_command_is_answered_within_the_deadline(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    member = guild.add_member("alice", locale="zh-CN")
    interaction = member.slash("ping")
    await api.wait_acknowledged(interaction)
    assert interaction.ack_type == 4
    assert interaction.original is not None
    assert interaction.original.content == PONG
    assert interaction.original.channel is guild.text_channels[0]
    assert not interaction.original.ephemeral
    callback = api.of("POST /interactions/{interaction_id}/{token}/callback")[0]
    assert callback.status == 200 and callback.json == {
        "type": 4,
        "data": {"tts": False, "content": PONG},
    }


async def test_interaction_carries_locale_permissions_and_limits(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    mods = guild.add_role("Mods", permissions=MANAGE_GUILD)
    moderator = guild.add_member("mod", roles=[mods], locale="zh-CN")
    plain = guild.add_member("plain")
    thread = next(c for c in guild.channels.values() if c.is_thread)
    seen = []
    for who, where in ((moderator, thread), (plain, None)):
        who.slash("hold", channel=where)
        held = await bot.next_held()
        seen.append(held)
        await held.response.send_message("ok", ephemeral=True)
    first, second = seen
    assert (
        first.locale is discord.Locale.chinese
        and first.guild_locale is discord.Locale.american_english
    )
    assert first.permissions.manage_guild and not second.permissions.manage_guild
    assert isinstance(first.channel, discord.Thread) and first.channel.name == "renders"
    assert first.app_permissions.send_messages and first.app_permissions.attach_files
    assert first.filesize_limit == DEFAULT_UPLOAD_LIMIT
    assert (
        isinstance(first.user, discord.Member) and [r.name for r in first.user.roles][-1] == "Mods"
    )
    assert all(m.ephemeral for m in api.messages.values())


async def test_a_late_response_is_an_unknown_interaction(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    api.advance(ACK_DEADLINE_S + 0.1)
    with pytest.raises(discord.NotFound) as late:
        await held.response.send_message("too late")
    assert (late.value.status, late.value.code) == (404, 10062)
    assert not interaction.acknowledged


async def test_a_second_acknowledgement_is_refused(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    await held.response.defer(thinking=True)
    # discord.py refuses a second response itself; a second process would not know, so ask
    # through discord.py's webhook adapter directly, as that process would.
    with pytest.raises(discord.HTTPException) as twice:
        await async_context.get().create_interaction_response(
            held.id,
            held.token,
            session=held._session,
            params=interaction_response_params(4, {"content": "again"}),
        )
    assert (twice.value.status, twice.value.code) == (400, 40060)
    assert interaction.ack_type == 5


async def test_a_follow_up_after_the_token_lifetime_is_an_invalid_token(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    await held.response.defer(thinking=True)
    first = await held.followup.send("still working", wait=True)  # resolves the "thinking"
    assert interaction.original is not None and first.id == int(interaction.original.id)
    second = await held.followup.send("and a second message", wait=True)
    assert [m.id for m in interaction.followups] == [str(second.id)]
    await held.edit_original_response(content="edited")
    assert interaction.original.content == "edited" and interaction.original.edited_by == [
        "interaction",
        "interaction",
    ]
    api.advance(TOKEN_LIFETIME_S + 1)
    with pytest.raises(discord.HTTPException) as dead:
        await held.followup.send("too late")
    assert (dead.value.status, dead.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as dead:
        await held.edit_original_response(content="too late")
    assert (dead.value.status, dead.value.code) == (401, 50027)
    # the bot's own channel messages still work with the bot token
    channel = bot.get_channel(int(interaction.channel.id))
    await channel.send("done, by the bot token")
    assert api.messages_in(interaction.channel)[-1].via == "channel"


async def test_an_oversized_upload_is_refused(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold", attachment_size_limit=1000)
    held = await bot.next_held()
    assert held.filesize_limit == 1000
    with pytest.raises(discord.HTTPException) as big:
        await held.response.send_message(file=discord.File(io.BytesIO(b"x" * 1001), "clip.mp4"))
    assert (big.value.status, big.value.code) == (413, 40005)
    await held.response.send_message(file=discord.File(io.BytesIO(b"x" * 1000), "clip.mp4"))
    assert interaction.original is not None
    [stored] = interaction.original.attachments
    assert (stored.filename, stored.content_type, stored.data) == (
        "clip.mp4",
        "video/mp4",
        b"x" * 1000,
    )
    channel = bot.get_channel(int(guild.text_channels[1].id))
    with pytest.raises(discord.HTTPException) as big:
        await channel.send(
            file=discord.File(io.BytesIO(bytes(DEFAULT_UPLOAD_LIMIT + 1)), "big.mp4")
        )
    assert (big.value.status, big.value.code) == (413, 40005)


async def test_content_over_2000_characters_is_an_invalid_form_body(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    with pytest.raises(discord.HTTPException) as long:
        await held.response.send_message("x" * 2001)
    assert (long.value.status, long.value.code) == (400, 50035)
    assert "data.content" in str(long.value)
    assert not interaction.acknowledged  # a refused callback acknowledges nothing
    await held.response.send_message("x" * 2000)
    assert interaction.original is not None and len(interaction.original.content) == 2000


async def test_a_button_press_round_trips(api: DiscordStandIn, guild: Guild, bot: BareBot) -> None:
    alice = guild.add_member("alice")
    command = alice.slash("choose")
    await api.wait_acknowledged(command)
    message = command.original
    assert message is not None and message.labels() == ["One", "Two"]
    press = alice.press(message, "One")
    assert await asyncio.wait_for(bot.pressed.get(), 10) == "one"
    await api.wait_acknowledged(press)
    assert press.ack_type == 7 and press.original is message
    assert message.content == "You chose one" and message.components == []
    assert message.edited_by == ["interaction"]


async def test_a_deferred_press_then_an_edit_of_the_pressed_message(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    alice = guild.add_member("alice")
    command = alice.slash("choose")
    await api.wait_acknowledged(command)
    assert command.original is not None
    press = alice.press(command.original, "choice:two")
    assert await asyncio.wait_for(bot.pressed.get(), 10) == "two"
    assert press.ack_type == 6
    assert press.original is command.original
    assert press.payload["attachment_size_limit"] == DEFAULT_UPLOAD_LIMIT
    smaller = alice.press(command.original, "choice:two", attachment_size_limit=1000)
    assert await asyncio.wait_for(bot.pressed.get(), 10) == "two"
    assert smaller.payload["attachment_size_limit"] == 1000


async def test_an_attachment_is_declared_then_downloaded(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    picture = api.attachment(b"\x89PNG fake", "robot.png", size=123_456)
    interaction = guild.add_member("alice").slash("size", attachments={"image": picture})
    await api.wait_acknowledged(interaction)
    assert interaction.original is not None
    assert interaction.original.content == "robot.png image/png 123456 9"
    assert interaction.original.flags & EPHEMERAL
    assert api.downloads == [picture.id]


# --- enforcement of the channel routes --------------------------------------------------------


async def test_a_rate_limited_call_is_retried_by_discord_py(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    route = "POST /channels/{channel_id}/messages"
    api.fail_next(route, retry_after=0.01)
    channel = bot.get_channel(int(guild.text_channels[0].id))
    sent = await channel.send("after the rate limit")
    limited, passed = api.of(route)
    assert (limited.status, passed.status) == (429, 200)
    assert api.messages[str(sent.id)].content == "after the rate limit"
    assert await api.wait_for(route, where=lambda call: call.status == 200) is passed


async def test_injected_errors_and_missing_permissions(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    general = guild.text_channels[0]
    thread = next(c for c in guild.channels.values() if c.is_thread)
    updated = asyncio.ensure_future(bot.wait_for("guild_channel_update", timeout=10))
    general.set_bot_access(post=False)
    _, after = await updated
    assert not after.permissions_for(after.guild.me).send_messages
    for place in (general, thread):
        with pytest.raises(discord.Forbidden) as refused:
            await bot.get_channel(int(place.id)).send("hello")
        assert refused.value.code == 50013
    other = bot.get_channel(int(guild.text_channels[1].id))
    api.fail_next("POST /channels/{channel_id}/messages", code=50013)
    with pytest.raises(discord.Forbidden) as injected:
        await other.send("hello")
    assert (injected.value.status, injected.value.code) == (403, 50013)
    await other.send("hello")  # only once


async def test_deleted_and_ephemeral_messages_are_unknown_to_the_channel_routes(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    channel = bot.get_channel(int(guild.text_channels[0].id))
    first = await channel.send("status")
    api.delete_message(api.messages[str(first.id)])  # a moderator deletes it
    with pytest.raises(discord.NotFound) as gone:
        await first.edit(content="edited")
    assert gone.value.code == 10008
    second = await channel.send("another")
    await second.delete()
    with pytest.raises(discord.NotFound):
        await second.delete()
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    await held.response.send_message("only for alice", ephemeral=True)
    assert interaction.original is not None and interaction.original.ephemeral
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(int(interaction.original.id))
    fetched = await held.original_response()
    assert fetched.content == "only for alice" and fetched.flags.ephemeral


async def test_components_over_discords_limits_are_an_invalid_form_body(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    channel_id = int(guild.text_channels[0].id)

    def buttons(*labels: tuple[str, str]) -> dict:
        return {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": label, "custom_id": custom_id}
                for label, custom_id in labels
            ],
        }

    async def post(components: list[dict]) -> discord.HTTPException:
        params = discord.http.MultipartParameters(
            {"content": "x", "components": components}, [], []
        )
        with pytest.raises(discord.HTTPException) as refused:
            await bot.http.send_message(channel_id, params=params)
        return refused.value

    long_id = await post([buttons(("ok", "x" * 101))])
    assert long_id.code == 50035 and "components.0.components.0.custom_id" in str(long_id)
    rows = await post([buttons(("ok", f"id{n}")) for n in range(6)])
    assert rows.code == 50035 and "components" in str(rows)
    wide = await post([buttons(*[("ok", f"id{n}") for n in range(6)])])
    assert wide.code == 50035
    label = await post([buttons(("x" * 81, "id"))])
    assert label.code == 50035 and "label" in str(label)
    api.advance(5.0)  # past the channel's rate-limit window, which the four refusals used up
    fits = [buttons(*[("x" * 80, f"{r}-{n}-" + "y" * 90) for n in range(5)]) for r in range(5)]
    params = discord.http.MultipartParameters({"content": "x", "components": fits}, [], [])
    await bot.http.send_message(channel_id, params=params)


async def test_webhook_calls_before_the_acknowledgement_are_unknown(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    with pytest.raises(discord.NotFound) as early:
        await held.followup.send("too early")
    assert early.value.code == 10015
    await held.response.send_message("now")


async def test_a_slash_command_in_a_dm(api: DiscordStandIn, guild: Guild, bot: BareBot) -> None:
    await bot.tree.sync()  # the global /hello
    bob = api.add_user("bob", locale="zh-CN")
    interaction = bob.slash("hello")
    await api.wait_acknowledged(interaction)
    assert "guild_id" not in interaction.payload and interaction.payload["user"]["id"] == bob.id
    assert interaction.original is not None and interaction.original.channel is bob.dm_channel
    assert interaction.original.content == "hello bob (zh-CN)"
    dm = await bot.create_dm(discord.Object(int(bob.id)))
    await dm.send("a direct message")
    assert [m.content for m in api.messages_in(bob.dm_channel)][-1] == "a direct message"


async def test_the_members_intent_works_once_enabled() -> None:
    async with DiscordStandIn(TOKEN, privileged_intents=INTENT_GUILD_MEMBERS) as api:
        guild = api.add_guild()
        alice = guild.add_member("alice")
        intents = discord.Intents.default()
        intents.members = True
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        ready = asyncio.Event()

        async def on_ready() -> None:
            ready.set()

        client.event(on_ready)
        with discord_py_pointed_at(api.api_base, api.gateway_url):
            await client.login(TOKEN)
            task = asyncio.get_running_loop().create_task(client.connect())
            await asyncio.wait_for(ready.wait(), 10)
            cached = client.get_guild(int(guild.id))
            assert cached is not None and cached.chunked
            assert cached.get_member(int(alice.id)).name == "alice"
            await client.close()
            await asyncio.wait_for(task, 10)
        assert api.intents & INTENT_GUILD_MEMBERS


async def test_follow_ups_are_edited_and_deleted_by_id_and_keep_the_defers_privacy(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    interaction = guild.add_member("alice").slash("hold")
    held = await bot.next_held()
    await held.response.defer(ephemeral=True, thinking=True)
    assert interaction.original is not None and interaction.original.loading
    resolved = await held.followup.send("public?", ephemeral=False, wait=True)
    assert resolved.flags.ephemeral and not interaction.original.loading  # the defer decided
    extra = await held.followup.send("a second one", wait=True)
    await held.followup.edit_message(extra.id, content="second, edited")
    [followup] = interaction.followups
    assert followup.content == "second, edited" and followup.edited_by == ["interaction"]
    await held.followup.delete_message(extra.id)
    assert followup.deleted
    with pytest.raises(discord.NotFound) as gone:
        await held.followup.edit_message(extra.id, content="again")
    assert gone.value.code == 10008
    await held.delete_original_response()
    assert interaction.original.deleted


async def test_upload_limits_follow_the_guild_boost_level(api: DiscordStandIn) -> None:
    boosted = api.add_guild("Boosted", premium_tier=2)
    plain = api.add_guild("Plain")
    member = boosted.add_member("alice")
    assert member.slash("hold").payload["attachment_size_limit"] == 50 * 1024 * 1024
    assert plain.add_member("bob").slash("hold").payload["attachment_size_limit"] == (
        DEFAULT_UPLOAD_LIMIT
    )
    assert boosted.text_channels[0].upload_limit == 50 * 1024 * 1024
    small = boosted.add_channel("small", upload_limit=1000)
    thread = boosted.add_thread(small, "in small")
    assert member.slash("hold", channel=thread).payload["attachment_size_limit"] == 1000
    assert member.slash("hold", channel=small, attachment_size_limit=5).attachment_size_limit == 5


async def test_command_options_carry_resolved_members_and_attachments(api: DiscordStandIn) -> None:
    guild = api.add_guild()
    admins = guild.add_role("Admins", permissions=ADMINISTRATOR)
    moderator = guild.add_member("mod", roles=[admins])
    target = guild.add_member("alice")
    picture = api.attachment(b"png", "a.png", content_type="image/png", size=42)
    interaction = moderator.slash("topup", {"user": target, "credits": 100, "image": picture})
    data = interaction.payload["data"]
    assert [(o["name"], o["type"]) for o in data["options"]] == [
        ("user", 6),
        ("credits", 4),
        ("image", 11),
    ]
    assert interaction.options == {"user": target.id, "credits": 100, "image": picture.id}
    assert data["resolved"]["users"][target.id]["username"] == "alice"
    assert "user" not in data["resolved"]["members"][target.id]
    assert data["resolved"]["attachments"][picture.id]["size"] == 42
    permissions = int(interaction.payload["member"]["permissions"])
    assert permissions & ADMINISTRATOR and permissions & MANAGE_GUILD
    assert interaction.payload["member"]["roles"] == [admins.id]


# --- monetization: SKUs, entitlements, premium buttons ----------------------------------------


async def test_skus_and_entitlements_are_listed_created_and_consumed_as_discord_does(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    pack = api.add_sku("100 credits")
    badge = api.add_sku("Badge", kind=SKU_DURABLE)
    alice = guild.add_member("alice")
    events: asyncio.Queue[discord.Entitlement] = asyncio.Queue()
    bot.on_entitlement_create = events.put  # type: ignore[attr-defined]
    app = bot.application_id
    assert app is not None

    skus = await bot.fetch_skus()
    assert [(s.id, s.type, s.name) for s in skus] == [
        (int(pack), discord.SKUType.consumable, "100 credits"),
        (int(badge), discord.SKUType.durable, "Badge"),
    ]

    bought = alice.buy(pack)  # a payment: ENTITLEMENT_CREATE reaches the bot
    event = await asyncio.wait_for(events.get(), 10)
    assert (event.id, event.sku_id, event.user_id) == (int(bought.id), int(pack), int(alice.id))
    assert not event.consumed and event.type == discord.EntitlementType.purchase
    missed = [alice.buy(pack, dispatch=False) for _ in range(3)]  # nobody told
    durable = alice.buy(badge, dispatch=False)

    everything = [e.id async for e in bot.entitlements(limit=None)]
    assert everything == [int(e.id) for e in (bought, *missed, durable)]
    page = await bot.http.get_entitlements(app, after=int(bought.id), limit=2, sku_ids=[pack])
    assert [e["id"] for e in page] == [missed[0].id, missed[1].id]
    earlier = await bot.http.get_entitlements(app, before=int(missed[2].id), limit=2)
    assert [e["id"] for e in earlier] == [missed[0].id, missed[1].id]
    mine = await bot.http.get_entitlements(app, user_id=int(alice.id), sku_ids=[badge])
    assert [e["id"] for e in mine] == [durable.id]

    await event.consume()
    assert bought.consumed and bought.consumes == 1
    assert (await bot.fetch_entitlement(int(bought.id))).consumed
    with pytest.raises(discord.HTTPException) as again:
        await event.consume()
    assert (again.value.status, again.value.code) == (400, 40074)
    with pytest.raises(discord.HTTPException) as not_consumable:
        await bot.http.consume_entitlement(app, int(durable.id))
    assert not_consumable.value.code == 40074 and not durable.consumed
    with pytest.raises(discord.NotFound) as unknown:
        await bot.http.consume_entitlement(app, 12345)
    assert unknown.value.code == 10029
    with pytest.raises(discord.NotFound) as other_app:
        await bot.http.get_entitlements(int(app) + 1)
    assert other_app.value.code == 10002
    with pytest.raises(discord.HTTPException) as too_many:
        await bot.http.get_entitlements(app, limit=101)
    assert too_many.value.code == 50035 and "limit" in str(too_many.value)

    # Ended and deleted ones are listed only when asked for.
    missed[0].ends_at, missed[1].deleted = 1.0, True
    default = {e["id"] for e in await bot.http.get_entitlements(app)}
    assert missed[0].id in default and missed[1].id not in default
    current = {
        e["id"]
        for e in await bot.http.get_entitlements(app, exclude_ended=True, exclude_deleted=False)
    }
    assert missed[0].id not in current and missed[1].id in current

    # A test entitlement for a member is announced as a purchase is.
    await bot.create_entitlement(
        discord.Object(int(pack)), discord.Object(int(alice.id)), discord.EntitlementOwnerType.user
    )
    test_grant = await asyncio.wait_for(events.get(), 10)
    assert test_grant.type == discord.EntitlementType.test_mode_purchase
    assert test_grant.user_id == int(alice.id)


async def test_rest_calls_without_the_bot_token_are_unauthorized(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    url = f"{api.api_base}/v10/applications/{api.application_id}/entitlements"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as answer:
            assert answer.status == 401
        async with session.post(
            f"{url}/1/consume", headers={"Authorization": "Bot nope"}
        ) as answer:
            assert answer.status == 401


async def test_premium_buttons_name_a_sku_and_nothing_else(
    api: DiscordStandIn, guild: Guild, bot: BareBot
) -> None:
    pack = api.add_sku("100 credits")
    channel_id = int(guild.text_channels[0].id)

    async def post(button: dict) -> None:
        components = [{"type": 1, "components": [{"type": 2, "style": 6, **button}]}]
        params = discord.http.MultipartParameters(
            {"content": "Buy", "components": components}, [], []
        )
        await bot.http.send_message(channel_id, params=params)

    view = discord.ui.View()
    view.add_item(discord.ui.Button(sku_id=int(pack)))
    sent = await bot.get_channel(channel_id).send("Buy", view=view)  # type: ignore[union-attr]
    [message] = [m for m in api.messages.values() if m.id == str(sent.id)]
    assert message.buttons() == [{"type": 2, "style": 6, "sku_id": pack, "disabled": False}]
    for wrong, field_name in [
        ({"sku_id": pack, "label": "Buy"}, "label"),
        ({"sku_id": pack, "custom_id": "buy"}, "custom_id"),
        ({"sku_id": "999"}, "sku_id"),
        ({}, "sku_id"),
    ]:
        with pytest.raises(discord.HTTPException) as refused:
            await post(wrong)
        assert refused.value.code == 50035 and field_name in str(refused.value)
        api.advance(5.0)  # past the channel's rate-limit window
