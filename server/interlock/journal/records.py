"""What the journal records: rows, events and audit lines, and the fact that
derives all three.

A :class:`Fact` is one thing that happened (a decision, a result, a step's
change of state, an approval action, a refusal, a signal). It derives its
rows, its events and its audit lines itself, from one record, and the
journal commits all three in one transaction (:meth:`Journal.record
<interlock.journal.Journal.record>`): the row, the event and the line can
never disagree, and no caller builds them apart. Rows are named by table
and column (:class:`Insert`, :class:`Upsert`); the journal's backend writes
them in its own dialect.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class EventRecord:
    """One event of the ordered log; ``seq`` is given when it is committed."""

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
    replica: str = ""
    """The replica that committed it (given when it is committed)."""


@dataclass(frozen=True)
class Insert:
    """A new row; a row that breaks a unique key fails its fact (AlreadyExists)."""

    table: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Upsert:
    """A row inserted, or updated in place when its key exists."""

    table: str
    values: Mapping[str, Any]
    key: tuple[str, ...]


@dataclass(frozen=True)
class Delete:
    """Rows removed by key (none is fine)."""

    table: str
    key: Mapping[str, Any]


@dataclass(frozen=True)
class Guard:
    """A condition checked inside the fact's transaction, under the write lock
    (on PostgreSQL, across replicas): when it does not hold, the fact is
    rolled back alone and its caller gets ``error``.

    Either an update that must change exactly one row (``values`` set where
    every ``where`` column equals its value: a single use, a compare and
    set), or, with ``at_most`` set, a count: the rows of ``table`` whose
    ``newer_than`` column is above its value must number ``at_most`` or
    fewer (a cap nobody else took meanwhile).
    """

    table: str
    error: Exception
    where: Mapping[str, Any] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    at_most: int | None = None
    newer_than: tuple[str, float] | None = None


Row = Insert | Upsert | Delete | Guard
AuditLine = tuple[str, dict[str, Any]]
"""(file name, record): the journal adds ``seq`` and the hash chain."""


class Fact(Protocol):
    """Something that happened, and what it leaves behind."""

    def rows(self) -> Iterable[Row]: ...

    def events(self) -> Iterable[EventRecord]: ...

    def audit(self) -> Iterable[AuditLine]: ...


@dataclass
class Batch:
    """The rows, events and audit lines of one or more facts, committed together.

    Audit lines get ``seq``, the sequence number of the batch's last event.
    """

    rows: list[Row] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    audit: list[AuditLine] = field(default_factory=list)

    @classmethod
    def of(cls, *facts: Fact) -> Batch:
        batch = cls()
        for fact in facts:
            batch.rows.extend(fact.rows())
            batch.events.extend(fact.events())
            batch.audit.extend(fact.audit())
        return batch


@dataclass
class Recorded:
    """A fact given as its parts (an event alone, or parts built elsewhere)."""

    row_list: list[Row] = field(default_factory=list)
    event_list: list[EventRecord] = field(default_factory=list)
    audit_list: list[AuditLine] = field(default_factory=list)

    def rows(self) -> Iterable[Row]:
        return self.row_list

    def events(self) -> Iterable[EventRecord]:
        return self.event_list

    def audit(self) -> Iterable[AuditLine]:
        return self.audit_list


__all__ = [
    "AuditLine",
    "Batch",
    "Delete",
    "EventRecord",
    "Fact",
    "Guard",
    "Insert",
    "Recorded",
    "Row",
    "Upsert",
]
