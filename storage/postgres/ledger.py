"""The wallet ledger on PostgreSQL: each operation is one SQL statement, so one round trip.

Several replicas write at once, so nothing relies on a single writer. Each
write is one statement whose data-modifying CTEs change the wallet, the hold
and the ledger together (one implicit transaction), and its guarantees come
from PostgreSQL itself:

- Balances change only by a guarded ``UPDATE wallets SET balance = balance - $n
  ... WHERE balance >= $n``; a concurrent writer of the same wallet waits for
  the row lock and the guard is evaluated again on the row it then finds, so
  two holds can never both spend the same credits. ``CHECK (balance >= 0)``
  backs it up.
- A hold ends once: ``UPDATE holds SET state = ... WHERE state = 'open'`` is
  a compare-and-set under the hold's row lock, and the unique index
  ``ledger_one_end_per_hold`` refuses a second ending whatever happens.
- Idempotency: ``ledger.idem_key`` is unique. A statement first looks for
  its key; two writers racing with one key both miss it, and the second's
  INSERT waits for the first's commit and fails with a unique violation,
  which rolls its whole statement back. It is then run once more and finds
  the first one's entry (:func:`_once`).
- The ledger is append-only (a trigger refuses UPDATE, DELETE, TRUNCATE).

The functions take a connection so :mod:`storage.postgres.jobs` can run
them inside its own transactions (a job's state and its ledger entry commit
together).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from bot import reasons
from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet, PurchaseSpent, UnknownPurchase
from bot.ports import (
    Hold,
    LedgerEntry,
    LinkResult,
    Outcome,
    Unlinked,
    UserProfile,
    Wallet,
    purchase_key,
    purchase_refund_key,
)
from storage.ledger import LEDGER_COLUMNS as _LEDGER_COLUMNS
from storage.ledger import SHARING_WALLET as _SHARING
from storage.ledger import CreditingLedger, entry_from_row, hold_from_row, profile_from_row
from storage.postgres import links
from storage.postgres.database import PgDatabase

T = TypeVar("T")

SHARING_WALLET = _SHARING.replace("platform = ? AND user_id = ?", "platform = $1 AND user_id = $2")
"""storage.ledger's ``members`` of one identity's wallet, with PostgreSQL's placeholders."""

ENTRY_COLUMNS = (
    "seq, idem_key, platform, user_id, kind, amount, held_delta, balance_after, held_after,"
    " hold_id, actor, reason, created_at"
)
_INSERT_ENTRY = (
    "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
    " balance_after, held_after, hold_id, actor, reason, created_at)"
)

# The wallet an identity spends from: its own, or the one it is linked to ($2, $3).
_OWNER = """owner AS (
    SELECT coalesce(linked_platform, platform) AS platform,
           coalesce(linked_user_id, user_id) AS user_id
    FROM wallets WHERE platform = $2 AND user_id = $3
)"""

# $1 key, $2 platform, $3 user_id, $4 credits (signed), $5 kind, $6 actor, $7 reason, $8 now.
# The identity is resolved to its wallet in the statement; ``linked_platform IS NULL`` is
# checked again on the row the UPDATE locks, so a wallet linked away while this waited
# for its lock is not written (the caller runs the statement again: see _refusal).
_CHANGE_BALANCE = f"""
WITH prior AS (
    SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = $1
), {_OWNER}, wallet AS (
    UPDATE wallets w SET balance = w.balance + $4
    FROM owner
    WHERE w.platform = owner.platform AND w.user_id = owner.user_id
      AND w.linked_platform IS NULL AND w.balance + $4 >= 0
      AND NOT EXISTS (SELECT FROM prior)
    RETURNING w.platform, w.user_id, w.balance, w.held
), entry AS (
    {_INSERT_ENTRY}
    SELECT $1, platform, user_id, $5, $4, 0, balance, held, NULL, $6, $7, $8 FROM wallet
    RETURNING {ENTRY_COLUMNS}
)
SELECT true AS applied, * FROM entry
UNION ALL
SELECT false AS applied, * FROM prior
"""

# $1 hold_id, $2 platform, $3 user_id, $4 credits, $5 actor, $6 reason, $7 now.
# The hold belongs to the wallet the identity resolves to.
_HOLD = f"""
WITH prior AS (
    SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = 'hold:' || $1
), {_OWNER}, wallet AS (
    UPDATE wallets w SET balance = w.balance - $4, held = w.held + $4
    FROM owner
    WHERE w.platform = owner.platform AND w.user_id = owner.user_id
      AND w.linked_platform IS NULL AND w.balance >= $4
      AND NOT EXISTS (SELECT FROM prior)
    RETURNING w.platform, w.user_id, w.balance, w.held
), hold AS (
    INSERT INTO holds (hold_id, platform, user_id, amount, created_at)
    SELECT $1, platform, user_id, $4, $7 FROM wallet
    RETURNING hold_id
), entry AS (
    {_INSERT_ENTRY}
    SELECT 'hold:' || $1, wallet.platform, wallet.user_id, 'hold', -$4, $4, wallet.balance,
           wallet.held, hold.hold_id, $5, $6, $7
    FROM wallet, hold
    RETURNING {ENTRY_COLUMNS}
)
SELECT true AS applied, * FROM entry
UNION ALL
SELECT false AS applied, * FROM prior
"""

# $1 hold_id, $2 kind ('capture' or 'release'), $3 actor, $4 reason, $5 now.
# The hold's row lock orders a capture and a release of one hold: the one
# that waited finds it no longer open and returns the other's ending.
_END_HOLD = f"""
WITH hold AS (
    UPDATE holds SET state = CASE $2::text WHEN 'capture' THEN 'captured' ELSE 'released' END,
                     ended_at = $5
    WHERE hold_id = $1 AND state = 'open'
    RETURNING platform, user_id, amount,
              CASE $2::text WHEN 'release' THEN amount ELSE 0 END AS back
), wallet AS (
    UPDATE wallets SET held = wallets.held - hold.amount, balance = wallets.balance + hold.back
    FROM hold
    WHERE wallets.platform = hold.platform AND wallets.user_id = hold.user_id
    RETURNING wallets.platform, wallets.user_id, wallets.balance, wallets.held,
              hold.amount, hold.back
), entry AS (
    {_INSERT_ENTRY}
    SELECT $2 || ':' || $1, platform, user_id, $2, back, -amount, balance, held, $1, $3, $4, $5
    FROM wallet
    RETURNING {ENTRY_COLUMNS}
)
SELECT true AS applied, * FROM entry
UNION ALL
SELECT false AS applied, {ENTRY_COLUMNS} FROM ledger
WHERE hold_id = $1 AND kind IN ('capture', 'release')
"""

# $1 refund key, $2 purchase key, $3 force, $4 actor, $5 reason, $6 now.
# `before` locks the member's wallet row (FOR UPDATE reads its newest version after
# waiting), so `take` is computed from the balance the UPDATE then changes; its guard
# keeps the balance from going below zero whatever happens. A concurrent refund of the
# same purchase waits for the lock, then fails on the unique key and is run again
# (_once), finding this one's entry.
_REFUND_PURCHASE = f"""
WITH prior AS (
    SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = $1
), bought AS (
    SELECT coalesce(w.linked_platform, w.platform) AS platform,
           coalesce(w.linked_user_id, w.user_id) AS user_id, l.amount
    FROM ledger l JOIN wallets w ON w.platform = l.platform AND w.user_id = l.user_id
    WHERE l.idem_key = $2 AND NOT EXISTS (SELECT FROM prior)
), before AS (
    SELECT w.platform, w.user_id,
           CASE WHEN $3 THEN least(w.balance, b.amount) ELSE b.amount END AS take
    FROM wallets w JOIN bought b ON w.platform = b.platform AND w.user_id = b.user_id
    FOR UPDATE OF w
), wallet AS (
    UPDATE wallets SET balance = wallets.balance - before.take
    FROM before
    WHERE wallets.platform = before.platform AND wallets.user_id = before.user_id
      AND wallets.balance >= before.take AND wallets.linked_platform IS NULL
    RETURNING wallets.platform, wallets.user_id, wallets.balance, wallets.held, before.take
), entry AS (
    {_INSERT_ENTRY}
    SELECT $1, platform, user_id, 'purchase_refund', -take, 0, balance, held, NULL, $4, $5, $6
    FROM wallet
    RETURNING {ENTRY_COLUMNS}
)
SELECT true AS applied, * FROM entry
UNION ALL
SELECT false AS applied, * FROM prior
"""

_ENDING = (
    f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE hold_id = $1 AND kind IN ('capture', 'release')"
)

# $1 platform, $2 user_id, $3 display_name, $4 username, $5 locale, $6 now,
# $7 welcome credits, $8 welcome reason, $9 refresh the profile.
# Usernames move between accounts: only the newest holder keeps one.
# Every command but /price comes here: a known member whose profile did not
# change writes and locks nothing (no new row version, no commit to flush), so
# no upsert here (ON CONFLICT DO UPDATE locks the row even when its WHERE is false).
_OPEN_WALLET = f"""
WITH moved AS (
    UPDATE users SET username = NULL
    WHERE $9 AND $4::text <> '' AND platform = $1
      AND ascii_lower(username) = ascii_lower($4) AND user_id <> $2
), member AS (
    INSERT INTO users (platform, user_id, display_name, username, locale, created_at)
    SELECT $1, $2, $3, $4, $5, $6
    WHERE NOT EXISTS (SELECT FROM users WHERE platform = $1 AND user_id = $2)
    ON CONFLICT (platform, user_id) DO NOTHING
), refreshed AS (
    UPDATE users SET display_name = $3, username = $4, locale = $5
    WHERE $9 AND platform = $1 AND user_id = $2
      AND (display_name, username, locale) IS DISTINCT FROM ($3, $4::text, $5)
), created AS (
    INSERT INTO wallets (platform, user_id, balance, created_at)
    VALUES ($1, $2, greatest($7, 0), $6)
    ON CONFLICT DO NOTHING
    RETURNING balance, held
), welcome AS (
    {_INSERT_ENTRY}
    SELECT 'welcome:' || $1 || ':' || $2, $1, $2, 'topup', balance, 0, balance, held, NULL,
           'system', $8, $6
    FROM created WHERE balance > 0
)
SELECT balance, held, 0::bigint AS open_holds FROM created
UNION ALL
SELECT w.balance, w.held,
       (SELECT count(*) FROM holds h WHERE h.platform = w.platform AND h.user_id = w.user_id
          AND h.state = 'open') AS open_holds
FROM wallets me JOIN wallets w
  ON w.platform = coalesce(me.linked_platform, me.platform)
 AND w.user_id = coalesce(me.linked_user_id, me.user_id)
WHERE me.platform = $1 AND me.user_id = $2 AND NOT EXISTS (SELECT FROM created)
"""

# The wallet ``$1:$2`` spends from (its own, or the one it is linked to).
_WALLET = """
SELECT w.balance, w.held,
       (SELECT count(*) FROM holds h WHERE h.platform = w.platform
          AND h.user_id = w.user_id AND h.state = 'open') AS open_holds
FROM wallets me JOIN wallets w
  ON w.platform = coalesce(me.linked_platform, me.platform)
 AND w.user_id = coalesce(me.linked_user_id, me.user_id)
WHERE me.platform = $1 AND me.user_id = $2
"""


def _outcome(row: asyncpg.Record) -> Outcome:
    return Outcome(entry_from_row(row), applied=row["applied"])


async def _refusal(
    connection: asyncpg.Connection, user: UserRef, needed: int, key: str
) -> Outcome | Exception | None:
    """Why a guarded write changed nothing: its key was taken after all, or the wallet.

    The statement looked for its key in a snapshot taken before it waited for
    the wallet's row lock; if the writer it waited for wrote that very key
    (a retry racing its original), the answer is that entry, not a refusal.
    None means the wallet it resolved was linked to another meanwhile and the
    wallet it resolves to now can pay: the caller runs the statement again.
    """
    prior = await connection.fetchrow(
        f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = $1", key
    )
    if prior is not None:
        return Outcome(entry_from_row(prior), applied=False)
    balance = await connection.fetchval(
        "SELECT w.balance FROM wallets me JOIN wallets w"
        " ON w.platform = coalesce(me.linked_platform, me.platform)"
        " AND w.user_id = coalesce(me.linked_user_id, me.user_id)"
        " WHERE me.platform = $1 AND me.user_id = $2",
        user.platform,
        user.id,
    )
    if balance is None:
        return NoWallet(str(user))
    if balance >= needed:
        return None
    return InsufficientCredits(balance, needed)


RACE_RETRIES = 3
"""Times a guarded write runs again after losing a race with a link of its wallet."""


def _raise_or_return(answer: Outcome | Exception) -> Outcome:
    if isinstance(answer, Exception):
        raise answer
    return answer


async def change_balance(
    connection: asyncpg.Connection,
    user: UserRef,
    credits: int,
    *,
    key: str,
    kind: str,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Add ``credits`` (may be negative for ``adjust``) to the spendable balance."""
    for _ in range(RACE_RETRIES):
        row = await connection.fetchrow(
            _CHANGE_BALANCE, key, user.platform, user.id, credits, kind, actor, reason, now
        )
        if row is not None:
            return _outcome(row)
        answer = await _refusal(connection, user, -credits, key)
        if answer is not None:
            return _raise_or_return(answer)
    raise InsufficientCredits(0, -credits)


async def hold_credits(
    connection: asyncpg.Connection,
    user: UserRef,
    credits: int,
    *,
    hold_id: str,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Move ``credits`` from the balance to held under ``hold_id``, if the balance allows."""
    for _ in range(RACE_RETRIES):
        row = await connection.fetchrow(
            _HOLD, hold_id, user.platform, user.id, credits, actor, reason, now
        )
        if row is not None:
            return _outcome(row)
        answer = await _refusal(connection, user, credits, f"hold:{hold_id}")
        if answer is not None:
            return _raise_or_return(answer)
    raise InsufficientCredits(0, credits)


async def end_hold(
    connection: asyncpg.Connection,
    hold_id: str,
    *,
    kind: str,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Capture or release an open hold; an ended hold returns its ending entry unchanged."""
    row = await connection.fetchrow(_END_HOLD, hold_id, kind, actor, reason, now)
    if row is None:
        # Another writer ended it after this statement's snapshot: read its ending now.
        ended = await connection.fetchrow(_ENDING, hold_id)
        if ended is None:
            raise KeyError(hold_id)
        return Outcome(entry_from_row(ended), applied=False)
    return _outcome(row)


async def open_wallet(
    connection: asyncpg.Connection,
    profile: UserProfile,
    *,
    welcome_credits: int,
    now: int,
    refresh_profile: bool = True,
) -> Wallet:
    """Record the user and open their wallet if it is new (with ``welcome_credits``)."""
    user = profile.user
    row = await connection.fetchrow(
        _OPEN_WALLET,
        user.platform,
        user.id,
        profile.display_name,
        profile.username,
        profile.locale,
        now,
        welcome_credits,
        reasons.reason("reason.welcome"),
        refresh_profile,
    )
    if row is None:  # a concurrent first message created it after this statement began
        row = await connection.fetchrow(_WALLET, user.platform, user.id)
        assert row is not None
    return Wallet(user, row["balance"], row["held"], row["open_holds"])


async def refund_purchase(
    connection: asyncpg.Connection,
    source: str,
    charge_id: str,
    *,
    force: bool,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Take a purchase's credits back, once; ``force`` takes what is left when they are spent."""
    key = purchase_refund_key(source, charge_id)
    row = await connection.fetchrow(
        _REFUND_PURCHASE, key, purchase_key(source, charge_id), force, actor, reason, now
    )
    if row is not None:
        return _outcome(row)
    prior = await connection.fetchrow(
        f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = $1", key
    )
    if prior is not None:  # written by a concurrent refund after this statement's snapshot
        return Outcome(entry_from_row(prior), applied=False)
    bought = await connection.fetchrow(
        "SELECT l.amount, o.balance FROM ledger l JOIN wallets w"
        " ON w.platform = l.platform AND w.user_id = l.user_id JOIN wallets o"
        " ON o.platform = coalesce(w.linked_platform, w.platform)"
        " AND o.user_id = coalesce(w.linked_user_id, w.user_id) WHERE l.idem_key = $1",
        purchase_key(source, charge_id),
    )
    if bought is None:
        raise UnknownPurchase(f"{source}:{charge_id}")
    raise PurchaseSpent(bought["balance"], bought["amount"])


async def _once(database: PgDatabase, write: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``write`` on a pooled connection; once more if a concurrent writer took its key.

    The second run sees the first writer's committed entry and returns it
    (``applied=False``), as a retry after the fact would. A deadlock
    PostgreSQL broke (a hold made and ended in the same instant as a link of
    its wallet, :mod:`storage.postgres.links`) rolled this statement back:
    it is run again too.
    """
    async with database.connection(session_state=False) as connection:
        try:
            return await write(connection)
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            return await write(connection)


class PgLedger(CreditingLedger):
    """:class:`bot.ports.Ledger` on a :class:`~storage.postgres.database.PgDatabase`."""

    def __init__(self, database: PgDatabase) -> None:
        self.db = database

    async def open_wallet(self, profile: UserProfile, *, welcome_credits: int, now: int) -> Wallet:
        """Record the user and open their wallet, granting welcome credits once."""
        return await _once(
            self.db,
            lambda c: open_wallet(c, profile, welcome_credits=welcome_credits, now=now),
        )

    async def wallet(self, user: UserRef) -> Wallet | None:
        """The user's wallet with the number of open holds."""
        row = await self.db.fetchrow(_WALLET, user.platform, user.id)
        if row is None:
            return None
        return Wallet(user, row["balance"], row["held"], row["open_holds"])

    async def find_user(self, platform: str, query: str) -> UserProfile | None:
        """A user by id first, then by username (any ASCII case, as SQLite's NOCASE)."""
        row = await self.db.fetchrow(
            """
            SELECT platform, user_id, display_name, username, locale FROM users
            WHERE platform = $1 AND (user_id = $2
                  OR ($3::text <> '' AND ascii_lower(username) = ascii_lower($3)))
            ORDER BY user_id = $2 DESC LIMIT 1
            """,
            platform,
            query,
            query.removeprefix("@"),
        )
        return None if row is None else profile_from_row(row)

    async def refund_purchase(
        self, source: str, charge_id: str, *, force: bool, actor: str, reason: str, now: int
    ) -> Outcome:
        """Take a purchase's credits back once (all of them, or with ``force`` what is left)."""
        return await _once(
            self.db,
            lambda c: refund_purchase(
                c, source, charge_id, force=force, actor=actor, reason=reason, now=now
            ),
        )

    async def entry(self, key: str) -> LedgerEntry | None:
        """The entry written under ``key``."""
        row = await self.db.fetchrow(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE idem_key = $1", key)
        return entry_from_row(row) if row else None

    async def _credit(
        self,
        user: UserRef,
        credits: int,
        *,
        key: str,
        kind: str,
        actor: str,
        reason: str,
        now: int,
        create_wallet: bool,
        welcome_credits: int,
    ) -> Outcome:
        async def write(connection: asyncpg.Connection) -> Outcome:
            return await change_balance(
                connection,
                user,
                credits,
                key=key,
                kind=kind,
                actor=actor,
                reason=reason,
                now=now,
            )

        if not create_wallet:
            return await _once(self.db, write)

        async def open_then_write(connection: asyncpg.Connection) -> Outcome:
            async with connection.transaction():
                if not await connection.fetchval("SELECT 1 FROM ledger WHERE idem_key = $1", key):
                    await open_wallet(
                        connection,
                        UserProfile(user),
                        welcome_credits=welcome_credits,
                        now=now,
                        refresh_profile=False,
                    )
                return await write(connection)

        return await _once(self.db, open_then_write)

    async def adjust(
        self, user: UserRef, credits: int, *, key: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Add or remove credits; the balance never goes below zero."""
        if credits == 0:
            raise ValueError("an adjustment changes the balance")
        return await _once(
            self.db,
            lambda c: change_balance(
                c, user, credits, key=key, kind="adjust", actor=actor, reason=reason, now=now
            ),
        )

    async def hold(
        self, user: UserRef, credits: int, *, hold_id: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Reserve credits for a job; the job id is the hold's idempotency key."""
        if credits <= 0:
            raise ValueError("a hold reserves a positive number of credits")
        return await _once(
            self.db,
            lambda c: hold_credits(
                c, user, credits, hold_id=hold_id, actor=actor, reason=reason, now=now
            ),
        )

    async def capture(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Spend a hold: the credits leave the wallet for good."""
        return await _once(
            self.db,
            lambda c: end_hold(c, hold_id, kind="capture", actor=actor, reason=reason, now=now),
        )

    async def release(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Give a hold back to the spendable balance."""
        return await _once(
            self.db,
            lambda c: end_hold(c, hold_id, kind="release", actor=actor, reason=reason, now=now),
        )

    async def get_hold(self, hold_id: str) -> Hold | None:
        """The hold and its state."""
        row = await self.db.fetchrow(
            "SELECT hold_id, platform, user_id, amount, state FROM holds WHERE hold_id = $1",
            hold_id,
        )
        return None if row is None else hold_from_row(row)

    async def history(self, user: UserRef, limit: int) -> list[LedgerEntry]:
        """The user's newest entries first."""
        rows = await self.db.fetch(
            f"{SHARING_WALLET} SELECT {_LEDGER_COLUMNS} FROM ledger l JOIN members m"
            " ON l.platform = m.platform AND l.user_id = m.user_id ORDER BY l.seq DESC LIMIT $3",
            user.platform,
            user.id,
            limit,
        )
        return [entry_from_row(row) for row in rows]

    async def issue_link_code(
        self, user: UserRef, code_hash: str, *, now: int, ttl_s: int, per_hour: int
    ) -> bool:
        """Store a link code's hash for ``user``, unless they asked for too many this hour."""
        return await links.in_transaction(
            self.db,
            lambda c: links.issue_code(c, user, code_hash, now=now, ttl_s=ttl_s, per_hour=per_hour),
        )

    async def redeem_link_code(
        self, user: UserRef, code_hash: str, *, now: int, failures_per_hour: int
    ) -> LinkResult:
        """Link ``user`` to the code issuer's wallet, or say why not (one transaction)."""
        return await links.in_transaction(
            self.db,
            lambda c: links.redeem(
                c, user, code_hash, now=now, failures_per_hour=failures_per_hour
            ),
        )

    async def unlink(
        self, user: UserRef, *, credits: int, actor: str, reason: str, now: int
    ) -> Unlinked:
        """Separate ``user``'s pair; the redeemer leaves with ``credits``."""
        return await links.in_transaction(
            self.db,
            lambda c: links.unlink(c, user, credits=credits, actor=actor, reason=reason, now=now),
        )

    async def linked_identities(self, user: UserRef) -> list[UserRef]:
        """The identities sharing ``user``'s wallet, its owner first."""
        rows = await self.db.fetch(
            f"{SHARING_WALLET} SELECT platform, user_id FROM members"
            " ORDER BY is_owner DESC, platform, user_id",
            user.platform,
            user.id,
        )
        return [UserRef(row["platform"], row["user_id"]) for row in rows]
