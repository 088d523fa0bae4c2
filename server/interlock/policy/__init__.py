"""Policy sets and the engines that evaluate them."""

from interlock.policy.bundle import PolicySet
from interlock.policy.engine import CompiledPolicy, PolicyDecision, PolicyEngine
from interlock.policy.manager import ActivePolicy, PolicyManager, ReloadOutcome

__all__ = [
    "ActivePolicy",
    "CompiledPolicy",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyManager",
    "PolicySet",
    "ReloadOutcome",
]
