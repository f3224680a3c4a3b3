"""Discord purchases: entitlements to mapped SKUs become credits once, then are consumed.

A member presses a premium button under ``/buy`` and pays in Discord's
store; Discord grants an entitlement and sends ``ENTITLEMENT_CREATE`` to the
session holding shard 0 (a user's entitlement names no server), which is
this process only when it holds the gateway (or shard 0). Each entitlement:

1. is left alone (and logged) when its SKU is not in ``DISCORD_SKU_CREDITS``,
   it belongs to a server rather than a member, or it was deleted;
2. is credited with :func:`bot.skus.credit`, keyed by its id in the ledger,
   so a replayed event, a second replica doing the same, or a retry after a
   crash credits nothing more;
3. is consumed (``POST .../entitlements/{id}/consume``). A refusal is
   checked by reading the entitlement back: already consumed (another
   replica got there first) is done; anything else is logged and retried by
   the next start-up scan, since the entitlement stays unconsumed;
4. when this call credited it, the member is told their new balance: as a
   private follow-up to the ``/buy`` they ran here within the last
   :data:`FOLLOWUP_FOR_S`, or else in their DMs (a member who closed them
   still sees it with ``/balance``).

When Discord refunds a purchase (or removes the entitlement) it sends
``ENTITLEMENT_DELETE`` (``deleted: true``), again to shard 0's session: the
refund is recorded with :func:`bot.skus.refunded` (forced, once per
entitlement: a replayed delete records nothing more) and the member is told
by DM what was taken back. An entitlement the ledger never credited is
logged and ignored. A delete heard while this process still handles the
same entitlement's ``ENTITLEMENT_CREATE`` waits for it first.

At start-up (and whenever this replica takes the gateway over) the
unconsumed entitlements of the mapped SKUs are listed from the API
(``exclude_ended``, ``exclude_deleted``, 100 a page) and go through the
same steps, so nothing bought while the bot was down, or between one
gateway holder and the next, is lost. Every replica may scan at once: the
credit is idempotent and a consume refused as already done is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import discord

from adapters.discord.render import render
from bot import skus
from bot.commands import UserRef
from bot.defaults import preferences_of
from bot.deps import Deps
from bot.i18n import DEFAULT_LOCALE, resolve_locale

log = logging.getLogger(__name__)

PAGE = 100
"""Entitlements per page of the list (Discord's most)."""
FOLLOWUP_FOR_S = 14 * 60.0
"""How long after ``/buy`` its interaction token still takes a follow-up (Discord: 15 min)."""
BUYERS_KEPT = 1024
"""``/buy`` interactions remembered for the follow-up; the oldest go first."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What the bot needs of one entitlement."""

    id: str
    sku_id: str
    user_id: str | None
    consumed: bool = False
    deleted: bool = False

    @classmethod
    def of(cls, entitlement: discord.Entitlement) -> Grant:
        """From discord.py's entitlement (an ``ENTITLEMENT_CREATE``)."""
        user_id = entitlement.user_id
        return cls(
            str(entitlement.id),
            str(entitlement.sku_id),
            None if user_id is None else str(user_id),
            entitlement.consumed,
            entitlement.deleted,
        )

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Grant:
        """From the API's JSON (the entitlements list)."""
        user_id = data.get("user_id")
        return cls(
            str(data["id"]),
            str(data["sku_id"]),
            None if user_id is None else str(user_id),
            bool(data.get("consumed", False)),
            bool(data.get("deleted", False)),
        )


class Purchases:
    """Credits and consumes the entitlements this process hears of (see the module)."""

    def __init__(
        self, client: discord.Client, deps: Deps, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.deps = deps
        self.clock = clock
        self._buyers: dict[int, tuple[discord.Interaction, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._scan: asyncio.Task[None] | None = None
        self._granting: dict[str, asyncio.Task[None]] = {}
        """The ``ENTITLEMENT_CREATE`` handled now, by entitlement id (a delete waits for it)."""

    @property
    def enabled(self) -> bool:
        """``DISCORD_SKU_CREDITS`` maps at least one SKU."""
        return bool(self.deps.sku_packs)

    def saw_buy(self, interaction: discord.Interaction) -> None:
        """Remember the member's ``/buy``: their purchase's news goes there while it can."""
        self._buyers.pop(interaction.user.id, None)
        if len(self._buyers) >= BUYERS_KEPT:
            self._buyers.pop(next(iter(self._buyers)))
        self._buyers[interaction.user.id] = (interaction, self.clock())

    def entitlement_created(self, entitlement: discord.Entitlement) -> None:
        """``ENTITLEMENT_CREATE``: handle it in the background (tracked for shutdown)."""
        grant = Grant.of(entitlement)
        task = self._spawn(self._handle_logged(grant), f"entitlement {grant.id}")
        self._granting[grant.id] = task
        task.add_done_callback(lambda done: self._forget(grant.id, done))

    def entitlement_deleted(self, entitlement: discord.Entitlement) -> None:
        """``ENTITLEMENT_DELETE``: record Discord's refund in the background."""
        grant = Grant.of(entitlement)
        self._spawn(self._refund_logged(grant), f"entitlement {grant.id} deleted")

    def _forget(self, entitlement_id: str, task: asyncio.Task[None]) -> None:
        if self._granting.get(entitlement_id) is task:
            del self._granting[entitlement_id]

    def scan_soon(self) -> None:
        """List and handle the unconsumed entitlements, unless a scan is running already."""
        if not self.enabled or (self._scan is not None and not self._scan.done()):
            return
        self._scan = self._spawn(self._scan_logged(), "entitlements scan")

    async def scanned(self) -> None:
        """Wait for the scan in progress, if any (tests and shutdown)."""
        if self._scan is not None:
            with suppress(asyncio.CancelledError):
                await asyncio.shield(self._scan)

    async def close(self, timeout: float = 10.0) -> None:
        """At shutdown: let credits and consumes under way finish (within ``timeout``)."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()

    def _spawn(self, work: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle_logged(self, grant: Grant) -> None:
        try:
            await self.handle(grant)
        except Exception:  # the database unreachable, say: the entitlement stays unconsumed
            log.exception(
                "Discord entitlement %s not handled; the next start-up scan handles it", grant.id
            )

    async def _refund_logged(self, grant: Grant) -> None:
        granting = self._granting.get(grant.id)
        if granting is not None:
            await asyncio.wait([granting])
        try:
            await self.refunded(grant)
        except Exception:  # the database unreachable, say: Discord does not send it again
            log.exception(
                "Discord refunded entitlement %s, but the refund is NOT recorded "
                "(ledger key purchase_refund:discord:%s); Discord does not send it again",
                grant.id,
                grant.id,
            )

    async def refunded(self, grant: Grant) -> None:
        """Discord deleted ``grant`` (a refund): take its credits back once, tell the member."""
        recorded = await skus.refunded(self.deps, grant.id)
        if recorded is None:
            log.info(
                "Discord entitlement %s (SKU %s) deleted; no purchase of it in the ledger: ignored",
                grant.id,
                grant.sku_id,
            )
            return
        purchase, outcome = recorded
        if outcome.applied and grant.user_id is not None:
            wallet = await self.deps.ledger.wallet(outcome.entry.user)
            balance = wallet.balance if wallet is not None else outcome.entry.balance_after
            news = skus.refund_news(self.deps, purchase, outcome, balance)
            await self._tell(int(grant.user_id), news, followup=False)

    async def _scan_logged(self) -> None:
        try:
            count = await self.scan()
        except Exception as error:  # the next start (or gateway takeover) scans again
            log.warning("could not list Discord entitlements: %s: %s", type(error).__name__, error)
            return
        if count:
            log.info("start-up scan: %d unconsumed Discord entitlements handled", count)

    async def scan(self) -> int:
        """Handle every unconsumed entitlement of the mapped SKUs; return how many there were."""
        application_id = self.client.application_id
        if application_id is None or not self.enabled:
            return 0
        sku_ids = [int(pack.sku_id) for pack in self.deps.sku_packs]
        after: int | None = None
        handled = 0
        while True:
            page = await self.client.http.get_entitlements(
                application_id,
                sku_ids=sku_ids,
                after=after,
                limit=PAGE,
                exclude_ended=True,
                exclude_deleted=True,
            )
            for data in page:
                grant = Grant.from_payload(data)
                if not grant.consumed:
                    await self.handle(grant)
                    handled += 1
            if len(page) < PAGE:
                return handled
            after = max(int(data["id"]) for data in page)

    async def handle(self, grant: Grant) -> None:
        """Credit ``grant`` once if it buys credits, consume it, and tell the member."""
        pack = skus.pack_of(self.deps, grant.sku_id)
        if pack is None:
            log.info(
                "Discord entitlement %s is for SKU %s, not in DISCORD_SKU_CREDITS: left alone",
                grant.id,
                grant.sku_id,
            )
            return
        if grant.user_id is None or grant.deleted or grant.consumed:
            log.info(
                "Discord entitlement %s (SKU %s) left alone: %s",
                grant.id,
                grant.sku_id,
                "it belongs to a server"
                if grant.user_id is None
                else "deleted"
                if grant.deleted
                else "already consumed",
            )
            return
        outcome = await skus.credit(self.deps, grant.user_id, grant.id, pack)
        await self._consume(grant)
        if outcome.applied:
            wallet = await self.deps.ledger.wallet(outcome.entry.user)
            balance = wallet.balance if wallet is not None else outcome.entry.balance_after
            await self._tell(int(grant.user_id), skus.bought(self.deps, pack, balance))

    async def _consume(self, grant: Grant) -> None:
        application_id = self.client.application_id
        assert application_id is not None
        try:
            await self.client.http.consume_entitlement(application_id, int(grant.id))
        except discord.HTTPException as error:
            try:
                data = await self.client.http.get_entitlement(application_id, int(grant.id))
            except discord.HTTPException as again:
                data = {"consumed": False}
                log.debug("entitlement %s unreadable after a refused consume: %s", grant.id, again)
            if data.get("consumed"):
                log.info("Discord entitlement %s was already consumed", grant.id)
                return
            log.warning(
                "Discord entitlement %s credited but not consumed (%s %s: %s); "
                "the next start-up scan consumes it",
                grant.id,
                error.status,
                error.code,
                error.text,
            )

    async def _tell(self, user_id: int, reply: Any, *, followup: bool = True) -> None:
        """The member's news: a follow-up to their ``/buy`` here (if ``followup``), else a DM.

        In the language the member chose (/settings), as every other reply; else Discord's.
        """
        try:
            chosen = (await preferences_of(self.deps, UserRef("discord", str(user_id)))).locale
        except Exception as error:  # the news goes out all the same, in Discord's language
            log.warning("the settings of discord:%s could not be read: %s", user_id, error)
            chosen = None
        if chosen is not None:
            reply = replace(reply, locale=chosen)
        remembered = self._buyers.get(user_id) if followup else None
        if remembered is not None and self.clock() - remembered[1] < FOLLOWUP_FOR_S:
            interaction = remembered[0]
            message = render(reply, resolve_locale(str(interaction.locale))).text
            try:
                await interaction.followup.send(message, ephemeral=True)
                return
            except discord.HTTPException as error:
                log.info("purchase news for %s: follow-up refused (%s), DM instead", user_id, error)
        profile = await self.deps.ledger.find_user("discord", str(user_id))
        locale = profile.locale if profile is not None else DEFAULT_LOCALE
        try:
            channel = await self.client.create_dm(discord.Object(user_id))
            await channel.send(render(reply, locale).text)
        except discord.HTTPException as error:
            log.info("purchase news for %s undeliverable (%s): /balance shows it", user_id, error)
