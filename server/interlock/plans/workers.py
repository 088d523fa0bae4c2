"""Agent workers: the PullWork streams and the work waiting for them.

An agent's worker opens ``PullWork(agent_id)`` and receives work items. Work
for an agent with no open worker waits in its queue, in the order it was
offered. The moment of hand-off decides: right before an item is written to
a worker's stream, the ``on_handoff`` callback checks it again under the
policy in force then and returns the item to send (perhaps with a new
decision and mode) or None (the step is no longer to be sent). A worker that
goes away leaves the items it received and did not report to the
``on_lost`` callback: the orchestrator offers a MOCK/DRY_RUN item again and
marks a LIVE one AMBIGUOUS, since a LIVE call is never silently repeated.
Items it was assigned but never received are offered again to the agent's
other workers, or wait for the next one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkOffer:
    work_id: str
    agent_id: str
    plan_id: str
    step_id: str
    decision_id: str
    tool: str
    arguments: Mapping[str, Any]
    mode: str
    deadline: float
    attempt: int
    compensation: bool = False


class _Worker:
    _ids = itertools.count(1)

    def __init__(self, agent_id: str) -> None:
        self.id = next(self._ids)
        self.agent_id = agent_id
        self.queue: asyncio.Queue[WorkOffer | None] = asyncio.Queue()
        self.assigned: dict[str, WorkOffer] = {}
        self.delivered: set[str] = set()
        """Work ids written to this worker's stream."""


class WorkHub:
    def __init__(
        self,
        on_lost: Callable[[WorkOffer], None],
        on_handoff: Callable[[WorkOffer], Awaitable[WorkOffer | None]],
    ) -> None:
        """``on_handoff`` checks an item right before its worker receives it and
        records that it is out; ``on_lost`` takes a received, unreported item
        whose worker went away."""
        self._on_lost = on_lost
        self._on_handoff = on_handoff
        self._waiting: dict[str, deque[WorkOffer]] = {}
        self._workers: dict[str, list[_Worker]] = {}
        self._owner: dict[str, _Worker] = {}
        self._closed = False

    def agents(self) -> list[str]:
        """The agents with a connected worker."""
        return sorted(self._workers)

    def workers(self, agent_id: str) -> int:
        return len(self._workers.get(agent_id, ()))

    def offer(self, offer: WorkOffer) -> None:
        """Hand an item to one of the agent's workers, or queue it until one comes."""
        workers = self._workers.get(offer.agent_id)
        if not workers:
            self._waiting.setdefault(offer.agent_id, deque()).append(offer)
            return
        worker = min(workers, key=lambda w: (len(w.assigned), w.id))
        self._assign(worker, offer)

    def _assign(self, worker: _Worker, offer: WorkOffer) -> None:
        worker.assigned[offer.work_id] = offer
        self._owner[offer.work_id] = worker
        worker.queue.put_nowait(offer)

    def complete(self, work_id: str) -> None:
        """The item was reported: it is no one's any more."""
        worker = self._owner.pop(work_id, None)
        if worker is not None:
            worker.assigned.pop(work_id, None)
            worker.delivered.discard(work_id)

    def withdraw(self, work_id: str) -> None:
        """Take back an item that is no longer wanted (cancelled or timed out)."""
        self.complete(work_id)
        for queue in self._waiting.values():
            for offer in list(queue):
                if offer.work_id == work_id:
                    queue.remove(offer)

    def is_out(self, work_id: str) -> bool:
        """True while a worker holds the item: it was written to its stream."""
        worker = self._owner.get(work_id)
        return worker is not None and work_id in worker.delivered

    async def stream(self, agent_id: str) -> AsyncIterator[WorkOffer]:
        """Register a worker and yield its items until it goes away or the hub closes."""
        worker = _Worker(agent_id)
        self._workers.setdefault(agent_id, []).append(worker)
        waiting = self._waiting.pop(agent_id, deque())
        while waiting:
            self._assign(worker, waiting.popleft())
        try:
            while not self._closed:
                item = await worker.queue.get()
                if item is None:
                    break
                if item.work_id not in worker.assigned:  # withdrawn meanwhile
                    continue
                checked = await self._on_handoff(item)
                if checked is None or item.work_id not in worker.assigned or self._closed:
                    continue  # no longer to be sent (withdrawn or decided otherwise)
                worker.assigned[checked.work_id] = checked
                worker.delivered.add(checked.work_id)
                yield checked
        finally:
            self._workers[agent_id].remove(worker)
            if not self._workers[agent_id]:
                del self._workers[agent_id]
            for offer in list(worker.assigned.values()):
                self._owner.pop(offer.work_id, None)
                if self._closed:  # at shutdown the store keeps the item for the restart
                    continue
                if offer.work_id in worker.delivered:
                    self._on_lost(offer)
                else:  # never received: someone else may take it
                    self.offer(offer)
            worker.assigned.clear()
            worker.delivered.clear()

    def close(self) -> None:
        self._closed = True
        for workers in self._workers.values():
            for worker in workers:
                worker.queue.put_nowait(None)


__all__ = ["WorkHub", "WorkOffer"]
