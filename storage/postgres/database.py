"""The PostgreSQL database: an asyncpg connection pool, migrated when it opens.

``async with PgDatabase(url) as db`` opens the pool and applies pending
migrations (:mod:`storage.postgres.migrate`); several replicas may do that
at once. Unlike SQLite's one writer thread, every pool connection writes:
concurrent writers are kept apart by PostgreSQL's row locks and constraints,
so each storage operation is one transaction, usually one statement.

Helpers: :meth:`PgDatabase.transaction` (``async with db.transaction() as
conn``: one transaction on one pooled connection), :meth:`PgDatabase.fetch`,
:meth:`~PgDatabase.fetchrow`, :meth:`~PgDatabase.fetchval` and
:meth:`~PgDatabase.execute` (one statement, its own transaction). Those
give their connection back without the pool's session reset, so a statement
that leaves session state behind (``SET``, a session advisory lock,
``LISTEN``) belongs in :meth:`~PgDatabase.connection` instead.

Every failure to reach or use the server is one line an operator can act on
(:class:`~bot.errors.StorageUnavailable`): the server does not answer, it
refuses the login, the database does not exist, its schema is newer than this
code. The URL's password never appears in an error or a log line
(:func:`describe`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from bot.errors import StorageUnavailable
from storage.postgres.migrate import migrate, schema_problem

log = logging.getLogger(__name__)

_CONNECTION_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
"""Errors that mean the server is gone (or going), not that a statement was wrong."""

_SERVER_GONE = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
"""The driver's errors for a connection lost in the middle of a statement."""

_SESSION_CLEAN: ContextVar[bool] = ContextVar("klingbot_pg_session_clean", default=False)
"""True while a connection that kept no session state is given back (see ``_acquire``)."""


def describe(url: str) -> str:
    """The URL without its password (and query), for messages: ``postgresql://user@host:port/db``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the PostgreSQL database (its URL could not be read)"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    database = unquote(parts.path.lstrip("/")) or (unquote(parts.username or "") or "postgres")
    return f"{parts.scheme or 'postgresql'}://{user}{host}:{port}/{database}"


def _password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def explain(error: BaseException, url: str, *, migrating: bool = False) -> StorageUnavailable:
    """Turn a driver or network error into one line an operator can act on, without secrets.

    ``migrating``: the error came while applying migrations (say who may apply them).
    """
    where = f"PostgreSQL database {describe(url)}"
    if isinstance(error, asyncpg.InvalidPasswordError):
        text = f"{where}: the server refused the login (wrong user name or password)"
    elif isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
        text = f"{where}: the server refused the login ({_first_line(error)})"
    elif isinstance(error, asyncpg.InvalidCatalogNameError):
        text = (
            f"{where} does not exist: create it (createdb) or fix the database name"
            " in KLINGBOT_DATABASE_URL"
        )
    elif isinstance(error, asyncpg.CannotConnectNowError):
        text = f"{where}: the server is starting up or shutting down; try again shortly"
    elif isinstance(error, asyncpg.TooManyConnectionsError):
        text = f"{where}: the server has no connection slot left ({_first_line(error)})"
    elif isinstance(error, socket.gaierror):
        text = f"{where}: the host name does not resolve ({error.strerror or error})"
    elif isinstance(error, ConnectionRefusedError):
        text = f"{where}: the server does not answer (connection refused); is PostgreSQL running?"
    elif isinstance(error, TimeoutError):
        text = f"{where}: the server does not answer (timed out)"
    elif isinstance(error, ssl.SSLError):
        text = f"{where}: the TLS connection failed ({error.reason or error})"
    elif isinstance(error, OSError):
        text = f"{where}: the server cannot be reached ({error.strerror or error})"
    elif isinstance(error, _CONNECTION_LOST):
        text = f"{where}: the connection was lost ({_first_line(error)})"
    elif (
        isinstance(error, asyncpg.InsufficientPrivilegeError | asyncpg.InvalidSchemaNameError)
        and migrating
    ):
        text = (
            f"{where}: permission denied while creating klingbot's tables"
            f" ({_first_line(error)}); the user in KLINGBOT_DATABASE_URL must own the database"
            " (or be granted CREATE on its schema)"
        )
    elif isinstance(error, asyncpg.InsufficientPrivilegeError):
        text = f"{where}: permission denied ({_first_line(error)})"
    elif isinstance(error, asyncpg.ReadOnlySQLTransactionError):
        text = (
            f"{where} is read-only ({_first_line(error)}): is this a standby?"
            " Point KLINGBOT_DATABASE_URL at the primary"
        )
    elif isinstance(error, ValueError | asyncpg.ClientConfigurationError):
        text = f"{where}: KLINGBOT_DATABASE_URL cannot be used ({_first_line(error)})"
    else:
        text = f"{where}: {_first_line(error)}"
    if password := _password(url):
        text = text.replace(password, "***")
    return StorageUnavailable(text)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class PgDatabase:
    """Owns an asyncpg pool on one database; use ``async with PgDatabase(url)``."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        read_only: bool = False,
        migrate: bool = True,
        connect_timeout_s: float = 10.0,
        application_name: str = "klingbot",
    ) -> None:
        self.url = url
        self.where = f"PostgreSQL database {describe(url)}"
        """The database for messages, without the password."""
        self.min_size = min_size
        self.max_size = max_size
        self.read_only = read_only
        """True: nothing is migrated, and the server refuses every write on these connections."""
        self.migrate = migrate and not read_only
        """False: refuse a schema that is not current instead of migrating it."""
        self.connect_timeout_s = connect_timeout_s
        self.application_name = application_name
        self.migrated: list[str] = []
        """The migrations this open applied (empty: the schema was current)."""
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> PgDatabase:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool (for code that needs asyncpg itself, such as LISTEN)."""
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    async def open(self) -> None:
        """Open the pool, then migrate (or, read-only, check the schema is current).

        Raises StorageUnavailable with an operator-readable reason.
        """
        settings = {"application_name": self.application_name}
        if self.read_only:
            settings["default_transaction_read_only"] = "on"
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout_s,
                server_settings=settings,
                reset=self._reset,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, *_CONNECTION_LOST) as e:
            raise explain(e, self.url) from None
        try:
            async with self._acquire() as connection:
                if self.migrate:
                    self.migrated = await migrate(connection, where=self.where)
                elif problem := await schema_problem(connection, where=self.where):
                    raise StorageUnavailable(problem)
        except (
            asyncpg.InsufficientPrivilegeError,
            asyncpg.InvalidSchemaNameError,
            asyncpg.ReadOnlySQLTransactionError,
        ) as e:
            await self.close()
            raise explain(e, self.url, migrating=self.migrate) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every connection (waiting for those in use to be given back)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=self.connect_timeout_s)
            except (TimeoutError, *_CONNECTION_LOST):
                pool.terminate()

    @asynccontextmanager
    async def _acquire(self, *, session_state: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a server that cannot be reached becomes StorageUnavailable.

        While acquiring (the pool may connect anew) any connection error is
        explained; inside the block only the driver's own "connection lost"
        errors are, so the caller's other errors pass through as they are.

        ``session_state=False``: the block leaves nothing in the session (no
        SET, LISTEN, cursor or session advisory lock; transaction-scoped ones
        end with the transaction), so giving the connection back skips the
        pool's reset query, one round trip.
        """
        pool = self.pool
        try:
            connection = await pool.acquire()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, *_CONNECTION_LOST) as e:
            raise explain(e, self.url) from None
        try:
            yield connection
        except _SERVER_GONE as error:
            raise explain(error, self.url) from None
        finally:
            token = _SESSION_CLEAN.set(not session_state)
            try:
                await pool.release(connection)
            finally:
                _SESSION_CLEAN.reset(token)

    async def _reset(self, connection: asyncpg.Connection) -> None:
        """The pool's reset of a connection given back (after it rolled back any transaction)."""
        if _SESSION_CLEAN.get():
            return
        if query := connection.get_reset_query():
            await connection.execute(query)

    @asynccontextmanager
    async def connection(self, *, session_state: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, outside any transaction (each statement commits alone).

        Pass ``session_state=False`` when the block changes nothing in the
        session beyond its transactions, to save the reset when it is given back.
        """
        async with self._acquire(session_state=session_state) as connection:
            yield connection

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str = "read_committed", readonly: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """One transaction on one pooled connection: committed if the block ends normally.

        Only for transaction-scoped work (``SET LOCAL``, ``pg_advisory_xact_lock``):
        the connection goes back to the pool without a session reset.
        """
        async with (
            self._acquire(session_state=False) as connection,
            connection.transaction(isolation=isolation, readonly=readonly),
        ):
            yield connection

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Every row of one statement."""
        async with self._acquire(session_state=False) as connection:
            return await connection.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of one statement, if any."""
        async with self._acquire(session_state=False) as connection:
            return await connection.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row of one statement (None: no row)."""
        async with self._acquire(session_state=False) as connection:
            return await connection.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; its status (such as ``UPDATE 1``)."""
        async with self._acquire(session_state=False) as connection:
            return await connection.execute(sql, *args)
