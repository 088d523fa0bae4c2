"""The journal on PostgreSQL (psycopg 3).

The writer thread holds one connection of its own (autocommit, with explicit
``BEGIN``/``COMMIT`` and savepoints, like SQLite) and reconnects by itself
after the database went away: its next transaction, or the store probe that
runs while commits fail, opens a new one. Reads go through an async
connection pool. Statements arrive with ``?`` placeholders and leave with
psycopg's ``%s``.

Every write transaction takes the advisory lock
:data:`~interlock.journal.backend.WRITE_LOCK` first (the writer does), so
write transactions of all replicas commit one at a time, and the event
``seq`` given inside them (``MAX(seq) + 1``) is gapless and in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from interlock.errors import Unavailable
from interlock.journal.backend import EVENT_COLUMNS

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
READ_POOL_SIZE = 8
_PLACEHOLDER = re.compile(r"\?")


def to_psycopg(sql: str) -> str:
    """``?`` placeholders as ``%s`` (the journal's SQL holds no other ``?`` or ``%``)."""
    return _PLACEHOLDER.sub("%s", sql)


def redacted(url: str) -> str:
    """The URL without its password, for logs and health."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


class _PgWrite:
    dialect = "postgresql"
    integrity_errors: tuple[type[BaseException], ...] = (psycopg.IntegrityError,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None
        self._connect()

    def _connect(self) -> None:
        self.conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
        )

    def _live(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                log.warning("journal: reconnecting to %s", redacted(self.url))
            self._connect()
        assert self.conn is not None
        return self.conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        conn = self.conn
        if conn is None or conn.closed:
            raise psycopg.OperationalError("the connection is closed")
        return conn.execute(to_psycopg(sql), tuple(params))

    def begin(self) -> None:
        self._live().execute("BEGIN")

    def insert_event(self, values: Sequence[Any]) -> int:
        marks = ", ".join(["%s"] * len(EVENT_COLUMNS))
        cur = self.execute(
            f"INSERT INTO events (seq, {', '.join(EVENT_COLUMNS)})"
            f" VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM events), {marks}) RETURNING seq".replace(
                "%s", "?"
            ),
            values,
        )
        row = cur.fetchone()
        return int(row[0])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.description = redacted(url)
        self._pool: AsyncConnectionPool | None = None

    def write_connection(self) -> _PgWrite:
        try:
            return _PgWrite(self.url)
        except psycopg.Error as exc:
            raise Unavailable(f"cannot reach PostgreSQL at {self.description}: {exc}") from None

    async def open(self) -> None:
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=READ_POOL_SIZE,
            kwargs={"autocommit": True, "row_factory": dict_row},
            timeout=CONNECT_TIMEOUT_SECONDS,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as exc:
            await pool.close()
            raise Unavailable(f"cannot reach PostgreSQL at {self.description}: {exc}") from None
        self._pool = pool

    async def fetch_point(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read of a few rows by key or index: the same as :meth:`fetch` here."""
        return await self.fetch(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        assert self._pool is not None, "journal not started"
        try:
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(to_psycopg(sql), tuple(params))
                return list(await cur.fetchall())
        except psycopg.OperationalError as exc:
            raise Unavailable(f"the store cannot be read: {exc}") from None

    def fetch_sync(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(
            self.url, row_factory=dict_row, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
        ) as conn:
            return list(conn.execute(to_psycopg(sql), tuple(params)).fetchall())

    async def listen(self, channel: str, wake: Callable[[], None], *, retry: float = 1.0) -> None:
        """Call ``wake`` on every NOTIFY on ``channel``, until cancelled.

        A dedicated async connection (autocommit) LISTENs; when it breaks it
        is opened again after ``retry`` seconds, and ``wake`` is called on each
        (re)connection, since notifications sent meanwhile are lost (the
        caller reads the table, which is the truth).
        """
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
                )
                async with conn:
                    await conn.execute(f"LISTEN {channel}")
                    wake()
                    async for _notify in conn.notifies():
                        wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "journal: listening on %s failed (%s); again in %gs", channel, exc, retry
                )
            await asyncio.sleep(retry)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


__all__ = ["PostgresBackend", "redacted", "to_psycopg"]
