"""The PolicyService: status, reload, and evaluation that changes nothing.

EvaluatePolicy (the playground) never evaluates on the engine that makes live
decisions when that engine is in this process: an inline set, whatever the
engine, and the active set on an in-process engine (regorus or embedded) are
evaluated in the :class:`~interlock.policy.sandbox.PolicySandbox` (on the same
kind of engine) under its time limit. With
``engine: opa`` the active set is asked of OPA (a process of its own, the
trusted set, the same answer RequestToolCall gets), under the same time
limit. Inline sets are never uploaded to the OPA that serves live decisions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from interlock.api import shadow as shadow_api
from interlock.api.convert import dict_to_struct, mode_pb, struct_to_dict, timestamp, verdict_pb
from interlock.auth import current_principal
from interlock.decisions import DecisionService, ToolCall, fail_closed_reason
from interlock.errors import (
    DeadlineExceeded,
    InterlockError,
    InvalidArgument,
    PolicyLoadError,
    ResourceExhausted,
)
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import PolicyDecision
from interlock.policy.gate import ReloadRequest
from interlock.policy.manager import PolicyManager
from interlock.policy.sandbox import PolicySandbox, timed_out
from interlock.replay import ReplayQuery, replay_candidate
from interlock.shadow import ShadowRunner
from interlock.v1 import policy_service_pb2 as pb
from interlock.v1 import policy_service_pb2_grpc as pb_grpc


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(
        self,
        policies: PolicyManager,
        decisions: DecisionService,
        sandbox: PolicySandbox,
        shadow: ShadowRunner,
    ) -> None:
        self.policies = policies
        self.decisions = decisions
        self.sandbox = sandbox
        self.shadow = shadow

    async def GetPolicyStatus(
        self, request: pb.GetPolicyStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPolicyStatusResponse:
        m = self.policies
        active = m.active
        return pb.GetPolicyStatusResponse(
            revision=active.revision,
            engine=m.engine.name,
            engine_available=await m.engine.available(),
            source=active.policy_set.source,
            loaded_at=timestamp(active.loaded_at),
            modules=sorted(active.policy_set.modules),
            tool_count=len(active.catalog.tools),
            last_error=m.last_error,
            last_error_at=timestamp(m.last_error_at) if m.last_error else None,
            reloads=m.reloads,
            reload_failures=m.reload_failures,
        )

    async def ReloadPolicies(
        self, request: pb.ReloadPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadPoliciesResponse:
        ask = ReloadRequest(
            principal=current_principal.get().id,
            accept_widening=request.accept_widening,
            reason=request.reason,
        )
        outcome = await self.policies.reload(trigger="rpc", request=ask)
        if not outcome.ok:
            raise PolicyLoadError(
                f"the policy set was refused and {outcome.previous_revision[:12]} keeps serving: {outcome.error}",
                reason=outcome.error_reason or None,
            )
        gate = outcome.gate or {}
        replayed = gate.get("replay") or {}
        tests = gate.get("tests") or {}
        return pb.ReloadPoliciesResponse(
            revision=outcome.revision,
            previous_revision=outcome.previous_revision,
            changed=outcome.changed,
            replay_digest=replayed.get("digest", ""),
            replayed_decisions=replayed.get("replayed", 0),
            widening_live=replayed.get("widening_live", 0),
            tests_passed=tests.get("passed", 0),
            tests_skipped=tests.get("skipped", 0),
        )

    async def EvaluatePolicy(
        self, request: pb.EvaluatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluatePolicyResponse:
        given: PolicySet | None = None
        if request.HasField("policy_set"):  # its file count is bounded by api.limits
            given = PolicySet.from_files(dict(request.policy_set.files))
        which = request.WhichOneof("input")
        if which is None:
            raise InvalidArgument.field("input", "set tool_call or raw_input")
        if which == "tool_call":
            tc = request.tool_call
            call = ToolCall(
                agent_id=tc.agent_id,
                tool=tc.tool,
                arguments=struct_to_dict(tc.arguments, "tool_call.arguments"),
                confidence=tc.confidence if tc.HasField("confidence") else None,
            )
            if given is not None:
                from interlock.contracts import Catalog

                catalog = Catalog.from_data(given.data)
            else:
                catalog = self.policies.active.catalog
            self.decisions.validate(call, catalog)
            policy_input = self.decisions.build_input(
                call, catalog, live_in_flight=tc.live_in_flight
            )
        else:
            policy_input = struct_to_dict(request.raw_input, "raw_input")

        active = self.policies.active
        in_sandbox = given is not None or self.policies.engine.name != "opa"
        policy_set = given or active.policy_set
        revision = policy_set.revision
        if in_sandbox:
            try:
                decision = await self.sandbox.evaluate(policy_set, policy_input)
            except (PolicyLoadError, DeadlineExceeded, ResourceExhausted):
                raise
            except InterlockError as exc:
                decision = PolicyDecision("DENY", "MOCK", False, (fail_closed_reason(exc.message),))
        else:
            limit = self.sandbox.timeout_seconds
            try:
                async with asyncio.timeout(limit):
                    decision, revision, _ = await self.decisions.evaluate(policy_input)
            except TimeoutError:
                raise timed_out(limit) from None
        return pb.EvaluatePolicyResponse(
            verdict=verdict_pb(decision.verdict),
            mode=mode_pb(decision.mode),
            needs_approval=decision.needs_approval,
            reasons=list(decision.reasons),
            revision=revision,
            engine=self.sandbox.engine if in_sandbox else self.policies.engine.name,
            input=dict_to_struct(policy_input),
        )

    async def ReplayPolicy(
        self, request: pb.ReplayPolicyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReplayPolicyResponse]:
        async for response in replay_policy(self, request):
            yield response

    async def StartShadow(
        self, request: pb.StartShadowRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartShadowResponse:
        return await shadow_api.start(self.shadow, request)

    async def GetShadowStatus(
        self, request: pb.GetShadowStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetShadowStatusResponse:
        report = await self.shadow.status()
        return shadow_api.status_pb(report, replay_report_pb(report))

    async def PromoteShadow(
        self, request: pb.PromoteShadowRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromoteShadowResponse:
        return await shadow_api.promote(self.shadow, request)

    async def StopShadow(
        self, request: pb.StopShadowRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopShadowResponse:
        return await shadow_api.stop(self.shadow)


_CHANGE = {
    "unchanged": pb.REPLAY_CHANGE_UNCHANGED,
    "widens": pb.REPLAY_CHANGE_WIDENS,
    "narrows": pb.REPLAY_CHANGE_NARROWS,
}


def _outcome(o: dict[str, Any]) -> pb.ReplayOutcome:
    return pb.ReplayOutcome(
        verdict=verdict_pb(o["verdict"]),
        mode=mode_pb(o["mode"]),
        needs_approval=o["needs_approval"],
    )


def replay_report_pb(report: dict[str, Any]) -> pb.ReplayReport:
    """The replay report (:func:`interlock.replay.replay`'s dict) as its message."""
    scalars = {
        k: report[k]
        for k in (
            "candidate_revision",
            "engine",
            "decisions",
            "replayed",
            "distinct_inputs",
            "unrecorded_inputs",
            "reconstructed",
            "skipped",
            "failures",
            "unchanged",
            "widening",
            "narrowing",
            "message",
            "seconds",
        )
    }
    return pb.ReplayReport(
        **scalars,
        transitions=[
            pb.ReplayTransition(
                before=_outcome(t["from"]),
                after=_outcome(t["to"]),
                change=_CHANGE[t["change"]],
                count=t["count"],
                by_agent=t["by_agent"],
                by_tool=t["by_tool"],
                samples=[
                    pb.ReplaySample(
                        decision_id=s["decision_id"],
                        recorded_revision=s["recorded_revision"],
                        decided_at=timestamp(s["decided_at"]),
                        agent_id=s["agent_id"],
                        tool=s["tool"],
                        confidence=s["confidence"],
                        recorded_reasons=s["recorded_reasons"],
                        candidate_reasons=s["candidate_reasons"],
                        reconstructed=s["reconstructed"],
                    )
                    for s in t["samples"]
                ],
            )
            for t in report["transitions"]
        ],
        errors=[pb.ReplayError(**e) for e in report["errors"]],
    )


async def replay_policy(
    service: PolicyService, request: pb.ReplayPolicyRequest
) -> AsyncIterator[pb.ReplayPolicyResponse]:
    """ReplayPolicy's stream (PolicyService.ReplayPolicy)."""
    if not request.HasField("policy_set") or not request.policy_set.files:
        raise InvalidArgument.field("policy_set", "the candidate policy set is required")
    engine = request.engine
    if engine not in ("", "embedded", "regorus", "opa"):
        raise InvalidArgument.field(
            "engine", f"must be embedded, regorus or opa (or empty), not {engine!r}"
        )
    candidate = PolicySet.from_files(dict(request.policy_set.files), source="candidate")
    query = ReplayQuery(
        since=request.since.ToNanoseconds() / 1e9 if request.HasField("since") else 0.0,
        until=request.until.ToNanoseconds() / 1e9 if request.HasField("until") else 0.0,
        agent_id=request.agent_id,
        tool=request.tool,
        limit=request.limit,
        samples=request.samples or 3,
        skip_unrecorded=request.skip_unrecorded,
    )
    async for item in replay_candidate(
        service.decisions.journal, service.policies.engine, candidate, engine=engine, query=query
    ):
        if isinstance(item, dict):
            yield pb.ReplayPolicyResponse(report=replay_report_pb(item))
        else:
            done, total = item
            yield pb.ReplayPolicyResponse(progress=pb.ReplayProgress(done=done, total=total))
