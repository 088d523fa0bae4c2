"""TrustService: GetTrust and ResetTrust (:mod:`interlock.trust`).

Who resets is the authenticated principal, never a field of the request; the
authorization policy lets approvers and admins reset, never as the agent
whose pair it is.
"""

from __future__ import annotations

from typing import Any

import grpc

from interlock.api.convert import timestamp
from interlock.auth import current_principal
from interlock.decisions import DecisionService
from interlock.errors import FieldViolation, InvalidArgument
from interlock.v1 import trust_pb2 as pb
from interlock.v1 import trust_pb2_grpc

MAX_REASON = 1000


def pair_pb(view: dict[str, Any]) -> pb.PairTrust:
    out = pb.PairTrust(
        agent_id=view["agent_id"],
        tool=view["tool"],
        state="TRUST_STATE_" + view["state"],
        failures=view["failures"],
        failures_needed=view["failures_needed"],
        window_seconds=view["window_seconds"],
        demotions=view["demotions"],
        clean_runs=view["clean_runs"],
        clean_runs_needed=view["clean_runs_needed"],
        reason=view["reason"],
    )
    if view["demoted_at"]:
        out.demoted_at.CopyFrom(timestamp(view["demoted_at"]))
    if view["demoted_until"]:
        out.demoted_until.CopyFrom(timestamp(view["demoted_until"]))
    return out


class TrustService(trust_pb2_grpc.TrustServiceServicer):
    def __init__(self, decisions: DecisionService) -> None:
        self.decisions = decisions

    def _check(self, agent_id: str, tool: str) -> None:
        """Named agents and tools must be in the catalog (NOT_FOUND otherwise)."""
        catalog = self.decisions.policies.active.catalog
        if agent_id:
            catalog.agent(agent_id)
        if tool:
            catalog.tool(tool)

    async def GetTrust(
        self, request: pb.GetTrustRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrustResponse:
        self._check(request.agent_id, request.tool)
        views = await self.decisions.trust.find(
            request.agent_id, request.tool, self.decisions.trust_params()
        )
        return pb.GetTrustResponse(pairs=[pair_pb(v) for v in views])

    async def ResetTrust(
        self, request: pb.ResetTrustRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetTrustResponse:
        violations = [
            FieldViolation(name, "is required")
            for name in ("agent_id", "tool")
            if not getattr(request, name)
        ]
        if len(request.reason) > MAX_REASON:
            violations.append(FieldViolation("reason", f"is longer than {MAX_REASON} characters"))
        if violations:
            raise InvalidArgument.of(violations)
        self._check(request.agent_id, request.tool)
        principal = current_principal.get()
        view = await self.decisions.trust.reset(
            request.agent_id,
            request.tool,
            principal.id,
            request.reason,
            self.decisions.trust_params(),
        )
        return pb.ResetTrustResponse(trust=pair_pb(view))


__all__ = ["TrustService", "pair_pb"]
