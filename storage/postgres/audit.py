"""The ledger audit on PostgreSQL: the same checks and SQL as :mod:`storage.audit`.

The queries run in one read-only REPEATABLE READ transaction, so they all
see one snapshot even while other replicas keep writing: a hold captured
between two of the queries cannot look like a broken invariant.
"""

from __future__ import annotations

from storage.audit import check
from storage.postgres.database import PgDatabase


async def audit(database: PgDatabase) -> list[str]:
    """Check the ledger invariants; return one line per violation (empty: all good)."""
    async with database.transaction(isolation="repeatable_read", readonly=True) as connection:
        return await check(connection.fetch)
