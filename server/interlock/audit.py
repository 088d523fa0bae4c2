"""The append-only JSONL audit files.

One JSON object per line, in the order the state they describe was
committed. The store's writer thread is the only writer; it flushes (and,
when ``fsync`` is on, fsyncs) every file it wrote to once per batch, before
the batch's callers are answered. Files in this issue:

- tool_execution_log.jsonl: one line per decision and per reported result.
- execution_state_transitions.jsonl: one line per state change of a call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

TOOL_EXECUTION_LOG = "tool_execution_log.jsonl"
STATE_TRANSITIONS = "execution_state_transitions.jsonl"
FILES = (TOOL_EXECUTION_LOG, STATE_TRANSITIONS)


class AuditLog:
    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._files: dict[str, IO[str]] = {}
        self._dirty: set[str] = set()

    def _file(self, name: str) -> IO[str]:
        handle = self._files.get(name)
        if handle is None:
            handle = open(self.directory / name, "a", encoding="utf-8")
            self._files[name] = handle
        return handle

    def append(self, name: str, record: dict[str, Any]) -> None:
        """Buffer one line; it reaches the disk at the next :meth:`sync`."""
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._file(name).write(line + "\n")
        self._dirty.add(name)

    def sync(self) -> None:
        for name in sorted(self._dirty):
            handle = self._files[name]
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        self._dirty.clear()

    def close(self) -> None:
        self.sync()
        for handle in self._files.values():
            handle.close()
        self._files.clear()


__all__ = ["FILES", "STATE_TRANSITIONS", "TOOL_EXECUTION_LOG", "AuditLog"]
