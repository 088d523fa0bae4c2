"""Stopping background tasks so that they really stop.

Python 3.11's :func:`asyncio.wait_for` returns its inner result, swallowing
the cancel, when a cancel lands in the same turn as the inner wait ends
(fixed in 3.12). psycopg_pool hands out connections through it, so a
cancel sent to a loop that reads PostgreSQL can be lost; a loop that then
goes round again makes a single ``task.cancel(); await task`` wait for ever
(seen as a server that never finished stopping). :func:`cancel_and_wait`
repeats the cancel until each task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib

RETRY_SECONDS = 1.0
"""How long to wait for a cancelled task before cancelling it again."""


async def cancel_and_wait(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel each task (``None`` is skipped) and wait until all have ended,
    cancelling again those a cancel did not stop. A task's own exception is
    not raised here: the caller is stopping it."""
    present = [t for t in tasks if t is not None]
    pending = {t for t in present if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RETRY_SECONDS)
    for task in present:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()  # retrieved, so asyncio does not log it as never retrieved


__all__ = ["RETRY_SECONDS", "cancel_and_wait"]
