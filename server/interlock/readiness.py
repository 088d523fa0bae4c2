"""Readiness: the named conditions the server's serving status is the AND of.

Each condition has a name, whether it holds, and a reason in words (shown as
a component of the health document). A condition that *gates* serving makes
the standard gRPC health service answer NOT_SERVING (for ``""`` and every
Interlock service) and the health status UNHEALTHY while it fails; one that
does not gate is a warning that keeps the status below HEALTHY.

Conditions the server keeps:

==============  =====  =====================================================
name            gates  fails while
==============  =====  =====================================================
``engine``      yes    the policy engine does not answer (probed every second)
``store``       yes    SQLite cannot commit (a full disk); probed while failing
``audit_files`` yes    the JSONL files cannot be written or fsynced, and lag
                       the store (they catch up from its outbox by themselves)
``audit_chain`` no     a hash chain is broken (found at start-up: the tail at
                       once, the whole chain in the background)
``policy_reload`` no   the policy folder changed and the watcher's reload was
                       refused (the old set serves; cleared by the next reload
                       that succeeds)
==============  =====  =====================================================

Other code marks a condition with :meth:`InterlockServer.set_condition
<interlock.server.InterlockServer.set_condition>` (on the event loop).
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINE = "engine"
STORE = "store"
AUDIT_FILES = "audit_files"
AUDIT_CHAIN = "audit_chain"
POLICY_RELOAD = "policy_reload"


@dataclass(frozen=True)
class Condition:
    name: str
    ok: bool
    reason: str
    """Why it fails, or what holds while it does not."""
    gates: bool = True
    """True: the server serves only while it holds; False: a warning."""


class Readiness:
    """The current conditions; not thread-safe (the event loop owns it)."""

    def __init__(self) -> None:
        self._conditions: dict[str, Condition] = {}

    def set(self, name: str, ok: bool, reason: str = "", *, gates: bool = True) -> bool:
        """Record a condition; True when it changed whether it holds."""
        before = self._conditions.get(name)
        self._conditions[name] = Condition(name, ok, reason, gates)
        return before is None or before.ok != ok

    def get(self, name: str) -> Condition | None:
        return self._conditions.get(name)

    def holds(self, name: str) -> bool:
        """Whether a condition holds; an unknown one does."""
        condition = self._conditions.get(name)
        return condition is None or condition.ok

    @property
    def serving(self) -> bool:
        return all(c.ok for c in self._conditions.values() if c.gates)

    def conditions(self) -> list[Condition]:
        return list(self._conditions.values())

    def failing(self) -> list[Condition]:
        return [c for c in self._conditions.values() if not c.ok]


__all__ = [
    "AUDIT_CHAIN",
    "AUDIT_FILES",
    "ENGINE",
    "POLICY_RELOAD",
    "STORE",
    "Condition",
    "Readiness",
]
