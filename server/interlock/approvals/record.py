"""An approval's record: what it covers, who approved, when it expires; and
whether it still covers a call under a changed policy (:func:`covers`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.policy.engine import ApprovalRequirement, parse_requirement

STATES = ("PENDING", "APPROVED", "DENIED", "EXPIRED", "USED", "CANCELLED")
LIVE_STATES = frozenset({"PENDING", "APPROVED"})


def new_approval_id() -> str:
    return f"apr_{os.urandom(12).hex()}"


@dataclass
class Approval:
    approval_id: str
    decision_id: str
    plan_id: str
    step_id: str
    tool: str
    agent_id: str
    arguments_hash: str
    policy_revision: str
    requested_by: str
    requirement: ApprovalRequirement
    created_at: float
    confidence: float
    state: str = "PENDING"
    approver_roles: list[str] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    """Who approved: {"principal", "roles", "at", "reason"}, in order."""
    escalation_level: int = 0
    reason: str = ""
    resolved_by: str = ""
    resolved_at: float = 0.0
    used_by_decision_id: str = ""

    @property
    def expires_at(self) -> float:
        return self.created_at + self.requirement.ttl_seconds

    @property
    def approvals_required(self) -> int:
        return self.requirement.approvals_required

    @property
    def approved_by(self) -> list[str]:
        return [a["principal"] for a in self.approvals]

    @property
    def next_escalation_at(self) -> float | None:
        steps = self.requirement.escalation
        if self.state != "PENDING" or self.escalation_level >= len(steps):
            return None
        at = self.created_at + steps[self.escalation_level].after_seconds
        return at if at < self.expires_at else None

    def values(self) -> dict[str, Any]:
        """The approval's row, by column."""
        return {
            "approval_id": self.approval_id,
            "state": self.state,
            "decision_id": self.decision_id,
            "plan_id": self.plan_id,
            "step_id": self.step_id,
            "tool": self.tool,
            "agent_id": self.agent_id,
            "arguments_hash": self.arguments_hash,
            "policy_revision": self.policy_revision,
            "requested_by": self.requested_by,
            "requirement": orjson.dumps(self.requirement.as_dict()).decode(),
            "approver_roles": orjson.dumps(self.approver_roles).decode(),
            "approvals": orjson.dumps(self.approvals).decode(),
            "escalation_level": self.escalation_level,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "confidence": self.confidence,
            "reason": self.reason,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at,
            "used_by_decision_id": self.used_by_decision_id,
        }

    @classmethod
    def from_row(cls, row: Any) -> Approval:
        return cls(
            approval_id=row["approval_id"],
            decision_id=row["decision_id"],
            plan_id=row["plan_id"],
            step_id=row["step_id"],
            tool=row["tool"],
            agent_id=row["agent_id"],
            arguments_hash=row["arguments_hash"],
            policy_revision=row["policy_revision"],
            requested_by=row["requested_by"],
            requirement=parse_requirement(orjson.loads(row["requirement"])),
            created_at=row["created_at"],
            confidence=row["confidence"],
            state=row["state"],
            approver_roles=orjson.loads(row["approver_roles"]),
            approvals=orjson.loads(row["approvals"]),
            escalation_level=row["escalation_level"],
            reason=row["reason"],
            resolved_by=row["resolved_by"],
            resolved_at=row["resolved_at"],
            used_by_decision_id=row["used_by_decision_id"],
        )


def covers(approval: Approval, requirement: ApprovalRequirement | None, revision: str) -> bool:
    """Whether an APPROVED approval still satisfies the policy in force.

    Under the revision that asked for it, it does. Under another one, it does
    when the approvers it has, with the roles they held, meet the new
    requirement: a rule that was loosened or left alone keeps it valid, one
    that asks for more approvers or other roles does not.
    """
    if revision == approval.policy_revision or requirement is None:
        return True
    roles = set(requirement.approver_roles)
    qualified = [a for a in approval.approvals if roles & set(a.get("roles", []))]
    return len(qualified) >= requirement.approvals_required


__all__ = ["LIVE_STATES", "STATES", "Approval", "covers", "new_approval_id"]
