"""The approval RPCs: ListApprovals, ResolveApproval, AwaitApproval.

Who resolves is the authenticated principal (:mod:`interlock.auth`), never a
field of the request; whether they may is the authorization policy's call,
made before the handler runs. See :mod:`interlock.approvals`.
"""

from __future__ import annotations

import grpc

from interlock.api.convert import check_text, enum_name, require_id, timestamp
from interlock.approvals import STATES, Approval, Approvals
from interlock.auth import current_principal
from interlock.errors import FieldViolation, InvalidArgument
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2

MAX_AWAIT_SECONDS = 300.0
DEFAULT_AWAIT_SECONDS = 30.0


def approval_pb(a: Approval) -> observe_pb2.Approval:
    out = observe_pb2.Approval(
        approval_id=a.approval_id,
        state=f"APPROVAL_STATE_{a.state}",
        decision_id=a.decision_id,
        plan_id=a.plan_id,
        step_id=a.step_id,
        tool=a.tool,
        agent_id=a.agent_id,
        arguments_hash=a.arguments_hash,
        policy_revision=a.policy_revision,
        requested_by=a.requested_by,
        approver_roles=a.approver_roles,
        approvals_required=a.approvals_required,
        approved_by=a.approved_by,
        created_at=timestamp(a.created_at),
        expires_at=timestamp(a.expires_at),
        reason=a.reason,
        confidence=a.confidence,
        escalation_level=a.escalation_level,
        resolved_by=a.resolved_by,
        used_by_decision_id=a.used_by_decision_id,
    )
    if a.resolved_at:
        out.resolved_at.CopyFrom(timestamp(a.resolved_at))
    if a.next_escalation_at is not None:
        out.next_escalation_at.CopyFrom(timestamp(a.next_escalation_at))
    return out


class ApprovalRpcs:
    approvals: Approvals
    max_string_length: int

    async def ListApprovals(
        self, request: pb.ListApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApprovalsResponse:
        states = []
        for i, value in enumerate(request.states):
            name = enum_name(observe_pb2.ApprovalState, "APPROVAL_STATE", value)
            if name not in STATES:
                raise InvalidArgument.of(
                    [FieldViolation(f"states[{i}]", f"must be one of {', '.join(STATES)}")]
                )
            states.append(name)
        found = await self.approvals.list(states, request.plan_id, request.agent_id, request.tool)
        return pb.ListApprovalsResponse(approvals=[approval_pb(a) for a in found])

    async def ResolveApproval(
        self, request: pb.ResolveApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveApprovalResponse:
        require_id("approval_id", request.approval_id)
        approval_id = request.approval_id
        resolution = enum_name(
            observe_pb2.ApprovalResolution, "APPROVAL_RESOLUTION", request.resolution
        )
        if resolution not in ("APPROVE", "DENY"):
            raise InvalidArgument.of([FieldViolation("resolution", "must be APPROVE or DENY")])
        check_text("reason", request.reason, self.max_string_length)
        principal = current_principal.get()
        approval = await self.approvals.resolve(
            approval_id, resolution == "APPROVE", request.reason, principal.id, principal.roles
        )
        return pb.ResolveApprovalResponse(approval=approval_pb(approval))

    async def AwaitApproval(
        self, request: pb.AwaitApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.AwaitApprovalResponse:
        require_id("approval_id", request.approval_id)
        approval_id = request.approval_id
        wait = DEFAULT_AWAIT_SECONDS
        if request.HasField("timeout"):
            wait = request.timeout.ToNanoseconds() / 1e9
            if not 0 <= wait <= MAX_AWAIT_SECONDS:
                raise InvalidArgument.of(
                    [FieldViolation("timeout", f"must be between 0 and {MAX_AWAIT_SECONDS:g}s")]
                )
        remaining = context.time_remaining()
        if remaining is not None:
            wait = min(wait, max(0.0, remaining - 0.05))
        approval = await self.approvals.wait(approval_id, wait)
        return pb.AwaitApprovalResponse(approval=approval_pb(approval))


__all__ = ["ApprovalRpcs", "approval_pb"]
