"""The ControlPlane service: tool calls, results and health.

Plans, work streams, events, approvals and signals are designed in the API
and answer UNIMPLEMENTED until their issues are built.
"""

from __future__ import annotations

from typing import Any

import grpc

from interlock import __version__
from interlock.api.convert import (
    contract_pb,
    decision_pb,
    enum_name,
    result_pb,
    struct_to_dict,
    timestamp,
)
from interlock.decisions import DecisionService, ToolCall
from interlock.errors import Unimplemented
from interlock.policy.manager import PolicyManager
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc as pb_grpc
from interlock.v1 import observe_pb2, types_pb2


def _unimplemented(what: str, issue: str) -> Unimplemented:
    return Unimplemented(f"{what} is not implemented yet (it comes with the {issue} work)")


class ControlPlane(pb_grpc.ControlPlaneServicer):
    def __init__(
        self, decisions: DecisionService, policies: PolicyManager, started_at: float
    ) -> None:
        self.decisions = decisions
        self.policies = policies
        self.started_at = started_at
        self.engine_available = True

    async def ListTools(
        self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListToolsResponse:
        active = self.policies.active
        tools = [contract_pb(t) for _, t in sorted(active.catalog.tools.items())]
        return pb.ListToolsResponse(tools=tools, policy_revision=active.revision)

    async def RequestToolCall(
        self, request: pb.RequestToolCallRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestToolCallResponse:
        call = ToolCall(
            agent_id=request.agent_id,
            tool=request.tool,
            arguments=struct_to_dict(request.arguments),
            confidence=request.confidence if request.HasField("confidence") else None,
            plan_id=request.plan_id,
            step_id=request.step_id,
        )
        record = await self.decisions.decide(call)
        return pb.RequestToolCallResponse(decision=decision_pb(record))

    async def ReportToolResult(
        self, request: pb.ReportToolResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportToolResultResponse:
        result = await self.decisions.report(
            decision_id=request.decision_id,
            agent_id=request.agent_id,
            outcome=enum_name(types_pb2.ToolOutcome, "TOOL_OUTCOME", request.outcome),
            output=struct_to_dict(request.output, "output"),
            error_message=request.error_message,
            duration_seconds=request.duration.ToNanoseconds() / 1e9,
        )
        return pb.ReportToolResultResponse(result=result_pb(result))

    async def GetHealth(
        self, request: pb.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHealthResponse:
        active = self.policies.active
        available = self.engine_available
        status = (
            observe_pb2.HEALTH_STATUS_HEALTHY if available else observe_pb2.HEALTH_STATUS_UNHEALTHY
        )
        component = observe_pb2.HealthComponent(
            name="policy_engine",
            score=100.0 if available else 0.0,
            weight=1.0,
            detail=f"{self.policies.engine.name} engine {'answers' if available else 'is unavailable'}; "
            f"policy set {active.policy_set.short_revision}",
        )
        return pb.GetHealthResponse(
            status=status,
            score=component.score,
            components=[component],
            policy_revision=active.revision,
            engine=self.policies.engine.name,
            engine_available=available,
            started_at=timestamp(self.started_at),
            version=__version__,
            decisions={k: v for k, v in self.decisions.decision_counts.items()},
        )

    # Designed now, built in later issues ---------------------------------

    async def SubmitPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("SubmitPlan", "plans")

    async def GetPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("GetPlan", "plans")

    async def ListPlans(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("ListPlans", "plans")

    async def CancelPlan(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("CancelPlan", "plans")

    async def PullWork(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("PullWork", "plans")
        yield  # pragma: no cover - makes this a stream handler

    async def WatchEvents(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("WatchEvents", "plans")
        yield  # pragma: no cover

    async def ListApprovals(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("ListApprovals", "approvals")

    async def ResolveApproval(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("ResolveApproval", "approvals")

    async def AwaitApproval(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("AwaitApproval", "approvals")

    async def ListSignals(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise _unimplemented("ListSignals", "observability")
