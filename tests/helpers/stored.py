"""Reading what a test server's journal holds, on either backend.

Tests that check the stored rows ask the server's own journal backend (its
read connection), so the same assertion holds on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class _HasServer(Protocol):
    @property
    def server(self) -> Any: ...


class Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)


class Stored:
    """``execute(sql, params)`` on the server's journal, rows as tuples."""

    def __init__(self, running: _HasServer) -> None:
        self.backend = running.server.journal.backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return Result([tuple(r.values()) for r in self.backend.fetch_sync(sql, params)])


def stored(running: _HasServer) -> Stored:
    return Stored(running)
