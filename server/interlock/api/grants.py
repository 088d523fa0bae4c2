"""The GrantService RPCs: CreateGrant, ListGrants, RevokeGrant (docs/grants.md).

Who creates or revokes is the authenticated principal (:mod:`interlock.auth`),
never a field of the request; whether they may is the authorization policy's
call, made before the handler runs (approvers and admins; never an agent,
never for a call the creator asked for). See :mod:`interlock.grants`.
"""

from __future__ import annotations

import time

import grpc

from interlock.api.convert import (
    check_text,
    dict_to_struct,
    enum_name,
    require_id,
    struct_to_dict,
    timestamp,
)
from interlock.approvals import Approvals
from interlock.auth import current_principal
from interlock.decisions import check_id
from interlock.errors import FieldViolation, InvalidArgument
from interlock.grants import STATES, Constraint, Grant, Grants
from interlock.policy.manager import PolicyManager
from interlock.v1 import grants_pb2 as pb
from interlock.v1 import grants_pb2_grpc


def grant_pb(g: Grant, now: float) -> pb.Grant:
    out = pb.Grant(
        grant_id=g.grant_id,
        state=f"GRANT_STATE_{g.state_at(now)}",
        agent_id=g.agent_id,
        tool=g.tool,
        arguments_equal=dict_to_struct(dict(g.constraint.equals)),
        argument_patterns=dict_to_struct(dict(g.constraint.patterns)),
        arguments_schema=dict_to_struct(dict(g.constraint.schema)),
        plan_id=g.plan_id,
        expires_at=timestamp(g.expires_at),
        max_uses=g.max_uses,
        uses=g.uses,
        created_by=g.created_by,
        created_at=timestamp(g.created_at),
        reason=g.reason,
        approval_id=g.approval_id,
        revoked_by=g.revoked_by,
        revoke_reason=g.revoke_reason,
    )
    if g.revoked_at:
        out.revoked_at.CopyFrom(timestamp(g.revoked_at))
    return out


class GrantRpcs(grants_pb2_grpc.GrantServiceServicer):
    def __init__(
        self, grants: Grants, approvals: Approvals, policies: PolicyManager, max_string_length: int
    ) -> None:
        self.grants = grants
        self.approvals = approvals
        self.policies = policies
        self.max_string_length = max_string_length

    async def CreateGrant(
        self, request: pb.CreateGrantRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateGrantResponse:
        violations: list[FieldViolation] = []
        check_id("agent_id", request.agent_id, violations, required=False)
        check_id("plan_id", request.plan_id, violations, required=False)
        check_id("approval_id", request.approval_id, violations, required=False)
        if violations:
            raise InvalidArgument.of(violations)
        check_text("reason", request.reason, self.max_string_length)
        patterns = struct_to_dict(request.argument_patterns, "argument_patterns")
        constraint = Constraint(
            equals=struct_to_dict(request.arguments_equal, "arguments_equal"),
            patterns=patterns,
            schema=struct_to_dict(request.arguments_schema, "arguments_schema"),
        )
        approval = None
        if request.approval_id:
            approval = await self.approvals.get(request.approval_id)  # NOT_FOUND
        expires_at = (
            request.expires_at.ToNanoseconds() / 1e9 if request.HasField("expires_at") else None
        )
        grant = await self.grants.create(
            principal=current_principal.get(),
            catalog=self.policies.active.catalog,
            agent_id=request.agent_id,
            tool=request.tool,
            constraint=constraint,
            plan_id=request.plan_id,
            expires_at=expires_at,
            max_uses=request.max_uses,
            reason=request.reason,
            approval=approval,
        )
        return pb.CreateGrantResponse(grant=grant_pb(grant, grant.created_at))

    async def ListGrants(
        self, request: pb.ListGrantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGrantsResponse:
        states = []
        for i, value in enumerate(request.states):
            name = enum_name(pb.GrantState, "GRANT_STATE", value)
            if name not in STATES:
                raise InvalidArgument.of(
                    [FieldViolation(f"states[{i}]", f"must be one of {', '.join(STATES)}")]
                )
            states.append(name)
        found = await self.grants.find(agent_id=request.agent_id, tool=request.tool, states=states)
        now = time.time()
        return pb.ListGrantsResponse(grants=[grant_pb(g, now) for g in found])

    async def RevokeGrant(
        self, request: pb.RevokeGrantRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeGrantResponse:
        require_id("grant_id", request.grant_id)
        check_text("reason", request.reason, self.max_string_length)
        grant = await self.grants.revoke(
            request.grant_id, current_principal.get().id, request.reason
        )
        return pb.RevokeGrantResponse(grant=grant_pb(grant, grant.revoked_at))


__all__ = ["GrantRpcs", "grant_pb"]
