"""The plan model shared by validation, conflict detection and orchestration.

A plan is a set of steps; each step is one tool call by one agent, with a
confidence and the steps it depends on. Both submission formats (the Phase-21
format and explicit steps) become a :class:`PlanSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PlanState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    FAILED_PARTIAL = "FAILED_PARTIAL"
    CANCELLED = "CANCELLED"
    ROLLED_BACK = "ROLLED_BACK"


TERMINAL_PLAN_STATES = frozenset(
    {
        PlanState.SUCCEEDED,
        PlanState.FAILED,
        PlanState.FAILED_PARTIAL,
        PlanState.CANCELLED,
        PlanState.ROLLED_BACK,
    }
)


class StepState(StrEnum):
    PENDING = "PENDING"
    DECIDED = "DECIDED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    DISPATCHED = "DISPATCHED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ROLLED_BACK = "ROLLED_BACK"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"
    AMBIGUOUS = "AMBIGUOUS"


class ConflictType(StrEnum):
    RESOURCE = "RESOURCE"
    ORDERING = "ORDERING"
    RATE_LIMIT = "RATE_LIMIT"
    DUPLICATE_ACTION = "DUPLICATE_ACTION"
    PERMISSION = "PERMISSION"
    TIMEOUT = "TIMEOUT"


class Resolution(StrEnum):
    SERIALIZE = "serialize"
    REORDER = "reorder"
    REJECT = "reject"
    THROTTLE = "throttle"
    DEDUPE = "dedupe"
    DENY = "deny"
    CANCEL = "cancel"


@dataclass(frozen=True)
class StepSpec:
    """One step as submitted."""

    step_id: str
    tool: str
    agent_id: str
    confidence: float
    arguments: Mapping[str, Any] | None = None
    """None when the submission gave no arguments (the Phase-21 format): the
    schema is then not checked and the worker receives an empty object."""
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanSpec:
    """A validated plan, whatever format it came in."""

    plan_id: str
    steps: tuple[StepSpec, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    source_format: str = "spec"
    """"phase21" or "spec"."""

    def step(self, step_id: str) -> StepSpec:
        for s in self.steps:
            if s.step_id == step_id:
                return s
        raise KeyError(step_id)


@dataclass(frozen=True)
class Conflict:
    type: ConflictType
    resolution: Resolution
    description: str
    step_ids: tuple[str, ...] = ()
    plan_ids: tuple[str, ...] = ()
    detected_at: float = 0.0


@dataclass(frozen=True)
class InFlightStep:
    """A step of a plan already accepted and not finished, as conflict detection sees it."""

    plan_id: str
    step_id: str
    tool: str
    agent_id: str
    state: StepState
    arguments_hash: str
    """SHA-256 of the canonical JSON of the step's arguments ("" when none were given)."""
    updated_at: float


__all__ = [
    "TERMINAL_PLAN_STATES",
    "Conflict",
    "ConflictType",
    "InFlightStep",
    "PlanSpec",
    "PlanState",
    "Resolution",
    "StepSpec",
    "StepState",
]
