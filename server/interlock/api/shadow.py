"""PolicyService's shadow methods (StartShadow, GetShadowStatus, PromoteShadow,
StopShadow): messages in, :class:`~interlock.shadow.ShadowRunner` calls, messages out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interlock.api.convert import timestamp
from interlock.auth import current_principal
from interlock.policy.manager import ReloadOutcome
from interlock.shadow import ShadowRunner
from interlock.v1 import policy_service_pb2 as pb

DEFAULT_SAMPLE = 0.1
_STATE = {
    "RUNNING": pb.SHADOW_STATE_RUNNING,
    "PROMOTED": pb.SHADOW_STATE_PROMOTED,
    "STOPPED": pb.SHADOW_STATE_STOPPED,
}


def shadow_pb(row: Mapping[str, Any]) -> pb.Shadow:
    ended = float(row.get("ended_at") or 0.0)
    return pb.Shadow(
        shadow_id=row["shadow_id"],
        state=_STATE.get(str(row["state"]), pb.SHADOW_STATE_UNSPECIFIED),
        candidate_revision=row["candidate_revision"],
        active_revision=row["active_revision"],
        sample=float(row["sample"]),
        started_by=row["started_by"],
        started_at=timestamp(float(row["started_at"])),
        ended_by=str(row.get("ended_by") or ""),
        ended_at=timestamp(ended) if ended else None,
    )


def reload_pb(outcome: ReloadOutcome) -> pb.ReloadPoliciesResponse:
    """A reload's outcome as ReloadPolicies answers it."""
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


async def start(shadow: ShadowRunner, request: pb.StartShadowRequest) -> pb.StartShadowResponse:
    row = await shadow.begin(
        dict(request.policy_set.files),
        request.sample or DEFAULT_SAMPLE,
        current_principal.get().id,
    )
    return pb.StartShadowResponse(shadow=shadow_pb(row))


def status_pb(report: dict[str, Any], replay_report: pb.ReplayReport) -> pb.GetShadowStatusResponse:
    """The shadow's status (:meth:`ShadowRunner.status`), its matrix already
    converted as a replay report is."""
    return pb.GetShadowStatusResponse(
        shadow=shadow_pb(report),
        report=replay_report,
        disagreements=report["disagreements"],
        dropped=report["dropped"],
        replicas=[pb.ShadowReplica(**r) for r in report["replicas"]],
    )


async def promote(
    shadow: ShadowRunner, request: pb.PromoteShadowRequest
) -> pb.PromoteShadowResponse:
    row, outcome = await shadow.promote(
        current_principal.get().id,
        accept_widening=request.accept_widening,
        reason=request.reason,
    )
    return pb.PromoteShadowResponse(shadow=shadow_pb(row), reload=reload_pb(outcome))


async def stop(shadow: ShadowRunner) -> pb.StopShadowResponse:
    row = await shadow.stop(current_principal.get().id)
    return pb.StopShadowResponse(shadow=shadow_pb(row))


__all__ = ["promote", "reload_pb", "shadow_pb", "start", "status_pb", "stop"]
