"""The SQLite store (WAL) and its group-commit writer.

One dedicated thread owns the write connection. Callers hand it a
:class:`WriteBatch` (rows, events, audit lines) and await its future. The
thread takes every batch waiting, commits them in one transaction (one fsync
of the WAL with ``synchronous=FULL``; the audit lines go into the
``audit_outbox`` table in the same transaction), appends the audit lines to
their files in commit order and flushes them, then answers every caller: a
decision is acknowledged only after it is on disk, and concurrent decisions
share the cost of the fsync. The audit files are fsynced on the interval the
:mod:`interlock.audit` policy documents, and repaired from the outbox at
start-up. A batch that breaks a constraint (a result reported twice) is
rolled back alone to its savepoint and its caller gets the error.

Faults (a full disk). A caller is told its write failed (UNAVAILABLE) only
when the transaction did not commit, and told it committed only when it did.
When the COMMIT succeeds but a JSONL file cannot be written, the file is cut
back to its last whole line, the callers are answered (their lines are in the
outbox), and the files *lag*: no line is appended directly until, on a tick
of the writer (every ``audit_fsync_interval_seconds``), :meth:`AuditLog.recover`
has appended every line they lack, in order, so the chains stay whole. While
the store cannot commit, the writer probes it on the same tick. Both states
are reported as the readiness conditions ``store`` and ``audit_files``
(:mod:`interlock.readiness`) through :attr:`Store.on_condition`, and the lag
as the gauge ``interlock_audit_lag_lines``.

Events get their sequence number here, so the event log is strictly ordered.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from interlock.audit import GENESIS, AuditLog, seal
from interlock.errors import AlreadyExists, Unavailable
from interlock.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BATCH = 512

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at REAL NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    plan_id TEXT NOT NULL DEFAULT '',
    step_id TEXT NOT NULL DEFAULT '',
    confidence REAL NOT NULL,
    verdict TEXT NOT NULL,
    mode TEXT NOT NULL,
    needs_approval INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    engine TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    arguments TEXT NOT NULL,
    fail_closed INTEGER NOT NULL,
    live_deadline REAL
);
CREATE TABLE IF NOT EXISTS results (
    decision_id TEXT PRIMARY KEY REFERENCES decisions(decision_id),
    agent_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    output TEXT NOT NULL,
    error_message TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    reported_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    source_format TEXT NOT NULL,
    labels TEXT NOT NULL,
    conflicts TEXT NOT NULL,
    message TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    submitted_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steps (
    plan_id TEXT NOT NULL REFERENCES plans(plan_id),
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    tool TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    arguments TEXT,
    confidence REAL NOT NULL,
    depends_on TEXT NOT NULL,
    state TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT '',
    decision_id TEXT NOT NULL DEFAULT '',
    work_id TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    deadline REAL NOT NULL DEFAULT 0,
    compensates TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (plan_id, step_id)
);
CREATE TABLE IF NOT EXISTS audit_outbox (
    file TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (file, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requirement TEXT NOT NULL,
    approver_roles TEXT NOT NULL,
    approvals TEXT NOT NULL,
    escalation_level INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    confidence REAL NOT NULL,
    reason TEXT NOT NULL,
    resolved_by TEXT NOT NULL,
    resolved_at REAL NOT NULL,
    used_by_decision_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS store_probe (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_decision ON approvals(decision_id);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    plan_id TEXT NOT NULL DEFAULT '',
    step_id TEXT NOT NULL DEFAULT '',
    agent_id TEXT NOT NULL DEFAULT '',
    decision_id TEXT NOT NULL DEFAULT '',
    tool TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL DEFAULT '{}'
);
"""


MIGRATIONS = (("plans", "submitted_by", "TEXT NOT NULL DEFAULT ''"),)
"""Columns added since the first schema: (table, column, definition)."""


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a store written by an older version lacks."""
    for table, column, definition in MIGRATIONS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


@dataclass
class EventRecord:
    kind: str
    message: str = ""
    plan_id: str = ""
    step_id: str = ""
    agent_id: str = ""
    decision_id: str = ""
    tool: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    seq: int = 0


@dataclass
class WriteBatch:
    """What one caller commits atomically.

    Audit records get ``seq``, the sequence number of the batch's last event.
    """

    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Pending:
    batch: WriteBatch
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[EventRecord]]


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Store:
    def __init__(
        self,
        path: str | Path,
        audit: AuditLog,
        *,
        fsync: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.path = Path(path)
        self.audit = audit
        self.fsync = fsync
        self.metrics = metrics
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.listeners: list[Callable[[list[EventRecord]], None]] = []
        """Called on the event loop with each committed batch's events."""
        self._heads: dict[str, str] = {}
        """Each audit file's last committed line's ``hash`` (the writer thread's)."""
        self.on_condition: Callable[[str, bool, str], None] | None = None
        """Called on the event loop with (name, holds, reason) when the ``store``
        or ``audit_files`` condition changes (see :mod:`interlock.readiness`)."""
        self.chain_problems: dict[str, str] = {}
        """What the start-up check found wrong at the end of each audit chain."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store_error: str | None = None
        self._audit_error: str | None = None
        self._last_attempt = 0.0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def start(self) -> None:
        """Open the store, check and repair the audit files, start the writer.

        Call on the event loop that is to receive :attr:`on_condition`.
        """
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write = self._connect()
        write.executescript(SCHEMA)
        _migrate(write)
        self.chain_problems = self.audit.check_tails(write)
        for name, problem in self.chain_problems.items():
            log.error("audit: the chain of %s is broken: %s", name, problem)
        try:
            self.audit.recover(write)
        except OSError as exc:  # a full disk at start-up: catch up later
            self._audit_failed(write, exc)
        self._heads = self.audit.heads(write)
        self._read = self._connect()
        self._thread = threading.Thread(
            target=self._run, args=(write,), name="store-writer", daemon=True
        )
        self._thread.start()

    async def commit(self, batch: WriteBatch) -> list[EventRecord]:
        """Commit a batch durably; returns its events with their sequence numbers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[EventRecord]] = loop.create_future()
        self._queue.put(_Pending(batch, loop, future))
        return await future

    def _run(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.audit.fsync_interval)
            except queue.Empty:
                self._tick(conn)
                continue
            if first is None:
                break
            pending = [first]
            while len(pending) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                pending.append(item)
            self._write(conn, pending)
            self._tick(conn)
        if self._audit_error is not None:
            self._catch_up(conn)
        try:
            self.audit.close()
        except OSError:
            log.exception("audit: could not sync the files at shutdown; the outbox holds the lines")
        conn.close()

    def _tick(self, conn: sqlite3.Connection) -> None:
        """Probe a failing store, catch up lagging files, fsync the files when due."""
        if self._store_error is not None or self._audit_error is not None:
            now = time.monotonic()
            if now - self._last_attempt >= self.audit.fsync_interval:
                self._last_attempt = now
                if self._store_error is not None:
                    self._probe(conn)
                if self._audit_error is not None:
                    self._catch_up(conn)
        if self._audit_error is None and self.audit.sync_due():
            try:
                self.audit.sync()
            except OSError as exc:
                self._audit_failed(conn, exc)

    def _probe(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO store_probe (id, at) VALUES (1, ?)", (time.time(),)
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._store_failed(exc)
        else:
            self._store_ok()

    def _store_failed(self, exc: BaseException) -> None:
        reason = f"the store cannot commit: {exc}"
        if self._store_error is None:
            log.error("store: %s; callers are told their writes failed", reason)
            self._notify("store", False, reason)
        self._store_error = reason

    def _store_ok(self) -> None:
        if self._store_error is not None:
            self._store_error = None
            log.warning("store: commits again")
            self._notify("store", True, "every commit succeeds")

    def _audit_failed(self, conn: sqlite3.Connection, exc: OSError) -> None:
        """A file could not be written or fsynced: lag behind the outbox from now on."""
        self.audit.discard()
        try:
            lag = sum(len(lines) for lines in self.audit.missing(conn).values())
        except (OSError, sqlite3.Error):
            lag = -1
        if self.metrics is not None and lag >= 0:
            self.metrics.audit_lag.set(lag)
        reason = (
            f"the audit files cannot be written ({exc}); the store's outbox holds the "
            "lines they lack (interlock_audit_lag_lines) until they can grow again"
        )
        if self._audit_error is None:
            log.error("audit: %s; they are appended as soon as the files can grow", reason)
            self._notify("audit_files", False, reason)
        self._audit_error = reason

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        try:
            restored = self.audit.recover(conn)
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, OSError):
                self._audit_failed(conn, exc)
            return
        self._audit_error = None
        if self.metrics is not None:
            self.metrics.audit_lag.set(0)
        log.warning("audit: the files caught up with the store (%d line(s) appended)", restored)
        self._notify("audit_files", True, "the files hold every committed line")

    def _notify(self, name: str, ok: bool, reason: str) -> None:
        callback, loop = self.on_condition, self._loop
        if callback is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, name, ok, reason)
        except RuntimeError:  # the loop has closed: nobody is left to tell
            pass

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _write(self, conn: sqlite3.Connection, pending: list[_Pending]) -> None:
        outcomes: list[BaseException | list[EventRecord]] = []
        written: list[list[tuple[str, str]]] = []
        heads = dict(self._heads)  # the chains as this transaction extends them
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, item in enumerate(pending):
                conn.execute(f"SAVEPOINT b{i}")
                try:
                    for sql, params in item.batch.statements:
                        conn.execute(sql, params)
                    for ev in item.batch.events:
                        cur = conn.execute(
                            "INSERT INTO events (time, kind, plan_id, step_id, agent_id, decision_id,"
                            " tool, message, payload) VALUES (?,?,?,?,?,?,?,?,?)",
                            (
                                ev.time,
                                ev.kind,
                                ev.plan_id,
                                ev.step_id,
                                ev.agent_id,
                                ev.decision_id,
                                ev.tool,
                                ev.message,
                                _dumps(ev.payload),
                            ),
                        )
                        ev.seq = int(cur.lastrowid or 0)
                    lines = []
                    chained = dict(heads)  # kept only if the savepoint is released
                    if item.batch.audit:
                        seq = item.batch.events[-1].seq
                        for name, record in item.batch.audit:
                            line, chained[name] = seal(
                                {**record, "seq": seq}, chained.get(name, GENESIS)
                            )
                            conn.execute(
                                "INSERT INTO audit_outbox (file, seq, line) VALUES (?,?,?)",
                                (name, seq, line),
                            )
                            lines.append((name, line))
                    conn.execute(f"RELEASE b{i}")
                    heads = chained
                    outcomes.append(item.batch.events)
                    written.append(lines)
                except sqlite3.IntegrityError as exc:
                    conn.execute(f"ROLLBACK TO b{i}")
                    conn.execute(f"RELEASE b{i}")
                    outcomes.append(AlreadyExists(f"already recorded: {exc}"))
            conn.execute("COMMIT")
        except Exception as exc:  # nothing committed: nobody is acknowledged
            if self._store_error is None:  # once, not for every batch of a full disk
                log.exception("store write failed")
            self._rollback(conn)
            self._store_failed(exc)
            outcomes = [Unavailable(f"the store could not commit: {exc}")] * len(pending)
        else:
            self._heads = heads
            self._store_ok()
            if self._audit_error is None:  # lagging files catch up from the outbox instead
                try:
                    for lines in written:
                        for name, line in lines:
                            self.audit.append(name, line)
                    self.audit.flush()
                except OSError as exc:  # committed all the same: the outbox holds the lines
                    self._audit_failed(conn, exc)
        if self.metrics is not None:
            self.metrics.store_batch.observe(len(pending))
        # One wake-up per event loop for the whole batch, not one per caller.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for item, outcome in zip(pending, outcomes, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, outcome))
        for loop, results in by_loop.items():
            loop.call_soon_threadsafe(self._resolve, results)

    def _resolve(self, results: list[tuple[asyncio.Future[Any], Any]]) -> None:
        for future, outcome in results:
            if isinstance(outcome, BaseException):
                if not future.done():
                    future.set_exception(outcome)
                continue
            if not future.done():  # a cancelled caller's batch is committed all the same
                future.set_result(outcome)
            if outcome:
                for listener in self.listeners:
                    listener(outcome)

    # Reads -----------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        assert self._read is not None, "store not started"
        with self._read_lock:
            self._read.row_factory = sqlite3.Row
            return list(self._read.execute(sql, params))

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return await asyncio.to_thread(self._query, sql, params)

    def query_sync(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._query(sql, params)

    async def events_after(self, seq: int, limit: int = 500) -> list[sqlite3.Row]:
        return await self.query(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._read is not None:
            self._read.close()
            self._read = None


__all__ = ["EventRecord", "Store", "WriteBatch"]
