"""The wallet ledger on SQLite: every operation is one write function, one transaction.

Balances change only through ``UPDATE wallets SET balance = balance + ?``
guarded in SQL (``AND balance >= ?``), never by reading a number into Python
and writing it back. Each operation first looks for its idempotency key, so
a retried request returns the earlier entry instead of paying twice.
"""

from __future__ import annotations

import abc
import sqlite3
from typing import Any

from bot import reasons
from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet, PurchaseSpent, UnknownPurchase
from bot.ports import (
    Hold,
    Ledger,
    LedgerEntry,
    LinkResult,
    Outcome,
    Unlinked,
    UserProfile,
    Wallet,
    purchase_key,
    purchase_refund_key,
)
from storage import links
from storage.database import Database

_ENTRY_COLUMNS = (
    "seq, idem_key, platform, user_id, kind, amount, held_delta, balance_after, held_after,"
    " hold_id, actor, reason, created_at"
)


LEDGER_COLUMNS = ", ".join("l." + column.strip() for column in _ENTRY_COLUMNS.split(","))
"""The entry columns of table alias ``l``."""

SHARING_WALLET = """
WITH owner AS (
    SELECT coalesce(linked_platform, platform) AS platform,
           coalesce(linked_user_id, user_id) AS user_id
    FROM wallets WHERE platform = ? AND user_id = ?
), members AS (
    SELECT w.platform, w.user_id, w.linked_platform IS NULL AS is_owner FROM wallets w, owner o
    WHERE (w.platform = o.platform AND w.user_id = o.user_id)
       OR (w.linked_platform = o.platform AND w.linked_user_id = o.user_id)
)"""
"""The identities sharing one identity's wallet (``members``), owner included; two parameters."""


def entry_from_row(row: sqlite3.Row) -> LedgerEntry:
    """A ledger row (SQLite's or PostgreSQL's: the columns are the same) as a LedgerEntry."""
    return LedgerEntry(
        seq=row["seq"],
        key=row["idem_key"],
        user=UserRef(row["platform"], row["user_id"]),
        kind=row["kind"],
        amount=row["amount"],
        held_delta=row["held_delta"],
        balance_after=row["balance_after"],
        held_after=row["held_after"],
        hold_id=row["hold_id"],
        actor=row["actor"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


def _prior(connection: sqlite3.Connection, key: str) -> Outcome | None:
    row = connection.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE idem_key = ?", (key,)
    ).fetchone()
    return Outcome(entry_from_row(row), applied=False) if row else None


def _append(
    connection: sqlite3.Connection,
    *,
    key: str,
    user: UserRef,
    kind: str,
    amount: int,
    held_delta: int,
    wallet: sqlite3.Row,
    hold_id: str | None,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    row = connection.execute(
        f"""
        INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,
                            balance_after, held_after, hold_id, actor, reason, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        RETURNING {_ENTRY_COLUMNS}
        """,
        (
            key,
            user.platform,
            user.id,
            kind,
            amount,
            held_delta,
            wallet["balance"],
            wallet["held"],
            hold_id,
            actor,
            reason,
            now,
        ),
    ).fetchone()
    return Outcome(entry_from_row(row), applied=True)


def resolve(connection: sqlite3.Connection, user: UserRef) -> UserRef:
    """The identity whose wallet ``user`` spends from: itself, or the one it is linked to."""
    row = connection.execute(
        "SELECT coalesce(linked_platform, platform) AS platform,"
        " coalesce(linked_user_id, user_id) AS user_id"
        " FROM wallets WHERE platform = ? AND user_id = ?",
        (user.platform, user.id),
    ).fetchone()
    return UserRef(row["platform"], row["user_id"]) if row else user


def _balance(connection: sqlite3.Connection, user: UserRef) -> int:
    row = connection.execute(
        "SELECT balance FROM wallets WHERE platform = ? AND user_id = ?", (user.platform, user.id)
    ).fetchone()
    if row is None:
        raise NoWallet(str(user))
    return row["balance"]


def change_balance(
    connection: sqlite3.Connection,
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
    if prior := _prior(connection, key):
        return prior
    user = resolve(connection, user)
    wallet = connection.execute(
        """
        UPDATE wallets SET balance = balance + :credits
        WHERE platform = :platform AND user_id = :user_id AND balance + :credits >= 0
        RETURNING balance, held
        """,
        {"credits": credits, "platform": user.platform, "user_id": user.id},
    ).fetchone()
    if wallet is None:
        raise InsufficientCredits(_balance(connection, user), -credits)
    return _append(
        connection,
        key=key,
        user=user,
        kind=kind,
        amount=credits,
        held_delta=0,
        wallet=wallet,
        hold_id=None,
        actor=actor,
        reason=reason,
        now=now,
    )


def end_hold(
    connection: sqlite3.Connection, hold_id: str, *, kind: str, actor: str, reason: str, now: int
) -> Outcome:
    """Capture or release an open hold; an ended hold returns its ending entry unchanged.

    ``kind`` is ``capture`` or ``release``.
    """
    new_state = "captured" if kind == "capture" else "released"
    hold = connection.execute(
        """
        UPDATE holds SET state = ?, ended_at = ?
        WHERE hold_id = ? AND state = 'open'
        RETURNING platform, user_id, amount
        """,
        (new_state, now, hold_id),
    ).fetchone()
    if hold is None:
        ended = connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger"
            " WHERE hold_id = ? AND kind IN ('capture', 'release')",
            (hold_id,),
        ).fetchone()
        if ended is None:
            raise KeyError(hold_id)
        return Outcome(entry_from_row(ended), applied=False)
    user = UserRef(hold["platform"], hold["user_id"])
    amount = hold["amount"]
    back_to_balance = amount if kind == "release" else 0
    wallet = connection.execute(
        """
        UPDATE wallets SET held = held - :amount, balance = balance + :back
        WHERE platform = :platform AND user_id = :user_id
        RETURNING balance, held
        """,
        {"amount": amount, "back": back_to_balance, "platform": user.platform, "user_id": user.id},
    ).fetchone()
    return _append(
        connection,
        key=f"{kind}:{hold_id}",
        user=user,
        kind=kind,
        amount=back_to_balance,
        held_delta=-amount,
        wallet=wallet,
        hold_id=hold_id,
        actor=actor,
        reason=reason,
        now=now,
    )


def hold_credits(
    connection: sqlite3.Connection,
    user: UserRef,
    credits: int,
    *,
    hold_id: str,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Move ``credits`` from the balance to held under ``hold_id``, if the balance allows."""
    key = f"hold:{hold_id}"
    if prior := _prior(connection, key):
        return prior
    user = resolve(connection, user)
    wallet = connection.execute(
        """
        UPDATE wallets SET balance = balance - :credits, held = held + :credits
        WHERE platform = :platform AND user_id = :user_id AND balance >= :credits
        RETURNING balance, held
        """,
        {"credits": credits, "platform": user.platform, "user_id": user.id},
    ).fetchone()
    if wallet is None:
        raise InsufficientCredits(_balance(connection, user), credits)
    connection.execute(
        "INSERT INTO holds (hold_id, platform, user_id, amount, created_at) VALUES (?, ?, ?, ?, ?)",
        (hold_id, user.platform, user.id, credits, now),
    )
    return _append(
        connection,
        key=key,
        user=user,
        kind="hold",
        amount=-credits,
        held_delta=credits,
        wallet=wallet,
        hold_id=hold_id,
        actor=actor,
        reason=reason,
        now=now,
    )


def refund_purchase(
    connection: sqlite3.Connection,
    source: str,
    charge_id: str,
    *,
    force: bool,
    actor: str,
    reason: str,
    now: int,
) -> Outcome:
    """Take a purchase's credits back, once; ``force`` takes what is left when they are spent.

    The write transaction holds SQLite's write lock, so the balance read for
    ``force`` is the one the guarded UPDATE then changes; the guard
    (``balance >= take``) keeps it from ever going below zero regardless.
    """
    key = purchase_refund_key(source, charge_id)
    if prior := _prior(connection, key):
        return prior
    bought = connection.execute(
        "SELECT platform, user_id, amount FROM ledger WHERE idem_key = ?",
        (purchase_key(source, charge_id),),
    ).fetchone()
    if bought is None:
        raise UnknownPurchase(f"{source}:{charge_id}")
    user = resolve(connection, UserRef(bought["platform"], bought["user_id"]))
    credits = bought["amount"]
    take = min(credits, _balance(connection, user)) if force else credits
    wallet = connection.execute(
        """
        UPDATE wallets SET balance = balance - :take
        WHERE platform = :platform AND user_id = :user_id AND balance >= :take
        RETURNING balance, held
        """,
        {"take": take, "platform": user.platform, "user_id": user.id},
    ).fetchone()
    if wallet is None:
        raise PurchaseSpent(_balance(connection, user), credits)
    return _append(
        connection,
        key=key,
        user=user,
        kind="purchase_refund",
        amount=-take,
        held_delta=0,
        wallet=wallet,
        hold_id=None,
        actor=actor,
        reason=reason,
        now=now,
    )


def open_wallet(
    connection: sqlite3.Connection,
    profile: UserProfile,
    *,
    welcome_credits: int,
    now: int,
    refresh_profile: bool = True,
) -> bool:
    """Record the user and open their wallet if it is new; return whether it was.

    ``refresh_profile`` stores the profile's name, username and locale (the
    user just spoke); without it a known user's row is left alone and an
    unseen one is recorded with no name. A new wallet gets ``welcome_credits``.
    """
    user = profile.user
    if refresh_profile and profile.username:
        # Usernames move between accounts; only the newest holder keeps one.
        connection.execute(
            "UPDATE users SET username = NULL WHERE platform = ?"
            " AND username = ? COLLATE NOCASE AND user_id <> ?",
            (user.platform, profile.username, user.id),
        )
    on_conflict = (
        """ON CONFLICT (platform, user_id) DO UPDATE SET
            display_name = excluded.display_name,
            username = excluded.username,
            locale = excluded.locale"""
        if refresh_profile
        else "ON CONFLICT (platform, user_id) DO NOTHING"
    )
    connection.execute(
        f"""
        INSERT INTO users (platform, user_id, display_name, username, locale, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        {on_conflict}
        """,
        (user.platform, user.id, profile.display_name, profile.username, profile.locale, now),
    )
    created = connection.execute(
        "INSERT INTO wallets (platform, user_id, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (user.platform, user.id, now),
    ).rowcount
    if created and welcome_credits > 0:
        change_balance(
            connection,
            user,
            welcome_credits,
            key=f"welcome:{user}",
            kind="topup",
            actor="system",
            reason=reasons.reason("reason.welcome"),
            now=now,
        )
    return bool(created)


def profile_from_row(row: Any) -> UserProfile:
    """A ``users`` row (platform, user_id, display_name, username, locale) as a profile."""
    return UserProfile(
        UserRef(row["platform"], row["user_id"]),
        row["display_name"],
        row["username"],
        row["locale"],
    )


def hold_from_row(row: Any) -> Hold:
    """A ``holds`` row (hold_id, platform, user_id, amount, state) as a hold."""
    return Hold(
        row["hold_id"], UserRef(row["platform"], row["user_id"]), row["amount"], row["state"]
    )


class CreditingLedger(Ledger):
    """The argument checks and keys of a credit, shared by the SQLite and PostgreSQL ledgers.

    Each backend writes the credit itself in :meth:`_credit`.
    """

    async def top_up(
        self,
        user: UserRef,
        credits: int,
        *,
        key: str,
        actor: str,
        reason: str,
        now: int,
        create_wallet: bool = False,
        welcome_credits: int = 0,
    ) -> Outcome:
        """Add credits to a wallet; ``create_wallet`` opens it first, in the same transaction."""
        if credits <= 0:
            raise ValueError("a top-up adds a positive number of credits")
        return await self._credit(
            user,
            credits,
            key=key,
            kind="topup",
            actor=actor,
            reason=reason,
            now=now,
            create_wallet=create_wallet,
            welcome_credits=welcome_credits,
        )

    async def purchase(
        self,
        user: UserRef,
        credits: int,
        *,
        source: str,
        charge_id: str,
        actor: str,
        reason: str,
        now: int,
        create_wallet: bool = True,
        welcome_credits: int = 0,
    ) -> Outcome:
        """Credit a paid pack once per payment; the wallet is opened with it if need be."""
        if credits <= 0:
            raise ValueError("a purchase adds a positive number of credits")
        return await self._credit(
            user,
            credits,
            key=purchase_key(source, charge_id),
            kind="purchase",
            actor=actor,
            reason=reason,
            now=now,
            create_wallet=create_wallet,
            welcome_credits=welcome_credits,
        )

    @abc.abstractmethod
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
        """Add ``credits`` under ``key`` in one transaction, opening the wallet first if asked."""


class SqliteLedger(CreditingLedger):
    """:class:`bot.ports.Ledger` on a :class:`storage.database.Database`."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def open_wallet(self, profile: UserProfile, *, welcome_credits: int, now: int) -> Wallet:
        """Record the user and open their wallet, granting welcome credits once."""
        await self.db.write(
            lambda c: open_wallet(c, profile, welcome_credits=welcome_credits, now=now)
        )
        wallet = await self.wallet(profile.user)
        assert wallet is not None
        return wallet

    async def wallet(self, user: UserRef) -> Wallet | None:
        """The user's wallet with the number of open holds (a point read, on the loop's thread)."""
        row = await self.db.read_point(
            """
            SELECT w.balance, w.held,
                   (SELECT count(*) FROM holds h WHERE h.platform = w.platform
                      AND h.user_id = w.user_id AND h.state = 'open') AS open_holds
            FROM wallets me JOIN wallets w
              ON w.platform = coalesce(me.linked_platform, me.platform)
             AND w.user_id = coalesce(me.linked_user_id, me.user_id)
            WHERE me.platform = ? AND me.user_id = ?
            """,
            (user.platform, user.id),
        )
        if row is None:
            return None
        return Wallet(user, row["balance"], row["held"], row["open_holds"])

    async def find_user(self, platform: str, query: str) -> UserProfile | None:
        """A user by id first, then by username (any case)."""
        name = query.removeprefix("@")
        row = await self.db.read_one(
            """
            SELECT platform, user_id, display_name, username, locale FROM users
            WHERE platform = :platform AND (user_id = :query
                  OR (username = :name COLLATE NOCASE AND :name <> ''))
            ORDER BY user_id = :query DESC LIMIT 1
            """,
            {"platform": platform, "query": query, "name": name},
        )
        return None if row is None else profile_from_row(row)

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
        def write(connection: sqlite3.Connection) -> Outcome:
            if create_wallet and not _prior(connection, key):
                open_wallet(
                    connection,
                    UserProfile(user),
                    welcome_credits=welcome_credits,
                    now=now,
                    refresh_profile=False,
                )
            return change_balance(
                connection,
                user,
                credits,
                key=key,
                kind=kind,
                actor=actor,
                reason=reason,
                now=now,
            )

        return await self.db.write(write)

    async def refund_purchase(
        self, source: str, charge_id: str, *, force: bool, actor: str, reason: str, now: int
    ) -> Outcome:
        """Take a purchase's credits back once (all of them, or with ``force`` what is left)."""
        return await self.db.write(
            lambda c: refund_purchase(
                c, source, charge_id, force=force, actor=actor, reason=reason, now=now
            )
        )

    async def entry(self, key: str) -> LedgerEntry | None:
        """The entry written under ``key``."""
        row = await self.db.read_one(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE idem_key = ?", (key,)
        )
        return entry_from_row(row) if row else None

    async def adjust(
        self, user: UserRef, credits: int, *, key: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Add or remove credits; the balance never goes below zero."""
        if credits == 0:
            raise ValueError("an adjustment changes the balance")
        return await self.db.write(
            lambda c: change_balance(
                c, user, credits, key=key, kind="adjust", actor=actor, reason=reason, now=now
            )
        )

    async def hold(
        self, user: UserRef, credits: int, *, hold_id: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Reserve credits for a job; the job id is the hold's idempotency key."""
        if credits <= 0:
            raise ValueError("a hold reserves a positive number of credits")

        return await self.db.write(
            lambda c: hold_credits(
                c, user, credits, hold_id=hold_id, actor=actor, reason=reason, now=now
            )
        )

    async def capture(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Spend a hold: the credits leave the wallet for good."""
        return await self.db.write(
            lambda c: end_hold(c, hold_id, kind="capture", actor=actor, reason=reason, now=now)
        )

    async def release(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Give a hold back to the spendable balance."""
        return await self.db.write(
            lambda c: end_hold(c, hold_id, kind="release", actor=actor, reason=reason, now=now)
        )

    async def get_hold(self, hold_id: str) -> Hold | None:
        """The hold and its state."""
        row = await self.db.read_one(
            "SELECT hold_id, platform, user_id, amount, state FROM holds WHERE hold_id = ?",
            (hold_id,),
        )
        return None if row is None else hold_from_row(row)

    async def history(self, user: UserRef, limit: int) -> list[LedgerEntry]:
        """The user's newest entries first."""
        rows = await self.db.read(
            f"{SHARING_WALLET} SELECT {LEDGER_COLUMNS} FROM ledger l JOIN members m"
            " ON l.platform = m.platform AND l.user_id = m.user_id ORDER BY l.seq DESC LIMIT ?",
            (user.platform, user.id, limit),
        )
        return [entry_from_row(row) for row in rows]

    async def issue_link_code(
        self, user: UserRef, code_hash: str, *, now: int, ttl_s: int, per_hour: int
    ) -> bool:
        """Store a link code's hash for ``user``, unless they asked for too many this hour."""
        return await self.db.write(
            lambda c: links.issue_code(c, user, code_hash, now=now, ttl_s=ttl_s, per_hour=per_hour)
        )

    async def redeem_link_code(
        self, user: UserRef, code_hash: str, *, now: int, failures_per_hour: int
    ) -> LinkResult:
        """Link ``user`` to the code issuer's wallet, or say why not (one transaction)."""
        return await self.db.write(
            lambda c: links.redeem(c, user, code_hash, now=now, failures_per_hour=failures_per_hour)
        )

    async def unlink(
        self, user: UserRef, *, credits: int, actor: str, reason: str, now: int
    ) -> Unlinked:
        """Separate ``user``'s pair; the redeemer leaves with ``credits``."""
        return await self.db.write(
            lambda c: links.unlink(c, user, credits=credits, actor=actor, reason=reason, now=now)
        )

    async def linked_identities(self, user: UserRef) -> list[UserRef]:
        """The identities sharing ``user``'s wallet, its owner first."""
        rows = await self.db.read(
            f"{SHARING_WALLET} SELECT platform, user_id FROM members"
            " ORDER BY is_owner DESC, platform, user_id",
            (user.platform, user.id),
        )
        return [UserRef(row["platform"], row["user_id"]) for row in rows]
