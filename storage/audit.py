"""The ledger invariants (docs/ARCHITECTURE.md, "The ledger"), checked in SQL over the database.

``klingbot db check`` runs it; the tests run it after every scenario. The
queries are plain SQL that SQLite and PostgreSQL both read the same way
(:func:`check`); :mod:`storage.postgres.audit` runs them on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from storage.database import Database

Read = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]
"""Run one SELECT and return its rows (by column name)."""

_WALLET_SUMS = """
SELECT * FROM (
    SELECT w.platform, w.user_id, w.balance, w.held,
           CAST(coalesce(sum(l.amount), 0) AS BIGINT) AS entry_balance,
           CAST(coalesce(sum(l.held_delta), 0) AS BIGINT) AS entry_held
    FROM wallets w LEFT JOIN ledger l ON l.platform = w.platform AND l.user_id = w.user_id
    GROUP BY w.platform, w.user_id, w.balance, w.held
) sums
WHERE balance <> entry_balance OR held <> entry_held OR balance < 0
"""

_WALLET_HOLDS = """
SELECT * FROM (
    SELECT w.platform, w.user_id, w.held,
           (SELECT CAST(coalesce(sum(h.amount), 0) AS BIGINT) FROM holds h
              WHERE h.platform = w.platform AND h.user_id = w.user_id AND h.state = 'open')
             AS open_amount
    FROM wallets w
) wallets_and_holds
WHERE held <> open_amount
"""

_HOLD_ENTRIES = """
SELECT h.hold_id, h.amount, l.held_delta FROM holds h
LEFT JOIN ledger l ON l.hold_id = h.hold_id AND l.kind = 'hold'
WHERE l.held_delta IS NULL OR l.held_delta <> h.amount
"""

_HOLD_ENDINGS = """
SELECT h.hold_id, h.state,
       (SELECT count(*) FROM ledger l WHERE l.hold_id = h.hold_id
          AND l.kind IN ('capture', 'release')) AS endings,
       (SELECT min(l.kind) FROM ledger l WHERE l.hold_id = h.hold_id
          AND l.kind IN ('capture', 'release')) AS ending
FROM holds h
"""

_TOTALS = """
SELECT
  (SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM ledger
     WHERE kind IN ('topup', 'adjust', 'purchase', 'purchase_refund')) AS paid_in,
  (SELECT CAST(coalesce(sum(balance), 0) AS BIGINT) FROM wallets) AS balances,
  (SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM holds WHERE state = 'open') AS open_holds,
  (SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM holds WHERE state = 'captured')
    AS captured
"""

_LINK_MOVES = """
SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) AS amount,
       CAST(coalesce(sum(held_delta), 0) AS BIGINT) AS held
FROM ledger WHERE kind IN ('link_in', 'link_out')
"""

_LINKED_WALLETS = """
SELECT w.platform, w.user_id, w.balance, w.held, o.platform AS owner,
       o.linked_platform AS owner_linked
FROM wallets w LEFT JOIN wallets o
  ON o.platform = w.linked_platform AND o.user_id = w.linked_user_id
WHERE w.linked_platform IS NOT NULL
  AND (w.balance <> 0 OR w.held <> 0 OR o.platform IS NULL OR o.linked_platform IS NOT NULL)
"""


async def audit(database: Database) -> list[str]:
    """Check the ledger invariants on SQLite; one line per violation (empty: all good)."""
    return await check(database.read)


async def check(read: Read) -> list[str]:
    """Check the ledger invariants with ``read``; return one line per violation.

    - every wallet's balance and held credits equal the sums of its entries;
    - every wallet's held credits equal its open holds, and every hold its hold entry;
    - every hold that ended has exactly one capture or release, every open hold none;
    - link moves (``link_in`` + ``link_out``) add up to nothing; a linked identity's own
      wallet is empty and points at a wallet that is not linked itself;
    - top-ups + adjustments (purchases and their refunds included) = balances + open holds
      + captures.
    """
    problems = [
        f"wallet {r['platform']}:{r['user_id']} holds {r['balance']}/{r['held']}"
        f" but its entries sum to {r['entry_balance']}/{r['entry_held']}"
        for r in await read(_WALLET_SUMS)
    ]
    problems += [
        f"wallet {r['platform']}:{r['user_id']} holds {r['held']} but its open holds"
        f" add up to {r['open_amount']}"
        for r in await read(_WALLET_HOLDS)
    ]
    problems += [
        f"hold {r['hold_id']} is for {r['amount']} but its hold entry says {r['held_delta']}"
        for r in await read(_HOLD_ENTRIES)
    ]
    expected = {"open": (0, None), "captured": (1, "capture"), "released": (1, "release")}
    for r in await read(_HOLD_ENDINGS):
        if (r["endings"], r["ending"]) != expected[r["state"]]:
            problems.append(f"hold {r['hold_id']} is {r['state']} with {r['endings']} endings")
    [moves] = await read(_LINK_MOVES)
    if moves["amount"] != 0 or moves["held"] != 0:
        problems.append(f"links moved {moves['amount']}/{moves['held']} in total instead of 0/0")
    problems += [
        f"linked wallet {r['platform']}:{r['user_id']} holds {r['balance']}/{r['held']}"
        + (" and points at no wallet" if r["owner"] is None else "")
        + (" and its wallet is linked itself" if r["owner_linked"] is not None else "")
        for r in await read(_LINKED_WALLETS)
    ]
    [totals] = await read(_TOTALS)
    if totals["paid_in"] != totals["balances"] + totals["open_holds"] + totals["captured"]:
        problems.append(
            f"top-ups and adjustments ({totals['paid_in']}) differ from balances"
            f" ({totals['balances']}) + open holds ({totals['open_holds']})"
            f" + captures ({totals['captured']})"
        )
    return problems
