"""The interface every policy engine implements, and the decision it returns.

An engine compiles a :class:`PolicySet` into a :class:`CompiledPolicy`; the
compiled policy evaluates the decision rule ``data.interlock.decision.main``
for one input. Compiling checks the set; a set that fails is refused with
:class:`~interlock.errors.PolicyLoadError` and never goes live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from interlock.errors import PolicyEvaluationError
from interlock.policy.bundle import PolicySet

DECISION_PACKAGE = "interlock.decision"
DECISION_RULE = "main"
AUTHZ_ENTRYPOINT = "interlock/authz/main"
"""The RPC authorization rule: {allow, reason} for {method, principal, request, approval}."""
VERDICTS = ("ALLOW", "DENY", "PENDING_APPROVAL")
MODES = ("MOCK", "DRY_RUN", "LIVE")


@dataclass(frozen=True)
class Escalation:
    after_seconds: float
    approver_roles: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalRequirement:
    """What a held call needs: from the approvals policy."""

    approver_roles: tuple[str, ...]
    approvals_required: int
    ttl_seconds: float
    escalation: tuple[Escalation, ...] = ()
    auto_approve: str = ""
    """Why the policy approves the call itself ("" when a human must):
    the approvals policy's ``auto_approve`` (docs/trust.md)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "approver_roles": list(self.approver_roles),
            "approvals_required": self.approvals_required,
            "ttl_seconds": self.ttl_seconds,
            "escalation": [
                {"after_seconds": e.after_seconds, "approver_roles": list(e.approver_roles)}
                for e in self.escalation
            ],
        }
        if self.auto_approve:
            out["auto_approve"] = {"reason": self.auto_approve}
        return out


@dataclass(frozen=True)
class PolicyDecision:
    verdict: str
    mode: str
    needs_approval: bool
    reasons: tuple[str, ...]
    approval: ApprovalRequirement | None = None
    grant: str = ""
    """The grant (input.grants) that covered an ALLOWed call (docs/grants.md)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "mode": self.mode,
            "needs_approval": self.needs_approval,
            "reasons": list(self.reasons),
        }
        if self.approval is not None:
            out["approval"] = self.approval.as_dict()
        if self.grant:
            out["grant"] = self.grant
        return out


def _roles(raw: Any, what: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(r, str) and r for r in raw):
        raise PolicyEvaluationError(f"the approval rule returned {what} that are not role names")
    return tuple(raw)


def _seconds(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not raw > 0:
        raise PolicyEvaluationError(f"the approval rule returned {what} {raw!r}, not seconds > 0")
    return float(raw)


def parse_requirement(raw: Any) -> ApprovalRequirement:
    """Check the approvals policy's requirement. Malformed is an error (fail closed)."""
    if not isinstance(raw, dict):
        raise PolicyEvaluationError("PENDING_APPROVAL came without an approval requirement")
    required = raw.get("approvals_required")
    if isinstance(required, float) and required.is_integer():
        required = int(required)
    if isinstance(required, bool) or not isinstance(required, int) or required < 1:
        raise PolicyEvaluationError(
            f"the approval rule returned approvals_required {required!r}, not a whole number >= 1"
        )
    steps = raw.get("escalation", [])
    if not isinstance(steps, list) or not all(isinstance(e, dict) for e in steps):
        raise PolicyEvaluationError("the approval rule returned an escalation that is not a list")
    escalation = tuple(
        Escalation(
            _seconds(e.get("after_seconds"), "escalation after_seconds"),
            _roles(e.get("approver_roles"), "escalation approver_roles"),
        )
        for e in steps
    )
    auto = raw.get("auto_approve", {})
    if not isinstance(auto, dict) or not isinstance(auto.get("reason", ""), str):
        raise PolicyEvaluationError("the approval rule returned an auto_approve without a reason")
    if auto and not auto.get("reason"):
        raise PolicyEvaluationError("the approval rule returned an auto_approve without a reason")
    return ApprovalRequirement(
        approver_roles=_roles(raw.get("approver_roles"), "approver_roles"),
        approvals_required=required,
        ttl_seconds=_seconds(raw.get("ttl_seconds"), "ttl_seconds"),
        escalation=tuple(sorted(escalation, key=lambda e: e.after_seconds)),
        auto_approve=str(auto.get("reason", "")),
    )


def parse_decision(raw: Any) -> PolicyDecision:
    """Check the decision rule's output. Undefined or malformed is an error (fail closed)."""
    if not isinstance(raw, dict) or not raw:
        raise PolicyEvaluationError("the decision rule is undefined for this input")
    verdict, mode = raw.get("verdict"), raw.get("mode")
    reasons = raw.get("reasons", [])
    if verdict not in VERDICTS:
        raise PolicyEvaluationError(f"the decision rule returned verdict {verdict!r}")
    if mode not in MODES:
        raise PolicyEvaluationError(f"the decision rule returned mode {mode!r}")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise PolicyEvaluationError("the decision rule returned reasons that are not strings")
    needs_approval = raw.get("needs_approval", False)
    if not isinstance(needs_approval, bool):
        raise PolicyEvaluationError("the decision rule returned a non-boolean needs_approval")
    approval = parse_requirement(raw.get("approval")) if verdict == "PENDING_APPROVAL" else None
    grant = raw.get("grant", "") if verdict == "ALLOW" else ""
    if not isinstance(grant, str):
        raise PolicyEvaluationError("the decision rule returned a grant that is not a grant id")
    return PolicyDecision(verdict, mode, needs_approval, tuple(reasons), approval, grant)


def parse_authz(raw: Any) -> tuple[bool, str]:
    """Check the authorization rule's output: (allowed, reason). Malformed is an error."""
    if not isinstance(raw, dict) or not isinstance(raw.get("allow"), bool):
        raise PolicyEvaluationError("the authorization rule is undefined or malformed")
    reason = raw.get("reason", "")
    return raw["allow"], reason if isinstance(reason, str) else ""


class CompiledPolicy(Protocol):
    """One policy set, loaded into an engine and ready to evaluate."""

    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        """Evaluate the decision rule; raise PolicyEvaluationError when it can't."""
        ...

    async def query(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        """Evaluate another entrypoint rule (e.g. AUTHZ_ENTRYPOINT); its raw value."""
        ...

    async def release(self) -> None:
        """Free what the set holds in the engine; called once it is retired."""
        ...


class PolicyEngine(Protocol):
    name: str

    async def compile(self, policy_set: PolicySet) -> CompiledPolicy:
        """Load and check a set; raise PolicyLoadError if it is refused."""
        ...

    async def available(self) -> bool:
        """True when the engine can evaluate right now."""
        ...

    async def close(self) -> None: ...


__all__ = [
    "DECISION_PACKAGE",
    "DECISION_RULE",
    "MODES",
    "VERDICTS",
    "CompiledPolicy",
    "PolicyDecision",
    "PolicyEngine",
    "parse_decision",
]
