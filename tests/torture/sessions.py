"""Clients that outlive the server: a worker and a watcher that reconnect after
each SIGKILL and keep what they saw, for the torture scenarios.

A :class:`ResilientWorker` pulls work for one agent on whatever channel it is
given, runs each item for a short random time and reports it; a report the
dead server never answered is sent again on the next channel (same work id),
as a real worker that did the work would. Every item it was handed is kept,
so the suite can count a LIVE step handed out twice.

A :class:`ResilientWatcher` follows WatchEvents and, after a restart, resumes
with ``after_seq`` = the last seq it saw; it notes every seq that did not
follow the one before (a gap or a repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, observe_pb2, plans_pb2, types_pb2

LIVE = types_pb2.EXECUTION_MODE_LIVE
GONE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
"""The codes of a call the dying server never answered."""


class ResilientWorker:
    def __init__(
        self, agent_id: str, rng: random.Random, work_seconds: tuple[float, float]
    ) -> None:
        self.agent_id = agent_id
        self.rng = rng
        self.work_seconds = work_seconds
        self.items: list[plans_pb2.WorkItem] = []
        self.unreported: dict[str, plans_pb2.WorkItem] = {}
        self.refused: list[str] = []
        """Reports the server refused (a late one: the step went AMBIGUOUS meanwhile)."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, channel: grpc.aio.Channel) -> None:
        """Report what the last server never acknowledged, then pull work on ``channel``."""
        stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        for item in list(self.unreported.values()):
            await self._report(stub, item, retry=True)
        self._spawn(self._pull(stub))

    async def disconnect(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pull(self, stub: control_plane_pb2_grpc.ControlPlaneStub) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in stub.PullWork(pb.PullWorkRequest(agent_id=self.agent_id)):
                item = response.item
                self.items.append(item)
                self.unreported[item.work_id] = item
                self._spawn(self._work(stub, item))

    async def _work(
        self, stub: control_plane_pb2_grpc.ControlPlaneStub, item: plans_pb2.WorkItem
    ) -> None:
        await asyncio.sleep(self.rng.uniform(*self.work_seconds))
        await self._report(stub, item, retry=False)

    async def _report(
        self, stub: control_plane_pb2_grpc.ControlPlaneStub, item: plans_pb2.WorkItem, retry: bool
    ) -> None:
        request = pb.ReportToolResultRequest(
            decision_id=item.decision_id,
            agent_id=self.agent_id,
            work_id=item.work_id,
            outcome=types_pb2.TOOL_OUTCOME_SUCCEEDED,
        )
        request.output.update({"ran": item.tool})
        try:
            await stub.ReportToolResult(request, timeout=10)
        except grpc.aio.AioRpcError as err:
            if err.code() in GONE:
                return  # sent again on the next channel
            late = "late " if retry else ""
            self.refused.append(f"{late}{item.work_id}: {err.code().name} {err.details()}")
        self.unreported.pop(item.work_id, None)

    def live_delivered_twice(self, *others: ResilientWorker) -> list[str]:
        """Steps handed out LIVE and then handed out again (in any mode), across workers."""
        items = [i for w in (self, *others) for i in w.items]
        handed = Counter((i.plan_id, i.step_id) for i in items)
        live = {(i.plan_id, i.step_id) for i in items if i.mode == LIVE}
        return sorted(f"{p}/{s} x{handed[(p, s)]}" for p, s in live if handed[(p, s)] > 1)


class ResilientWatcher:
    def __init__(self) -> None:
        self.events: list[observe_pb2.Event] = []
        self.breaks: list[str] = []
        """Where a seq did not follow the one before it."""
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def connect(self, channel: grpc.aio.Channel) -> None:
        stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
        self._task = asyncio.create_task(self._follow(stub, self.last_seq))

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self, stub: control_plane_pb2_grpc.ControlPlaneStub, after: int) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in stub.WatchEvents(pb.WatchEventsRequest(after_seq=after)):
                event = response.event
                if event.seq != self.last_seq + 1:
                    self.breaks.append(f"seq {event.seq} after {self.last_seq}")
                self.events.append(event)
                self.arrived.set()

    async def wait_for_seq(self, seq: int, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while self.last_seq < seq:
                self.arrived.clear()
                await self.arrived.wait()


__all__ = ["GONE", "ResilientWatcher", "ResilientWorker"]
