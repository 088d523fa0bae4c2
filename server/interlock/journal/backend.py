"""The journal's backends: SQLite (the embedded default) and PostgreSQL.

A backend gives the journal two things: a *write connection* for its writer
thread (:class:`WriteConnection`: statements in the backend's dialect,
transactions, the event insert) and *reads* from the event loop
(:meth:`Backend.fetch`). Repositories and facts name tables and columns and
write portable SQL with ``?`` placeholders (``INSERT ... ON CONFLICT ... DO
UPDATE``, ``RETURNING``); a backend turns them into its own.

SQLite: one file in WAL mode; ``synchronous=FULL`` (fsync per commit) unless
fsync is off; a read connection behind a lock, used from a worker thread.

PostgreSQL (psycopg 3): the writer holds one connection of its own; reads use
an async connection pool. Every write transaction first takes a
transaction-scoped advisory lock, so transactions that append events commit
one at a time across replicas: the event ``seq`` (MAX + 1 under the lock) is
gapless and in commit order, which watchers resuming from a seq rely on.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from interlock.journal.records import Delete, Guard, Insert, Row, Upsert

EVENT_COLUMNS = (
    "time",
    "kind",
    "plan_id",
    "step_id",
    "agent_id",
    "decision_id",
    "tool",
    "message",
    "payload",
    "replica",
)
log = logging.getLogger(__name__)

LISTEN_POLL_SECONDS = 0.01
"""A shared SQLite file: how often each process looks whether another committed."""

WRITE_LOCK = 0x1A7E_4C0C
"""PostgreSQL advisory lock key taken by every write transaction."""


class WriteConnection(Protocol):
    """What the writer thread needs of a database connection."""

    dialect: str
    integrity_errors: tuple[type[BaseException], ...]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def begin(self) -> None: ...

    def insert_event(self, values: Sequence[Any]) -> int: ...

    def close(self) -> None: ...


def row_sql(row: Row) -> tuple[str, tuple[Any, ...]]:
    """Portable SQL (``?`` placeholders) for a row or a guard.

    A guard's statement is an UPDATE (its row count must be 1) or a
    ``SELECT COUNT(*)`` (its count must be at most ``at_most``); the writer
    checks which (:func:`guard_holds`).
    """
    if isinstance(row, Delete):
        where = " AND ".join(f"{c} = ?" for c in row.key)
        return f"DELETE FROM {row.table} WHERE {where}", tuple(row.key.values())
    if isinstance(row, Guard):
        params: list[Any] = []
        conditions = []
        for c, v in row.where.items():
            conditions.append(f"{c} = ?")
            params.append(v)
        if row.newer_than is not None:
            conditions.append(f"{row.newer_than[0]} > ?")
            params.append(row.newer_than[1])
        where = " AND ".join(conditions) or "1 = 1"
        if row.at_most is not None:
            return f"SELECT COUNT(*) FROM {row.table} WHERE {where}", tuple(params)
        sets = ", ".join(f"{c} = ?" for c in row.values)
        return (
            f"UPDATE {row.table} SET {sets} WHERE {where}",
            (*row.values.values(), *params),
        )
    columns = list(row.values)
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {row.table} ({names}) VALUES ({marks})"
    if isinstance(row, Upsert):
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in row.key)
        keys = ", ".join(row.key)
        sql += f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    else:
        assert isinstance(row, Insert)
    return sql, tuple(row.values[c] for c in columns)


def guard_holds(guard: Guard, cursor: Any) -> bool:
    """Whether a guard's statement (just executed on ``cursor``) found it holding."""
    if guard.at_most is not None:
        row = cursor.fetchone()
        return int(row[0]) <= guard.at_most
    return int(cursor.rowcount) == 1


class Backend(Protocol):
    dialect: str
    description: str
    """Where the data lives, for logs and health (no password)."""

    def write_connection(self) -> WriteConnection: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def fetch_point(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read of a few rows by key or index (a decision's hot path)."""
        ...

    def fetch_sync(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


# SQLite -------------------------------------------------------------------------


class _SqliteWrite:
    dialect = "sqlite"
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(self, conn: sqlite3.Connection, lock_path: Path | None = None) -> None:
        self.conn = conn
        self._lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600) if lock_path else -1
        self._locked = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, tuple(params))
        finally:
            if sql in ("COMMIT", "ROLLBACK") and not self.conn.in_transaction:
                self._unlock()

    def begin(self) -> None:
        # Shared: writers of all processes queue on a file lock first. The
        # kernel hands it to the next waiter at once, where SQLite's own busy
        # handler sleeps and retries (up to 100 ms a turn: a p99 of a second).
        if self._lock >= 0 and not self._locked:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            self._locked = True
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        """Let the next process's writer in (the file lock, when this one holds it)."""
        if self._locked:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._locked = False

    def insert_event(self, values: Sequence[Any]) -> int:
        cur = self.conn.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES"
            f" ({', '.join('?' * len(EVENT_COLUMNS))})",
            tuple(values),
        )
        return int(cur.lastrowid or 0)

    def close(self) -> None:
        self.conn.close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the lock too
            self._lock = -1


class SqliteBackend:
    """The journal on one SQLite file (WAL). ``shared``: other processes
    (workers) use the same file; every write transaction is ``BEGIN
    IMMEDIATE``, so they commit one at a time across processes as replicas on
    PostgreSQL do under the advisory lock, and :meth:`listen` wakes on their
    commits by polling the file's data version."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, fsync: bool = True, shared: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.shared = shared
        self.description = f"sqlite:{self.path}" + (" (shared)" if shared else "")
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._point: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # First: switching a new file to WAL takes a lock that another
        # process starting at the same moment may hold for a while.
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def write_connection(self) -> WriteConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".write-lock") if self.shared else None
        return _SqliteWrite(self._connect(), lock)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read = self._connect()
        self._read.row_factory = sqlite3.Row

    def fetch_sync(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read now (at start-up; or of a closed journal, on a connection of its own)."""
        if self._read is None:
            conn = sqlite3.connect(self.path)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(sql, tuple(params))]
            finally:
                conn.close()
        with self._read_lock:
            return [dict(r) for r in self._read.execute(sql, tuple(params))]

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.fetch_sync, sql, params)

    async def fetch_point(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read of a few rows by key or index, at once on the event loop's
        thread, on a connection of its own: in WAL mode a reader never waits
        for a writer, and such a read takes microseconds, less than the hop
        to a worker thread and back (a decision on a shared file makes two)."""
        if self._point is None:
            self._point = self._connect()
            self._point.row_factory = sqlite3.Row
        return [dict(r) for r in self._point.execute(sql, tuple(params))]

    async def listen(
        self, channel: str, wake: Callable[[], None], *, interval: float = LISTEN_POLL_SECONDS
    ) -> None:
        """Shared: call ``wake`` whenever another process commits to the file,
        until cancelled (``PRAGMA data_version`` on a connection of its own
        changes on every commit of another connection; reading it costs no
        I/O). ``channel`` is PostgreSQL's; SQLite has one. Not shared: there
        is nobody else, so it returns at once."""
        if not self.shared:
            return
        conn = self._connect()
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            wake()
            while True:
                await asyncio.sleep(interval)
                try:
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error as exc:
                    log.warning("journal: reading the data version failed: %s", exc)
                    continue
                if now != last:
                    last = now
                    wake()
        finally:
            conn.close()

    async def close(self) -> None:
        if self._read is not None:
            self._read.close()
            self._read = None
        if self._point is not None:
            self._point.close()
            self._point = None


def as_mapping(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row)


__all__ = [
    "EVENT_COLUMNS",
    "WRITE_LOCK",
    "Backend",
    "SqliteBackend",
    "WriteConnection",
    "guard_holds",
    "row_sql",
]
