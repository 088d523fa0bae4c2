"""The ControlPlane service: tool calls, results, plans, work, events, health.

The plan RPCs live in :mod:`interlock.api.plans`, the approval RPCs in
:mod:`interlock.api.approvals`, ListSignals in :mod:`interlock.api.signals`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from interlock import __version__
from interlock.api.approvals import ApprovalRpcs
from interlock.api.convert import (
    check_duration,
    check_text,
    contract_pb,
    decision_pb,
    enum_name,
    result_pb,
    struct_to_dict,
    timestamp,
)
from interlock.api.events import event_filter, event_pb
from interlock.api.plans import PlanRpcs, step_pb
from interlock.api.signals import list_signals
from interlock.auth import current_principal
from interlock.decisions import DecisionService, ToolCall
from interlock.errors import InvalidArgument, Unavailable
from interlock.events import EventHub
from interlock.health import HealthMonitor
from interlock.plans.orchestrator import Orchestrator
from interlock.policy.manager import PolicyManager
from interlock.signals import SignalEngine
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc as pb_grpc
from interlock.v1 import observe_pb2, types_pb2


class ControlPlane(PlanRpcs, ApprovalRpcs, pb_grpc.ControlPlaneServicer):
    health_monitor: HealthMonitor | None = None
    """Set by the server; GetHealth reports from it."""

    def __init__(
        self,
        decisions: DecisionService,
        policies: PolicyManager,
        started_at: float,
        *,
        events: EventHub,
        orchestrator: Orchestrator,
        signals: SignalEngine | None = None,
    ) -> None:
        self.decisions = decisions
        self.policies = policies
        self.started_at = started_at
        self.events = events
        self.orchestrator = orchestrator
        self.signals = signals
        self.approvals = decisions.approvals
        self.max_string_length = decisions.config.max_string_length
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
            approval_id=request.approval_id,
            requested_by=current_principal.get().id,
        )
        record = await self.decisions.decide(call)
        return pb.RequestToolCallResponse(decision=decision_pb(record), grant_id=record.grant_id)

    async def ReportToolResult(
        self, request: pb.ReportToolResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportToolResultResponse:
        check_text("error_message", request.error_message, self.max_string_length)
        check_duration("duration", request.duration)
        outcome = enum_name(types_pb2.ToolOutcome, "TOOL_OUTCOME", request.outcome)
        if request.work_id:  # a plan step's work item, or a compensation
            if outcome not in ("SUCCEEDED", "FAILED", "TIMED_OUT"):
                raise InvalidArgument.field("outcome", "must be SUCCEEDED, FAILED or TIMED_OUT")
            step = await self.report_work(request, outcome)
            return pb.ReportToolResultResponse(result=step_pb(step).result)
        result = await self.decisions.report(
            decision_id=request.decision_id,
            agent_id=request.agent_id,
            outcome=outcome,
            output=struct_to_dict(request.output, "output"),
            error_message=request.error_message,
            duration_seconds=request.duration.ToNanoseconds() / 1e9,
        )
        return pb.ReportToolResultResponse(result=result_pb(result))

    async def GetHealth(
        self, request: pb.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHealthResponse:
        """The health monitor's score, components and anomalies; see docs/health.md."""
        active = self.policies.active
        if self.health_monitor is None:  # a ControlPlane built without a server
            available = self.engine_available
            return pb.GetHealthResponse(
                status=observe_pb2.HEALTH_STATUS_HEALTHY
                if available
                else observe_pb2.HEALTH_STATUS_UNHEALTHY,
                score=100.0 if available else 0.0,
                policy_revision=active.revision,
                engine=self.policies.engine.name,
                engine_available=available,
                started_at=timestamp(self.started_at),
                version=__version__,
                decisions=dict(self.decisions.decision_counts),
            )
        doc = self.health_monitor.snapshot()
        return pb.GetHealthResponse(
            status=f"HEALTH_STATUS_{doc['status']}",
            score=doc["score"],
            components=[observe_pb2.HealthComponent(**c) for c in doc["components"]],
            anomalies=[
                observe_pb2.Anomaly(
                    metric=a["metric"],
                    observed=a["observed"],
                    expected=a["expected"],
                    deviation=a["deviation"],
                    window=a["window"],
                    detected_at=timestamp(a["detected_at"]),
                )
                for a in doc["anomalies"]
            ],
            policy_revision=doc["policy_revision"],
            engine=doc["engine"],
            engine_available=doc["engine_available"],
            started_at=timestamp(doc["started_at"]),
            version=doc["version"],
            decisions=doc["decisions"],
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        """History after ``after_seq`` from the store, then live; see :mod:`interlock.events`.

        Runs until the client cancels; when the server stops it ends with
        UNAVAILABLE (reason ``SERVER_STOPPING``) naming the seq to resume after.
        An ``after_seq`` beyond the highest committed seq is refused (OUT_OF_RANGE).
        """
        selection = event_filter(request.plan_id, request.agent_id, request.kinds)
        await self.events.check_resume(request.after_seq)
        with self.events.watch(request.after_seq, selection) as watcher:
            async for event in watcher:
                yield pb.WatchEventsResponse(event=event_pb(event))
            resume = str(watcher.cursor)
        raise Unavailable(
            f"the server is stopping; resume with after_seq={resume}",
            reason="SERVER_STOPPING",
            metadata={"resume_after_seq": resume},
        )

    async def ListSignals(
        self, request: pb.ListSignalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSignalsResponse:
        """Learning signals, newest first; see :mod:`interlock.signals`."""
        return await list_signals(self.signals, request)
