"""Interactions in, core commands out, replies rendered back: slash commands and button presses.

Each handler only translates: it works out who is asking and from where
(:func:`adapters.discord.chats.caller_for`), builds the command (the
options become the command's text for :func:`bot.parsing.parse_command`,
or a :class:`~bot.commands.Gen` for ``/gen``), hands it to
:mod:`bot.service`, and shows the replies through the interaction.

Visibility: ``/gen``'s quote is public in the channel (so is the job's
status, posted by the outbox), everything else only to the caller
(ephemeral), and every refusal the core marks private is ephemeral too.

Discord's 3 seconds: ``/gen`` defers just before the core downloads its
image (a refusal by the attachment's declared size or type, or a member
asking too fast, is answered at once, privately). Commands and button
presses answer directly, and defer only if the core has not answered within
:data:`ACK_BUDGET_S`; a press in a channel where the bot
may not post defers first, because the job's messages will then go through
the press's interaction token, which Discord honours only once acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

import discord

from adapters.discord.buttons import make_view
from adapters.discord.chats import CommunityServers, caller_for, reader_for
from adapters.discord.errors import report
from adapters.discord.images import check_attachment, image_input
from adapters.discord.outbox import ChannelFacts
from adapters.discord.purchases import Purchases
from adapters.discord.render import MAX_CONTENT, render
from adapters.messages import split_text
from bot.commands import Buy, Caller, Command, Gen, Price
from bot.deps import Deps
from bot.errors import UserError
from bot.i18n import RenderedReply
from bot.parsing import parse_command
from bot.replies import Reply
from bot.service import handle, respond, respond_to_action

log = logging.getLogger(__name__)

ACK_BUDGET_S = 2.0
"""Discord drops an interaction not acknowledged within 3 s; past this, defer first."""

T = TypeVar("T")


def _raising(error: UserError) -> Callable[[], Command]:
    """A command builder that fails with ``error``, so the core words the refusal."""

    def build() -> Command:
        raise error

    return build


class Responder:
    """Answers one interaction: the first message through ``response``, the rest as follow-ups.

    ``public`` is the visibility of replies the core does not mark private;
    ``component`` says the interaction is a button press, whose ``edit``
    replies replace the pressed message.
    """

    def __init__(
        self, interaction: discord.Interaction, *, public: bool, component: bool = False
    ) -> None:
        self.interaction = interaction
        self.public = public
        self.component = component
        self._placeholder: bool | None = None
        """A deferred "thinking…" reply waits to be replaced (its value: is it ephemeral)."""
        self._deferring = asyncio.Lock()

    async def defer(self) -> None:
        """Acknowledge now, answer later (once, however many callers ask at the same time)."""
        async with self._deferring:
            response = self.interaction.response
            if response.is_done():
                return
            if self.component:
                await response.defer()
            else:
                await response.defer(thinking=True, ephemeral=not self.public)
                self._placeholder = not self.public

    async def in_time(self, work: Awaitable[T], budget_s: float = ACK_BUDGET_S) -> T:
        """Await ``work``; if it takes longer than ``budget_s``, defer meanwhile."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait((task,), timeout=budget_s)
        if not done:
            await self.defer()
        return await task

    async def show(self, items: Iterable[RenderedReply]) -> None:
        """Send or edit every rendered reply, each within Discord's 2000 characters."""
        shown = False
        for item in items:
            pieces = split_text(item.text or "…", MAX_CONTENT)
            for index, piece in enumerate(pieces):
                view = make_view(item.buttons) if index == len(pieces) - 1 else None
                if item.edit and self.component and index == 0:
                    await self._edit(piece, view)
                else:
                    await self._send(piece, view, ephemeral=item.private or not self.public)
                shown = True
        if not shown:
            await self._nothing()

    async def _edit(self, content: str, view: discord.ui.View | None) -> None:
        if self.interaction.response.is_done():
            await self.interaction.edit_original_response(content=content, view=view)
        else:
            await self.interaction.response.edit_message(content=content, view=view)

    async def _send(self, content: str, view: discord.ui.View | None, *, ephemeral: bool) -> None:
        extra = {"view": view} if view is not None else {}
        interaction = self.interaction
        if self._placeholder is not None:
            same = self._placeholder == ephemeral
            self._placeholder = None
            if same:
                await interaction.edit_original_response(content=content, **extra)
                return
            await interaction.delete_original_response()
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=ephemeral, **extra)
        else:
            await interaction.response.send_message(content, ephemeral=ephemeral, **extra)

    async def _nothing(self) -> None:
        """No reply (the runner already changed the message): acknowledge all the same."""
        if self._placeholder is not None:
            self._placeholder = None
            await self.interaction.delete_original_response()
        elif not self.interaction.response.is_done():
            await self.interaction.response.defer()


def bot_can_post(interaction: discord.Interaction) -> bool:
    """Discord says the bot may post in the interaction's channel (always true in DMs)."""
    if interaction.guild_id is None:
        return True
    permissions = interaction.app_permissions
    if isinstance(interaction.channel, discord.Thread):
        return permissions.send_messages_in_threads
    return permissions.send_messages


class Handlers:
    """The adapter's interaction handlers, with what they need passed in."""

    def __init__(
        self,
        deps: Deps,
        facts: ChannelFacts,
        *,
        community: CommunityServers,
        secrets: tuple[str, ...],
        ack_budget_s: float = ACK_BUDGET_S,
        purchases: Purchases | None = None,
    ) -> None:
        self.deps = deps
        self.purchases = purchases
        self.facts = facts
        self.community = community
        self.secrets = secrets
        self.ack_budget_s = ack_budget_s
        self._active: set[asyncio.Task] = set()

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        """Count the running handler as in flight until it returns (see :meth:`drain`)."""
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            yield
        finally:
            self._active.discard(task)  # type: ignore[arg-type]

    async def drain(self, timeout: float = 10.0) -> None:
        """At shutdown: let handlers in flight finish their answers (within ``timeout``)."""
        tasks = [task for task in self._active if task is not asyncio.current_task()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            if late:
                log.warning("%d interactions still unanswered at shutdown", len(late))

    def caller(self, interaction: discord.Interaction) -> Caller:
        """The core's caller for this interaction (moderator rights included)."""
        return caller_for(interaction, self.community)

    @staticmethod
    def rendered(replies: list[Reply], caller: Caller) -> list[RenderedReply]:
        """The replies in the caller's language."""
        return [render(reply, caller.locale) for reply in replies]

    async def command(self, interaction: discord.Interaction, line: str) -> None:
        """Any slash command but ``/gen``: its options as a command line, answered privately."""
        with self._tracked():
            await self._command(interaction, line)

    async def _command(self, interaction: discord.Interaction, line: str) -> None:
        caller = self.caller(interaction)
        responder = Responder(interaction, public=False)
        answer = respond(
            lambda: parse_command(line), caller, self.deps, request_id=f"discord:{interaction.id}"
        )
        replies = await responder.in_time(answer, self.ack_budget_s)
        await responder.show(self.rendered(replies, caller))

    async def price(self, interaction: discord.Interaction, duration: int | None) -> None:
        """``/price``: read-only and instant, so answered directly, with no deadline guard.

        The busiest command, so it does only what its answer needs: its
        options are typed already, so the core gets the command itself rather
        than a line to parse, and its caller is only who asks and in which
        language (:func:`~adapters.discord.chats.reader_for`).
        """
        with self._tracked():
            caller = reader_for(interaction)
            request_id = f"discord:{interaction.id}"
            replies = await handle(Price(duration), caller, self.deps, request_id=request_id)
            await Responder(interaction, public=False).show(self.rendered(replies, caller))

    async def buy(self, interaction: discord.Interaction) -> None:
        """``/buy``: the packs of ``DISCORD_SKU_CREDITS``, each with its premium button.

        Answered privately. The press opens Discord's checkout, not an
        interaction; the purchase arrives as an entitlement
        (:mod:`adapters.discord.purchases`), whose news comes back here as a
        follow-up to this ``/buy``.
        """
        with self._tracked():
            caller = reader_for(interaction)
            if self.purchases is not None and self.deps.sku_packs:
                self.purchases.saw_buy(interaction)
            replies = await handle(Buy(), caller, self.deps, request_id=f"discord:{interaction.id}")
            await Responder(interaction, public=False).show(self.rendered(replies, caller))

    async def gen(
        self,
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None,
        duration: int | None,
        negative: str | None,
        *,
        compare: bool = False,
    ) -> None:
        """``/gen`` (or ``/compare``): check the attachment's type; the core quotes.

        The core downloads the image only if it may.
        """
        with self._tracked():
            await self._gen(interaction, prompt, image, duration, negative, compare)

    async def _gen(
        self,
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None,
        duration: int | None,
        negative: str | None,
        compare: bool = False,
    ) -> None:
        caller = self.caller(interaction)
        self.facts.saw(interaction)
        responder = Responder(interaction, public=True)
        request_id = f"discord:{interaction.id}"
        if image is not None:
            try:
                check_attachment(image)
            except UserError as error:
                refusal = await respond(_raising(error), caller, self.deps)
                await responder.show(self.rendered(refusal, caller))
                return
        command = Gen(
            prompt=prompt, negative=negative or "", duration_s=duration, compare=compare
        )
        if image is not None:
            command = replace(command, image=image_input(image, before_download=responder.defer))
        answer = handle(command, caller, self.deps, request_id=request_id)
        replies = await responder.in_time(answer, self.ack_budget_s)
        await responder.show(self.rendered(replies, caller))

    async def on_button(self, interaction: discord.Interaction, action: str) -> None:
        """A button press: run its action; edit the message, or answer privately."""
        with self._tracked():
            await self._button(interaction, action)

    async def _button(self, interaction: discord.Interaction, action: str) -> None:
        try:
            caller = self.caller(interaction)
            self.facts.saw(interaction)
            responder = Responder(interaction, public=True, component=True)
            if not bot_can_post(interaction):
                # Job messages will go through this interaction's token, which works
                # only once the interaction is acknowledged: acknowledge first.
                await responder.defer()
            replies = await responder.in_time(
                respond_to_action(
                    action, caller, self.deps, request_id=f"discord:button:{interaction.id}"
                ),
                self.ack_budget_s,
            )
            await responder.show(self.rendered(replies, caller))
        except Exception as error:
            await report(interaction, error, self.secrets)
