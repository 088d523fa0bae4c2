"""What a decision and a result leave behind: the records and their facts.

:class:`DecisionMade` and :class:`ResultReported` derive, from one record
each, the row, the event and the audit lines the journal commits together.
The audit line is the source: the event's payload is a part of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.audit import STATE_TRANSITIONS, TOOL_EXECUTION_LOG
from interlock.journal import AuditLine, Delete, EventRecord, Insert, Row

STATE_OF_VERDICT = {"ALLOW": "DECIDED", "DENY": "DENIED", "PENDING_APPROVAL": "AWAITING_APPROVAL"}
EVENT_FIELDS = (
    "verdict",
    "mode",
    "needs_approval",
    "reasons",
    "policy_revision",
    "engine",
    "input_hash",
    "fail_closed",
    "confidence",
)
"""The decision line's fields a DECISION event carries."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 (orjson). Values come from protobuf
    Structs, whose NaN and infinities the API converter already refused."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class DecisionRecord:
    decision_id: str
    agent_id: str
    tool: str
    confidence: float
    verdict: str
    mode: str
    needs_approval: bool
    reasons: list[str]
    policy_revision: str
    engine: str
    input_hash: str
    decided_at: float
    plan_id: str = ""
    step_id: str = ""
    fail_closed: bool = False
    arguments: Mapping[str, Any] = field(default_factory=dict)
    approval_id: str = ""
    """The approval the call waits for (PENDING_APPROVAL) or used up (ALLOW)."""
    supersedes: str = ""
    """The earlier decision of the same plan step that this one replaces."""
    grant_id: str = ""
    """The grant that covered the call (docs/grants.md); its use row names the decision."""


@dataclass
class ResultRecord:
    decision_id: str
    agent_id: str
    tool: str
    mode: str
    outcome: str
    output: Mapping[str, Any]
    error_message: str
    duration_seconds: float
    reported_at: float


@dataclass
class DecisionMade:
    """A decision, with what only the journal keeps of it."""

    record: DecisionRecord
    live_deadline: float | None
    """When a direct LIVE call stops counting toward the cap (None otherwise)."""
    arguments_json: str
    latency_seconds: float = 0.0
    input_json: str = ""
    """The policy input as evaluated, canonical JSON (kept for ``policy replay``)."""

    def line(self) -> dict[str, Any]:
        r = self.record
        line = {
            "time": r.decided_at,
            "kind": "decision",
            "decision_id": r.decision_id,
            "agent_id": r.agent_id,
            "tool": r.tool,
            "plan_id": r.plan_id,
            "step_id": r.step_id,
            "confidence": r.confidence,
            "verdict": r.verdict,
            "mode": r.mode,
            "needs_approval": r.needs_approval,
            "reasons": r.reasons,
            "policy_revision": r.policy_revision,
            "engine": r.engine,
            "input_hash": r.input_hash,
            "fail_closed": r.fail_closed,
        }
        if r.supersedes:
            line["supersedes"] = r.supersedes
        return line

    def rows(self) -> Iterable[Row]:
        r = self.record
        values = {
            "decision_id": r.decision_id,
            "decided_at": r.decided_at,
            "agent_id": r.agent_id,
            "tool": r.tool,
            "plan_id": r.plan_id,
            "step_id": r.step_id,
            "confidence": r.confidence,
            "verdict": r.verdict,
            "mode": r.mode,
            "needs_approval": int(r.needs_approval),
            "reasons": canonical_json(r.reasons),
            "policy_revision": r.policy_revision,
            "engine": r.engine,
            "input_hash": r.input_hash,
            "arguments": self.arguments_json,
            "fail_closed": int(r.fail_closed),
            "live_deadline": self.live_deadline,
            "supersedes": r.supersedes,
        }
        rows: list[Row] = [Insert("decisions", values)]
        if self.input_json:
            rows.append(
                Insert("decision_inputs", {"decision_id": r.decision_id, "input": self.input_json})
            )
        return rows

    def events(self) -> Iterable[EventRecord]:
        r, line = self.record, self.line()
        payload = {k: line[k] for k in EVENT_FIELDS}
        payload |= {"latency_seconds": self.latency_seconds, "supersedes": r.supersedes}
        return [
            EventRecord(
                kind="DECISION",
                message=f"{r.verdict} {r.mode} for {r.tool} by {r.agent_id}",
                plan_id=r.plan_id,
                step_id=r.step_id,
                agent_id=r.agent_id,
                decision_id=r.decision_id,
                tool=r.tool,
                time=r.decided_at,
                payload=payload,
            )
        ]

    def audit(self) -> Iterable[AuditLine]:
        r = self.record
        transition = {
            "time": r.decided_at,
            "decision_id": r.decision_id,
            "plan_id": r.plan_id,
            "step_id": r.step_id,
            "tool": r.tool,
            "from_state": "REQUESTED",
            "to_state": STATE_OF_VERDICT[r.verdict],
            "mode": r.mode,
            "policy_revision": r.policy_revision,
            "input_hash": r.input_hash,
        }
        return [(TOOL_EXECUTION_LOG, self.line()), (STATE_TRANSITIONS, transition)]


@dataclass
class ResultReported:
    """A reported result of a decision (its stored row gives the context)."""

    result: ResultRecord
    decision: Mapping[str, Any]
    release_hold: bool = False
    """Delete the decision's LIVE hold (the cap counted across replicas)."""

    def _context(self) -> dict[str, Any]:
        d = self.decision
        return {
            "plan_id": d["plan_id"],
            "step_id": d["step_id"],
            "policy_revision": d["policy_revision"],
            "input_hash": d["input_hash"],
        }

    def rows(self) -> Iterable[Row]:
        r = self.result
        values = {
            "decision_id": r.decision_id,
            "agent_id": r.agent_id,
            "outcome": r.outcome,
            "output": canonical_json(dict(r.output)),
            "error_message": r.error_message,
            "duration_seconds": r.duration_seconds,
            "reported_at": r.reported_at,
        }
        rows: list[Row] = [Insert("results", values)]
        if self.release_hold:
            rows.append(Delete("live_holds", {"decision_id": r.decision_id}))
        return rows

    def events(self) -> Iterable[EventRecord]:
        r = self.result
        return [
            EventRecord(
                kind="RESULT",
                message=f"{r.tool} {r.outcome} ({r.mode}) for {r.agent_id}",
                plan_id=self.decision["plan_id"],
                step_id=self.decision["step_id"],
                agent_id=r.agent_id,
                decision_id=r.decision_id,
                tool=r.tool,
                time=r.reported_at,
                payload={
                    "outcome": r.outcome,
                    "mode": r.mode,
                    "duration_seconds": r.duration_seconds,
                    "error_message": r.error_message,
                },
            )
        ]

    def audit(self) -> Iterable[AuditLine]:
        r, context = self.result, self._context()
        line = {
            "time": r.reported_at,
            "kind": "result",
            "decision_id": r.decision_id,
            "agent_id": r.agent_id,
            "tool": r.tool,
            "plan_id": context["plan_id"],
            "step_id": context["step_id"],
            "mode": r.mode,
            "outcome": r.outcome,
            "error_message": r.error_message,
            "duration_seconds": r.duration_seconds,
            "policy_revision": context["policy_revision"],
            "input_hash": context["input_hash"],
        }
        transition = {
            "time": r.reported_at,
            "decision_id": r.decision_id,
            "plan_id": context["plan_id"],
            "step_id": context["step_id"],
            "tool": r.tool,
            "from_state": "DECIDED",
            "to_state": r.outcome,
            "mode": r.mode,
            "policy_revision": context["policy_revision"],
            "input_hash": context["input_hash"],
        }
        return [(TOOL_EXECUTION_LOG, line), (STATE_TRANSITIONS, transition)]


__all__ = [
    "DecisionMade",
    "DecisionRecord",
    "ResultRecord",
    "ResultReported",
    "canonical_json",
]
