"""The Discord side of the core's Outbox: status messages edited in place, clips posted.

Every job message goes out with the **bot token** as an ordinary channel
message (or thread or DM message) in the channel where ``/gen`` ran, never
through the interaction's webhook: the bot token does not expire, so a job
that queues or renders past the interaction token's 15 minutes still edits
its status and posts its clip. The finished clip mentions the requester.

When the channel refuses the bot (it was deleted, or the bot lost Send
Messages there), the message takes another route: the newest live
interaction token of that member in that channel (interaction replies need
no channel permission), else a DM to the requester. ``deliver`` tells the
core which route took the clip (``chat``, ``followup`` or ``dm``), and the
job records it. When every route is refused for a reason Discord gives as
permanent (50013 Missing Permissions, 50001 Missing Access, 10003 Unknown
Channel, 50007 Cannot send messages to this user), the outbox raises
:class:`~bot.ports.Undeliverable` and the job is recorded as undeliverable
(its clip kept, ``/jobs`` says to ask a moderator); any other failure
(a server error, the network) raises as it is, and the core retries.

Posts and edits in a channel take turns (:mod:`adapters.discord.pace`): at
most 4 start in any 5 s in one channel, below Discord's 5, so a burst of
jobs in one channel draws no 429. With several replicas, each post and
edit first takes the channel's slot in the pacing they share
(:mod:`bot.pacing`: at most 4 in any 5 s from all of them together).
Status edits never hold up the job that asked for them: each message has
at most one edit on its way, and a newer status replaces one still
waiting for its turn (discord.py itself waits out any 429 that still
comes; nothing here loops on one). A clip over the upload
limit (the guild's, or the smaller one Discord announced with the member's
last interaction there) becomes a message saying so, and ``fits`` tells the
core to record it as ``too_large``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import discord
from discord.utils import DEFAULT_FILE_SIZE_LIMIT_BYTES

from adapters.discord.buttons import make_view
from adapters.discord.chats import Place, parse_chat
from adapters.discord.errors import INVALID_WEBHOOK_TOKEN, refused_for_good
from adapters.discord.pace import ChannelPace
from adapters.discord.render import clip as clip_text
from adapters.discord.render import render, translator
from adapters.tasks import finish_or_cancel
from bot.commands import ChatRef
from bot.i18n import RenderedReply
from bot.pacing import DISCORD_CHANNEL, ChatTurns
from bot.ports import Outbox, Sent, Undeliverable
from bot.replies import Reply, text

log = logging.getLogger(__name__)

MB = 1024 * 1024
TOKEN_LIFETIME_S = 15 * 60
"""How long Discord honours an interaction token."""
TOKEN_MARGIN_S = 30
"""Stop using a token this long before it dies."""
MAX_REMEMBERED = 10_000


@dataclass
class _Token:
    webhook: discord.Webhook
    deadline: float


class ChannelFacts:
    """What interactions told us about each channel: upload limits, and live interaction tokens."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.limits: dict[int, int] = {}
        self.guild_limits: dict[int, int] = {}
        """Upload limits of servers asked for through REST: a replica without the gateway
        (another holds it) has no server cache to read them from."""
        self._tokens: dict[tuple[int, int], _Token] = {}

    def saw(self, interaction: discord.Interaction) -> None:
        """Remember the channel's upload limit and the member's newest token there."""
        channel_id = interaction.channel_id
        if channel_id is None:
            return
        if len(self._tokens) >= MAX_REMEMBERED:
            self._forget_dead()
        self.limits[channel_id] = interaction.filesize_limit
        self._tokens[(channel_id, interaction.user.id)] = _Token(
            interaction.followup, self._monotonic() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        )

    def token(self, place: Place) -> discord.Webhook | None:
        """A live interaction webhook of this member in this channel, if any."""
        found = self._tokens.get((place.channel_id, place.user_id))
        if found is None or found.deadline <= self._monotonic():
            return None
        return found.webhook

    def token_died(self, place: Place) -> None:
        """Discord said the token is no longer valid."""
        self._tokens.pop((place.channel_id, place.user_id), None)

    def _forget_dead(self) -> None:
        now = self._monotonic()
        self._tokens = {key: t for key, t in self._tokens.items() if t.deadline > now}
        if len(self.limits) > MAX_REMEMBERED:
            self.limits.clear()


class DiscordOutbox(Outbox):
    """Sends and edits the runner's messages in Discord channels, threads and DMs."""

    def __init__(
        self,
        client: discord.Client,
        facts: ChannelFacts,
        pace: ChannelPace | None = None,
        turns: ChatTurns | None = None,
    ) -> None:
        self.client = client
        self.facts = facts
        self.pace = pace or ChannelPace()
        self.turns = turns
        """The pacing shared with other replicas; None: this process is the only sender."""
        self._latest: dict[tuple[str, str], tuple[Reply, str]] = {}
        self._editors: dict[tuple[str, str], asyncio.Task[None]] = {}

    # --- the port -----------------------------------------------------------------------

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Post a new message (the clip, mentioning its requester, when the reply has one)."""
        return (await self.deliver(chat, reply, locale)).message_id

    async def deliver(self, chat: ChatRef, reply: Reply, locale: str) -> Sent:
        """Post like :meth:`send`, and say which route the message took."""
        place = parse_chat(chat)
        rendered = render(reply, locale)
        if rendered.video is None:
            return await self._post(place, rendered.text, rendered.buttons, locale)
        size = (await asyncio.to_thread(rendered.video.stat)).st_size
        if place.guild_id:
            await self.learn_guild(place.guild_id)
        mention = f"<@{place.user_id}> "
        if size > self.upload_limit(place):
            limit = self.upload_limit(place)
            log.warning(
                "clip %s is %d bytes, over the %d byte upload limit",
                rendered.video.name,
                size,
                limit,
            )
            notice = translator(locale)(
                text("discord.clip_too_big", size_mb=f"{size / MB:.1f}", limit_mb=f"{limit / MB:g}")
            )
            body = f"{mention}{rendered.text}\n\n{notice}"
            return await self._post(place, body, rendered.buttons, locale, mention=True)
        data = await asyncio.to_thread(rendered.video.read_bytes)
        return await self._post(
            place,
            mention + rendered.text,
            rendered.buttons,
            locale,
            mention=True,
            clip=(data, rendered.video.name),
        )

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Bring a status message up to date, in the background; the newest reply wins."""
        key = (chat.id, message_id)
        self._latest[key] = (reply, locale)
        if key not in self._editors:
            self._editors[key] = asyncio.create_task(
                self._edit_until_current(chat, message_id, key)
            )

    def fits(self, chat: ChatRef, size_bytes: int) -> bool:
        """Clips over the upload limit get a notice instead (see :meth:`send`)."""
        return size_bytes <= self.upload_limit(parse_chat(chat))

    # --- limits ----------------------------------------------------------------------------

    async def learn_guild(self, guild_id: int) -> None:
        """Ask Discord (REST) for a server's upload limit, unless it is known already.

        The replica holding the gateway has every server in its cache; the
        others (``discord-gateway`` role, docs/ARCHITECTURE.md) ask once per
        server, so a boosted server's clips are uploaded from any replica. A
        failure leaves the default limit, and is tried again next time.
        """
        if self.client.get_guild(guild_id) is not None or guild_id in self.facts.guild_limits:
            return
        try:
            guild = await self.client.fetch_guild(guild_id, with_counts=False)
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            log.info("could not read the upload limit of server %s: %s", guild_id, error)
            return
        self.facts.guild_limits[guild_id] = guild.filesize_limit

    def upload_limit(self, place: Place) -> int:
        """The most bytes the bot may attach here: the guild's limit, or what Discord announced."""
        known = []
        guild = self.client.get_guild(place.guild_id) if place.guild_id else None
        if guild is not None:
            known.append(guild.filesize_limit)
        elif place.guild_id in self.facts.guild_limits:
            known.append(self.facts.guild_limits[place.guild_id])
        announced = self.facts.limits.get(place.channel_id)
        if announced:
            known.append(announced)
        return min(known) if known else DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def drain(self, timeout: float = 10.0) -> None:
        """Let edits on their way finish (within ``timeout``), then stop the rest."""
        await finish_or_cancel(list(self._editors.values()), timeout)

    # --- sending ---------------------------------------------------------------------------

    async def _post(
        self,
        place: Place,
        body: str,
        buttons: tuple[tuple[str, str], ...],
        locale: str,
        *,
        mention: bool = False,
        clip: tuple[bytes, str] | None = None,
    ) -> Sent:
        """Post through the first route that takes it; its id is one :meth:`edit` understands.

        Raises :class:`Undeliverable` when every route was refused for good,
        or the last transient error when one of them might work on a retry.
        """
        content = clip_text(body)
        mentions = (
            discord.AllowedMentions(users=[discord.Object(place.user_id)])
            if mention
            else discord.AllowedMentions.none()
        )

        def extras() -> dict:
            fields: dict = {"allowed_mentions": mentions}
            view = make_view(buttons)
            if view is not None:
                fields["view"] = view
            if clip is not None:
                fields["file"] = discord.File(io.BytesIO(clip[0]), filename=clip[1])
            return fields

        channel = self.client.get_partial_messageable(place.channel_id, guild_id=place.guild_id)
        refusals: list[str] = []
        transient: Exception | None = None
        try:
            await self._shared_turn(place.channel_id)
            async with self.pace.turn(place.channel_id):
                message = await channel.send(content, **extras())
            return Sent(str(message.id))
        except discord.HTTPException as error:
            if not refused_for_good(error):
                raise
            refusals.append(f"channel: {error.code} {error.text}")
            log.warning(
                "cannot post in channel %s (%s); trying another route", place.channel_id, error
            )
        webhook = self.facts.token(place)
        if webhook is not None:
            try:
                message = await webhook.send(content, wait=True, **extras())
                return Sent(f"w:{message.id}", "followup")
            except discord.HTTPException as error:
                if error.code == INVALID_WEBHOOK_TOKEN or isinstance(error, discord.NotFound):
                    self.facts.token_died(place)
                    refusals.append(f"interaction token: {error.code} {error.text}")
                else:
                    transient = error
                log.warning("interaction token of %s no longer works: %s", place.user_id, error)
        if place.guild_id is not None:
            try:
                sent = await self._direct(place, body, locale, extras)
                log.info("job message for %s rerouted to their DMs", place.user_id)
                return sent
            except discord.HTTPException as error:
                if not refused_for_good(error):
                    raise
                refusals.append(f"DM: {error.code} {error.text}")
        if transient is not None:
            raise transient
        raise Undeliverable("; ".join(refusals))

    async def _direct(
        self, place: Place, body: str, locale: str, extras: Callable[[], dict]
    ) -> Sent:
        """The message in the requester's DMs, saying why it came there."""
        direct = await self.client.create_dm(discord.Object(place.user_id))
        rerouted = translator(locale)(text("discord.rerouted"))
        await self._shared_turn(direct.id)
        async with self.pace.turn(direct.id):
            message = await direct.send(clip_text(f"{rerouted}\n{body}"), **extras())
        return Sent(f"{direct.id}:{message.id}", "dm")

    async def _edit_until_current(
        self, chat: ChatRef, message_id: str, key: tuple[str, str]
    ) -> None:
        place = parse_chat(chat)
        try:
            while key in self._latest:
                reply, locale = self._latest.pop(key)
                try:
                    await self._edit(place, message_id, render(reply, locale), key)
                except Exception as error:
                    log.warning(
                        "status message %s in channel %s not edited: %s",
                        message_id,
                        place.channel_id,
                        error,
                    )
        finally:
            self._editors.pop(key, None)

    async def _edit(
        self, place: Place, message_id: str, rendered: RenderedReply, key: tuple[str, str]
    ) -> None:
        """Edit one status message, in its channel's turn; skipped if a newer one came meanwhile."""
        content = clip_text(rendered.text)
        view = make_view(rendered.buttons)
        if message_id.startswith("w:"):
            webhook = self.facts.token(place)
            if webhook is None:
                log.info("status message %s outlived its interaction token; not edited", message_id)
                return
            await webhook.edit_message(int(message_id[2:]), content=content, view=view)
            return
        channel_id, _, own_id = message_id.rpartition(":")
        channel = self.client.get_partial_messageable(
            int(channel_id) if channel_id else place.channel_id,
            guild_id=None if channel_id else place.guild_id,
        )
        message = channel.get_partial_message(int(own_id))
        await self._in_turn(channel.id, key, lambda: message.edit(content=content, view=view))

    async def _in_turn(
        self, channel_id: int, key: tuple[str, str], edit: Callable[[], Awaitable[object]]
    ) -> None:
        """Make the ``edit`` in its turn, unless a newer status came while it waited.

        The loop in :meth:`_edit_until_current` then sends the newer one instead.
        """
        await self._shared_turn(channel_id)
        turn = await self.pace.take(channel_id)
        sent = False
        try:
            if key in self._latest:
                return
            sent = True
            await edit()
        finally:
            self.pace.give_back(turn, used=sent)

    async def _shared_turn(self, channel_id: int) -> None:
        """With other replicas: the channel's next slot in the pacing they share."""
        if self.turns is not None:
            await self.turns.take(f"discord:{channel_id}", DISCORD_CHANNEL)
