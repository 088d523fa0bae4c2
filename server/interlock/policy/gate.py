"""The gate: what a policy set must pass before a reload makes it live.

:class:`~interlock.policy.manager.PolicyManager` compiles and probes a new set
(:meth:`~interlock.policy.manager.PolicyManager.prepare`), then asks the gate,
which:

1. runs the set's own ``*_test.rego`` tests on the engine in use
   (:mod:`interlock.policy.regotests`); a failing test refuses the set
   (FAILED_PRECONDITION, ``POLICY_TESTS_FAILED``), naming it;
2. replays the newest ``reload_replay_decisions`` recorded decisions under
   the compiled set (:mod:`interlock.replay`) and keeps the report's digest
   (SHA-256 of its canonical JSON: sorted keys, orjson) and its counts;
3. counts the replayed decisions the set would widen to LIVE (a call that
   would now run LIVE, or run LIVE without the approval it needed); more
   than ``reload_widening_budget`` refuses the set (``POLICY_WIDENS_LIVE``,
   naming the transitions) unless the reload says ``accept_widening`` with a
   reason.

Whatever it decides, the gate's record (who asked, the tests' result, the
replay's digest and counts, the widening transitions) goes on the reload's
POLICY event and its line in ``policy_changes.jsonl``; the event also keeps
the whole report, so the digest on the line can be checked against it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.contracts import Catalog
from interlock.errors import InvalidArgument, PolicyLoadError
from interlock.journal import Journal
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import CompiledPolicy, PolicyEngine
from interlock.policy.regotests import run_tests
from interlock.replay import ReplayQuery, local_evaluator, replay

FILE_WATCHER = "file watcher"
"""Who asked, for a reload the watcher started."""
MAX_NAMED = 10
REPORT = "report"
"""The record's key for the whole replay report: on the POLICY event (where
its digest can be checked), not on the audit line."""
"""Failing tests or widening transitions a refusal's message names."""


@dataclass(frozen=True)
class ReloadRequest:
    """Who asks for a reload, and whether they accept a set that widens LIVE."""

    principal: str = ""
    """The authenticated principal, or FILE_WATCHER; empty when the caller did not say."""
    accept_widening: bool = False
    reason: str = ""

    def check(self) -> None:
        if self.accept_widening and not self.reason.strip():
            raise InvalidArgument.field(
                "reason", "accept_widening needs a reason (it goes on the audit line)"
            )


class GateRefusal(PolicyLoadError):
    """The gate refused a set; ``record`` is what it found."""

    def __init__(self, message: str, *, reason: str, record: dict[str, Any]) -> None:
        super().__init__(message, reason=reason)
        self.record = record


def report_digest(report: dict[str, Any]) -> str:
    """SHA-256 (hex) of a replay report's canonical JSON."""
    return hashlib.sha256(orjson.dumps(report, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _outcome(o: dict[str, Any]) -> str:
    return f"{o['verdict']} {o['mode']}{' (approval)' if o['needs_approval'] else ''}"


def widening_live(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's transitions that widen what runs LIVE: each as
    {"from", "to", "count"} with outcomes written "VERDICT MODE"."""
    out = []
    for t in report["transitions"]:
        to = t["to"]
        if t["change"] == "widens" and to["mode"] == "LIVE" and to["verdict"] != "DENY":
            out.append({"from": _outcome(t["from"]), "to": _outcome(to), "count": t["count"]})
    return out


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The counts of a replay report that go on the reload's record."""
    keys = (
        "decisions",
        "replayed",
        "distinct_inputs",
        "unrecorded_inputs",
        "unchanged",
        "widening",
        "narrowing",
        "failures",
    )
    return {k: report[k] for k in keys}


class PolicyGate:
    """The gate a reload passes (see the module docstring)."""

    def __init__(self, journal: Journal, *, replay_decisions: int, widening_budget: int) -> None:
        self.journal = journal
        self.replay_decisions = replay_decisions
        self.widening_budget = widening_budget

    async def __call__(
        self,
        policy_set: PolicySet,
        catalog: Catalog,
        compiled: CompiledPolicy,
        engine: PolicyEngine,
        request: ReloadRequest,
    ) -> dict[str, Any]:
        """The gate's record for a set that passes; GateRefusal for one that doesn't."""
        record: dict[str, Any] = {
            "candidate_revision": policy_set.revision,
            "principal": request.principal,
            "accept_widening": request.accept_widening,
            "reason": request.reason,
        }
        tests = await run_tests(engine, policy_set)
        record["tests"] = tests.summary()
        if not tests.ok:
            named = sorted(tests.failed)[:MAX_NAMED]
            raise GateRefusal(
                f"the set's tests fail on the {tests.engine} engine: "
                + "; ".join(f"{n}: {tests.failed[n]}" for n in named),
                reason="POLICY_TESTS_FAILED",
                record=record,
            )
        if self.replay_decisions <= 0:
            record["replay"] = None
            return record
        report = await self._replay(policy_set, catalog, compiled, engine)
        widening = widening_live(report)
        widened = sum(t["count"] for t in widening)
        record["replay"] = {
            "digest": report_digest(report),
            **summary(report),
            "widening_live": widened,
            "widening_live_transitions": widening,
            "budget": self.widening_budget,
        }
        record[REPORT] = report
        if widened > self.widening_budget and not request.accept_widening:
            transitions = ", ".join(
                f"{t['from']} -> {t['to']} ({t['count']})" for t in widening[:MAX_NAMED]
            )
            raise GateRefusal(
                f"the set widens what runs LIVE for {widened} of the last "
                f"{report['decisions']} decisions (budget {self.widening_budget}): {transitions}; "
                "reload with accept_widening and a reason to make it live anyway",
                reason="POLICY_WIDENS_LIVE",
                record=record,
            )
        return record

    async def _replay(
        self,
        policy_set: PolicySet,
        catalog: Catalog,
        compiled: CompiledPolicy,
        engine: PolicyEngine,
    ) -> dict[str, Any]:
        many = local_evaluator(compiled, engine)
        report: dict[str, Any] = {}
        async for item in replay(
            self.journal,
            policy_set,
            catalog,
            compiled,
            engine=engine.name,
            query=ReplayQuery(limit=self.replay_decisions, samples=1),
            evaluate_many=many,
        ):
            if isinstance(item, dict):
                report = item
        return report


__all__ = [
    "FILE_WATCHER",
    "REPORT",
    "GateRefusal",
    "PolicyGate",
    "ReloadRequest",
    "report_digest",
    "summary",
    "widening_live",
]
