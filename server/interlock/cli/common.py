"""Constants and the usage error shared by the CLI's modules."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from interlock.tasks import cancel_and_wait

SERVER_ENV = "INTERLOCK_SERVER"
STOP_GRACE_SECONDS = 5.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
OUTCOME_CHOICES = ("succeeded", "failed", "timed_out")

_T = TypeVar("_T")

log = logging.getLogger("interlock.cli")


class UsageError(Exception):
    """Bad input on the command line (exit status 2)."""


def run_interruptibly(work: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(work)``, ended by Ctrl-C (SIGINT) at once: ``work`` is
    cancelled (its ``finally`` and ``async with`` blocks run) and
    ``KeyboardInterrupt`` is raised.

    asyncio.run's own SIGINT handler is a plain Python handler: when the kernel
    hands the signal to one of gRPC's threads, the loop sleeps on in its
    selector until some other event arrives, which on a quiet stream may be
    never. A handler added with ``loop.add_signal_handler`` writes to the loop's
    wake-up descriptor, so the loop wakes whichever thread took the signal.
    """
    return asyncio.run(_until_interrupted(work))


async def _until_interrupted(work: Coroutine[Any, Any, _T]) -> _T:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (RuntimeError, ValueError):  # not the main thread: no signal reaches us here
        return await work
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await cancel_and_wait(stopper, task)  # a task already done is left as it is
    if task.cancelled():
        raise KeyboardInterrupt
    return task.result()
