"""The append-only JSONL audit files.

One JSON object per line, in commit order. Every line carries ``seq``, the
sequence number of the event it belongs to, so each file is strictly ordered
and a line can be traced to the event log.

Durability policy. SQLite is the system of record: the store's writer commits
each batch (rows, events, and these very audit lines in its ``audit_outbox``
table) with one fsync, then appends the lines to the files and flushes them
to the operating system, and only then answers the callers. The files
themselves are fsynced at most ``audit_fsync_interval_seconds`` later (and on
shutdown), so a process crash loses nothing and a power loss can cut only the
newest lines off a file; at the next start :meth:`AuditLog.recover`
re-appends every line the outbox has beyond a file's last ``seq``.

Files in this issue:

- tool_execution_log.jsonl: one line per decision and per reported result.
- execution_state_transitions.jsonl: one line per state change of a call,
  a plan step or a plan.
- rollback_events.jsonl: one line per rollback action (compensation
  dispatched, done or failed; a barrier; nothing to undo).
- learning_signals.jsonl: one line per learning signal (see docs/signals.md).

Summaries rewritten whole (atomically: a temporary file, then a rename):
orchestration_summary.json and tool_conflicts.json.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

TOOL_EXECUTION_LOG = "tool_execution_log.jsonl"
STATE_TRANSITIONS = "execution_state_transitions.jsonl"
ROLLBACK_EVENTS = "rollback_events.jsonl"
LEARNING_SIGNALS = "learning_signals.jsonl"
FILES = (TOOL_EXECUTION_LOG, STATE_TRANSITIONS, ROLLBACK_EVENTS, LEARNING_SIGNALS)
TAIL_BYTES = 64 * 1024


def last_seq(path: Path) -> int:
    """The ``seq`` of a file's last complete line, or 0."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    for raw in reversed(tail.split(b"\n")):
        if not raw.strip():
            continue
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line: look at the one before
    return 0


class AuditLog:
    def __init__(
        self, directory: str | os.PathLike[str], *, fsync: bool = True, fsync_interval: float = 0.2
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._files: dict[str, IO[str]] = {}
        self._unsynced: set[str] = set()
        self._last_fsync = time.monotonic()

    def _file(self, name: str) -> IO[str]:
        handle = self._files.get(name)
        if handle is None:
            path = self.directory / name
            if path.exists() and path.stat().st_size > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
                if torn:  # a line cut by a crash: end it so the next line stands alone
                    with open(path, "a", encoding="utf-8") as f:
                        f.write("\n")
            handle = open(path, "a", encoding="utf-8")
            self._files[name] = handle
        return handle

    def append(self, name: str, line: str) -> None:
        """Write one serialized line; it reaches the OS at the next :meth:`flush`."""
        self._file(name).write(line + "\n")
        self._unsynced.add(name)

    def flush(self) -> None:
        for name in self._unsynced:
            self._files[name].flush()

    def sync_due(self) -> bool:
        return bool(self._unsynced) and time.monotonic() - self._last_fsync >= self.fsync_interval

    def sync(self) -> None:
        """Flush, and fsync when the durability policy says so."""
        self.flush()
        if self.fsync:
            for name in sorted(self._unsynced):
                os.fsync(self._files[name].fileno())
        self._unsynced.clear()
        self._last_fsync = time.monotonic()

    def recover(self, conn: sqlite3.Connection) -> int:
        """Re-append lines the store committed but a file lost; return how many."""
        restored = 0
        for name in FILES:
            after = last_seq(self.directory / name)
            rows = conn.execute(
                "SELECT line FROM audit_outbox WHERE file = ? AND seq > ? ORDER BY seq",
                (name, after),
            ).fetchall()
            for (line,) in rows:
                self.append(name, line)
            restored += len(rows)
        if restored:
            self.sync()
            log.warning("audit: restored %d line(s) lost from the JSONL files", restored)
        return restored

    def close(self) -> None:
        self.sync()
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def write_json_atomically(path: Path, document: object) -> None:
    """Replace a JSON file so a reader sees the old or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = [
    "FILES",
    "LEARNING_SIGNALS",
    "ROLLBACK_EVENTS",
    "STATE_TRANSITIONS",
    "TOOL_EXECUTION_LOG",
    "AuditLog",
    "last_seq",
    "write_json_atomically",
]
