"""A bounded LRU of policy decisions, keyed by policy revision and input hash.

A policy is a pure function of its input and its policy set, so the same
input under the same revision always gets the same decision: repeating the
evaluation is wasted work. Only decisions the engine actually returned are
kept (never a fail-closed denial), and a new revision simply misses.
"""

from __future__ import annotations

from collections import OrderedDict

from interlock.policy.engine import PolicyDecision


class DecisionCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], PolicyDecision] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, revision: str, input_hash: str) -> PolicyDecision | None:
        if self.size <= 0:
            return None
        key = (revision, input_hash)
        decision = self._entries.get(key)
        if decision is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return decision

    def put(self, revision: str, input_hash: str, decision: PolicyDecision) -> None:
        if self.size <= 0:
            return
        self._entries[(revision, input_hash)] = decision
        self._entries.move_to_end((revision, input_hash))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["DecisionCache"]
