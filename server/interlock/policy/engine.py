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
VERDICTS = ("ALLOW", "DENY", "PENDING_APPROVAL")
MODES = ("MOCK", "DRY_RUN", "LIVE")


@dataclass(frozen=True)
class PolicyDecision:
    verdict: str
    mode: str
    needs_approval: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "mode": self.mode,
            "needs_approval": self.needs_approval,
            "reasons": list(self.reasons),
        }


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
    return PolicyDecision(verdict, mode, needs_approval, tuple(reasons))


class CompiledPolicy(Protocol):
    """One policy set, loaded into an engine and ready to evaluate."""

    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        """Evaluate the decision rule; raise PolicyEvaluationError when it can't."""
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
