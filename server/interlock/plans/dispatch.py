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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from interlock.config import ServerConfig
from interlock.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from interlock.journal import EventRecord
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
DEFAULT_TIMEOUT_SECONDS = 60.0
_WORK_PREFIX = os.urandom(6).hex()
_WORK_IDS = itertools.count(1)


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

    @property
    def catalog(self) -> Catalog:
        return self.decisions.policies.active.catalog

    async def commit(
        self, plan: PlanRun, steps: Any = (), events: Any = (), audit: Any = ()
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
        self._out_by_tool[step.tool] += 1
        self._dispatch_times[step.tool].append(now)
        self._work[step.work_id] = (plan.plan_id, step.step_id)
        await self.commit(
            plan,
            [step],
            [
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
            ],
        )
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
        found = self._find(offer.work_id)
        if found is None:
            return
        plan, step = found

        async def lost() -> None:
            with contextlib.suppress(LeaseLost):  # the new owner judges it at its deadline
                await lost_step()

        async def lost_step() -> None:
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
            else:
                step.work_id = ""
                await self.set_step(
                    plan,
                    step,
                    StepState.DECIDED,
                    f"the worker disconnected; {step.mode} step offered again",
                )

        asyncio.get_running_loop().create_task(lost())

    def timeout_of(self, tool: str) -> float:
        """The tool's timeout; a tool a reload removed keeps a default one."""
        contract = self.catalog.tools.get(tool)
        return contract.timeout_seconds if contract is not None else DEFAULT_TIMEOUT_SECONDS

    def work_deadline(self, work_id: str) -> float:
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

    async def finish_step(self, plan: PlanRun, step: StepRun, result: dict[str, Any]) -> None:
        """Record a step's reported result and move it to the matching state."""
        step.result = result
        state = RESULT_STATES[result["outcome"]]
        # The plan's task takes it from here.
        await self.set_step(plan, step, state, result.get("error_message", ""))


__all__ = ["DEFAULT_TIMEOUT_SECONDS", "RATE_WINDOW_SECONDS", "Dispatch", "new_work_id"]
