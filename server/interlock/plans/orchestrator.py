"""Runs plans: decides each step through the policy, dispatches work, rolls back.

One asyncio task per plan drives it. A step starts when every step it depends
on has succeeded (or was skipped as a duplicate) and its throttle delay has
passed; it gets its decision through the same path as RequestToolCall
(policy, audit, metrics, the LIVE cap). MOCK steps are completed here; DRY_RUN
and LIVE steps wait for a slot under the tool's max_concurrency and rate
limit (across all plans), then for the agent's worker (PullWork). A worker's
report (ReportToolResult with the work id) finishes the step; a step past its
tool's timeout is TIMED_OUT. A denied step, a failed or timed-out one, or a
LIVE one whose worker vanished (AMBIGUOUS) fails the plan: steps not started
are cancelled, running ones are awaited, then completed LIVE steps are
compensated (:mod:`interlock.plans.rollback`).

Every change is committed (row, event, audit line) before the plan acts on
it, so a restart resumes each plan where its last change left it; a LIVE
step that was out with a worker is never offered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from typing import Any

from interlock.approvals import Approval
from interlock.audit import STATE_TRANSITIONS
from interlock.config import ServerConfig
from interlock.decisions import DecisionService, ToolCall
from interlock.errors import (
    AlreadyExists,
    FailedPrecondition,
    InterlockError,
    NotFound,
)
from interlock.journal import EventRecord, Journal, Recorded, Row
from interlock.plans import conflicts as conflict_rules
from interlock.plans import leases, shared_work
from interlock.plans import spec as plan_spec
from interlock.plans.dispatch import RATE_WINDOW_SECONDS, Dispatch
from interlock.plans.leases import Lease, LeaseLost, LeaseTaken
from interlock.plans.model import (
    Conflict,
    ConflictType,
    InFlightStep,
    PlanSpec,
    PlanState,
    Resolution,
    StepState,
)
from interlock.plans.rollback import Rollback
from interlock.plans.runtime import (
    DONE_FOR_DEPENDENTS,
    PlanChange,
    PlanRun,
    StepRun,
    conflict_dict,
)
from interlock.plans.summary import Summaries
from interlock.plans.workers import WorkHub

log = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 5.0
CANCEL_WAIT_SECONDS = 2.0
"""How long CancelPlan waits for the plan to settle before answering."""
FAILED_STATES = frozenset({StepState.FAILED, StepState.TIMED_OUT, StepState.AMBIGUOUS})
HOLDS_LIVE = frozenset({StepState.DECIDED, StepState.DISPATCHED})
"""States in which a step's LIVE decision counts toward the LIVE cap."""


class Orchestrator(Dispatch):
    def __init__(
        self,
        config: ServerConfig,
        decisions: DecisionService,
        journal: Journal,
        summaries: Summaries,
    ) -> None:
        self.config = config
        self.decisions = decisions
        self.journal = journal
        self.summaries = summaries
        self.plans: dict[str, PlanRun] = {}
        self.hub = WorkHub(on_lost=self._on_lost, on_handoff=self._handoff)
        self.rollback = Rollback(self)
        self.metrics = decisions.metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._work: dict[str, tuple[str, str]] = {}
        self._out_by_tool: Counter[str] = Counter()
        self._dispatch_times: dict[str, deque[float]] = {}
        self._slot_waiters: dict[str, set[str]] = {}
        self._closing = False
        self._restored: set[str] = set()
        """Work ids that were out when the server stopped: never offered again."""
        self.approvals = decisions.approvals
        self.approvals.listeners.append(self._on_approval)
        self.shared = journal.shared
        """Replicas may share the journal: plans are driven under leases."""
        self.replica = getattr(journal, "replica", "") or leases.default_replica(config.data_dir)
        self._leases: dict[str, Lease] = {}
        self._lease_task: asyncio.Task[None] | None = None
        self._items: set[str] = set()
        """Shared: work ids of this replica's plans that have a work_items row."""
        self._queued: dict[str, str] = {}
        """Shared: offered items handed to this replica's hub (work id -> revision)."""
        self._claimed: dict[str, float] = {}
        """Shared: items this replica's workers claimed (work id -> deadline)."""
        self._work_wake = asyncio.Event()
        self._work_task: asyncio.Task[None] | None = None

    def _on_approval(self, approval: Approval) -> None:
        plan = self.plans.get(approval.plan_id)
        if plan is not None:
            plan.changed.set()

    # Persistence -------------------------------------------------------------

    async def commit(
        self,
        plan: PlanRun,
        steps: list[StepRun] = (),  # type: ignore[assignment]
        events: list[EventRecord] = (),  # type: ignore[assignment]
        audit: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
        work: list[Row] = (),  # type: ignore[assignment]
    ) -> None:
        plan.updated_at = time.time()
        events = list(events)
        change = PlanChange(plan, list(steps), events, list(audit), work=list(work))
        lease = self._leases.get(plan.plan_id)
        if self.shared:
            if lease is None:
                raise LeaseLost(f"plan {plan.plan_id} is not driven by this replica")
            if lease.fresh:
                expires = time.time() + self.config.plan_lease_seconds
                change.lease = [leases.first(plan.plan_id, lease, expires)]
            else:
                change.lease = [leases.guard(plan.plan_id, lease)]
        try:
            await self.journal.record(change)
        except LeaseLost:
            self._forget(plan)
            raise
        if lease is not None:
            lease.fresh = False
        for e in events:
            if e.kind == "CONFLICT" and e.payload:
                self.metrics.plan_conflicts.labels(
                    e.payload.get("type", ""), e.payload.get("resolution", "")
                ).inc()

    async def set_step(
        self, plan: PlanRun, step: StepRun, state: StepState, message: str = ""
    ) -> None:
        before = step.state
        step.state = state
        step.updated_at = time.time()
        if message:
            step.message = message
        if state not in HOLDS_LIVE and step.decision_id and not step.compensates:
            # A LIVE step counts toward the cap until it ends (or is decided again).
            self.decisions.release_live(step.decision_id)
        event = EventRecord(
            kind="STATE_TRANSITION",
            plan_id=plan.plan_id,
            step_id=step.step_id,
            agent_id=step.agent_id,
            decision_id=step.decision_id,
            tool=step.tool,
            message=f"step {step.step_id}: {before.value} -> {state.value}"
            + (f" ({message})" if message else ""),
            payload={
                "scope": "step",
                "from_state": before.value,
                "to_state": state.value,
                "mode": step.mode,
                "reason": message,
            },
        )
        line = {
            "time": step.updated_at,
            "decision_id": step.decision_id,
            "plan_id": plan.plan_id,
            "step_id": step.step_id,
            "tool": step.tool,
            "from_state": before.value,
            "to_state": state.value,
            "mode": step.mode,
            "reason": message,
        }
        work: list[Row] = []
        if step.finished and step.work_id in self._items:  # shared: free the tool's slot
            if state != StepState.AMBIGUOUS:  # an AMBIGUOUS step's late report is awaited
                self._items.discard(step.work_id)
            work.append(
                shared_work.closed(step.work_id, report_expected=state == StepState.AMBIGUOUS)
            )
        await self.commit(plan, [step], [event], [(STATE_TRANSITIONS, line)], work)
        plan.changed.set()

    async def set_plan(self, plan: PlanRun, state: PlanState, message: str = "") -> None:
        before = plan.state
        plan.state = state
        if message:
            plan.message = message
        payload = {
            "scope": "plan",
            "from_state": before.value,
            "to_state": state.value,
            "reason": message,
        }
        events = [
            EventRecord(
                kind="STATE_TRANSITION",
                plan_id=plan.plan_id,
                message=f"plan {plan.plan_id}: {before.value} -> {state.value}",
                payload=payload,
            )
        ]
        if plan.finished:
            counts = Counter(s.state.value for s in plan.steps.values())
            events.append(
                EventRecord(
                    kind="PLAN_FINISHED",
                    plan_id=plan.plan_id,
                    message=f"plan {plan.plan_id} {state.value}"
                    + (f": {message}" if message else ""),
                    payload={"state": state.value, "steps": dict(counts), "reason": message},
                )
            )
        line = {
            "time": time.time(),
            "decision_id": "",
            "plan_id": plan.plan_id,
            "step_id": "",
            "tool": "",
            "from_state": before.value,
            "to_state": state.value,
            "mode": "",
            "reason": message,
        }
        await self.commit(plan, [], events, [(STATE_TRANSITIONS, line)])
        if plan.finished:
            self.metrics.plans_finished.labels(state.value).inc()
            await self.summaries.plan_finished()

    # Submission ----------------------------------------------------------------

    def in_flight_steps(self) -> list[InFlightStep]:
        out = []
        for plan in self.plans.values():
            for s in plan.steps.values():
                out.append(
                    InFlightStep(
                        plan_id=plan.plan_id,
                        step_id=s.step_id,
                        tool=s.tool,
                        agent_id=s.agent_id,
                        state=s.state,
                        updated_at=s.updated_at,
                        arguments_hash=conflict_rules.arguments_hash(s.arguments),
                    )
                )
        return out

    async def submit(self, spec: PlanSpec, submitted_by: str = "") -> PlanRun:
        catalog = self.catalog
        plan_spec.validate(
            spec,
            catalog,
            max_steps=self.config.max_plan_steps,
            schema_failed=self.decisions.on_schema_failure,
        )
        if spec.plan_id in self.plans or await self.journal.plans.exists(spec.plan_id):
            raise AlreadyExists(f"plan {spec.plan_id!r} already exists", reason="PLAN_EXISTS")
        now = time.time()
        report = conflict_rules.detect(spec, catalog, self.in_flight_steps(), now=now)
        if report.rejected:
            self.metrics.plans_submitted.labels("rejected").inc()
            for c in report.conflicts:
                self.metrics.plan_conflicts.labels(c.type.value, c.resolution.value).inc()
            text = "; ".join(
                c.description for c in report.conflicts if c.resolution.value == "reject"
            )
            raise FailedPrecondition(
                f"plan {spec.plan_id} rejected: {text}", reason="PLAN_CONFLICT"
            )
        adj = report.adjustments
        position = {step_id: i for i, step_id in enumerate(adj.order)}
        steps = {}
        for s in sorted(spec.steps, key=lambda s: position[s.step_id]):
            extra = tuple(adj.extra_dependencies.get(s.step_id, ()))
            steps[s.step_id] = StepRun(
                plan_id=spec.plan_id,
                step_id=s.step_id,
                position=position[s.step_id],
                tool=s.tool,
                agent_id=s.agent_id,
                arguments=s.arguments,
                confidence=s.confidence,
                depends_on=tuple(dict.fromkeys(s.depends_on + extra)),
                not_before=now + adj.not_before.get(s.step_id, 0.0),
                updated_at=now,
            )
        plan = PlanRun(
            plan_id=spec.plan_id,
            source_format=spec.source_format,
            labels=dict(spec.labels),
            steps=steps,
            conflicts=list(report.conflicts),
            submitted_at=now,
            updated_at=now,
            submitted_by=submitted_by,
        )
        events = [
            EventRecord(
                kind="STATE_TRANSITION",
                plan_id=plan.plan_id,
                message=f"plan {plan.plan_id} accepted with {len(steps)} steps",
                payload={"scope": "plan", "from_state": "", "to_state": "PENDING"},
            )
        ]
        events += [
            EventRecord(
                kind="CONFLICT",
                plan_id=plan.plan_id,
                step_id=",".join(c.step_ids),
                message=f"{c.type.value}: {c.description} -> {c.resolution.value}",
                payload=conflict_dict(c),
            )
            for c in report.conflicts
        ]
        self._leases[plan.plan_id] = Lease(self.replica, 1, fresh=True)
        try:
            await self.commit(plan, list(steps.values()), events)
        except BaseException:
            self._leases.pop(plan.plan_id, None)
            raise
        self.metrics.plans_submitted.labels("accepted").inc()
        self.plans[plan.plan_id] = plan
        for step_id, reason in sorted(adj.skipped.items()):
            await self.set_step(plan, steps[step_id], StepState.SKIPPED, reason)
        for step_id, reason in sorted(adj.denied.items()):
            await self.set_step(plan, steps[step_id], StepState.FAILED, reason)
        if report.conflicts:
            await self.summaries.conflicts_changed()
        self._start(plan)
        return plan

    def _start(self, plan: PlanRun) -> None:
        task = asyncio.create_task(self._drive(plan), name=f"plan-{plan.plan_id}")
        self._tasks[plan.plan_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(plan.plan_id, None))

    # Driving ---------------------------------------------------------------------

    async def _drive(self, plan: PlanRun) -> None:
        try:
            if plan.state == PlanState.PENDING:
                await self.set_plan(plan, PlanState.RUNNING)
            while not plan.finished and not self._closing:
                plan.changed.clear()
                async with plan.lock:
                    wake = await self._advance(plan)
                if plan.finished or self._closing:
                    break
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races the event, and the plan would run on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wake):
                        await plan.changed.wait()
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:  # another replica drives it now
            log.warning("plan %s: %s; no longer driven here", plan.plan_id, exc.message)
        except InterlockError as exc:  # e.g. a reload removed a tool the plan uses
            log.error("plan %s failed: %s", plan.plan_id, exc.message)
            with contextlib.suppress(Exception):
                await self.set_plan(plan, PlanState.FAILED, exc.message)
        except Exception as exc:
            log.exception("plan %s: the orchestrator failed", plan.plan_id)
            with contextlib.suppress(Exception):
                await self.set_plan(plan, PlanState.FAILED, f"internal error: {type(exc).__name__}")

    async def _advance(self, plan: PlanRun) -> float | None:
        """Do what can be done now; return how long to sleep at most."""
        now = time.time()
        if plan.cancel_requested:
            await self._cancel_now(plan)
            return None
        await self._expire(plan, now)
        if any(s.state in FAILED_STATES for s in plan.steps.values() if not s.compensates):
            return await self.rollback.advance(plan)
        for step in list(plan.steps.values()):
            if step.state == StepState.PENDING and self._ready(plan, step, now):
                await self._decide(plan, step)
            if step.state == StepState.AWAITING_APPROVAL:
                await self._approval_outcome(plan, step)
            if step.state == StepState.DECIDED and step.mode == "MOCK":
                await self._complete_mock(plan, step)  # decided just before a restart
            elif step.state == StepState.DECIDED and not step.work_id:
                await self._dispatch(plan, step)
        if all(s.state in DONE_FOR_DEPENDENTS for s in plan.steps.values()):
            await self.set_plan(plan, PlanState.SUCCEEDED)
            return None
        return self._next_wake(plan, time.time())

    def _ready(self, plan: PlanRun, step: StepRun, now: float) -> bool:
        deps = [plan.steps[d] for d in step.depends_on if d in plan.steps]
        return step.not_before <= now and all(d.state in DONE_FOR_DEPENDENTS for d in deps)

    def _next_wake(self, plan: PlanRun, now: float) -> float | None:
        times = [
            s.not_before
            for s in plan.steps.values()
            if s.state == StepState.PENDING and s.not_before > now
        ]
        times += [
            s.deadline
            for s in plan.steps.values()
            if s.state == StepState.DISPATCHED and s.deadline
        ]
        times += [
            t + RATE_WINDOW_SECONDS for q in self._dispatch_times.values() for t in list(q)[:1]
        ]
        future = [t - now for t in times if t > now]
        return max(0.01, min(future)) if future else 5.0

    async def _expire(self, plan: PlanRun, now: float) -> None:
        for step in plan.steps.values():
            if step.state == StepState.DISPATCHED and step.deadline and step.deadline <= now:
                self._release(step)
                if self.shared and step.decision_id and not step.compensates:
                    # Its worker may have reported to another replica.
                    stored = await self.decisions.stored_result(step.decision_id)
                    if stored is not None:
                        step.work_id = ""
                        await self.finish_step(plan, step, stored)
                        continue
                if step.work_id in self._restored:
                    await self.set_step(
                        plan,
                        step,
                        StepState.AMBIGUOUS,
                        "no report before its deadline after a restart: the outcome is unknown",
                    )
                    continue
                timeout = self.timeout_of(step.tool)
                conflict = Conflict(
                    type=ConflictType.TIMEOUT,
                    resolution=Resolution.CANCEL,
                    description=f"{step.step_id} ({step.tool}, agent {step.agent_id}) ran past "
                    f"its {timeout:g}s timeout: cancelled, counted as a failure",
                    step_ids=(step.step_id,),
                    detected_at=now,
                )
                plan.conflicts.append(conflict)
                await self.commit(
                    plan,
                    [],
                    [
                        EventRecord(
                            kind="CONFLICT",
                            plan_id=plan.plan_id,
                            step_id=step.step_id,
                            tool=step.tool,
                            agent_id=step.agent_id,
                            payload=conflict_dict(conflict),
                            message=f"TIMEOUT: {conflict.description} -> cancel",
                        )
                    ],
                )
                await self.set_step(
                    plan,
                    step,
                    StepState.TIMED_OUT,
                    f"no result within the {timeout:g}s timeout of {step.tool}",
                )
                await self.summaries.conflicts_changed()

    async def _decide(
        self,
        plan: PlanRun,
        step: StepRun,
        approval_id: str = "",
        *,
        supersedes: str = "",
        prior_approval: Approval | None = None,
    ) -> None:
        call = ToolCall(
            agent_id=step.agent_id,
            tool=step.tool,
            arguments=dict(step.arguments or {}),
            confidence=step.confidence,
            plan_id=plan.plan_id,
            step_id=step.step_id,
            check_schema=step.arguments is not None,
            approval_id=approval_id,
            requested_by=plan.submitted_by,
            orchestrated=True,
            supersedes=supersedes,
            prior_approval=prior_approval,
        )
        try:
            record = await self.decisions.decide(call)
        except FailedPrecondition as exc:
            if approval_id and exc.reason == "APPROVAL_POLICY_CHANGED":
                # The policy now asks more than the approval gave: ask again.
                await self._decide(plan, step, supersedes=supersedes)
                return
            await self.set_step(plan, step, StepState.FAILED, exc.message)
            return
        except InterlockError as exc:
            await self.set_step(plan, step, StepState.FAILED, exc.message)
            return
        if step.finished:  # cancelled while it was being decided: the decision goes unused
            self.decisions.release_live(record.decision_id)
            return
        was = step.mode
        step.decision_id, step.mode = record.decision_id, record.mode
        step.decided_under = record.policy_revision
        reasons = "; ".join(record.reasons)
        if supersedes:
            reasons = (
                f"decided again at hand-off under policy {record.policy_revision[:12]} "
                f"(was {was} by {supersedes}): {record.verdict} {record.mode}; {reasons}"
            )
        if record.verdict == "DENY":
            await self.set_step(plan, step, StepState.FAILED, f"denied: {reasons}")
        elif record.verdict == "PENDING_APPROVAL":
            await self.set_step(
                plan,
                step,
                StepState.AWAITING_APPROVAL,
                f"{reasons}; waiting for approval {record.approval_id}",
            )
        elif record.mode == "MOCK":
            await self.set_step(plan, step, StepState.DECIDED, reasons)
            await self._complete_mock(plan, step)
        else:
            await self.set_step(plan, step, StepState.DECIDED, reasons)

    async def redecide(self, plan: PlanRun, step: StepRun) -> None:
        """Decide a step again before it is handed out (the policy changed since
        its decision, or it was decided before a restart). The approval its
        decision used still covers it when it covers the policy in force."""
        old = step.decision_id
        prior = None
        if old:
            prior = await self.approvals.used_by(old)
        await self.decisions.drop_live(old)
        await self._decide(plan, step, supersedes=old, prior_approval=prior)

    async def _approval_outcome(self, plan: PlanRun, step: StepRun) -> None:
        """A held step goes on once its approval is resolved: approved, it is
        decided again presenting the approval (which it uses up) and runs LIVE;
        denied or expired, it fails, and the plan rolls back."""
        approval = await self.approvals.stored_for_decision(step.decision_id)
        if approval is None or approval.state == "PENDING":
            return
        if approval.state == "APPROVED":
            await self._decide(plan, step, approval.approval_id)
        elif approval.state == "DENIED":
            await self.set_step(
                plan,
                step,
                StepState.FAILED,
                f"approval {approval.approval_id} denied by {approval.resolved_by}: "
                f"{approval.reason}",
            )
        elif approval.state == "EXPIRED":
            await self.set_step(
                plan,
                step,
                StepState.FAILED,
                f"approval {approval.approval_id} EXPIRED: {approval.reason}",
            )
        else:  # USED by an earlier decision of this step, or CANCELLED
            await self.set_step(
                plan, step, StepState.FAILED, f"approval {approval.approval_id} is {approval.state}"
            )

    async def _complete_mock(self, plan: PlanRun, step: StepRun) -> None:
        """Interlock runs a MOCK step itself: it never goes to a worker. Safe to
        repeat after a restart (a result already stored is kept)."""
        result = {
            "outcome": "SUCCEEDED",
            "output": {"mock": True},
            "error_message": "",
            "duration_seconds": 0.0,
        }
        try:
            await self.decisions.report(
                decision_id=step.decision_id,
                agent_id=step.agent_id,
                outcome="SUCCEEDED",
                output={"mock": True},
                error_message="",
                duration_seconds=0.0,
            )
        except AlreadyExists:
            result = await self.decisions.stored_result(step.decision_id) or result
        step.result = result
        await self.set_step(plan, step, StepState.SUCCEEDED, "completed by Interlock (MOCK)")

    # Cancellation -----------------------------------------------------------------

    async def cancel(self, plan_id: str, reason: str) -> PlanRun:
        plan = await self.get(plan_id)
        if plan.finished:
            raise FailedPrecondition(
                f"plan {plan_id} is already {plan.state.value}", reason="PLAN_FINISHED"
            )
        if self.shared and plan_id not in self.plans:
            # Another replica drives it: it reads the request with its leases.
            await self.journal.record(leases.cancel_request(plan_id, reason or "cancelled"))
            return plan
        plan.cancel_requested = reason or "cancelled"
        plan.changed.set()
        task = self._tasks.get(plan_id)
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=CANCEL_WAIT_SECONDS)
        return plan

    async def _cancel_now(self, plan: PlanRun) -> None:
        for step in plan.steps.values():
            if step.finished:
                continue
            if step.mode == "LIVE" and step.work_id and await self._is_out(step):
                # A worker holds it and may act on it: the outcome is unknown. Its
                # report is still taken (and recorded) when it comes.
                await self.set_step(
                    plan,
                    step,
                    StepState.AMBIGUOUS,
                    f"{plan.cancel_requested}; a worker held this LIVE step",
                )
                continue
            self._release(step)
            if step.state == StepState.AWAITING_APPROVAL:
                await self.approvals.withdraw(step.decision_id, f"plan {plan.plan_id} cancelled")
            await self.set_step(plan, step, StepState.CANCELLED, plan.cancel_requested)
        await self.set_plan(plan, PlanState.CANCELLED, plan.cancel_requested)

    async def _is_out(self, step: StepRun) -> bool:
        """True when a worker may hold the step's item. On a shared journal an
        item no worker claimed is withdrawn first, so no worker claims it after."""
        if not self.shared or step.work_id not in self._items:
            return self.hub.is_out(step.work_id)
        if step.state == StepState.DISPATCHED:
            return True
        try:
            await self.journal.record(shared_work.withdraw(step.work_id))
        except shared_work.NotClaimed:  # claimed (or reported) meanwhile
            return True
        return False

    # Reads and restart ----------------------------------------------------------

    async def get(self, plan_id: str) -> PlanRun:
        plan = self.plans.get(plan_id)
        if plan is not None:
            return plan
        stored = await self.journal.plans.get(plan_id)
        if stored is None:
            raise NotFound(f"unknown plan {plan_id!r}", reason="UNKNOWN_PLAN")
        return PlanRun.from_rows(*stored)

    async def list(self, states: list[str], limit: int, after: str) -> list[PlanRun]:
        ids = await self.journal.plans.ids(states, limit, after)
        return [await self.get(plan_id) for plan_id in ids]

    async def restore(self) -> None:
        """Pick up every plan that was running when the server stopped (on
        shared storage: the plans whose lease expired or was this replica's),
        then keep the leases: renew them, and take over expired ones."""
        if self.shared:
            self._work_task = asyncio.create_task(self._work_loop(), name="work-items")
            taken = await self._take_over()
            self._lease_task = asyncio.create_task(self._keep_leases(), name="plan-leases")
            if taken:
                log.info("took over %d plan(s)", taken)
            return
        rows = await self.journal.plans.unfinished()
        for row in rows:
            steps = await self.journal.plans.steps(row["plan_id"])
            await self._adopt(PlanRun.from_rows(row, steps))
        if rows:
            log.info("resumed %d plan(s) after a restart", len(rows))

    async def _adopt(self, plan: PlanRun) -> None:
        """Drive a plan read from the journal (after a restart or a takeover)."""
        self.plans[plan.plan_id] = plan
        await self._apply_stored_results(plan)
        if self.shared:
            await self._adopt_work(plan)
        for step in plan.steps.values():
            if step.state == StepState.DISPATCHED and (step.mode == "LIVE" or step.compensates):
                # Out with a worker when we stopped: keep it, never offer it again;
                # a report may still come, else its deadline makes it AMBIGUOUS.
                if not step.compensates:
                    self.decisions.hold_live(step.decision_id)
                self._work[step.work_id] = (plan.plan_id, step.step_id)
                self._out_by_tool[step.tool] += 1
                self._restored.add(step.work_id)
                if not step.deadline:
                    step.deadline = time.time() + self.timeout_of(step.tool)
            elif step.state in (StepState.DECIDED, StepState.DISPATCHED):
                # Not handed out (DECIDED: DISPATCHED is recorded before a worker
                # receives an item), or MOCK/DRY_RUN work that is safe to offer again.
                step.work_id = ""
                step.state = StepState.DECIDED
                if step.mode == "LIVE" and not step.compensates:
                    self.decisions.hold_live(step.decision_id)
        self._start(plan)

    async def _adopt_work(self, plan: PlanRun) -> None:
        """Shared journal: a step's item the old driver offered is withdrawn
        (then offered anew), unless a worker claimed it: then it is out."""
        for step in plan.steps.values():
            if not step.work_id or step.state not in (StepState.DECIDED, StepState.DISPATCHED):
                continue
            rows = [r for r in await self.journal.plans.step_work(plan.plan_id, step.step_id)]
            row = next((r for r in rows if r["work_id"] == step.work_id), None)
            if row is None:
                continue
            if row["state"] == shared_work.OFFERED:
                with contextlib.suppress(shared_work.NotClaimed):
                    await self.journal.record(shared_work.withdraw(step.work_id))
                    continue
                row = (await self.journal.plans.work_items([step.work_id]))[0]
            if row["state"] == shared_work.DELIVERED and step.state == StepState.DECIDED:
                step.state = StepState.DISPATCHED  # claimed just before the takeover
                step.deadline = float(row["deadline"])
            self._items.add(step.work_id)
            if step.state == StepState.DISPATCHED and step.mode != "LIVE" and not step.compensates:
                # Offered again below: the old item stops counting for its tool.
                with contextlib.suppress(shared_work.NotClaimed):
                    await self.journal.record(
                        Recorded(row_list=[shared_work.closed(step.work_id, report_expected=False)])
                    )

    async def _take_over(self) -> int:
        """Take every plan whose lease expired (or that this replica held before
        a restart), one compare-and-set each; drive the ones won."""
        now = time.time()
        taken = 0
        for row in await self.journal.plans.takeable(self.replica, now):
            plan_id = str(row["plan_id"])
            if plan_id in self.plans or self._closing:
                continue
            expires = time.time() + self.config.plan_lease_seconds
            try:
                await self.journal.record(leases.takeover(row, self.replica, expires))
            except LeaseTaken:
                continue
            stored = await self.journal.plans.get(plan_id)
            if stored is None:
                continue
            self._leases[plan_id] = Lease(self.replica, int(row["term"]) + 1)
            plan = PlanRun.from_rows(*stored)
            plan.cancel_requested = str(row["cancel_requested"] or "")
            if plan.finished:
                self._leases.pop(plan_id, None)
                continue
            log.warning(
                "plan %s: taken over from %s (term %d)",
                plan_id,
                row["owner"] or "before leases",
                int(row["term"]) + 1,
            )
            try:
                await self._adopt(plan)
            except LeaseLost:
                continue
            taken += 1
        return taken

    async def _keep_leases(self) -> None:
        """Renew this replica's leases every third of the lease time; forget the
        plans another replica took; take over expired ones; pass on cancel
        requests made on other replicas."""
        interval = self.config.plan_lease_seconds / 3
        while not self._closing:
            await asyncio.sleep(interval)
            try:
                await self._renew()
                await self._take_over()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is away: the next round tries again
                log.exception("plan leases: renewal or takeover failed")

    async def _renew(self) -> None:
        expires = time.time() + self.config.plan_lease_seconds
        held = [(p, lease) for p, lease in self._leases.items() if not lease.fresh]
        outcomes = await asyncio.gather(
            *(self.journal.record(leases.renewal(p, lease, expires)) for p, lease in held),
            return_exceptions=True,
        )
        for (plan_id, _), outcome in zip(held, outcomes, strict=True):
            plan = self.plans.get(plan_id)
            if isinstance(outcome, LeaseLost) and plan is not None:
                log.warning("plan %s: %s; no longer driven here", plan_id, outcome.message)
                self._forget(plan)
        for row in await self.journal.plans.leases_of(self.replica):
            plan = self.plans.get(str(row["plan_id"]))
            if plan is not None and row["cancel_requested"] and not plan.cancel_requested:
                plan.cancel_requested = str(row["cancel_requested"])
                plan.changed.set()

    def _forget(self, plan: PlanRun) -> None:
        """Stop driving a plan another replica took over: its task ends, its work
        here is withdrawn, its LIVE decisions stop counting here."""
        if self.plans.get(plan.plan_id) is not plan:
            return
        del self.plans[plan.plan_id]
        self._leases.pop(plan.plan_id, None)
        for step in plan.steps.values():
            self._release(step)
            if step.decision_id and not step.compensates:
                self.decisions.release_live(step.decision_id)
        task = self._tasks.get(plan.plan_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _apply_stored_results(self, plan: PlanRun) -> None:
        """A report the store took just before a crash finishes its step now."""
        for step in plan.steps.values():
            out = step.state in (StepState.DECIDED, StepState.DISPATCHED) and step.mode != "MOCK"
            if out and step.decision_id and not step.compensates:
                stored = await self.decisions.stored_result(step.decision_id)
                if stored is not None:
                    step.work_id = ""
                    await self.finish_step(plan, step, stored)

    async def close(self) -> None:
        """End work streams and plan tasks; the plans resume at the next start."""
        self._closing = True
        if self._lease_task is not None:
            self._lease_task.cancel()
        if self._work_task is not None:
            self._work_task.cancel()
        self.hub.close()
        tasks = list(self._tasks.values())
        for plan in self.plans.values():
            plan.changed.set()
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WAIT_SECONDS)
            for task in stuck:
                log.error(
                    "plan task %s did not stop within %ss", task.get_name(), CLOSE_WAIT_SECONDS
                )


__all__ = ["Orchestrator"]
