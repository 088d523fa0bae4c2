"""Dispatch: per-tool slots, work offers to agents' workers, and their reports.

Mixed into :class:`~interlock.plans.orchestrator.Orchestrator`. A DRY_RUN or
LIVE step is offered when its tool has a free slot: fewer items out than its
``max_concurrency`` and fewer dispatches than its ``rate_limit_per_minute`` in
the last minute, across all plans (the run-time side of the RESOURCE and
RATE_LIMIT resolutions). A plan waiting for a slot is woken when one frees
(a report, a timeout, a withdrawal), not by polling.

The moment of hand-off decides (:meth:`Dispatch._handoff`): right before a
worker receives a step's item, the step's decision is checked again. A
decision made in this process under the policy revision in force now stands
(the policy is a pure function of its input, the switches are fixed for the
process, and a LIVE decision has held its place under the LIVE cap since it
was made). Otherwise (the policy was reloaded, or the step was decided before
a restart) the step is decided again under the policy, switches, cap and
approvals in force, the new decision naming the old one (``supersedes``):
the worker gets the new mode, or nothing if the step is now MOCK, denied or
held for approval. A compensation is not re-decided: it undoes a LIVE step
that already ran, under the decision that let that step run.

The deadline starts when a worker receives the item. A worker's report
finishes the step; the plan's task does the rest.

On a shared journal (PostgreSQL replicas) items go through the ``work_items``
table instead of this process's hub alone, so any replica's worker may take
them, once; the tool's limits are counted there (:mod:`interlock.plans.shared_work`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import orjson

from interlock.config import ServerConfig
from interlock.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from interlock.journal import EventRecord, Journal, Row
from interlock.plans import shared_work
from interlock.plans.leases import LeaseLost
from interlock.plans.model import StepState
from interlock.plans.runtime import PlanRun, StepRun
from interlock.plans.workers import WorkHub, WorkOffer

if TYPE_CHECKING:
    from interlock.contracts import Catalog
    from interlock.decisions import DecisionService

RESULT_STATES = {
    "SUCCEEDED": StepState.SUCCEEDED,
    "FAILED": StepState.FAILED,
    "TIMED_OUT": StepState.TIMED_OUT,
}
RATE_WINDOW_SECONDS = 60.0
WORK_POLL_SECONDS = 0.5
"""Shared journal: how often the work table is read when no event woke us."""
DEFAULT_TIMEOUT_SECONDS = 60.0
_WORK_PREFIX = os.urandom(6).hex()
_WORK_IDS = itertools.count(1)
log = logging.getLogger(__name__)


def new_work_id() -> str:
    return f"wk_{_WORK_PREFIX}{next(_WORK_IDS):08x}"


class Dispatch:
    config: ServerConfig
    decisions: DecisionService
    plans: dict[str, PlanRun]
    hub: WorkHub
    _work: dict[str, tuple[str, str]]
    _out_by_tool: Counter[str]
    _dispatch_times: dict[str, deque[float]]
    _slot_waiters: dict[str, set[str]]
    """Plans with a step waiting for a slot of the tool, woken when one frees."""
    journal: Journal
    shared: bool
    replica: str
    _closing: bool
    _items: set[str]
    _queued: dict[str, str]
    _claimed: dict[str, float]
    _work_wake: asyncio.Event

    @property
    def catalog(self) -> Catalog:
        return self.decisions.policies.active.catalog

    async def commit(
        self, plan: PlanRun, steps: Any = (), events: Any = (), audit: Any = (), work: Any = ()
    ) -> None:
        raise NotImplementedError

    async def set_step(
        self, plan: PlanRun, step: StepRun, state: StepState, message: str = ""
    ) -> None:
        raise NotImplementedError

    async def redecide(self, plan: PlanRun, step: StepRun) -> None:
        raise NotImplementedError

    # Dispatch ------------------------------------------------------------------------

    def _slot_free(self, tool: str, now: float) -> bool:
        contract = self.catalog.tool(tool)
        if self._out_by_tool[tool] >= contract.max_concurrency:
            return False
        times = self._dispatch_times.setdefault(tool, deque())
        while times and times[0] <= now - RATE_WINDOW_SECONDS:
            times.popleft()
        return len(times) < int(contract.rate_limit_per_minute)

    async def _dispatch(self, plan: PlanRun, step: StepRun, *, compensation: bool = False) -> bool:
        now = time.time()
        if not self._slot_free(step.tool, now):
            self._slot_waiters.setdefault(step.tool, set()).add(plan.plan_id)
            return False
        step.work_id = new_work_id()
        step.attempt += 1
        work: list[Row] = []
        if self.shared:  # offered in the table, to any replica's workers
            contract = self.catalog.tool(step.tool)
            work = shared_work.offer_rows(
                self._offer(plan, step, compensation),
                revision="" if compensation else step.decided_under,
                owner=self.replica,
                max_concurrency=contract.max_concurrency,
                rate_limit_per_minute=int(contract.rate_limit_per_minute),
                window_seconds=RATE_WINDOW_SECONDS,
            )
        self._out_by_tool[step.tool] += 1
        self._dispatch_times[step.tool].append(now)
        self._work[step.work_id] = (plan.plan_id, step.step_id)
        event = [
            EventRecord(
                kind="DISPATCH",
                plan_id=plan.plan_id,
                step_id=step.step_id,
                agent_id=step.agent_id,
                decision_id=step.decision_id,
                tool=step.tool,
                message=f"{step.tool} ({step.mode}) offered to {step.agent_id}'s worker (attempt {step.attempt})",
                payload={
                    "work_id": step.work_id,
                    "mode": step.mode,
                    "attempt": step.attempt,
                    "workers": self.hub.workers(step.agent_id),
                    "compensation": compensation,
                },
            )
        ]
        try:
            await self.commit(plan, [step], event, (), work)
        except shared_work.SlotTaken:  # another replica took the tool's last slot
            self._work.pop(step.work_id, None)
            self._out_by_tool[step.tool] -= 1
            step.work_id = ""
            step.attempt -= 1
            self._slot_waiters.setdefault(step.tool, set()).add(plan.plan_id)
            return False
        if self.shared:
            self._items.add(step.work_id)
            self._work_wake.set()
        else:
            self.hub.offer(self._offer(plan, step, compensation))
        return True

    def _offer(self, plan: PlanRun, step: StepRun, compensation: bool) -> WorkOffer:
        return WorkOffer(
            work_id=step.work_id,
            agent_id=step.agent_id,
            plan_id=plan.plan_id,
            step_id=step.step_id,
            decision_id=step.decision_id,
            tool=step.tool,
            arguments=dict(step.arguments or {}),
            mode=step.mode,
            deadline=step.deadline,
            attempt=step.attempt,
            compensation=compensation,
        )

    def _release(self, step: StepRun) -> None:
        if step.work_id and self._work.pop(step.work_id, None) is not None:
            self._out_by_tool[step.tool] -= 1
            self.hub.withdraw(step.work_id)
            for plan_id in self._slot_waiters.pop(step.tool, ()):
                waiting = self.plans.get(plan_id)
                if waiting is not None:
                    waiting.changed.set()

    async def _handoff(self, offer: WorkOffer) -> WorkOffer | None:
        """The item to hand to a worker now, checked under the policy in force;
        None when the step is no longer to be sent."""
        if self.shared:
            return await self._claim(offer)
        found = self._find(offer.work_id)
        if found is None:
            return None
        plan, step = found
        async with plan.lock:  # the plan's task does not act on the step meanwhile
            if step.work_id != offer.work_id or step.state != StepState.DECIDED:
                return None
            current = self.decisions.policies.active.revision
            if not step.compensates and step.decided_under != current:
                await self.redecide(plan, step)
                if step.state != StepState.DECIDED or step.mode == "MOCK":
                    self._release(step)  # completed as MOCK, denied, or held for approval
                    step.work_id = ""
                    return None
            # Out from now on: recorded before the worker can act on it, so a
            # restart never offers a LIVE item twice.
            step.deadline = time.time() + self.timeout_of(step.tool)
            step.message = ""
            try:
                await self.set_step(plan, step, StepState.DISPATCHED)
            except LeaseLost:  # another replica drives the plan now: not ours to hand out
                return None
            return self._offer(plan, step, offer.compensation)

    def _on_lost(self, offer: WorkOffer) -> None:
        if self.shared:  # the plan's driver, wherever it is, judges it
            self._claimed.pop(offer.work_id, None)

            async def mark() -> None:
                with contextlib.suppress(shared_work.NotClaimed):  # reported meanwhile
                    await self.journal.record(shared_work.lost(offer.work_id, self.replica))
                self._work_wake.set()

            asyncio.get_running_loop().create_task(mark())
            return
        found = self._find(offer.work_id)
        if found is None:
            return
        plan, step = found

        async def lost() -> None:
            with contextlib.suppress(LeaseLost):  # the new owner judges it at its deadline
                await self._lost_step(plan, step)

        asyncio.get_running_loop().create_task(lost())

    async def _lost_step(self, plan: PlanRun, step: StepRun) -> None:
        """A received item's worker went away without reporting it."""
        self._release(step)
        stored = None
        if step.decision_id and not step.compensates:
            stored = await self.decisions.stored_result(step.decision_id)
        if stored is not None:  # its report was stored: the outcome is known
            await self.finish_step(plan, step, stored)
        elif step.mode == "LIVE":
            await self.set_step(
                plan,
                step,
                StepState.AMBIGUOUS,
                "the worker disconnected while holding this LIVE step: its outcome is unknown",
            )
            self.decisions.ambiguous(step.agent_id, step.tool)  # a bad outcome of the pair
        else:
            step.work_id = ""
            await self.set_step(
                plan,
                step,
                StepState.DECIDED,
                f"the worker disconnected; {step.mode} step offered again",
            )

    def timeout_of(self, tool: str) -> float:
        """The tool's timeout; a tool a reload removed keeps a default one."""
        contract = self.catalog.tools.get(tool)
        return contract.timeout_seconds if contract is not None else DEFAULT_TIMEOUT_SECONDS

    def work_deadline(self, work_id: str) -> float:
        if work_id in self._claimed:
            return self._claimed[work_id]
        found = self._find(work_id)
        return found[1].deadline if found else 0.0

    def _find(self, work_id: str) -> tuple[PlanRun, StepRun] | None:
        where = self._work.get(work_id)
        if where is None:
            return None
        plan = self.plans.get(where[0])
        if plan is None or where[1] not in plan.steps:
            return None
        return plan, plan.steps[where[1]]

    async def report(
        self,
        *,
        work_id: str,
        agent_id: str,
        outcome: str,
        output: dict[str, Any],
        error_message: str,
        duration_seconds: float,
    ) -> StepRun:
        if self.shared:
            return await self._report_shared(
                work_id=work_id,
                agent_id=agent_id,
                result={
                    "outcome": outcome,
                    "output": output,
                    "error_message": error_message,
                    "duration_seconds": duration_seconds,
                },
            )
        found = self._find(work_id)
        if found is None:
            raise NotFound(f"unknown or finished work item {work_id!r}", reason="UNKNOWN_WORK")
        plan, step = found
        if step.state not in (StepState.DECIDED, StepState.DISPATCHED, StepState.AMBIGUOUS):
            raise FailedPrecondition(
                f"step {step.step_id} is {step.state.value}: its work is not expected",
                reason="WORK_FINISHED",
            )
        if step.agent_id != agent_id:
            raise PermissionDenied(
                f"work {work_id} belongs to agent {step.agent_id!r}, not {agent_id!r}",
                reason="NOT_YOUR_WORK",
            )
        result = {
            "outcome": outcome,
            "output": output,
            "error_message": error_message,
            "duration_seconds": duration_seconds,
        }
        if not step.compensates:
            try:
                await self.decisions.report(
                    decision_id=step.decision_id,
                    agent_id=agent_id,
                    outcome=outcome,
                    output=output,
                    error_message=error_message,
                    duration_seconds=duration_seconds,
                )
            except AlreadyExists:
                # A retry of a report the store already holds (the first one may
                # have landed just before a crash): the stored result stands.
                result = await self.decisions.stored_result(step.decision_id) or result
        self._release(step)
        step.result = result
        with contextlib.suppress(LeaseLost):  # the result is in the journal for the new owner
            await self.finish_step(plan, step, result)
        return step

    # Shared journal: work items in the table -----------------------------------------

    async def _claim(self, offer: WorkOffer) -> WorkOffer | None:
        """Claim an offered item for a worker of this replica: once, across replicas."""
        revision = self._queued.pop(offer.work_id, None)
        if revision is None:
            return None
        try:
            if not offer.compensation and revision != self.decisions.policies.active.revision:
                # Decided under another revision: its driver decides it again.
                await self.journal.record(shared_work.recheck(offer.work_id, self.replica))
                return None
            deadline = time.time() + self.timeout_of(offer.tool)
            await self.journal.record(shared_work.claim(offer, self.replica, deadline))
        except shared_work.NotClaimed:  # another replica's worker, a withdrawal, a report
            return None
        finally:
            self._work_wake.set()
        self._claimed[offer.work_id] = deadline
        return dataclasses.replace(offer, deadline=deadline)

    async def _report_shared(
        self, *, work_id: str, agent_id: str, result: dict[str, Any]
    ) -> StepRun:
        """A report at any replica: the result into the journal, the item REPORTED;
        the plan's driver finishes the step."""
        rows = await self.journal.plans.work_items([work_id])
        if not rows:
            raise NotFound(f"unknown or finished work item {work_id!r}", reason="UNKNOWN_WORK")
        row = rows[0]
        if row["agent_id"] != agent_id:
            raise PermissionDenied(
                f"work {work_id} belongs to agent {row['agent_id']!r}, not {agent_id!r}",
                reason="NOT_YOUR_WORK",
            )
        if row["state"] in (shared_work.REPORTED, shared_work.WITHDRAWN, shared_work.CLOSED):
            # As on one replica: finished work is work the server no longer knows.
            raise NotFound(f"unknown or finished work item {work_id!r}", reason="UNKNOWN_WORK")
        if row["state"] not in (shared_work.DELIVERED, shared_work.LOST):
            raise FailedPrecondition(
                f"step {row['step_id']}'s work {work_id} is {row['state']}: "
                "its report is not expected",
                reason="WORK_FINISHED",
            )
        if not row["compensation"]:
            try:
                await self.decisions.report(
                    decision_id=str(row["decision_id"]),
                    agent_id=agent_id,
                    outcome=result["outcome"],
                    output=result["output"],
                    error_message=result["error_message"],
                    duration_seconds=result["duration_seconds"],
                )
            except AlreadyExists:
                result = await self.decisions.stored_result(str(row["decision_id"])) or result
        try:
            await self.journal.record(shared_work.reported(work_id, str(row["state"]), result))
        except shared_work.NotClaimed as exc:
            raise FailedPrecondition(
                f"work {work_id} was finished meanwhile", reason="WORK_FINISHED"
            ) from exc
        self.hub.complete(work_id)
        self._claimed.pop(work_id, None)
        found = self._find(work_id)
        if found is not None:  # driven here: finish the step before answering
            await self._sync_work()
            return found[1]
        self._work_wake.set()
        offer = shared_work.offer_of(row)
        step = StepRun(
            plan_id=offer.plan_id,
            step_id=offer.step_id,
            position=0,
            tool=offer.tool,
            agent_id=offer.agent_id,
            arguments=offer.arguments,
            confidence=0.0,
            depends_on=(),
        )
        step.result = result
        return step

    def on_remote_events(self, events: list[EventRecord]) -> None:
        """Another replica offered, claimed or reported work: look at the table now."""
        if any(e.kind in ("DISPATCH", "STATE_TRANSITION", "RESULT") for e in events):
            self._work_wake.set()

    async def _work_loop(self) -> None:
        """Offer the table's items to this replica's workers, and act on the
        items of the plans driven here; woken by events, else every half second."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WORK_POLL_SECONDS):
                    await self._work_wake.wait()
            self._work_wake.clear()
            try:
                await self._pull()
                await self._sync_work()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is away: the next round tries again
                log.exception("work items: the table could not be read")

    async def _pull(self) -> None:
        """Hand offered items to this replica's hub for its connected workers."""
        rows = await self.journal.plans.offered_work(self.hub.agents())
        offered = {str(r["work_id"]) for r in rows}
        for work_id in [w for w in self._queued if w not in offered]:
            del self._queued[work_id]
        for row in rows:
            work_id = str(row["work_id"])
            if work_id not in self._queued:
                self._queued[work_id] = str(row["revision"])
                self.hub.offer(shared_work.offer_of(row))

    async def _sync_work(self) -> None:
        """Act on what happened to the items of the plans driven here."""
        for plan_id in [p for ids in self._slot_waiters.values() for p in ids]:
            waiting = self.plans.get(plan_id)
            if waiting is not None:  # a slot may have freed on another replica
                waiting.changed.set()
        ids = [w for w in self._work if w in self._items]
        for row in await self.journal.plans.work_items(ids):
            found = self._find(str(row["work_id"]))
            if found is None:
                continue
            plan, step = found
            async with plan.lock:
                if step.work_id != row["work_id"] or (
                    step.finished and step.state != StepState.AMBIGUOUS
                ):
                    continue
                with contextlib.suppress(LeaseLost):
                    await self._work_changed(plan, step, row)

    async def _work_changed(self, plan: PlanRun, step: StepRun, row: dict[str, Any]) -> None:
        state = row["state"]
        if state == shared_work.DELIVERED and step.state == StepState.DECIDED:
            # Claimed by a worker (the claim recorded the step DISPATCHED).
            step.state = StepState.DISPATCHED
            step.deadline = float(row["deadline"])
            step.updated_at = time.time()
            step.message = ""
            plan.changed.set()
        elif state == shared_work.RECHECK and step.state == StepState.DECIDED:
            self._release(step)
            self._items.discard(step.work_id)
            step.work_id = ""
            await self.redecide(plan, step)  # the plan's task offers it again
        elif state == shared_work.REPORTED:
            self._release(step)
            await self.finish_step(plan, step, orjson.loads(row["result"]))
        elif state == shared_work.LOST and step.state != StepState.AMBIGUOUS:
            await self._lost_step(plan, step)

    async def finish_step(self, plan: PlanRun, step: StepRun, result: dict[str, Any]) -> None:
        """Record a step's reported result and move it to the matching state."""
        step.result = result
        state = RESULT_STATES[result["outcome"]]
        # The plan's task takes it from here.
        await self.set_step(plan, step, state, result.get("error_message", ""))


__all__ = ["DEFAULT_TIMEOUT_SECONDS", "RATE_WINDOW_SECONDS", "Dispatch", "new_work_id"]
