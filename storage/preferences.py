"""``SqlitePreferences``: members' ``/settings`` (table ``member_settings``) on SQLite."""

from __future__ import annotations

import sqlite3
from typing import Any

from bot.commands import UserRef
from bot.preferences import NONE, Field, Preferences, PreferenceStore, check
from storage.database import Database
from storage.ledger import resolve

COLUMNS = "tier, duration_s, locale, confirm_above"
"""The ``member_settings`` columns a :class:`Preferences` is read from (both backends)."""

_BY_OWNER = (
    "platform = coalesce((SELECT linked_platform FROM wallets"
    " WHERE platform = ?1 AND user_id = ?2), ?1)"
    " AND user_id = coalesce((SELECT linked_user_id FROM wallets"
    " WHERE platform = ?1 AND user_id = ?2), ?2)"
)
"""The row of the wallet ``(?1, ?2)`` uses (its partner's when linked), by primary key."""


def preferences_from_row(row: Any) -> Preferences:
    """A ``member_settings`` row (:data:`COLUMNS`) as preferences; none set without a row."""
    if row is None:
        return NONE
    return Preferences(row["tier"], row["duration_s"], row["locale"], row["confirm_above"])


class SqlitePreferences(PreferenceStore):
    """One row per wallet owner; a linked identity is resolved to its partner in SQL."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, user: UserRef) -> Preferences:
        """The settings of ``user``'s wallet (its partner's, when linked)."""
        # Read for every command (the member's language): primary-key lookups only.
        row = await self.database.read_point(
            f"SELECT {COLUMNS} FROM member_settings WHERE {_BY_OWNER}",
            (user.platform, user.id),
        )
        return preferences_from_row(row)

    async def change(
        self, user: UserRef, field: Field, value: str | int | None, *, now: int
    ) -> Preferences:
        """Set one setting of ``user``'s wallet; ValueError for one that is no setting."""
        column = check(field, value)

        def write(connection: sqlite3.Connection) -> Preferences:
            owner = resolve(connection, user)
            row = connection.execute(
                f"INSERT INTO member_settings (platform, user_id, {column}, updated_at)"
                " VALUES (?, ?, ?, ?)"
                f" ON CONFLICT (platform, user_id) DO UPDATE SET {column} = excluded.{column},"
                " updated_at = excluded.updated_at"
                f" RETURNING {COLUMNS}",
                (owner.platform, owner.id, value, now),
            ).fetchone()
            return preferences_from_row(row)

        return await self.database.write(write)
