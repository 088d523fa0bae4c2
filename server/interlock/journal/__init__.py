"""The journal: the one owner of all state.

Every table, migration, read and write sits behind this package; nothing
above it speaks SQL. A fact (a decision, a result, a state change, an
approval action, a refusal, a signal) is recorded once with
:meth:`Journal.record`: its rows, its events and its audit lines are derived
from it (:class:`~interlock.journal.records.Fact`) and committed in one
transaction by the group-commit writer (:mod:`interlock.journal.writer`),
the audit lines through the ``audit_outbox`` table to the hash-chained JSONL
files. Reads go through typed repositories (:mod:`interlock.journal.repos`).

Two backends (:mod:`interlock.journal.backend`) hold the same schema
(:mod:`interlock.journal.schema`, versioned migrations run at start-up):
SQLite, the embedded default (one file in the data directory), and
PostgreSQL (``store_url: postgresql://...``).

Layout::

    records.py   Fact, Batch, EventRecord, Insert/Upsert rows
    schema.py    the migrations of both dialects, the version check
    backend.py   SQLite and PostgreSQL: the writer's connection, reads
    writer.py    the group-commit writer thread, the outbox, faults
    repos.py     typed reads: decisions, plans, approvals, events, signals
    grants.py    typed reads of grants and their uses
    shadow.py    shadow evaluation's reads and rows
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from interlock.audit import AuditLog
from interlock.journal.backend import Backend, SqliteBackend
from interlock.journal.grants import Grants
from interlock.journal.records import (
    AuditLine,
    Batch,
    Delete,
    EventRecord,
    Fact,
    Guard,
    Insert,
    Recorded,
    Row,
    Upsert,
)
from interlock.journal.repos import (
    Approvals,
    AuditLines,
    Decisions,
    Events,
    LiveHolds,
    Plans,
    Replicas,
    Signals,
)
from interlock.journal.schema import SCHEMA_VERSION, SchemaTooNew
from interlock.journal.shadow import Shadows
from interlock.journal.writer import EVENTS_CHANNEL, Writer
from interlock.metrics import Metrics


class Journal:
    """Records facts durably and answers reads, on one backend."""

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
        self.replica = replica
        """This replica's id (docs/replicas.md): on its events and its audit lines."""
        self.writer = Writer(backend, audit, metrics=metrics, replica=replica)
        self.decisions = Decisions(backend)
        self.plans = Plans(backend)
        self.approvals = Approvals(backend)
        self.events = Events(backend)
        self.signals = Signals(backend)
        self.audit_lines = AuditLines(backend)
        self.live_holds = LiveHolds(backend)
        self.replicas = Replicas(backend)
        self.grants = Grants(backend)
        self.shadows = Shadows(backend)

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    @property
    def shared(self) -> bool:
        """Whether other replicas may write to the same database (PostgreSQL,
        or a SQLite file shared by workers: ``store_shared``)."""
        return self.backend.dialect == "postgresql" or bool(getattr(self.backend, "shared", False))

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever any replica commits events, until cancelled
        (PostgreSQL's LISTEN/NOTIFY; a shared SQLite file: its data version,
        polled; on SQLite in one process: returns at once)."""
        listen = getattr(self.backend, "listen", None)
        if listen is not None:
            await listen(EVENTS_CHANNEL, wake)

    @property
    def listeners(self) -> list[Callable[[list[EventRecord]], None]]:
        """Called on the event loop with each committed batch's events, in commit order."""
        return self.writer.listeners

    @property
    def on_condition(self) -> Callable[[str, bool, str], None] | None:
        return self.writer.on_condition

    @on_condition.setter
    def on_condition(self, callback: Callable[[str, bool, str], None] | None) -> None:
        self.writer.on_condition = callback

    @property
    def chain_problems(self) -> dict[str, str]:
        return self.writer.chain_problems

    async def start(self) -> None:
        """Migrate the schema, check the audit chains, start the writer."""
        await self.backend.open()
        try:
            self.writer.start()
        except BaseException:
            await self.backend.close()
            raise

    async def record(self, *facts: Fact) -> list[EventRecord]:
        """Commit the facts' rows, events and audit lines in one transaction;
        returns the events with their sequence numbers."""
        return await self.writer.commit(Batch.of(*facts))

    async def commit(self, batch: Batch) -> list[EventRecord]:
        """Commit a batch already derived from facts (several callers' at once)."""
        return await self.writer.commit(batch)

    async def close(self) -> None:
        await self.writer.close()
        await self.backend.close()


def open_journal(
    url: str,
    data_dir: Path,
    audit: AuditLog,
    *,
    fsync: bool,
    metrics: Metrics | None = None,
    replica: str = "",
    shared: bool = False,
) -> Journal:
    """A journal on ``url``: empty or ``sqlite:PATH`` for SQLite (default
    ``DATA_DIR/interlock.db``; ``shared`` when other processes use the same
    file), ``postgresql://...`` for PostgreSQL."""
    if url.startswith(("postgresql://", "postgres://")):
        from interlock.journal.postgres import PostgresBackend

        backend: Backend = PostgresBackend(url)
    elif not url or url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:") or str(data_dir / "interlock.db")
        backend = SqliteBackend(path, fsync=fsync, shared=shared)
    else:
        raise ValueError(
            f"store_url must be empty, sqlite:PATH or postgresql://..., not {url.split(':')[0]!r}"
        )
    return Journal(backend, audit, metrics=metrics, replica=replica)


__all__ = [
    "SCHEMA_VERSION",
    "AuditLine",
    "Batch",
    "Delete",
    "EventRecord",
    "Fact",
    "Guard",
    "Insert",
    "Journal",
    "Recorded",
    "Row",
    "SchemaTooNew",
    "Upsert",
    "open_journal",
]
