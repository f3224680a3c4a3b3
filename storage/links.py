"""Linked wallets on SQLite: link codes, linking two identities, and the split that unlinks them.

Each function runs inside one write transaction (:meth:`storage.database.Database.write`),
which holds SQLite's write lock: nothing else changes a wallet between its statements.
The moves are guarded UPDATEs (``balance = balance - ?`` only ``WHERE balance >= ?``)
and their ledger entries; see :meth:`bot.ports.Ledger.redeem_link_code` for the rules.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NotLinked, NoWallet
from bot.ports import LinkResult, Unlinked, link_id
from bot.reasons import reason as _reason

HOUR = 3600

_INSERT_ENTRY = (
    "INSERT INTO ledger (idem_key, platform, user_id, kind, amount, held_delta,"
    " balance_after, held_after, hold_id, actor, reason, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)"
)


def move_entries(
    action: str,
    ident: str,
    giver: UserRef,
    taker: UserRef,
    credits: int,
    held: int,
    given: Mapping[str, Any],
    taken: Mapping[str, Any],
    *,
    actor: str,
    now: int,
    reason: str = "",
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The ``link_out`` and ``link_in`` ledger rows (values for ``_INSERT_ENTRY``) of a move.

    ``credits`` and ``held`` go from ``giver`` to ``taker`` under the keys
    ``<action>:<ident>:out`` and ``:in``; ``given``/``taken`` are the two wallets'
    balance and held after it. Each side's reason is ``reason`` or
    ``reason.<action>`` naming the other side.
    """
    out = (
        f"{action}:{ident}:out",
        giver.platform,
        giver.id,
        "link_out",
        -credits,
        -held,
        given["balance"],
        given["held"],
        actor,
        reason or _reason(f"reason.{action}", other=str(taker)),
        now,
    )
    into = (
        f"{action}:{ident}:in",
        taker.platform,
        taker.id,
        "link_in",
        credits,
        held,
        taken["balance"],
        taken["held"],
        actor,
        reason or _reason(f"reason.{action}", other=str(giver)),
        now,
    )
    return out, into


def _wallet(connection: sqlite3.Connection, user: UserRef) -> sqlite3.Row | None:
    return connection.execute(
        "SELECT platform, user_id, balance, held, linked_platform, linked_user_id, link_id,"
        " EXISTS (SELECT 1 FROM wallets m WHERE m.linked_platform = w.platform"
        "         AND m.linked_user_id = w.user_id) AS has_members"
        " FROM wallets w WHERE platform = ? AND user_id = ?",
        (user.platform, user.id),
    ).fetchone()


def issue_code(
    connection: sqlite3.Connection,
    user: UserRef,
    code_hash: str,
    *,
    now: int,
    ttl_s: int,
    per_hour: int,
) -> bool:
    """Store a code for ``user`` unless they asked for ``per_hour`` codes in the last hour."""
    if _wallet(connection, user) is None:
        raise NoWallet(str(user))
    # Codes nobody used that expired over an hour ago count for nothing any more.
    connection.execute(
        "DELETE FROM link_codes WHERE platform = ? AND user_id = ? AND used_at IS NULL"
        " AND expires_at <= ?",
        (user.platform, user.id, now - HOUR),
    )
    inserted = connection.execute(
        """
        INSERT INTO link_codes (code_hash, platform, user_id, created_at, expires_at)
        SELECT ?, ?, ?, ?, ?
        WHERE (SELECT count(*) FROM link_codes WHERE platform = ? AND user_id = ?
               AND created_at > ?) < ?
        """,
        (
            code_hash,
            user.platform,
            user.id,
            now,
            now + ttl_s,
            user.platform,
            user.id,
            now - HOUR,
            per_hour,
        ),
    ).rowcount
    return bool(inserted)


def _fail(connection: sqlite3.Connection, user: UserRef, status: str, now: int) -> LinkResult:
    connection.execute(
        "INSERT INTO link_failures (platform, user_id, at) VALUES (?, ?, ?)",
        (user.platform, user.id, now),
    )
    return LinkResult(status)  # type: ignore[arg-type]


def redeem(
    connection: sqlite3.Connection,
    user: UserRef,
    code_hash: str,
    *,
    now: int,
    failures_per_hour: int,
) -> LinkResult:
    """Link ``user`` to the wallet of the code's issuer (all or nothing)."""
    connection.execute(
        "DELETE FROM link_failures WHERE platform = ? AND user_id = ? AND at <= ?",
        (user.platform, user.id, now - HOUR),
    )
    failures = connection.execute(
        "SELECT count(*) FROM link_failures WHERE platform = ? AND user_id = ? AND at > ?",
        (user.platform, user.id, now - HOUR),
    ).fetchone()[0]
    if failures >= failures_per_hour:
        return LinkResult("too_many")
    code = connection.execute(
        "SELECT platform, user_id, expires_at, used_at FROM link_codes WHERE code_hash = ?",
        (code_hash,),
    ).fetchone()
    if code is None:
        return _fail(connection, user, "unknown", now)
    issuer = UserRef(code["platform"], code["user_id"])
    if code["used_at"] is not None:
        return _fail(connection, user, "used", now)
    if code["expires_at"] <= now:
        return _fail(connection, user, "expired", now)
    if issuer == user:
        return LinkResult("own", issuer)
    if issuer.platform == user.platform:
        return LinkResult("same_platform", issuer)
    mine, theirs = _wallet(connection, user), _wallet(connection, issuer)
    if mine is None:
        raise NoWallet(str(user))
    if theirs is None:
        raise NoWallet(str(issuer))
    for wallet in (mine, theirs):
        if wallet["linked_platform"] is not None or wallet["has_members"]:
            return LinkResult("already_linked", issuer)
    connection.execute(
        "UPDATE link_codes SET used_at = ?, used_by = ? WHERE code_hash = ? AND used_at IS NULL",
        (now, str(user), code_hash),
    )
    moved, moved_held = mine["balance"], mine["held"]
    ident = link_id(code_hash)
    connection.execute(
        "UPDATE holds SET platform = ?, user_id = ? WHERE platform = ? AND user_id = ?"
        " AND state = 'open'",
        (issuer.platform, issuer.id, user.platform, user.id),
    )
    left = connection.execute(
        """
        UPDATE wallets SET balance = balance - :moved, held = held - :held,
               linked_platform = :lp, linked_user_id = :lu, link_id = :ident
        WHERE platform = :p AND user_id = :u AND balance = :moved AND held = :held
          AND linked_platform IS NULL
        RETURNING balance, held
        """,
        {
            "moved": moved,
            "held": moved_held,
            "lp": issuer.platform,
            "lu": issuer.id,
            "ident": ident,
            "p": user.platform,
            "u": user.id,
        },
    ).fetchone()
    assert left is not None, "the write lock keeps the wallet as it was read"
    joined = connection.execute(
        "UPDATE wallets SET balance = balance + ?, held = held + ? WHERE platform = ?"
        " AND user_id = ? RETURNING balance, held",
        (moved, moved_held, issuer.platform, issuer.id),
    ).fetchone()
    for entry in move_entries(
        "link", ident, user, issuer, moved, moved_held, left, joined, actor=str(user), now=now
    ):
        connection.execute(_INSERT_ENTRY, entry)
    return LinkResult("linked", issuer, moved, moved_held)


def unlink(
    connection: sqlite3.Connection,
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
    wallet = _wallet(connection, user)
    if wallet is None:
        raise NoWallet(str(user))
    if wallet["linked_platform"] is not None:
        left, kept = user, UserRef(wallet["linked_platform"], wallet["linked_user_id"])
        ident = wallet["link_id"]
    elif wallet["has_members"]:
        kept = user
        member = connection.execute(
            "SELECT platform, user_id, link_id FROM wallets"
            " WHERE linked_platform = ? AND linked_user_id = ?",
            (user.platform, user.id),
        ).fetchone()
        left, ident = UserRef(member["platform"], member["user_id"]), member["link_id"]
    else:
        raise NotLinked(str(user))
    shared = connection.execute(
        "UPDATE wallets SET balance = balance - ? WHERE platform = ? AND user_id = ?"
        " AND balance >= ? RETURNING balance, held",
        (credits, kept.platform, kept.id, credits),
    ).fetchone()
    if shared is None:
        balance = connection.execute(
            "SELECT balance FROM wallets WHERE platform = ? AND user_id = ?",
            (kept.platform, kept.id),
        ).fetchone()["balance"]
        raise InsufficientCredits(balance, credits)
    alone = connection.execute(
        "UPDATE wallets SET balance = balance + ?, linked_platform = NULL,"
        " linked_user_id = NULL, link_id = NULL WHERE platform = ? AND user_id = ?"
        " RETURNING balance, held",
        (credits, left.platform, left.id),
    ).fetchone()
    for entry in move_entries(
        "unlink", ident, kept, left, credits, 0, shared, alone, actor=actor, now=now, reason=reason
    ):
        connection.execute(_INSERT_ENTRY, entry)
    return Unlinked(kept, left, credits, shared["balance"])
