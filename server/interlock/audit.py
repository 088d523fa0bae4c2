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
re-appends every line the outbox has beyond a file's last ``seq``. A write
that fails (a full disk) is cut back to the file's last whole line, and the
store's writer calls :meth:`AuditLog.recover` on its ticks until the files
have caught up (docs/audit.md, "Faults").

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
- policy_changes.jsonl: one line per policy reload that changed or was
  refused: who asked, the gate's tests and replay digest (docs/policies.md).

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
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

TOOL_EXECUTION_LOG = "tool_execution_log.jsonl"
STATE_TRANSITIONS = "execution_state_transitions.jsonl"
ROLLBACK_EVENTS = "rollback_events.jsonl"
LEARNING_SIGNALS = "learning_signals.jsonl"
APPROVALS_LOG = "approvals.jsonl"
ACCESS_DENIALS = "access_denials.jsonl"
POLICY_CHANGES = "policy_changes.jsonl"
GRANTS_LOG = "grants.jsonl"
TRUST_LOG = "trust.jsonl"
FILES = (
    TOOL_EXECUTION_LOG,
    STATE_TRANSITIONS,
    ROLLBACK_EVENTS,
    LEARNING_SIGNALS,
    APPROVALS_LOG,
    ACCESS_DENIALS,
    POLICY_CHANGES,
    GRANTS_LOG,
    TRUST_LOG,
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


class Outbox(Protocol):
    """The audit lines the journal committed (its ``audit_outbox``), by file."""

    def last_line(self, name: str) -> str | None: ...

    def lines_after(self, name: str, seq: int) -> list[str]: ...

    def line_at(self, name: str, seq: int) -> str | None: ...


class AuditLog:
    """The JSONL files as the store's writer thread writes them.

    Lines are collected by :meth:`append` and written by :meth:`flush`, one
    ``os.write`` per file (no user-space buffer). A write that fails (a full
    disk) is cut back: the file is truncated to the size it had before, its
    last whole line, and the error is raised; the lines stay in the store's
    outbox and :meth:`recover` appends them once the file can grow again.
    """

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
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        """Each open file's size in whole lines written (what a cut goes back to)."""
        self._pending: dict[str, bytearray] = {}
        self._unsynced: set[str] = set()
        self._last_fsync = time.monotonic()
        self._open_lock = threading.Lock()
        """Held while a file is opened or rotated, so :meth:`written_sizes` sees whole lines."""

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            with self._open_lock:
                path = self.directory / name
                _cut_torn_tail(path)  # a line cut by a crash: the outbox has it whole
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[name] = fd
                self._sizes[name] = os.fstat(fd).st_size
        return fd

    def _close_file(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        self._sizes.pop(name, None)
        if fd is not None:
            os.close(fd)

    def _rotate(self, name: str) -> None:
        """Close the current file and rename it ``<name>.<n>``; the chain goes on."""
        fd = self._fds[name]
        if self.fsync:
            os.fsync(fd)
        with self._open_lock:
            self._close_file(name)
            self._unsynced.discard(name)
            done = parts(self.directory, name)
            n = int(done[-1].name.rsplit(".", 1)[1]) + 1 if done else 1
            os.replace(self.directory / name, self.directory / f"{name}.{n}")
        log.info("audit: rotated %s to %s.%d", name, name, n)

    def append(self, name: str, line: str) -> None:
        """Collect one serialized line; it is written at the next :meth:`flush`.

        Raises OSError when rotating (which writes out the lines collected
        so far) fails.
        """
        data = (line + "\n").encode()
        pending = self._pending.setdefault(name, bytearray())
        self._fd(name)
        size = self._sizes[name] + len(pending)
        if size > 0 and size + len(data) > self.rotate_bytes:
            self._write_out(name)
            self._rotate(name)
            pending = self._pending.setdefault(name, bytearray())
        pending += data

    def _write_out(self, name: str) -> None:
        """Write a file's collected lines; on failure cut it back to its last whole line."""
        data = self._pending.pop(name, None)
        if not data:
            return
        fd = self._fd(name)
        start = self._sizes[name]
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            self._cut(name, start)
            raise
        self._sizes[name] = start + len(data)
        self._unsynced.add(name)

    def _cut(self, name: str, size: int) -> None:
        """Truncate a file back to ``size`` bytes after a failed write."""
        try:
            os.ftruncate(self._fds[name], size)
        except OSError:
            # Not even a truncate: close it; reopening cuts the torn tail.
            log.exception("audit: could not cut %s back to its last whole line", name)
            with self._open_lock:
                self._close_file(name)

    def discard(self) -> None:
        """Forget the lines collected and not written (the outbox keeps them)."""
        self._pending.clear()

    def heads(self, outbox: Outbox) -> dict[str, str]:
        """Each file's last ``hash``: the outbox's last line, else the file's last line."""
        heads: dict[str, str] = {}
        for name in FILES:
            line = outbox.last_line(name)
            record = json.loads(line) if line else last_record(self.directory, name)
            value = record.get("hash") if isinstance(record, dict) else None
            heads[name] = value if isinstance(value, str) else GENESIS
        return heads

    def flush(self) -> None:
        """Write every collected line to the operating system.

        Every file is tried; a file whose write fails is cut back to its last
        whole line, and the first error is raised after the others are written.
        """
        error: OSError | None = None
        for name in list(self._pending):
            try:
                self._write_out(name)
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    def sync_due(self) -> bool:
        return bool(self._unsynced) and time.monotonic() - self._last_fsync >= self.fsync_interval

    def sync(self) -> None:
        """Flush, and fsync when the durability policy says so."""
        self.fsync_files(self.sync_started())

    def sync_started(self) -> list[str]:
        """Flush; return the files written since their last fsync, and start a new interval.

        The writer hands the names to :meth:`fsync_files` on a thread of its
        own, so a commit never waits behind the files' fsync.
        """
        self.flush()
        names = sorted(self._unsynced)
        self._unsynced.clear()
        self._last_fsync = time.monotonic()
        return names

    def fsync_files(self, names: list[str]) -> None:
        """fsync these files (when the durability policy says so), from any thread.

        Under the open lock, so no file is closed or rotated meanwhile (a
        rotation fsyncs the file it closes itself).
        """
        if not self.fsync:
            return
        with self._open_lock:
            for name in names:
                fd = self._fds.get(name)
                if fd is not None:
                    os.fsync(fd)

    def missing(self, outbox: Outbox) -> dict[str, list[str]]:
        """The lines the store committed beyond each file's last whole line."""
        found: dict[str, list[str]] = {}
        for name in FILES:
            lines = outbox.lines_after(name, last_seq(self.directory / name))
            if lines:
                found[name] = lines
        return found

    def recover(self, outbox: Outbox) -> int:
        """Re-append lines the store committed but a file lacks; return how many.

        At start-up (after a crash) and, while the files lag the store (a full
        disk), on every tick of the store's writer. Raises OSError when a file
        still cannot be written; what was written stays, whole lines only.
        """
        self.discard()
        restored = 0
        for name, lines in self.missing(outbox).items():
            self._close_file(name)  # reopen: cut a torn tail, learn the size again
            self._unsynced.discard(name)
            for line in lines:
                self.append(name, line)
            restored += len(lines)
        self.sync()
        if restored:
            log.warning("audit: restored %d line(s) the JSONL files lacked", restored)
        return restored

    def check_tails(self, outbox: Outbox) -> dict[str, str]:
        """Check the end of each file's chain against the store (cheap; at start-up).

        The last whole lines of each file (up to 64 KiB) must hash right and
        link up, and the last one must be the store's line for its ``seq``.
        Returns what is wrong, by file.
        """
        problems: dict[str, str] = {}
        for name in FILES:
            wrong = _check_tail(self.directory, name, outbox)
            if wrong is not None:
                problems[name] = wrong
        return problems

    def written_sizes(self) -> dict[str, int]:
        """Each current file's size in whole lines, as the writer knows it."""
        with self._open_lock:
            sizes = dict(self._sizes)
            for name in FILES:
                if name not in sizes:
                    path = self.directory / name
                    sizes[name] = path.stat().st_size if path.exists() else 0
        return sizes

    def verify_written(self) -> dict[str, str]:
        """:func:`verify_file` for every file, up to what the writer has written.

        Safe while the server runs (a line being appended is not read). A file
        rotated during the check is checked again. Returns what is wrong, by file.
        """
        problems: dict[str, str] = {}
        for name in FILES:
            for _attempt in range(2):
                report = verify_file(self.directory, name, limit=self.written_sizes()[name])
                if report.ok:
                    problems.pop(name, None)
                    break
                problems[name] = str(report.problem)
        return problems

    def close(self) -> None:
        try:
            self.sync()
        finally:
            for name in list(self._fds):
                self._close_file(name)


def _check_tail(directory: Path, name: str, outbox: Outbox) -> str | None:
    path = next((p for p in reversed(chain_files(directory, name)) if _has_data(p)), None)
    if path is None:
        return None
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        start = f.tell()
        tail = f.read()
    raw_lines = tail.split(b"\n")
    if start > 0:
        raw_lines = raw_lines[1:]  # the first may be the end of a longer line
    if raw_lines:
        raw_lines.pop()  # after the last newline: empty, or a line a crash tore (restored)
    prev: dict[str, Any] | None = None
    for raw in raw_lines:
        try:
            record = json.loads(raw)
        except ValueError:
            return f"{path.name}: a line near the end is not JSON (edited?)"
        if not isinstance(record, dict) or "hash" not in record or "seq" not in record:
            return f"{path.name}: a line near the end is not an audit record"
        if record["hash"] != record_hash(record):
            return f"{path.name}: the line of seq {record['seq']} does not hash right (edited?)"
        if prev is not None and record.get("prev_hash") != prev["hash"]:
            return (
                f"{path.name}: the line of seq {record['seq']} does not follow the line before it"
            )
        prev = record
    if prev is None:
        return None
    stored = outbox.line_at(name, prev["seq"])
    if stored is None:
        return f"{path.name}: the last line (seq {prev['seq']}) is not in the store"
    if json.loads(stored).get("hash") != prev["hash"]:
        return f"{path.name}: the last line (seq {prev['seq']}) differs from the store's copy"
    return None


def _has_data(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


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


def _lines(path: Path, limit: int | None = None) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, ended by a newline) for each line of a file's
    first ``limit`` bytes (all of it when None)."""
    with open(path, "rb") as f:
        left = limit
        for number, raw in enumerate(f, start=1):
            if left is not None:
                if left <= 0:
                    return
                raw = raw[:left]
                left -= len(raw)
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


def verify_file(
    directory: str | os.PathLike[str], name: str, *, limit: int | None = None
) -> FileReport:
    """Check a file's chain across its rotated parts; stop at the first problem.

    ``limit``: read only the current file's first ``limit`` bytes.
    """
    directory = Path(directory)
    report = FileReport(name)
    prev_hash, prev_seq = GENESIS, None
    where = ""
    for path in chain_files(directory, name):
        if not path.exists():
            continue
        report.parts.append(path.name)
        for number, raw, ended in _lines(path, limit if path == directory / name else None):
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
    "GRANTS_LOG",
    "LEARNING_SIGNALS",
    "ROLLBACK_EVENTS",
    "STATE_TRANSITIONS",
    "TOOL_EXECUTION_LOG",
    "TRUST_LOG",
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
