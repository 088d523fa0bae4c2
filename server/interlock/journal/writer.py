"""The journal's group-commit writer: one thread, one write connection.

One dedicated thread owns the write connection. Callers hand it a
:class:`~interlock.journal.records.Batch` (rows, events, audit lines) and await its future. The
thread takes every batch waiting, commits them in one transaction (on SQLite one
fsync of the WAL with ``synchronous=FULL``; the audit lines go into the
``audit_outbox`` table in the same transaction), appends the audit lines to
their files in commit order and flushes them, then answers every caller: a
decision is acknowledged only after it is on disk, and concurrent decisions
share the cost of the fsync. The audit files are fsynced on the interval the
:mod:`interlock.audit` policy documents, by a thread of their own (``audit-fsync``),
so a commit never waits behind them, and repaired from the outbox at
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
(:mod:`interlock.readiness`) through :attr:`Writer.on_condition`, and the lag
as the gauge ``interlock_audit_lag_lines``.

Events get their sequence number here, so the event log is strictly ordered.
At start-up the writer's connection applies the schema's migrations
(:mod:`interlock.journal.schema`) before anything else.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.audit import GENESIS, AuditLog, seal
from interlock.errors import AlreadyExists, Unavailable
from interlock.journal.backend import (
    WRITE_LOCK,
    Backend,
    WriteConnection,
    guard_holds,
    row_sql,
)
from interlock.journal.records import Batch, EventRecord, Guard
from interlock.journal.schema import LEGACY_COLUMNS, VERSION_TABLE, pending
from interlock.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BATCH = 512


@dataclass
class _Pending:
    batch: Batch
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[EventRecord]]


EVENTS_CHANNEL = "interlock_events"
"""The PostgreSQL NOTIFY channel a commit with events signals (payload: its highest seq)."""


class _Refused(Exception):
    """A guard did not hold: the fact is rolled back alone, its caller gets ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Outbox:
    """One replica's committed audit lines, read on the writer's connection
    (audit.Outbox): a replica's files hold its own lines only, so its chains
    continue its own lines, whatever other replicas commit meanwhile."""

    def __init__(self, conn: WriteConnection, replica: str = "") -> None:
        self.conn = conn
        self.replica = replica

    def last_line(self, name: str) -> str | None:
        row = self.conn.execute(
            "SELECT line FROM audit_outbox WHERE replica = ? AND file = ?"
            " ORDER BY seq DESC LIMIT 1",
            (self.replica, name),
        ).fetchone()
        return str(row[0]) if row else None

    def lines_after(self, name: str, seq: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT line FROM audit_outbox WHERE replica = ? AND file = ? AND seq > ? ORDER BY seq",
            (self.replica, name, seq),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def line_at(self, name: str, seq: int) -> str | None:
        row = self.conn.execute(
            "SELECT line FROM audit_outbox WHERE replica = ? AND file = ? AND seq = ?",
            (self.replica, name, seq),
        ).fetchone()
        return str(row[0]) if row else None


def migrate(conn: WriteConnection) -> int:
    """Bring the schema up to date; return the version it was at."""
    conn.begin()
    try:
        if conn.dialect == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        conn.execute(VERSION_TABLE)
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current == 0 and conn.dialect == "sqlite" and _has_table(conn, "decisions"):
            current = _adopt_legacy(conn)  # written before versions were recorded
        for migration in pending(current):
            for statement in migration.statements(conn.dialect):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?,?,?)",
                (migration.version, migration.description, time.time()),
            )
            log.info("journal: schema migrated to version %d", migration.version)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return current


def _has_table(conn: WriteConnection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _adopt_legacy(conn: WriteConnection) -> int:
    """A SQLite file of 0.1 without ``schema_version``: version 1, with its late columns."""
    from interlock.journal.schema import MIGRATIONS

    for statement in MIGRATIONS[0].statements("sqlite"):
        conn.execute(statement)  # IF NOT EXISTS: adds what an older file lacks
    for table, column, definition in LEGACY_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    conn.execute(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?,?,?)",
        (1, MIGRATIONS[0].description + " (adopted)", time.time()),
    )
    return 1


def _adopt_lines(conn: WriteConnection, replica: str) -> None:
    """The outbox's lines written before version 3 (no replica) continue ``replica``'s chains."""
    conn.begin()
    try:
        if conn.dialect == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        conn.execute("UPDATE audit_outbox SET replica = ? WHERE replica = ''", (replica,))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: WriteConnection) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:  # no transaction, or the connection is gone
        pass


class _FileSyncer:
    """fsyncs the audit files on a thread of its own.

    The files' fsync on the writer thread held up every commit queued behind
    it (a few ms each time, every ``audit_fsync_interval_seconds``: the p99 of
    a decision at low concurrency). The writer flushes the lines and hands
    over the names; a failure is picked up by the writer's next tick.
    """

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self.error: OSError | None = None
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-fsync", daemon=True)
        self._thread.start()

    def request(self, names: list[str]) -> None:
        with self._lock:
            self._names.update(names)
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                names, self._names = sorted(self._names), set()
            try:
                self.audit.fsync_files(names)
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        """Finish the fsync in progress (the caller syncs whatever is left)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()


class Writer:
    """The group-commit writer thread of one journal."""

    def __init__(
        self,
        backend: Backend,
        audit: AuditLog,
        *,
        metrics: Metrics | None = None,
        replica: str = "",
    ) -> None:
        self.backend = backend
        self.audit = audit
        self.metrics = metrics
        self.replica = replica
        """This replica's id: on its events' rows, its audit lines and their outbox rows."""
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[list[EventRecord]], None]] = []
        """Called on the event loop with each committed batch's events."""
        self._heads: dict[str, str] = {}
        """Each audit file's last committed line's ``hash`` (the writer thread's)."""
        self.on_condition: Callable[[str, bool, str], None] | None = None
        """Called on the event loop with (name, holds, reason) when the ``store``
        or ``audit_files`` condition changes (see :mod:`interlock.readiness`)."""
        self.chain_problems: dict[str, str] = {}
        """What the start-up check found wrong at the end of each audit chain."""
        self.migrated_from = 0
        """The schema version the database was at before this start."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store_error: str | None = None
        self._audit_error: str | None = None
        self._last_attempt = 0.0

    def start(self) -> None:
        """Migrate, check and repair the audit files, start the thread.

        Call on the event loop that is to receive :attr:`on_condition`.
        """
        self._loop = asyncio.get_running_loop()
        conn = self.backend.write_connection()
        try:
            self.migrated_from = migrate(conn)
            if 0 < self.migrated_from < 3:  # lines from before replicas: this replica's
                _adopt_lines(conn, self.replica)
            outbox = Outbox(conn, self.replica)
            self.chain_problems = self.audit.check_tails(outbox)
            for name, problem in self.chain_problems.items():
                log.error("audit: the chain of %s is broken: %s", name, problem)
            try:
                self.audit.recover(outbox)
            except OSError as exc:  # a full disk at start-up: catch up later
                self._audit_failed(conn, exc)
            self._heads = self.audit.heads(outbox)
        except BaseException:
            conn.close()
            raise
        self._syncer = _FileSyncer(self.audit)
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="journal-writer", daemon=True
        )
        self._thread.start()

    async def commit(self, batch: Batch) -> list[EventRecord]:
        """Commit a batch durably; returns its events with their sequence numbers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[EventRecord]] = loop.create_future()
        self._queue.put(_Pending(batch, loop, future))
        return await future

    def _run(self, conn: WriteConnection) -> None:
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
        self._syncer.close()
        if self._audit_error is not None:
            self._catch_up(conn)
        try:
            self.audit.close()
        except OSError:
            log.exception("audit: could not sync the files at shutdown; the outbox holds the lines")
        conn.close()

    def _tick(self, conn: WriteConnection) -> None:
        """Probe a failing store, catch up lagging files, fsync the files when due."""
        if self._store_error is not None or self._audit_error is not None:
            now = time.monotonic()
            if now - self._last_attempt >= self.audit.fsync_interval:
                self._last_attempt = now
                if self._store_error is not None:
                    self._probe(conn)
                if self._audit_error is not None:
                    self._catch_up(conn)
        failed, self._syncer.error = self._syncer.error, None
        if failed is not None and self._audit_error is None:
            self._audit_failed(conn, failed)
        if self._audit_error is None and self.audit.sync_due():
            try:
                self._syncer.request(self.audit.sync_started())  # flushes: may raise
            except OSError as exc:
                self._audit_failed(conn, exc)

    def _probe(self, conn: WriteConnection) -> None:
        try:
            conn.begin()
            conn.execute(
                "INSERT INTO store_probe (id, at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (time.time(),),
            )
            conn.execute("COMMIT")
        except Exception as exc:
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

    def _audit_failed(self, conn: WriteConnection, exc: OSError) -> None:
        """A file could not be written or fsynced: lag behind the outbox from now on."""
        self.audit.discard()
        try:
            lag = sum(
                len(lines) for lines in self.audit.missing(Outbox(conn, self.replica)).values()
            )
        except Exception:
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

    def _catch_up(self, conn: WriteConnection) -> None:
        try:
            restored = self.audit.recover(Outbox(conn, self.replica))
        except Exception as exc:
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
    def _rollback(conn: WriteConnection) -> None:
        _rollback(conn)

    def _write(self, conn: WriteConnection, pending: list[_Pending]) -> None:
        outcomes: list[BaseException | list[EventRecord]] = []
        written: list[list[tuple[str, str]]] = []
        heads = dict(self._heads)  # the chains as this transaction extends them
        try:
            conn.begin()
            if conn.dialect == "postgresql":  # one writer at a time across replicas
                conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            for i, item in enumerate(pending):
                conn.execute(f"SAVEPOINT b{i}")
                try:
                    for row in item.batch.rows:
                        cursor = conn.execute(*row_sql(row))
                        if isinstance(row, Guard) and not guard_holds(row, cursor):
                            raise _Refused(row.error)
                    for ev in item.batch.events:
                        ev.replica = self.replica
                        ev.seq = conn.insert_event(
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
                                ev.replica,
                            )
                        )
                    lines = []
                    chained = dict(heads)  # kept only if the savepoint is released
                    if item.batch.audit:
                        seq = item.batch.events[-1].seq
                        for name, record in item.batch.audit:
                            line, chained[name] = seal(
                                {**record, "seq": seq, "replica": self.replica},
                                chained.get(name, GENESIS),
                            )
                            conn.execute(
                                "INSERT INTO audit_outbox (file, seq, line, replica)"
                                " VALUES (?,?,?,?)",
                                (name, seq, line, self.replica),
                            )
                            lines.append((name, line))
                    conn.execute(f"RELEASE b{i}")
                    heads = chained
                    outcomes.append(item.batch.events)
                    written.append(lines)
                except conn.integrity_errors as exc:
                    conn.execute(f"ROLLBACK TO b{i}")
                    conn.execute(f"RELEASE b{i}")
                    outcomes.append(AlreadyExists(f"already recorded: {exc}"))
                except _Refused as refused:
                    conn.execute(f"ROLLBACK TO b{i}")
                    conn.execute(f"RELEASE b{i}")
                    outcomes.append(refused.error)
            if conn.dialect == "postgresql":
                newest = max((o[-1].seq for o in outcomes if isinstance(o, list) and o), default=0)
                if newest:  # wakes every replica's feed once this commits
                    conn.execute("SELECT pg_notify(?, ?)", (EVENTS_CHANNEL, str(newest)))
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

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None


__all__ = ["EVENTS_CHANNEL", "MAX_BATCH", "Outbox", "Writer", "migrate"]
