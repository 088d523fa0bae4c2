"""A plan while it runs: mutable step and plan records, and how they are stored.

The orchestrator changes these objects on the event loop and commits every
change (an upsert of the row, its events and audit lines) through the store's
group-commit writer before it acts on it, so a restart finds exactly the
state the last acknowledged change left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.journal import AuditLine, EventRecord, Guard, Row, Upsert
from interlock.plans.model import Conflict, ConflictType, PlanState, Resolution, StepState

FINISHED_STEP_STATES = frozenset(
    {
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.TIMED_OUT,
        StepState.ROLLED_BACK,
        StepState.SKIPPED,
        StepState.CANCELLED,
        StepState.AMBIGUOUS,
    }
)
"""States a step never leaves (ROLLED_BACK is reached from SUCCEEDED only)."""

DONE_FOR_DEPENDENTS = frozenset({StepState.SUCCEEDED, StepState.SKIPPED})
"""States that let a dependent step start."""


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class StepRun:
    plan_id: str
    step_id: str
    position: int
    tool: str
    agent_id: str
    arguments: Mapping[str, Any] | None
    confidence: float
    depends_on: tuple[str, ...]
    state: StepState = StepState.PENDING
    mode: str = ""
    decision_id: str = ""
    work_id: str = ""
    attempt: int = 0
    not_before: float = 0.0
    deadline: float = 0.0
    compensates: str = ""
    """For a compensation step: the step it undoes."""
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)
    decided_under: str = ""
    """The policy revision this process decided the step under (not stored: a
    step restored after a restart is decided again before it is handed out)."""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STEP_STATES

    def values(self) -> dict[str, Any]:
        """The step's row, by column."""
        return {
            "plan_id": self.plan_id,
            "step_id": self.step_id,
            "position": self.position,
            "tool": self.tool,
            "agent_id": self.agent_id,
            "arguments": None if self.arguments is None else _json(dict(self.arguments)),
            "confidence": self.confidence,
            "depends_on": _json(list(self.depends_on)),
            "state": self.state.value,
            "mode": self.mode,
            "decision_id": self.decision_id,
            "work_id": self.work_id,
            "attempt": self.attempt,
            "not_before": self.not_before,
            "deadline": self.deadline,
            "compensates": self.compensates,
            "message": self.message,
            "result": _json(self.result),
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> StepRun:
        return cls(
            plan_id=r["plan_id"],
            step_id=r["step_id"],
            position=r["position"],
            tool=r["tool"],
            agent_id=r["agent_id"],
            arguments=None if r["arguments"] is None else orjson.loads(r["arguments"]),
            confidence=r["confidence"],
            depends_on=tuple(orjson.loads(r["depends_on"])),
            state=StepState(r["state"]),
            mode=r["mode"],
            decision_id=r["decision_id"],
            work_id=r["work_id"],
            attempt=r["attempt"],
            not_before=r["not_before"],
            deadline=r["deadline"],
            compensates=r["compensates"],
            message=r["message"],
            result=orjson.loads(r["result"]),
            updated_at=r["updated_at"],
        )


@dataclass
class PlanRun:
    plan_id: str
    source_format: str
    labels: dict[str, str]
    steps: dict[str, StepRun]
    """By step id, in submission order (compensation steps appended)."""
    conflicts: list[Conflict] = field(default_factory=list)
    state: PlanState = PlanState.PENDING
    message: str = ""
    submitted_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set whenever something the plan waits for happens."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    """Held by the plan's task while it advances, and by a hand-off that decides
    a step again, so the two never act on a step at once."""
    cancel_requested: str = ""
    submitted_by: str = ""
    """The authenticated principal that submitted the plan (asks for its approvals)."""

    def values(self) -> dict[str, Any]:
        """The plan's row, by column."""
        return {
            "plan_id": self.plan_id,
            "state": self.state.value,
            "source_format": self.source_format,
            "labels": _json(self.labels),
            "conflicts": _json([conflict_dict(c) for c in self.conflicts]),
            "message": self.message,
            "submitted_at": self.submitted_at,
            "updated_at": self.updated_at,
            "submitted_by": self.submitted_by,
        }

    @classmethod
    def from_rows(cls, plan: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> PlanRun:
        runs = [StepRun.from_row(s) for s in sorted(steps, key=lambda s: s["position"])]
        return cls(
            plan_id=plan["plan_id"],
            source_format=plan["source_format"],
            labels=orjson.loads(plan["labels"]),
            steps={s.step_id: s for s in runs},
            conflicts=[conflict_from_dict(c) for c in orjson.loads(plan["conflicts"])],
            state=PlanState(plan["state"]),
            message=plan["message"],
            submitted_at=plan["submitted_at"],
            updated_at=plan["updated_at"],
            submitted_by=plan["submitted_by"],
        )

    @property
    def finished(self) -> bool:
        return self.state in (
            PlanState.SUCCEEDED,
            PlanState.FAILED,
            PlanState.FAILED_PARTIAL,
            PlanState.CANCELLED,
            PlanState.ROLLED_BACK,
        )


@dataclass
class PlanChange:
    """A change to a plan (and some of its steps), with its events and audit lines."""

    plan: PlanRun
    steps: list[StepRun] = field(default_factory=list)
    event_list: list[EventRecord] = field(default_factory=list)
    audit_list: list[AuditLine] = field(default_factory=list)
    lease: list[Row] = field(default_factory=list)
    """On shared storage: the lease guard, checked before anything is written
    (or, for a new plan, its first lease, inserted after the plan's row)."""
    work: list[Row] = field(default_factory=list)
    """On shared storage: the work item offered with this change and its
    tool's guards, or the closing of an ended step's item."""

    def rows(self) -> Iterable[Row]:
        yield from (r for r in self.lease if isinstance(r, Guard))
        yield Upsert("plans", self.plan.values(), ("plan_id",))
        for step in self.steps:
            yield Upsert("steps", step.values(), ("plan_id", "step_id"))
        yield from (r for r in self.lease if not isinstance(r, Guard))
        yield from self.work

    def events(self) -> Iterable[EventRecord]:
        return self.event_list or [
            EventRecord(
                kind="STATE_TRANSITION", plan_id=self.plan.plan_id, message=self.plan.state.value
            )
        ]

    def audit(self) -> Iterable[AuditLine]:
        return self.audit_list


def conflict_dict(c: Conflict) -> dict[str, Any]:
    return {
        "type": c.type.value,
        "resolution": c.resolution.value,
        "description": c.description,
        "step_ids": list(c.step_ids),
        "plan_ids": list(c.plan_ids),
        "detected_at": c.detected_at,
    }


def conflict_from_dict(d: Mapping[str, Any]) -> Conflict:
    return Conflict(
        type=ConflictType(d["type"]),
        resolution=Resolution(d["resolution"]),
        description=d["description"],
        step_ids=tuple(d["step_ids"]),
        plan_ids=tuple(d["plan_ids"]),
        detected_at=d["detected_at"],
    )


__all__ = [
    "DONE_FOR_DEPENDENTS",
    "FINISHED_STEP_STATES",
    "PlanChange",
    "PlanRun",
    "StepRun",
    "conflict_dict",
    "conflict_from_dict",
]
