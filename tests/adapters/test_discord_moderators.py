"""Who is a moderator on Discord: the configured ids, and rights only from the operator's servers.

Anyone can add the bot to a server of their own, where they are
Administrator and can name a role "Moderator". These tests play that
stranger against the real discord.py client and the stand-in: in their
server every command that moves money or shows someone else's data is
refused, in the member's language, and the wallets and ledger read back from
the database are exactly as before. The configured moderator still can,
in the listed server, in the stranger's server and in a DM; and the listed
server's own admins and role holders can there, and only there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.discord_bot import TOKEN, DiscordBot, discord_bot
from tests.adapters.discord_standin import (
    ADMINISTRATOR,
    MANAGE_GUILD,
    DiscordStandIn,
    Guild,
    Member,
)
from tests.e2e.scripted_provider import Script, ScriptedProvider, render_tiny_clip

NOT_MODERATOR = "Only moderators can do that."
NOT_MODERATOR_ZH = "只有管理员可以这样做。"
NOT_YOUR_JOB = "This is not your job."
ROLE = "Moderator"


@pytest.fixture
async def api():
    async with DiscordStandIn(TOKEN) as standin:
        yield standin


@dataclass
class World:
    """The community's server and a stranger's, and who is in each."""

    community: Guild
    mod: Member
    """Listed in KLINGBOT_MODERATORS; holds no right in either server."""
    keeper: Member
    """Holds the community's role named ``Moderator``."""
    owner: Member
    """Administrator of the community's server."""
    alice: Member
    strangers: Guild
    stranger: Member
    """Owner and Administrator of their own server, and holds a role named ``Moderator`` there."""
    accomplice: Member
    """Holds only the stranger's role named ``Moderator`` (and Manage Server by another role)."""
    alice_there: Member
    mod_there: Member


@pytest.fixture
def world(api) -> World:
    community = api.add_guild("Creators")
    mod = community.add_member("mod")
    keeper = community.add_member("keeper", roles=[community.add_role(ROLE)])
    owner = community.add_member("owner", roles=[community.add_role("Admins", ADMINISTRATOR)])
    alice = community.add_member("alice")
    strangers = api.add_guild("Stranger's place")
    their_role = strangers.add_role(ROLE)
    stranger = strangers.add_member(
        "stranger", roles=[strangers.add_role("Admins", ADMINISTRATOR), their_role], owner=True
    )
    managers = strangers.add_role("Managers", MANAGE_GUILD)
    accomplice = strangers.add_member("accomplice", roles=[their_role, managers])
    return World(
        community,
        mod,
        keeper,
        owner,
        alice,
        strangers,
        stranger,
        accomplice,
        alice_there=strangers.add_member("alice", user_id=alice.id),
        mod_there=strangers.add_member("mod", user_id=mod.id),
    )


@pytest.fixture
def gate():
    return asyncio.Event()


@pytest.fixture
def provider(tmp_path, gate):
    """A video service whose jobs wait, mid-render, until the test opens the gate."""
    return ScriptedProvider(render_tiny_clip(tmp_path / "tiny.mp4"), Script(gate=gate))


async def books(bot: DiscordBot, *members: Member) -> list[object]:
    """Each member's wallet and ledger entries, read back from the database."""
    ledger = bot.deps.ledger
    found: list[object] = []
    for member in members:
        user = UserRef("discord", member.id)
        found += [await ledger.wallet(user), await ledger.history(user, 50)]
    return found


async def refused_everything(bot: DiscordBot, who: Member, victim: Member, job: str) -> None:
    """Every moderator command, by ``who`` in their own server: each refused, only to them."""
    attempts = [
        ("topup", {"user": who, "credits": 1000}),
        ("topup", {"user": victim, "credits": 1000}),
        ("refund", {"job": job}),
        ("jobs", {"user": victim}),
        ("jobs", {"scope": "all"}),
        ("balance", {"user": victim}),
    ]
    for name, options in attempts:
        answer = await bot.answered(who.slash(name, options))
        assert (answer.content, answer.ephemeral) == (NOT_MODERATOR, True), (name, options)
    chinese = await bot.answered(who.slash("topup", {"user": who, "credits": 1000}, locale="zh-CN"))
    assert chinese.content == NOT_MODERATOR_ZH


async def a_delivered_job(
    bot: DiscordBot, member: Member, gate: asyncio.Event, meddler: Member | None = None
) -> str:
    """``member`` makes a Master clip in their server's first channel; its short id.

    While it renders, ``meddler`` (another member there) presses its Cancel
    button: refused, only to them, and the job goes on.
    """
    api = bot.api
    quote = await bot.answered(member.slash("gen", {"prompt": "a robot waves"}))
    await api.wait_acknowledged(member.press(quote, "Master"))
    if meddler is not None:
        channel = quote.channel
        await api.wait_until(
            lambda: any(
                m.via == "channel" and "Cancel" in m.labels() for m in api.messages_in(channel)
            )
        )
        [status] = [m for m in api.messages_in(channel) if m.via == "channel"]
        refused = await bot.answered(meddler.press(status, "Cancel"))
        assert (refused.content, refused.ephemeral) == (NOT_YOUR_JOB, True)
    gate.set()
    await bot.settle()
    [job] = await bot.deps.generation.store.jobs_of(UserRef("discord", member.id), 5)
    assert (job.state, job.delivery) == ("delivered", "uploaded")
    return job.short_id


async def test_a_public_bot_makes_nobody_a_moderator_by_server_rights(
    tmp_path, api, world, gate, provider
):
    """No DISCORD_GUILD_IDS (global commands): only the configured id is a moderator, anywhere."""
    async with discord_bot(
        tmp_path,
        api,
        provider=provider,
        moderators=(UserRef("discord", world.mod.id),),
        discord_moderator_role=ROLE,
    ) as bot:
        assert set(api.commands) == {None}  # global: the stranger's server has them too
        await bot.fund(world.alice, 300)
        # Alice makes a clip in the stranger's server: the stranger cannot cancel it.
        job = await a_delivered_job(bot, world.alice_there, gate, meddler=world.stranger)
        await bot.answered(world.stranger.slash("balance"))  # the stranger's wallet opens at 0
        before = await books(bot, world.alice, world.stranger)

        await refused_everything(bot, world.stranger, world.alice_there, job)
        await refused_everything(bot, world.accomplice, world.alice_there, job)
        # Without listed servers, the community's own admins and role holders are not either.
        await refused_everything(bot, world.owner, world.alice, job)
        await refused_everything(bot, world.keeper, world.alice, job)
        assert await books(bot, world.alice, world.stranger) == before
        assert await bot.balance(world.stranger) == 0

        # The configured id still is, in the stranger's server too.
        done = await bot.answered(
            world.mod_there.slash("topup", {"user": world.alice_there, "credits": 5})
        )
        assert done.content.startswith("Added 5 credits (¥0.50) to Alice"), done.content
        everyone = await bot.answered(world.mod_there.slash("jobs", {"scope": "all"}))
        assert job in everyone.content
        assert await bot.balance(world.alice) == 300 - 100 + 5
        assert await audit(bot.deps.ledger.db) == []


async def test_only_the_listed_servers_rights_count_and_only_there(
    tmp_path, api, world, gate, provider
):
    """DISCORD_GUILD_IDS lists the community: its admins and role count there, nowhere else."""
    moderators = (UserRef("discord", world.mod.id),)
    # The bot ran public once: its global commands stay, so the stranger's server has them.
    async with discord_bot(tmp_path, api, moderators=moderators):
        pass
    async with discord_bot(
        tmp_path,
        api,
        world.community,
        provider=provider,
        moderators=moderators,
        discord_moderator_role=ROLE,
    ) as bot:
        assert set(api.commands) == {None, world.community.id}
        await bot.fund(world.alice, 300)
        job = await a_delivered_job(bot, world.alice, gate)
        await bot.answered(world.stranger.slash("balance"))
        before = await books(bot, world.alice, world.stranger, world.owner, world.keeper)

        await refused_everything(bot, world.stranger, world.alice_there, job)
        await refused_everything(bot, world.accomplice, world.alice_there, job)
        assert await books(bot, world.alice, world.stranger, world.owner, world.keeper) == before

        # In the listed server: the Administrator, the role holder (by name) and the id.
        for n, moderator in enumerate((world.owner, world.keeper, world.mod), start=1):
            done = await bot.answered(
                moderator.slash("topup", {"user": world.alice, "credits": 10})
            )
            assert done.content.startswith("Added 10 credits (¥1.00) to Alice"), done.content
            assert await bot.balance(world.alice) == 200 + 10 * n
        seen = await bot.answered(world.keeper.slash("balance", {"user": world.alice}))
        assert seen.content == f"Balance of Alice (discord:{world.alice.id}): 230 credits (¥23.00)."
        refund = await bot.answered(world.owner.slash("refund", {"job": job}))
        assert refund.content.startswith("Refunded 100 credits (¥10.00) to discord:")
        assert await bot.balance(world.alice) == 330

        # The configured id, in the stranger's server and in a DM.
        everyone = await bot.answered(world.mod_there.slash("jobs", {"scope": "all"}))
        assert job in everyone.content
        in_dm = api.add_user("mod", user_id=world.mod.id)
        done = await bot.answered(in_dm.slash("topup", {"user": world.alice, "credits": 1}))
        assert done.content.endswith("New balance: 331 credits (¥33.10).")
        assert await bot.balance(world.stranger) == 0
        assert await audit(bot.deps.ledger.db) == []


def _role_id(guild: Guild, name: str) -> str:
    [role] = [role for role in guild.roles.values() if role.name == name]
    return role.id


@pytest.mark.parametrize(
    ("setting", "holder"),
    [
        (lambda guild: _role_id(guild, ROLE), "keeper"),
        (lambda guild: "@everyone", None),
        (lambda guild: guild.id, None),  # @everyone's id is the server's
    ],
    ids=["role-id", "everyone-by-name", "everyone-by-id"],
)
async def test_the_role_is_matched_by_id_and_everyone_never_is_it(
    tmp_path, api, world, setting, holder
):
    """DISCORD_MODERATOR_ROLE may be the role's id; the role every member holds never counts."""
    role = setting(world.community)
    async with discord_bot(tmp_path, api, world.community, discord_moderator_role=role) as bot:
        await bot.answered(world.alice.slash("balance"))
        refused = await bot.answered(
            world.alice.slash("topup", {"user": world.alice, "credits": 7})
        )
        assert refused.content == NOT_MODERATOR
        if holder is not None:
            done = await bot.answered(
                getattr(world, holder).slash("topup", {"user": world.alice, "credits": 7})
            )
            assert done.content.startswith("Added 7 credits (¥0.70) to Alice"), done.content
        assert await bot.balance(world.alice) == (7 if holder else 0)
