"""What the templates show: plain dicts made from the domain records.

Also the plan graph's layout: each step goes in the layer after the deepest
step it depends on (a longest-path layering), so the graph reads left to
right (top to bottom on a phone); compensation steps form the rollback lane.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from interlock.approvals import Approval
from interlock.journal import EventRecord
from interlock.plans.runtime import PlanRun, StepRun

URGENT_FRACTION = 0.8
"""Past this share of its time to live, a pending approval shows as urgent."""
WARN_FRACTION = 0.5


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def urgency(created_at: float, expires_at: float, now: float) -> str:
    """ok, warn or urgent: how much of its time to live an approval has used."""
    span = max(expires_at - created_at, 1e-9)
    used = (now - created_at) / span
    return "urgent" if used >= URGENT_FRACTION else "warn" if used >= WARN_FRACTION else "ok"


def approval_view(
    a: Approval, decision: Mapping[str, Any] | None, risk: str, now: float
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": a.approval_id,
        "state": a.state,
        "agent_id": a.agent_id,
        "tool": a.tool,
        "risk": risk,
        "plan_id": a.plan_id,
        "step_id": a.step_id,
        "decision_id": a.decision_id,
        "requested_by": a.requested_by,
        "confidence": a.confidence,
        "roles": a.approver_roles,
        "have": len(a.approvals),
        "need": a.approvals_required,
        "approved_by": a.approved_by,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "waited": max(0.0, now - a.created_at),
        "urgency": urgency(a.created_at, a.expires_at, now),
        "reason": a.reason,
        "resolved_by": a.resolved_by,
        "resolved_at": a.resolved_at,
        "arguments": "",
        "reasons": [],
    }
    if decision is not None:
        view["arguments"] = pretty(orjson.loads(decision["arguments"] or "{}"))
        view["reasons"] = orjson.loads(decision["reasons"])
    return view


def decision_view(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["reasons"] = orjson.loads(row["reasons"])
    out["arguments"] = pretty(orjson.loads(row["arguments"] or "{}"))
    out["needs_approval"] = bool(row["needs_approval"])
    out["fail_closed"] = bool(row["fail_closed"])
    return out


def event_view(e: EventRecord) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": e.kind,
        "time": e.time,
        "plan_id": e.plan_id,
        "step_id": e.step_id,
        "agent_id": e.agent_id,
        "decision_id": e.decision_id,
        "tool": e.tool,
        "message": e.message,
        "payload": e.payload,
    }


def layers(steps: Mapping[str, StepRun]) -> list[list[StepRun]]:
    """The plan's own steps in dependency layers (compensations left out)."""
    own = {k: s for k, s in steps.items() if not s.compensates}
    depth: dict[str, int] = {}

    def level(step_id: str, seen: frozenset[str] = frozenset()) -> int:
        if step_id in depth:
            return depth[step_id]
        deps = [d for d in own[step_id].depends_on if d in own and d not in seen]
        value = 1 + max((level(d, seen | {step_id}) for d in deps), default=-1)
        depth[step_id] = value
        return value

    out: list[list[StepRun]] = []
    for step_id in own:
        n = level(step_id)
        while len(out) <= n:
            out.append([])
        out[n].append(own[step_id])
    return out


def step_view(s: StepRun, approval_id: str = "") -> dict[str, Any]:
    return {
        "id": s.step_id,
        "tool": s.tool,
        "agent_id": s.agent_id,
        "state": s.state.value,
        "mode": s.mode,
        "live": s.mode == "LIVE" and s.state.value == "DISPATCHED",
        "decision_id": s.decision_id,
        "depends_on": list(s.depends_on),
        "compensates": s.compensates,
        "message": s.message,
        "attempt": s.attempt,
        "confidence": s.confidence,
        "approval_id": approval_id,
        "outcome": s.result.get("outcome", "") if s.result else "",
        "updated_at": s.updated_at,
    }


def plan_view(p: PlanRun, approvals: Mapping[str, str] | None = None) -> dict[str, Any]:
    approvals = approvals or {}
    states: dict[str, int] = {}
    for s in p.steps.values():
        states[s.state.value] = states.get(s.state.value, 0) + 1
    return {
        "id": p.plan_id,
        "state": p.state.value,
        "message": p.message,
        "labels": dict(p.labels),
        "submitted_at": p.submitted_at,
        "updated_at": p.updated_at,
        "submitted_by": p.submitted_by,
        "step_count": sum(1 for s in p.steps.values() if not s.compensates),
        "step_states": states,
        "layers": [
            [step_view(s, approvals.get(s.step_id, "")) for s in layer] for layer in layers(p.steps)
        ],
        "rollback": [step_view(s) for s in p.steps.values() if s.compensates],
        "conflicts": [
            {
                "type": c.type.value,
                "resolution": c.resolution.value,
                "description": c.description,
                "step_ids": list(c.step_ids),
                "plan_ids": list(c.plan_ids),
            }
            for c in p.conflicts
        ],
    }


__all__ = [
    "approval_view",
    "decision_view",
    "event_view",
    "layers",
    "plan_view",
    "pretty",
    "step_view",
    "urgency",
]
