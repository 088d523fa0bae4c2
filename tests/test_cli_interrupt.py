"""run_interruptibly (the CLI's asyncio.run): results, errors, and use off the main thread.
Ctrl-C itself is shown on real processes: tests/test_watch_events.py and
tests/test_cli_approvals.py send SIGINT to the process and to one of its threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
from interlock.cli.common import run_interruptibly


async def answer() -> int:
    await asyncio.sleep(0.01)
    return 42


async def fail() -> None:
    await asyncio.sleep(0.01)
    raise ValueError("bad")


def test_the_result_and_the_error_come_back() -> None:
    assert run_interruptibly(answer()) == 42
    with pytest.raises(ValueError, match="bad"):
        run_interruptibly(fail())


def test_off_the_main_thread_it_still_runs() -> None:
    # No signal handler can be set there: the work runs as plain asyncio.run.
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(run_interruptibly(answer())))
    thread.start()
    thread.join(10)
    assert out == [42]
