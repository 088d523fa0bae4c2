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
- approvals.jsonl: one line per approval change (requested, approved by one
  approver, approved, denied, expired, escalated, used, cancelled).
- access_denials.jsonl: one line per call the authorization policy refused.

Summaries rewritten whole (atomically: a temporary file, then a rename):
orchestration_summary.json and tool_conflicts.json.

Tamper evidence (docs/audit.md). Every line also carries ``prev_hash`` and
``hash``: ``hash`` is the SHA-256 (hex) of the line's canonical JSON (sorted
keys, orjson) without ``hash``; ``prev_hash`` is the previous line's ``hash``
in the same file, or :data:`GENESIS` for a file's first line. The store's
writer seals the lines in commit order, so the outbox holds exactly the lines
appended. A file that would grow past ``rotate_bytes`` is renamed to
``<name>.<n>`` (n = 1, 2, ...) and a new file continues the chain.
:func:`verify_file` (``interlock audit verify DIR``) checks it all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)

TOOL_EXECUTION_LOG = "tool_execution_log.jsonl"
STATE_TRANSITIONS = "execution_state_transitions.jsonl"
ROLLBACK_EVENTS = "rollback_events.jsonl"
LEARNING_SIGNALS = "learning_signals.jsonl"
APPROVALS_LOG = "approvals.jsonl"
ACCESS_DENIALS = "access_denials.jsonl"
FILES = (
    TOOL_EXECUTION_LOG,
    STATE_TRANSITIONS,
    ROLLBACK_EVENTS,
    LEARNING_SIGNALS,
    APPROVALS_LOG,
    ACCESS_DENIALS,
)
TAIL_BYTES = 64 * 1024
GENESIS = "0" * 64
"""The ``prev_hash`` of a file's first line."""
ROTATE_BYTES = 64 * 1024 * 1024


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``record`` without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def seal(record: dict[str, Any], prev_hash: str) -> tuple[str, str]:
    """Chain ``record`` after ``prev_hash``: its serialized line and its hash."""
    chained = {**record, "prev_hash": prev_hash}
    chained.pop("hash", None)
    digest = record_hash(chained)
    chained["hash"] = digest
    return orjson.dumps(chained, option=orjson.OPT_SORT_KEYS).decode(), digest


def parts(directory: Path, name: str) -> list[Path]:
    """The rotated parts of a file, oldest first (not the current file)."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)")
    found: list[tuple[int, Path]] = []
    if directory.is_dir():
        for entry in directory.iterdir():
            match = pattern.fullmatch(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def chain_files(directory: Path, name: str) -> list[Path]:
    """Every part of a file's chain in order: the rotated parts, then the current file."""
    return [*parts(directory, name), directory / name]


def _last_record(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    for raw in reversed(tail.split(b"\n")):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            int(record["seq"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line: look at the one before
        if isinstance(record, dict):
            return record
    return None


def last_record(directory: Path, name: str) -> dict[str, Any] | None:
    """The last complete line of a file's chain (across its rotated parts), or None."""
    for path in reversed(chain_files(directory, name)):
        record = _last_record(path)
        if record is not None:
            return record
    return None


def last_seq(path: Path) -> int:
    """The ``seq`` of the last complete line of the chain ``path`` ends, or 0."""
    record = last_record(path.parent, path.name)
    return 0 if record is None else int(record["seq"])


class AuditLog:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        fsync_interval: float = 0.2,
        rotate_bytes: int = ROTATE_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.rotate_bytes = rotate_bytes
        self._files: dict[str, IO[str]] = {}
        self._sizes: dict[str, int] = {}
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
            self._sizes[name] = path.stat().st_size
        return handle

    def _rotate(self, name: str) -> None:
        """Close the current file and rename it ``<name>.<n>``; the chain goes on."""
        handle = self._files.pop(name)
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())
        handle.close()
        self._unsynced.discard(name)
        done = parts(self.directory, name)
        n = int(done[-1].name.rsplit(".", 1)[1]) + 1 if done else 1
        os.replace(self.directory / name, self.directory / f"{name}.{n}")
        log.info("audit: rotated %s to %s.%d", name, name, n)

    def append(self, name: str, line: str) -> None:
        """Write one serialized line; it reaches the OS at the next :meth:`flush`."""
        data = line + "\n"
        size = len(data.encode())
        self._file(name)
        if self._sizes[name] > 0 and self._sizes[name] + size > self.rotate_bytes:
            self._rotate(name)
        self._file(name).write(data)
        self._sizes[name] += size
        self._unsynced.add(name)

    def heads(self, conn: sqlite3.Connection) -> dict[str, str]:
        """Each file's last ``hash``: the outbox's last line, else the file's last line."""
        heads: dict[str, str] = {}
        for name in FILES:
            row = conn.execute(
                "SELECT line FROM audit_outbox WHERE file = ? ORDER BY seq DESC LIMIT 1", (name,)
            ).fetchone()
            record = json.loads(row[0]) if row else last_record(self.directory, name)
            value = record.get("hash") if isinstance(record, dict) else None
            heads[name] = value if isinstance(value, str) else GENESIS
        return heads

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
            if rows:
                _cut_torn_tail(self.directory / name)
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


def _cut_torn_tail(path: Path) -> None:
    """Drop a line a crash cut short (the outbox is about to restore it whole)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        start = f.tell()
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut < 0 and start > 0:
            return  # a "line" longer than the tail: leave it for verify to report
        f.truncate(start + cut + 1)


# Verification ---------------------------------------------------------------------


@dataclass
class Problem:
    part: str
    """The file the broken line is in (a rotated part or the current file)."""
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.part} line {self.line}: {self.message}"


@dataclass
class FileReport:
    file: str
    parts: list[str] = field(default_factory=list)
    lines: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        problem = None
        if self.problem is not None:
            problem = {
                "part": self.problem.part,
                "line": self.problem.line,
                "message": self.problem.message,
            }
        return {
            "file": self.file,
            "ok": self.ok,
            "parts": self.parts,
            "lines": self.lines,
            "problem": problem,
        }


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, ended by a newline) for each line of a file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            ended = raw.endswith(b"\n")
            yield number, raw.rstrip(b"\n"), ended


def _check(
    raw: bytes, ended: bool, prev_hash: str, prev_seq: int | None, where: str
) -> tuple[dict[str, Any] | None, str | None]:
    """Check one line against the chain so far: (its record, what is wrong)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None, "not JSON (truncated?)" if not ended else "not JSON"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    for key in ("seq", "prev_hash", "hash"):
        if key not in record:
            return None, f"no {key!r} field"
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None, f"seq is not an integer: {seq!r}"
    if record["hash"] != record_hash(record):
        return None, "hash mismatch (edited?)"
    if record["prev_hash"] != prev_hash:
        if prev_seq is None:
            return None, "prev_hash is not the start of the chain (lines removed before it?)"
        return None, f"prev_hash does not match {where} (a line was removed or moved?)"
    if prev_seq is not None and seq <= prev_seq:
        return None, f"seq {seq} is not greater than {prev_seq}, the seq of {where} (reordered?)"
    if not ended:
        return None, "no newline at the end (truncated?)"
    return record, None


def verify_file(directory: str | os.PathLike[str], name: str) -> FileReport:
    """Check a file's chain across its rotated parts; stop at the first problem."""
    directory = Path(directory)
    report = FileReport(name)
    prev_hash, prev_seq = GENESIS, None
    where = ""
    for path in chain_files(directory, name):
        if not path.exists():
            continue
        report.parts.append(path.name)
        for number, raw, ended in _lines(path):
            if not raw.strip():
                report.problem = Problem(path.name, number, "empty line")
                return report
            record, wrong = _check(raw, ended, prev_hash, prev_seq, where)
            if wrong is not None or record is None:
                report.problem = Problem(path.name, number, wrong or "invalid")
                return report
            prev_hash, prev_seq = str(record["hash"]), int(record["seq"])
            where = f"line {number}" + ("" if path == directory / name else f" of {path.name}")
            report.lines += 1
    return report


def verify_dir(directory: str | os.PathLike[str]) -> list[FileReport]:
    """:func:`verify_file` for each of the four JSONL files."""
    return [verify_file(directory, name) for name in FILES]


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
    "GENESIS",
    "LEARNING_SIGNALS",
    "ROLLBACK_EVENTS",
    "STATE_TRANSITIONS",
    "TOOL_EXECUTION_LOG",
    "AuditLog",
    "FileReport",
    "Problem",
    "chain_files",
    "last_record",
    "last_seq",
    "parts",
    "record_hash",
    "seal",
    "verify_dir",
    "verify_file",
    "write_json_atomically",
]
