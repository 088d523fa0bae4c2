"""cancel_and_wait: a background loop that loses a cancel still stops."""

from __future__ import annotations

import asyncio

from interlock.tasks import cancel_and_wait


async def test_a_loop_that_swallows_a_cancel_is_cancelled_again_until_it_ends() -> None:
    # What Python 3.11's wait_for does when a cancel lands as its inner wait
    # ends (psycopg_pool's getconn): the cancel is lost and the loop goes on.
    swallowed = 0
    wake = asyncio.Event()

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await wake.wait()
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, None), 10)
    assert task.cancelled() and swallowed == 1
    # A single cancel and await (the old close) would still be waiting here.


async def test_a_task_that_failed_or_ended_is_waited_without_raising() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail())
    ended = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait(failed, ended)
    assert failed.done() and ended.done()
