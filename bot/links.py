"""``/link`` and ``/unlink``: one wallet for a member's accounts on several platforms.

``/link`` gives a one-time code (8 letters and digits without the look-alikes
0/O, 1/I/L; valid :data:`CODE_TTL_S`; at most :data:`CODES_PER_HOUR` an hour),
shown only to the member (a private chat on Telegram, an ephemeral reply on
Discord). Only its SHA-256 is stored. ``/link <code>`` from an account on
another platform links the two: the redeemer's wallet moves into the issuer's
and both then use that one wallet (:meth:`bot.ports.Ledger.redeem_link_code`).
Two identities on different platforms only, neither linked yet: no chains.
Wrong codes count against the member (:data:`FAILURES_PER_HOUR`), so a code
cannot be guessed (31^8 ≈ 8.5e11 codes, 10 tries an hour).

A moderator's ``/unlink <user> [credits]`` separates a pair: the issuer keeps
the wallet and its open holds, the redeemer starts with ``credits`` (default
0) taken from it; both moves are in the ledger.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from bot.access import describe, is_moderator, resolve_user
from bot.commands import Caller, Link, Unlink
from bot.deps import Deps
from bot.errors import InsufficientCredits, NotLinked, NotModerator, UserError
from bot.replies import Reply, text

log = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Letters and digits a reader cannot confuse (no 0/O, 1/I/L)."""

CODE_LENGTH = 8
CODE_TTL_S = 600
CODES_PER_HOUR = 5
FAILURES_PER_HOUR = 10

PRIVATE_REPLY_PLATFORMS = frozenset({"discord", "console"})
"""Where a private reply is seen by the caller alone wherever they ask (Discord: ephemeral)."""

_REFUSALS = {
    "unknown": "link.unknown",
    "expired": "link.expired",
    "used": "link.used",
    "own": "link.own",
    "same_platform": "link.same_platform",
    "already_linked": "link.already_linked",
    "too_many": "link.too_many",
}


def code_hash(code: str) -> str:
    """What is stored of a code: its SHA-256 (codes are random and live ten minutes)."""
    return hashlib.sha256(code.upper().encode()).hexdigest()


def new_code() -> str:
    """A fresh random code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _in_private(caller: Caller) -> bool:
    chat = caller.chat
    return (
        chat is None or chat.id == caller.user.id or caller.user.platform in PRIVATE_REPLY_PLATFORMS
    )


async def link(command: Link, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """Give a code, or redeem one."""
    now = deps.clock.now()
    if command.code is None:
        if not _in_private(caller):
            raise UserError("link.private_only")
        code = new_code()
        issued = await deps.ledger.issue_link_code(
            caller.user, code_hash(code), now=now, ttl_s=CODE_TTL_S, per_hour=CODES_PER_HOUR
        )
        if not issued:
            raise UserError("link.too_many_codes", limit=CODES_PER_HOUR)
        log.info("link code issued to %s", caller.user)
        return [Reply((text("link.code", code=code, minutes=CODE_TTL_S // 60),), private=True)]
    result = await deps.ledger.redeem_link_code(
        caller.user, code_hash(command.code), now=now, failures_per_hour=FAILURES_PER_HOUR
    )
    if result.status != "linked":
        log.info("link code refused for %s: %s", caller.user, result.status)
        issuer = result.partner
        raise UserError(
            _REFUSALS[result.status],
            minutes=CODE_TTL_S // 60,
            platform=issuer.platform if issuer else caller.user.platform,
        )
    log.info("%s linked to the wallet of %s", caller.user, result.partner)
    wallet = await deps.ledger.wallet(caller.user)
    balance = wallet.balance if wallet else 0
    line = text(
        "link.linked",
        me=str(caller.user),
        other=str(result.partner),
        moved=deps.money(result.moved),
        money=deps.money(balance),
    )
    if deps.preferences is None:
        return [Reply((line,), private=True)]
    # Settings are the wallet's: from now on this account uses the issuer's.
    return [Reply((line, text("settings.after_link", other=str(result.partner))), private=True)]


async def unlink(
    command: Unlink, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A moderator separates a linked pair, recording the split."""
    if not is_moderator(caller, deps):
        raise NotModerator()
    target = await resolve_user(command.target, caller, deps)
    try:
        split = await deps.ledger.unlink(
            target.user,
            credits=command.credits,
            actor=str(caller.user),
            reason="",
            now=deps.clock.now(),
        )
    except NotLinked:
        raise UserError("link.not_linked", who=describe(target)) from None
    except InsufficientCredits as error:
        raise UserError(
            "link.unlink_short",
            money=deps.money(error.balance),
            credits=deps.money(command.credits),
        ) from None
    log.info(
        "%s unlinked %s from %s (%d credits to it)",
        caller.user,
        split.left,
        split.kept,
        split.credits,
    )
    line = text(
        "link.unlinked",
        kept=str(split.kept),
        money=deps.money(split.kept_balance),
        left=str(split.left),
        credits=deps.money(split.credits),
    )
    return [Reply((line,))]
