"""The ledger invariants (docs/ARCHITECTURE.md, "The ledger"), checked in SQL over the database.

``klingbot db check`` runs it; the tests run it after every scenario.
"""

from __future__ import annotations

from typing import Any

from storage.database import Database


async def audit(database: Database) -> list[str]:
    """Check the ledger invariants; return one line per violation (empty: all good).

    - every wallet's balance and held credits equal the sums of its entries;
    - every wallet's held credits equal its open holds, and every hold its hold entry;
    - every hold that ended has exactly one capture or release, every open hold none;
    - top-ups + adjustments = balances + open holds + captures.
    """
    problems: list[str] = []
    rows = await database.read(
        """
        SELECT w.platform, w.user_id, w.balance, w.held,
               coalesce(sum(l.amount), 0) AS entry_balance,
               coalesce(sum(l.held_delta), 0) AS entry_held
        FROM wallets w LEFT JOIN ledger l ON l.platform = w.platform AND l.user_id = w.user_id
        GROUP BY w.platform, w.user_id
        HAVING w.balance <> entry_balance OR w.held <> entry_held OR w.balance < 0
        """
    )
    problems += [
        f"wallet {r['platform']}:{r['user_id']} holds {r['balance']}/{r['held']}"
        f" but its entries sum to {r['entry_balance']}/{r['entry_held']}"
        for r in rows
    ]
    rows = await database.read(
        """
        SELECT w.platform, w.user_id, w.held,
               (SELECT coalesce(sum(h.amount), 0) FROM holds h WHERE h.platform = w.platform
                  AND h.user_id = w.user_id AND h.state = 'open') AS open_amount
        FROM wallets w
        WHERE w.held <> open_amount
        """
    )
    problems += [
        f"wallet {r['platform']}:{r['user_id']} holds {r['held']} but its open holds"
        f" add up to {r['open_amount']}"
        for r in rows
    ]
    rows = await database.read(
        """
        SELECT h.hold_id, h.amount, l.held_delta FROM holds h
        LEFT JOIN ledger l ON l.hold_id = h.hold_id AND l.kind = 'hold'
        WHERE l.held_delta IS NULL OR l.held_delta <> h.amount
        """
    )
    problems += [
        f"hold {r['hold_id']} is for {r['amount']} but its hold entry says {r['held_delta']}"
        for r in rows
    ]
    rows = await database.read(
        """
        SELECT h.hold_id, h.state,
               (SELECT count(*) FROM ledger l WHERE l.hold_id = h.hold_id
                  AND l.kind IN ('capture', 'release')) AS endings,
               (SELECT kind FROM ledger l WHERE l.hold_id = h.hold_id
                  AND l.kind IN ('capture', 'release')) AS ending
        FROM holds h
        """
    )
    for r in rows:
        expected = {"open": (0, None), "captured": (1, "capture"), "released": (1, "release")}
        if (r["endings"], r["ending"]) != expected[r["state"]]:
            problems.append(f"hold {r['hold_id']} is {r['state']} with {r['endings']} endings")
    totals: Any = await database.read_one(
        """
        SELECT
          (SELECT coalesce(sum(amount), 0) FROM ledger
             WHERE kind IN ('topup', 'adjust')) AS paid_in,
          (SELECT coalesce(sum(balance), 0) FROM wallets) AS balances,
          (SELECT coalesce(sum(amount), 0) FROM holds WHERE state = 'open') AS open_holds,
          (SELECT coalesce(sum(amount), 0) FROM holds WHERE state = 'captured') AS captured
        """
    )
    if totals["paid_in"] != totals["balances"] + totals["open_holds"] + totals["captured"]:
        problems.append(
            f"top-ups and adjustments ({totals['paid_in']}) differ from balances"
            f" ({totals['balances']}) + open holds ({totals['open_holds']})"
            f" + captures ({totals['captured']})"
        )
    return problems
