"""Rollback: undo a failed plan's completed LIVE steps, newest first.

When a plan fails, steps that have not started are cancelled and running
ones are awaited. Then, walking the completed steps in reverse dependency
order, each LIVE step is compensated by dispatching its contract's
compensating tool to the same agent with the same arguments, one at a time.
MOCK and DRY_RUN steps had no side effects and need nothing. A reversible
tool without a compensating tool (a read) has nothing to undo. An
irreversible completed step is a barrier: compensation stops there and the
plan ends FAILED_PARTIAL, naming what could not be undone; so does a
compensation that fails. When everything was undone the plan is ROLLED_BACK;
when nothing needed compensating it is FAILED. The compensating call gets
the original arguments, trimmed to the fields its schema accepts. Compensations are authorized by
the decision that let the original step run LIVE; each is recorded in
rollback_events.jsonl and as a ROLLBACK event.

The walk is derived from the steps' states, so it resumes after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from interlock.approvals import Approvals
from interlock.audit import ROLLBACK_EVENTS
from interlock.config import ServerConfig
from interlock.contracts import Catalog
from interlock.journal import AuditLine, EventRecord
from interlock.metrics import Metrics
from interlock.plans.model import PlanState, StepState
from interlock.plans.runtime import PlanRun, StepRun
from interlock.plans.workers import WorkHub


class PlanDriver(Protocol):
    """What a rollback needs of whoever drives the plan (the orchestrator)."""

    config: ServerConfig
    hub: WorkHub
    approvals: Approvals
    metrics: Metrics

    @property
    def catalog(self) -> Catalog: ...

    async def set_step(
        self, plan: PlanRun, step: StepRun, state: StepState, message: str = ""
    ) -> None: ...

    async def set_plan(self, plan: PlanRun, state: PlanState, message: str = "") -> None: ...

    async def commit(
        self,
        plan: PlanRun,
        steps: list[StepRun] = ...,
        events: list[EventRecord] = ...,
        audit: list[AuditLine] = ...,
    ) -> None: ...

    def _release(self, step: StepRun) -> None: ...

    async def _dispatch(
        self, plan: PlanRun, step: StepRun, *, compensation: bool = False
    ) -> bool: ...


UNDO_SUFFIX = ".undo"
NOT_STARTED = frozenset({StepState.PENDING, StepState.AWAITING_APPROVAL, StepState.DECIDED})
BROKEN = frozenset({StepState.FAILED, StepState.TIMED_OUT, StepState.AMBIGUOUS})


class Rollback:
    def __init__(self, driver: PlanDriver) -> None:
        self.o = driver

    def _failure(self, plan: PlanRun) -> str:
        for s in sorted(plan.steps.values(), key=lambda s: s.updated_at):
            if s.state in BROKEN and not s.compensates:
                return f"step {s.step_id} ({s.tool}) {s.state.value}" + (
                    f": {s.message}" if s.message else ""
                )
        return "a step failed"

    async def advance(self, plan: PlanRun) -> float | None:
        originals = [s for s in plan.steps.values() if not s.compensates]
        for step in originals:
            if step.state in NOT_STARTED and not (step.work_id and self.o.hub.is_out(step.work_id)):
                self.o._release(step)
                if step.state == StepState.AWAITING_APPROVAL:
                    await self.o.approvals.withdraw(step.decision_id, f"plan {plan.plan_id} failed")
                await self.o.set_step(
                    plan, step, StepState.CANCELLED, "the plan failed before this step ran"
                )
        if any(s.state in (StepState.DISPATCHED, StepState.DECIDED) for s in originals):
            return 1.0  # running steps finish (or time out) first
        failure = self._failure(plan)
        if not self.o.config.rollback_on_failure:
            await self.o.set_plan(plan, PlanState.FAILED, f"{failure}; rollback is disabled")
            return None
        for step in sorted(originals, key=lambda s: s.position, reverse=True):
            if step.state == StepState.ROLLED_BACK:
                continue
            if step.state != StepState.SUCCEEDED or step.mode != "LIVE":
                continue
            undo = plan.steps.get(step.step_id + UNDO_SUFFIX)
            if undo is not None:
                if undo.state in BROKEN:
                    await self._record(plan, step, "compensation_failed", undo.tool, undo.message)
                    await self._partial(
                        plan, failure, f"compensating {step.step_id} {undo.state.value}"
                    )
                    return None
                if undo.state == StepState.SUCCEEDED:
                    await self._record(plan, step, "compensated", undo.tool, "")
                    await self.o.set_step(
                        plan, step, StepState.ROLLED_BACK, f"undone by {undo.tool}"
                    )
                    continue
                if undo.state == StepState.DECIDED and not undo.work_id:
                    await self.o._dispatch(plan, undo, compensation=True)
                return 1.0  # under way
            contract = self.o.catalog.tool(step.tool)
            if not contract.reversible:
                await self._record(plan, step, "barrier", "", f"{step.tool} is irreversible")
                await self._partial(plan, failure, f"{step.step_id} ({step.tool}) is irreversible")
                return None
            if not contract.compensating_tool:
                await self._record(
                    plan, step, "nothing_to_undo", "", f"{step.tool} changes nothing"
                )
                await self.o.set_step(plan, step, StepState.ROLLED_BACK, "nothing to undo")
                continue
            await self._compensate(plan, step, contract.compensating_tool)
            return 1.0
        compensated = [
            s
            for s in originals
            if s.state == StepState.ROLLED_BACK and s.step_id + UNDO_SUFFIX in plan.steps
        ]
        if compensated:
            await self.o.set_plan(
                plan, PlanState.ROLLED_BACK, f"{failure}; {len(compensated)} step(s) undone"
            )
        else:
            await self.o.set_plan(plan, PlanState.FAILED, failure)
        return None

    async def _partial(self, plan: PlanRun, failure: str, why: str) -> None:
        left = [
            s.step_id
            for s in plan.steps.values()
            if not s.compensates and s.state == StepState.SUCCEEDED and s.mode == "LIVE"
        ]
        await self.o.set_plan(
            plan,
            PlanState.FAILED_PARTIAL,
            f"{failure}; rollback stopped: {why}; not undone: {', '.join(sorted(left))}",
        )

    def _arguments_for(self, tool: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """The original call's arguments, trimmed to what the compensating tool's
        schema accepts when it accepts nothing else (form_clear takes form_fill's
        form_id, not its fields)."""
        args = dict(arguments or {})
        schema = self.o.catalog.tool(tool).arguments_schema
        known = schema.get("properties")
        if isinstance(known, Mapping) and schema.get("additionalProperties") is False:
            args = {k: v for k, v in args.items() if k in known}
        return args

    async def _compensate(self, plan: PlanRun, step: StepRun, tool: str) -> None:
        undo = StepRun(
            plan_id=plan.plan_id,
            step_id=step.step_id + UNDO_SUFFIX,
            position=len(plan.steps),
            tool=tool,
            agent_id=step.agent_id,
            arguments=self._arguments_for(tool, step.arguments),
            confidence=step.confidence,
            depends_on=(step.step_id,),
            state=StepState.DECIDED,
            mode="LIVE",
            compensates=step.step_id,
            message=f"compensates {step.step_id}",
        )
        plan.steps[undo.step_id] = undo
        await self._record(
            plan, step, "compensate", tool, f"dispatching {tool} to undo {step.tool}"
        )
        if not await self.o._dispatch(plan, undo, compensation=True):
            undo.message = "waiting for a free slot of the compensating tool"
            await self.o.commit(plan, [undo])

    async def _record(
        self, plan: PlanRun, step: StepRun, action: str, tool: str, detail: str
    ) -> None:
        line: dict[str, Any] = {
            "time": time.time(),
            "plan_id": plan.plan_id,
            "step_id": step.step_id,
            "tool": step.tool,
            "action": action,
            "compensating_tool": tool,
            "detail": detail,
        }
        event = EventRecord(
            kind="ROLLBACK",
            plan_id=plan.plan_id,
            step_id=step.step_id,
            agent_id=step.agent_id,
            tool=step.tool,
            message=f"rollback {action}: {step.step_id}" + (f" ({detail})" if detail else ""),
            payload=line,
        )
        await self.o.commit(plan, [], [event], [(ROLLBACK_EVENTS, line)])
        metrics: Metrics | None = getattr(self.o, "metrics", None)  # a unit test's fake has none
        if metrics is not None:
            metrics.rollback_actions.labels(action).inc()


__all__ = ["UNDO_SUFFIX", "Rollback"]
