"""One handler per command, and the one place that turns errors into user messages.

Handlers are plain async functions ``(command, caller, deps, request_id) ->
replies``; everything they touch comes in through :class:`Deps`. Adapters
call :func:`respond_to_text` or :func:`respond_to_action` and render what
comes back; no exception ever reaches them, so no traceback or token can
reach a chat.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from bot import compare, defaults, generation, links, purchases
from bot.access import describe, is_moderator, resolve_user, unseen_user
from bot.catalog import BASE_DURATION, Catalog
from bot.commands import (
    Balance,
    Buy,
    BuyPack,
    Caller,
    CancelJob,
    CancelQuote,
    ChangeSetting,
    Choose,
    Command,
    CompareTiers,
    Gen,
    Help,
    History,
    Jobs,
    Link,
    OtherTier,
    Paid,
    Price,
    Refund,
    RefundPurchase,
    Reroll,
    Resend,
    ShowSettings,
    Start,
    TopUp,
    Unlink,
)
from bot.deps import Deps
from bot.errors import NotModerator, StorageUnavailable, UnknownUser, UserError
from bot.parsing import parse_action, parse_command
from bot.ports import UserProfile, Wallet
from bot.reasons import reason_text
from bot.replies import (
    Button,
    Money,
    Reply,
    Text,
    TierName,
    Timestamp,
    Wait,
    clips_affordable,
    say,
    text,
)
from bot.text import clean_text

log = logging.getLogger(__name__)


Handler = Callable[[Any, Caller, Deps, str | None], Awaitable[list[Reply]]]


async def respond(
    build: Callable[[], Command], caller: Caller, deps: Deps, *, request_id: str | None = None
) -> list[Reply]:
    """Answer the command ``build()`` returns; errors while building are answered too."""
    return await _guarded(lambda who: _dispatch(build(), who, deps, request_id), caller, deps)


async def respond_to_text(
    line: str, caller: Caller, deps: Deps, *, request_id: str | None = None
) -> list[Reply]:
    """Answer one chat message."""
    return await _guarded(
        lambda who: _dispatch(parse_command(line), who, deps, request_id), caller, deps
    )


async def respond_to_action(
    action: str, caller: Caller, deps: Deps, *, request_id: str | None = None
) -> list[Reply]:
    """Answer a button press; the reply edits the pressed message where that makes sense."""
    return await _guarded(
        lambda who: _dispatch(parse_action(action), who, deps, request_id), caller, deps
    )


async def handle(
    command: Command, caller: Caller, deps: Deps, *, request_id: str | None = None
) -> list[Reply]:
    """Answer a command an adapter built itself (slash commands with typed options)."""
    return await _guarded(lambda who: _dispatch(command, who, deps, request_id), caller, deps)


async def _guarded(
    run: Callable[[Caller], Awaitable[list[Reply]]], caller: Caller, deps: Deps
) -> list[Reply]:
    """Run the command for the caller in the language they chose (/settings), if any.

    Every reply, refusals included, is then marked with that language for
    the adapter to render it in; the quotes and jobs the command makes keep
    it too, so status messages speak it.
    """
    who = await defaults.localized(caller, deps)
    try:
        replies = await run(who)
    except UserError as error:
        replies = [Reply((Text(error.key, error.params),), private=True)]
    except StorageUnavailable as error:
        log.error("storage unavailable while answering %s: %s", caller.user, error)
        replies = [say("error.storage")]
    except Exception:
        log.exception("unexpected error while answering %s", caller.user)
        replies = [say("error.internal")]
    if who.locale == caller.locale:
        return replies
    return [reply if reply.locale else replace(reply, locale=who.locale) for reply in replies]


async def _dispatch(
    command: Command, caller: Caller, deps: Deps, request_id: str | None
) -> list[Reply]:
    handler = _HANDLERS[type(command)]
    name = "compare" if isinstance(command, Gen) and command.compare else None
    deps.metrics.command(caller.user.platform, name or _COMMAND_NAMES[type(command)])
    if isinstance(command, Choose):
        deps.metrics.press(command.tier)
    if not isinstance(command, Price | Paid):
        # /price stays read-only so it answers at once; a payment opens the wallet in the
        # purchase's own transaction (and says so if it cannot); the rest open it here.
        await _open_wallet(caller, deps)
    return await handler(command, caller, deps, request_id)


async def _open_wallet(caller: Caller, deps: Deps) -> Wallet:
    profile = UserProfile(caller.user, caller.display_name, caller.username, caller.locale)
    return await deps.ledger.open_wallet(
        profile, welcome_credits=deps.welcome_credits, now=deps.clock.now()
    )


# --- handlers ----------------------------------------------------------------


def price_table(
    catalog: Catalog,
    duration_s: int,
    money: Callable[[int], Money],
    waits: Sequence[int] | None = None,
) -> list[Text]:
    """The price lines for ``duration_s`` clips: a header and one row per tier.

    ``waits`` are the tiers' expected waits in seconds, in catalog order (a
    running bot's :class:`~bot.jobs.waits.ExpectedWaits`); without them, the
    configured waits for this clip length.
    """
    if waits is None:
        waits = tuple(tier.expected_wait(duration_s) for tier in catalog.tiers)
    lines = [text("price.header", duration=duration_s, rate=catalog.credits_per_yuan)]
    for tier, wait in zip(catalog.tiers, waits, strict=True):
        lines.append(
            text(
                "price.row",
                tier=TierName(tier),
                resolution=f"{tier.resolution}p",
                money=money(tier.price(duration_s)),
                wait=Wait(wait),
                input=text("price.needs_image" if tier.requires_image else "price.image_or_text"),
            )
        )
    return lines


@functools.lru_cache(maxsize=16)
def _price_reply_parts(
    catalog: Catalog, duration_s: int, waits: tuple[int, ...]
) -> tuple[tuple[Text, ...], Button]:
    """The lines and button of /price every member sees alike, made once per catalog and waits.

    Keyed by the catalog itself (its tiers and rate) and the expected waits,
    so a catalog with other prices, or waits that moved, gets its own table;
    the same Text objects each time also let the translators find them
    rendered already.
    """
    lines = price_table(catalog, duration_s, lambda credits: Money.of(catalog, credits), waits)
    other = 10 if duration_s == BASE_DURATION else BASE_DURATION
    return tuple(lines), Button(text("price.button", duration=other), f"price:{other}")


PRICE_REPLIES_KEPT = 1024
"""/price replies :func:`_price_reply` keeps, by catalog, duration and balance."""


@functools.lru_cache(maxsize=PRICE_REPLIES_KEPT)
def _price_reply(
    catalog: Catalog, duration_s: int, waits: tuple[int, ...], balance: int | None
) -> Reply:
    """The whole /price reply for a wallet holding ``balance`` credits (None: no wallet).

    A pure function of its arguments, so members whose balances are equal
    (everyone who has not spent their welcome credits yet) share one reply
    object, which the translators then find rendered already.
    """
    table, button = _price_reply_parts(catalog, duration_s, waits)
    lines = list(table)
    if balance is not None:
        clips = clips_affordable(catalog, balance, duration_s)
        lines.append(text("price.balance", money=Money.of(catalog, balance), clips=clips))
    return Reply(tuple(lines), buttons=(button,), edit=True)


async def price(command: Price, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """Every tier with credits, yuan, resolution and wait; the caller's buying power.

    The table is the same for everyone (see :func:`_price_reply_parts`); only
    the caller's balance is read per call, fresh from the ledger, and the
    reply for that balance made once (:func:`_price_reply`).
    """
    duration = command.duration_s or BASE_DURATION
    wallet = await deps.ledger.wallet(caller.user)
    balance = wallet.balance if wallet is not None else None
    return [_price_reply(deps.catalog, duration, _waits(deps, duration), balance)]


def _waits(deps: Deps, duration_s: int) -> tuple[int, ...]:
    """The tiers' expected waits, as quotes show them: this deployment's, at its time scale."""
    tiers = deps.catalog.tiers
    if deps.generation is None:  # no runner (wallet commands): the configured waits
        return tuple(tier.expected_wait(duration_s) for tier in tiers)
    return tuple(deps.generation.waits.seconds(tier.key, duration_s) for tier in tiers)


async def balance(
    command: Balance, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """The caller's balance; a moderator may name any user."""
    own = command.target is None or command.target.lower() == "me"
    if not own and not is_moderator(caller, deps):
        raise NotModerator()
    profile = await resolve_user(command.target or "me", caller, deps)
    wallet = await deps.ledger.wallet(profile.user)
    if wallet is None:
        raise UnknownUser(command.target or "me")
    first = (
        text("balance.own", money=deps.money(wallet.balance))
        if profile.user == caller.user
        else text("balance.other", who=describe(profile), money=deps.money(wallet.balance))
    )
    lines = [first]
    if wallet.held:
        lines.append(text("balance.held", money=deps.money(wallet.held), count=wallet.open_holds))
    return [Reply(tuple(lines))]


async def history(
    command: History, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """The caller's newest ledger entries."""
    entries = await deps.ledger.history(caller.user, command.limit)
    if not entries:
        return [say("history.empty")]
    lines = [text("history.header", count=len(entries))]
    for entry in entries:
        change = -entry.held_delta if entry.kind == "capture" else entry.amount
        lines.append(
            text(
                "history.row",
                when=Timestamp(entry.created_at),
                kind=text(f"kind.{entry.kind}"),
                change=f"{change:+,}" if entry.kind != "capture" else f"{change:,}",
                balance=entry.balance_after,
                reason=reason_text(entry.reason, deps.catalog) if entry.reason else "—",
            )
        )
    return [Reply(tuple(lines))]


async def top_up(command: TopUp, caller: Caller, deps: Deps, request_id: str | None) -> list[Reply]:
    """A moderator adds credits to a wallet; a full ``platform:id`` may open a new one."""
    if not is_moderator(caller, deps):
        raise NotModerator()
    if command.credits > deps.max_topup:
        raise UserError("error.amount_over_limit", limit=f"{deps.max_topup:,}")
    reason = clean_text(command.reason)
    try:
        target = await resolve_user(command.target, caller, deps)
        new_wallet = False
    except UnknownUser:
        # Support may credit someone before their first message (a refund, a
        # prize): the wallet is opened with the top-up, in one transaction.
        unseen = unseen_user(command.target)
        if unseen is None:
            raise
        target, new_wallet = UserProfile(unseen), True
    key = f"topup:{request_id}" if request_id else f"topup:{deps.new_id()}"
    outcome = await deps.ledger.top_up(
        target.user,
        command.credits,
        key=key,
        actor=str(caller.user),
        reason=reason,
        now=deps.clock.now(),
        create_wallet=new_wallet,
        welcome_credits=deps.welcome_credits,
    )
    log.info(
        "top-up %s by %s: %+d (%s%s)",
        target.user,
        caller.user,
        command.credits,
        "applied" if outcome.applied else "duplicate",
        ", new wallet" if new_wallet else "",
    )
    lines = [text("topup.done", money=deps.money(command.credits), who=describe(target))]
    if new_wallet and outcome.applied:
        lines.append(
            text(
                "wallet.opened_with_welcome",
                who=str(target.user),
                money=deps.money(deps.welcome_credits),
            )
            if deps.welcome_credits > 0
            else text("wallet.opened", who=str(target.user))
        )
    lines.append(text("topup.new_balance", money=deps.money(outcome.entry.balance_after)))
    return [Reply(tuple(lines))]


async def help_(command: Help, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """What the bot does and its commands; moderators also see theirs."""
    lines = [text("help.intro"), text("help.user_commands")]
    if is_moderator(caller, deps):
        lines.append(text("help.moderator_commands", max=f"{deps.max_topup:,}"))
    return [Reply(tuple(lines))]


async def start(command: Start, caller: Caller, deps: Deps, request_id: str | None) -> list[Reply]:
    """A greeting with the caller's balance, then the help text."""
    wallet = await deps.ledger.wallet(caller.user)
    balance_credits = wallet.balance if wallet else 0
    greeting = Reply((text("start.greeting", money=deps.money(balance_credits)),))
    return [greeting, *await help_(Help(), caller, deps, request_id)]


_HANDLERS: dict[type, Handler] = {
    Gen: compare.gen,
    CompareTiers: compare.compare_tiers,
    Choose: generation.choose,
    CancelQuote: generation.cancel_quote,
    CancelJob: generation.cancel_job,
    Reroll: generation.reroll,
    OtherTier: generation.reroll,
    Resend: generation.resend,
    Jobs: generation.jobs,
    Refund: generation.refund,
    RefundPurchase: purchases.refund_purchase,
    Buy: purchases.buy,
    BuyPack: purchases.buy_pack,
    Paid: purchases.paid,
    Link: links.link,
    Unlink: links.unlink,
    ShowSettings: defaults.show_settings,
    ChangeSetting: defaults.change_setting,
    Price: price,
    Balance: balance,
    History: history,
    TopUp: top_up,
    Help: help_,
    Start: start,
}

_COMMAND_NAMES: dict[type, str] = {
    kind: re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower() for kind in _HANDLERS
}
"""``CancelQuote`` -> ``cancel_quote``: the command label of the metrics."""
