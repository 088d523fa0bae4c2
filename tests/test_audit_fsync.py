"""The audit files' fsync does not hold up decisions (issue 14, lever 4).

The files are fsynced on ``audit_fsync_interval_seconds``. That fsync ran on
the journal's writer thread, so every commit queued behind it waited for it
(a few ms on this machine's disk, every interval: the p99 of a decision at
c=1). It now runs on a thread of its own: a decision is answered while the
files' fsync is still in progress, here one that does not return at all.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import StartServer
from tests.helpers.calls import tool_call

pytestmark = pytest.mark.integration


@pytest.fixture
def stuck_audit_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """os.fsync of an audit file (*.jsonl) blocks until the test ends; the event is
    set once one has started."""
    started = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith(".jsonl"):
            started.set()
            release.wait(60)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield started
    release.set()


async def test_decisions_are_answered_while_the_audit_files_fsync(
    start_server: StartServer, stuck_audit_fsync: threading.Event
) -> None:
    running = await start_server(fsync=True, audit_fsync_interval_seconds=0.05)
    first = await running.cp.RequestToolCall(tool_call(confidence=0.6), timeout=30)
    assert first.decision.verdict
    # The interval passes and the files' fsync starts (and does not return).
    assert await _wait(stuck_audit_fsync, 30), "the audit files were never fsynced"
    for n in range(3):
        reply = await running.cp.RequestToolCall(
            tool_call(arguments={"target": f"button {n}"}, confidence=0.6), timeout=10
        )
        assert reply.decision.decision_id != first.decision.decision_id
        assert await running.server.journal.decisions.get(reply.decision.decision_id) is not None


async def _wait(event: threading.Event, seconds: float) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, event.wait, seconds)
