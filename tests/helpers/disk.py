"""A small disk that a test can fill: a tmpfs of a few MiB, mounted for the test.

Mounting needs root (CI runs as root); where ``mount`` fails the test is
skipped with the reason. The filler is a file on the same tmpfs that grows
until the kernel says ENOSPC; :meth:`SmallDisk.fill` tops it up again (the
server frees space when it cuts a failed write back), :meth:`SmallDisk.free`
deletes it.

Reuse (a torture suite)::

    with small_disk(tmp_path / "disk") as disk:
        server = await start_server(data_dir=str(disk.data))
        ...  # traffic
        disk.fill()  # call again now and then to keep it full
        ...
        disk.free()

:func:`jsonl_damage` and :func:`lines_missing` measure what a fault did to
the audit files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from interlock.audit import FILES

CHUNKS = (1024 * 1024, 64 * 1024, 4096, 256, 16)


class SmallDisk:
    """A mounted tmpfs of ``size`` (mount(8) syntax, e.g. ``16m``)."""

    def __init__(self, mountpoint: Path, size: str) -> None:
        self.mountpoint = mountpoint
        self.size = size
        self.filler = mountpoint / "filler"
        self.data = mountpoint / "data"
        """The directory to use as the server's data_dir."""
        self.mounted = False

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.mountpoint)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip() or f"mount exited with {done.returncode}")
        self.mounted = True
        self.data.mkdir()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)
            self.mounted = False

    def fill(self) -> int:
        """Grow the filler until the disk is full; return the bytes added."""
        added = 0
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in CHUNKS:
                block = b"\0" * chunk
                while True:
                    try:
                        n = f.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    added += n or 0
                    if not n or n < chunk:
                        break
        return added

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@contextlib.contextmanager
def small_disk(mountpoint: Path, size: str = "16m") -> Iterator[SmallDisk]:
    """Mount a tmpfs for the ``with`` block (skip the test where that fails); unmount after."""
    disk = SmallDisk(mountpoint, size)
    try:
        disk.mount()
    except OSError as exc:
        pytest.skip(f"cannot mount a {size} tmpfs at {mountpoint} (needs root): {exc}")
    try:
        yield disk
    finally:
        disk.unmount()


def jsonl_damage(directory: Path, *, settled: bool) -> list[str]:
    """Torn or broken lines in the JSONL files of ``directory``.

    While a server writes (``settled`` False) the last line of a file may be
    on its way and is not judged; every line before it must be a whole JSON
    object. Once the server is idle, every line must be.
    """
    found = []
    for path in sorted(directory.glob("*.jsonl*")):
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" unless the end is torn
        if tail and settled:
            found.append(f"{path.name}: the last line has no newline")
        for number, line in enumerate(lines, start=1):
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                found.append(f"{path.name} line {number}: not a whole JSON object")
    return found


def lines_missing(directory: Path) -> dict[str, int]:
    """By file: lines the store's outbox holds that the file does not (or that differ)."""
    with contextlib.closing(sqlite3.connect(directory / "interlock.db")) as db:
        missing = {}
        for name in FILES:
            stored = [
                line
                for (line,) in db.execute(
                    "SELECT line FROM audit_outbox WHERE file = ? ORDER BY seq", (name,)
                )
            ]
            path = directory / name
            written = path.read_text().splitlines() if path.exists() else []
            lost = len(set(stored) - set(written))
            if lost:
                missing[name] = lost
    return missing


__all__ = ["SmallDisk", "jsonl_damage", "lines_missing", "small_disk"]
