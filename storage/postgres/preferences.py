"""``PgPreferences``: members' ``/settings`` (table ``member_settings``) on PostgreSQL."""

from __future__ import annotations

from bot.commands import UserRef
from bot.preferences import Field, Preferences, PreferenceStore, check
from storage.postgres.database import PgDatabase
from storage.preferences import COLUMNS, preferences_from_row

_BY_OWNER = (
    "platform = coalesce((SELECT linked_platform FROM wallets"
    " WHERE platform = $1 AND user_id = $2), $1)"
    " AND user_id = coalesce((SELECT linked_user_id FROM wallets"
    " WHERE platform = $1 AND user_id = $2), $2)"
)
"""The row of the wallet ``($1, $2)`` uses (its partner's when linked), by primary key."""

_OWNER = (
    "SELECT coalesce(w.linked_platform, $1) AS platform, coalesce(w.linked_user_id, $2) AS user_id"
    " FROM (SELECT 1) AS one LEFT JOIN wallets w ON w.platform = $1 AND w.user_id = $2"
)
"""The identity whose wallet ``($1, $2)`` uses: its partner when linked, else itself."""


class PgPreferences(PreferenceStore):
    """One row per wallet owner; each call is one statement (a link is resolved inside it)."""

    def __init__(self, database: PgDatabase) -> None:
        self.database = database

    async def get(self, user: UserRef) -> Preferences:
        """The settings of ``user``'s wallet (its partner's, when linked)."""
        # Read for every command (the member's language): two primary-key lookups.
        row = await self.database.fetchrow(
            f"SELECT {COLUMNS} FROM member_settings WHERE {_BY_OWNER}",
            user.platform,
            user.id,
        )
        return preferences_from_row(row)

    async def change(
        self, user: UserRef, field: Field, value: str | int | None, *, now: int
    ) -> Preferences:
        """Set one setting of ``user``'s wallet; ValueError for one that is no setting."""
        column = check(field, value)
        cast = "text" if column in ("tier", "locale") else "integer"
        row = await self.database.fetchrow(
            f"INSERT INTO member_settings (platform, user_id, {column}, updated_at)"
            f" SELECT o.platform, o.user_id, $3::{cast}, $4 FROM ({_OWNER}) o"
            f" ON CONFLICT (platform, user_id) DO UPDATE SET {column} = excluded.{column},"
            " updated_at = excluded.updated_at"
            f" RETURNING {COLUMNS}",
            user.platform,
            user.id,
            value,
            now,
        )
        return preferences_from_row(row)
