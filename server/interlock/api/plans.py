"""The plan RPCs of the ControlPlane: submit, read, cancel, and agent work streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from interlock.api.convert import (
    check_text,
    dict_to_struct,
    duration,
    enum_name,
    enum_value,
    require_id,
    struct_to_dict,
    timestamp,
)
from interlock.api.plan_specs import from_proto
from interlock.auth import current_principal
from interlock.errors import InvalidArgument, Unavailable
from interlock.plans.model import Conflict
from interlock.plans.orchestrator import Orchestrator
from interlock.plans.runtime import PlanRun, StepRun
from interlock.plans.workers import WorkOffer
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import plans_pb2, types_pb2

MAX_PAGE = 100


def conflict_pb(c: Conflict) -> plans_pb2.Conflict:
    return plans_pb2.Conflict(
        type=enum_value(plans_pb2.ConflictType, "CONFLICT_TYPE", c.type.value),
        resolution=c.resolution.value,
        description=c.description,
        step_ids=list(c.step_ids),
        plan_ids=list(c.plan_ids),
        detected_at=timestamp(c.detected_at),
    )


def step_pb(s: StepRun) -> plans_pb2.Step:
    out = plans_pb2.Step(
        step_id=s.step_id,
        tool=s.tool,
        agent_id=s.agent_id,
        confidence=s.confidence,
        depends_on=list(s.depends_on),
        state=enum_value(plans_pb2.StepState, "STEP_STATE", s.state.value),
        message=s.message,
        updated_at=timestamp(s.updated_at),
    )
    if s.arguments is not None:
        out.arguments.CopyFrom(dict_to_struct(dict(s.arguments)))
    if s.decision_id or s.mode:
        out.decision.decision_id = s.decision_id
        if s.mode:
            out.decision.mode = enum_value(types_pb2.ExecutionMode, "EXECUTION_MODE", s.mode)
    if s.result:
        r = s.result
        out.result.decision_id = s.decision_id
        out.result.outcome = enum_value(types_pb2.ToolOutcome, "TOOL_OUTCOME", r["outcome"])
        out.result.output.CopyFrom(dict_to_struct(r.get("output") or {}))
        out.result.error_message = r.get("error_message", "")
        out.result.duration.CopyFrom(duration(float(r.get("duration_seconds", 0.0))))
    return out


def plan_pb(p: PlanRun) -> plans_pb2.Plan:
    return plans_pb2.Plan(
        plan_id=p.plan_id,
        state=enum_value(plans_pb2.PlanState, "PLAN_STATE", p.state.value),
        steps=[step_pb(s) for s in p.steps.values()],
        conflicts=[conflict_pb(c) for c in p.conflicts],
        labels=dict(p.labels),
        submitted_at=timestamp(p.submitted_at),
        updated_at=timestamp(p.updated_at),
        message=p.message,
    )


def work_pb(offer: WorkOffer, deadline: float) -> plans_pb2.WorkItem:
    return plans_pb2.WorkItem(
        work_id=offer.work_id,
        plan_id=offer.plan_id,
        step_id=offer.step_id,
        decision_id=offer.decision_id,
        tool=offer.tool,
        arguments=dict_to_struct(dict(offer.arguments)),
        mode=enum_value(types_pb2.ExecutionMode, "EXECUTION_MODE", offer.mode),
        deadline=timestamp(deadline),
        attempt=offer.attempt,
        compensation=offer.compensation,
        agent_id=offer.agent_id,
    )


class PlanRpcs:
    """Mixed into the ControlPlane servicer."""

    orchestrator: Orchestrator

    async def SubmitPlan(
        self, request: pb.SubmitPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitPlanResponse:
        plan = await self.orchestrator.submit(
            from_proto(request), submitted_by=current_principal.get().id
        )
        return pb.SubmitPlanResponse(plan=plan_pb(plan))

    async def GetPlan(
        self, request: pb.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPlanResponse:
        require_id("plan_id", request.plan_id)
        return pb.GetPlanResponse(plan=plan_pb(await self.orchestrator.get(request.plan_id)))

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPlansResponse:
        size = request.page_size or 20
        if size > MAX_PAGE:
            raise InvalidArgument.field("page_size", f"must be at most {MAX_PAGE}")
        states = [enum_name(plans_pb2.PlanState, "PLAN_STATE", s) for s in request.states]
        if "" in states or "UNSPECIFIED" in states:
            raise InvalidArgument.field("states", "holds an unknown or unspecified state")
        plans = await self.orchestrator.list(states, size + 1, request.page_token)
        more = len(plans) > size
        plans = plans[:size]
        return pb.ListPlansResponse(
            plans=[plan_pb(p) for p in plans],
            next_page_token=plans[-1].plan_id if more and plans else "",
        )

    async def CancelPlan(
        self, request: pb.CancelPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelPlanResponse:
        require_id("plan_id", request.plan_id)
        check_text("reason", request.reason, self.orchestrator.config.max_string_length)
        plan = await self.orchestrator.cancel(
            request.plan_id, request.reason or "cancelled by request"
        )
        return pb.CancelPlanResponse(plan=plan_pb(plan))

    async def PullWork(
        self, request: pb.PullWorkRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PullWorkResponse]:
        require_id("agent_id", request.agent_id)
        self.orchestrator.catalog.agent(request.agent_id)  # NOT_FOUND for an unknown agent
        async for offer in self.orchestrator.hub.stream(request.agent_id):
            yield pb.PullWorkResponse(
                item=work_pb(offer, self.orchestrator.work_deadline(offer.work_id))
            )
        # The hub only ends a stream when the server stops.
        raise Unavailable(
            "the server is stopping; reconnect to keep pulling work", reason="SERVER_STOPPING"
        )

    async def report_work(self, request: pb.ReportToolResultRequest, outcome: str) -> Any:
        return await self.orchestrator.report(
            work_id=request.work_id,
            agent_id=request.agent_id,
            outcome=outcome,
            output=struct_to_dict(request.output, "output"),
            error_message=request.error_message,
            duration_seconds=request.duration.ToNanoseconds() / 1e9,
        )


__all__ = ["PlanRpcs", "plan_pb", "step_pb", "work_pb"]
