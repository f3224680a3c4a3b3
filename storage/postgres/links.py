"""Linked wallets on PostgreSQL: link codes, linking two identities, and the unlink split.

Each operation is one transaction that takes its row locks in a fixed order, the
order a hold's capture takes them too: first the redeemer's open holds, then the
wallets. Everything it then reads, it reads in statements that began after those
locks were granted (READ COMMITTED gives each statement a fresh snapshot), so a hold
made or ended just before is seen; a hold made just after resolves the identity
again and finds the shared wallet (the guarded UPDATEs of
:mod:`storage.postgres.ledger` refuse a wallet that was linked away while they
waited for its lock, and run once more). A deadlock PostgreSQL breaks anyway (a hold
made and ended within the same few milliseconds as the link) reruns the transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NotLinked, NoWallet
from bot.ports import LinkResult, Unlinked, link_id
from storage.links import move_entries
from storage.postgres.database import PgDatabase

T = TypeVar("T")

HOUR = 3600
ATTEMPTS = 3

_INSERT_ENTRY = (
    "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
    " balance_after, held_after, hold_id, actor, reason, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11)"
)

_WALLET = """
SELECT platform, user_id, balance, held, linked_platform, linked_user_id, link_id,
       EXISTS (SELECT FROM wallets m WHERE m.linked_platform = w.platform
               AND m.linked_user_id = w.user_id) AS has_members
FROM wallets w WHERE platform = $1 AND user_id = $2
"""


async def in_transaction(
    database: PgDatabase, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Run ``work`` in a transaction; again (up to 3 times) when PostgreSQL broke a deadlock."""
    for attempt in range(ATTEMPTS):
        try:
            async with database.transaction() as connection:
                return await work(connection)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _lock_wallet(connection: asyncpg.Connection, user: UserRef) -> asyncpg.Record | None:
    if not await connection.fetchval(
        "SELECT true FROM wallets WHERE platform = $1 AND user_id = $2 FOR UPDATE",
        user.platform,
        user.id,
    ):
        return None
    return await connection.fetchrow(_WALLET, user.platform, user.id)


async def issue_code(
    connection: asyncpg.Connection,
    user: UserRef,
    code_hash: str,
    *,
    now: int,
    ttl_s: int,
    per_hour: int,
) -> bool:
    """Store a code for ``user`` unless they asked for ``per_hour`` in the last hour.

    The member's wallet row is locked first, so two requests at once are counted
    one after the other.
    """
    if await _lock_wallet(connection, user) is None:
        raise NoWallet(str(user))
    # Codes nobody used that expired over an hour ago count for nothing any more.
    await connection.execute(
        "DELETE FROM link_codes WHERE platform = $1 AND user_id = $2 AND used_at IS NULL"
        " AND expires_at <= $3",
        user.platform,
        user.id,
        now - HOUR,
    )
    status = await connection.execute(
        """
        INSERT INTO link_codes (code_hash, platform, user_id, created_at, expires_at)
        SELECT $1, $2, $3, $4, $5
        WHERE (SELECT count(*) FROM link_codes WHERE platform = $2 AND user_id = $3
               AND created_at > $6) < $7
        """,
        code_hash,
        user.platform,
        user.id,
        now,
        now + ttl_s,
        now - HOUR,
        per_hour,
    )
    return status.endswith(" 1")


async def _fail(connection: asyncpg.Connection, user: UserRef, status: str, now: int) -> LinkResult:
    await connection.execute(
        "INSERT INTO link_failures (platform, user_id, at) VALUES ($1, $2, $3)",
        user.platform,
        user.id,
        now,
    )
    return LinkResult(status)  # type: ignore[arg-type]


async def redeem(
    connection: asyncpg.Connection,
    user: UserRef,
    code_hash: str,
    *,
    now: int,
    failures_per_hour: int,
) -> LinkResult:
    """Link ``user`` to the wallet of the code's issuer (in the caller's transaction)."""
    await connection.execute(
        "SELECT FROM holds WHERE platform = $1 AND user_id = $2 AND state = 'open'"
        " ORDER BY hold_id FOR UPDATE",
        user.platform,
        user.id,
    )
    if await _lock_wallet(connection, user) is None:
        raise NoWallet(str(user))
    await connection.execute(
        "DELETE FROM link_failures WHERE platform = $1 AND user_id = $2 AND at <= $3",
        user.platform,
        user.id,
        now - HOUR,
    )
    failures = await connection.fetchval(
        "SELECT count(*) FROM link_failures WHERE platform = $1 AND user_id = $2 AND at > $3",
        user.platform,
        user.id,
        now - HOUR,
    )
    if failures >= failures_per_hour:
        return LinkResult("too_many")
    code = await connection.fetchrow(
        "SELECT platform, user_id, expires_at, used_at FROM link_codes WHERE code_hash = $1"
        " FOR UPDATE",
        code_hash,
    )
    if code is None:
        return await _fail(connection, user, "unknown", now)
    issuer = UserRef(code["platform"], code["user_id"])
    if code["used_at"] is not None:
        return await _fail(connection, user, "used", now)
    if code["expires_at"] <= now:
        return await _fail(connection, user, "expired", now)
    if issuer == user:
        return LinkResult("own", issuer)
    if issuer.platform == user.platform:
        return LinkResult("same_platform", issuer)
    if await _lock_wallet(connection, issuer) is None:
        raise NoWallet(str(issuer))
    mine = await connection.fetchrow(_WALLET, user.platform, user.id)
    theirs = await connection.fetchrow(_WALLET, issuer.platform, issuer.id)
    for wallet in (mine, theirs):
        if wallet["linked_platform"] is not None or wallet["has_members"]:
            return LinkResult("already_linked", issuer)
    await connection.execute(
        "UPDATE link_codes SET used_at = $1, used_by = $2 WHERE code_hash = $3",
        now,
        str(user),
        code_hash,
    )
    ident = link_id(code_hash)
    moved, moved_held = mine["balance"], mine["held"]
    await connection.execute(
        "UPDATE holds SET platform = $1, user_id = $2 WHERE platform = $3 AND user_id = $4"
        " AND state = 'open'",
        issuer.platform,
        issuer.id,
        user.platform,
        user.id,
    )
    left = await connection.fetchrow(
        """
        UPDATE wallets SET balance = balance - $1, held = held - $2,
               linked_platform = $3, linked_user_id = $4, link_id = $5
        WHERE platform = $6 AND user_id = $7 AND balance = $1 AND held = $2
          AND linked_platform IS NULL
        RETURNING balance, held
        """,
        moved,
        moved_held,
        issuer.platform,
        issuer.id,
        ident,
        user.platform,
        user.id,
    )
    assert left is not None, "the row lock keeps the wallet as it was read"
    joined = await connection.fetchrow(
        "UPDATE wallets SET balance = balance + $1, held = held + $2"
        " WHERE platform = $3 AND user_id = $4 RETURNING balance, held",
        moved,
        moved_held,
        issuer.platform,
        issuer.id,
    )
    for entry in move_entries(
        "link", ident, user, issuer, moved, moved_held, left, joined, actor=str(user), now=now
    ):
        await connection.execute(_INSERT_ENTRY, *entry)
    return LinkResult("linked", issuer, moved, moved_held)


async def _pair(connection: asyncpg.Connection, user: UserRef) -> tuple[UserRef, UserRef, str]:
    """(kept, left, link id) of the pair ``user`` is in; raises NotLinked, NoWallet."""
    wallet = await connection.fetchrow(_WALLET, user.platform, user.id)
    if wallet is None:
        raise NoWallet(str(user))
    if wallet["linked_platform"] is not None:
        kept = UserRef(wallet["linked_platform"], wallet["linked_user_id"])
        return kept, user, wallet["link_id"]
    member = await connection.fetchrow(
        "SELECT platform, user_id, link_id FROM wallets"
        " WHERE linked_platform = $1 AND linked_user_id = $2",
        user.platform,
        user.id,
    )
    if member is None:
        raise NotLinked(str(user))
    return user, UserRef(member["platform"], member["user_id"]), member["link_id"]


async def unlink(
    connection: asyncpg.Connection,
    user: UserRef,
    *,
    credits: int,
    actor: str,
    reason: str,
    now: int,
) -> Unlinked:
    """Separate the pair ``user`` belongs to; the redeemer leaves with ``credits``."""
    if credits < 0:
        raise ValueError("an unlink gives the leaving identity 0 credits or more")
    kept, left, _ = await _pair(connection, user)
    # The order everything else takes them in: an identity's own row, then the wallet it
    # resolves to (a job's creation locks the member's row, then holds in the shared one).
    for side in (left, kept):
        await _lock_wallet(connection, side)
    kept, left, ident = await _pair(connection, user)  # as it is under the locks
    shared = await connection.fetchrow(
        "UPDATE wallets SET balance = balance - $1 WHERE platform = $2 AND user_id = $3"
        " AND balance >= $1 RETURNING balance, held",
        credits,
        kept.platform,
        kept.id,
    )
    if shared is None:
        balance = await connection.fetchval(
            "SELECT balance FROM wallets WHERE platform = $1 AND user_id = $2",
            kept.platform,
            kept.id,
        )
        raise InsufficientCredits(balance, credits)
    alone = await connection.fetchrow(
        "UPDATE wallets SET balance = balance + $1, linked_platform = NULL,"
        " linked_user_id = NULL, link_id = NULL WHERE platform = $2 AND user_id = $3"
        " RETURNING balance, held",
        credits,
        left.platform,
        left.id,
    )
    for entry in move_entries(
        "unlink", ident, kept, left, credits, 0, shared, alone, actor=actor, now=now, reason=reason
    ):
        await connection.execute(_INSERT_ENTRY, *entry)
    return Unlinked(kept, left, credits, shared["balance"])
